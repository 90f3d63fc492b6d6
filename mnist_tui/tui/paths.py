"""Paths a person types into the dashboard."""

from __future__ import annotations

from pathlib import Path


def expand_path(text: str) -> Path:
    """A typed path with ~ expanded where it can be (`~nosuchuser` stays as typed)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)
