"""Paths a person types into the dashboard."""

from __future__ import annotations

import os
from pathlib import Path


def expand_path(text: str) -> Path:
    """A typed path with ~ expanded where it can be (`~nosuchuser` stays as typed)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def resolved(path: Path) -> Path:
    """`path` with its links followed, as far as they go: `Path.resolve` raises on a symlink loop (a
    `last.pt -> last.pt` in a run folder), which would take the evaluation screen down with it."""
    return Path(os.path.realpath(path))
