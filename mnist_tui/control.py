"""Steering a run: pause, resume and stop requests, in-process or through a file another process writes.

Torch-free, so the dashboard can steer runs without importing torch.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def temporary_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new file in `path`'s folder to write and then rename over `path`, with the permissions a plain
    `open` would give (mkstemp's 0600 would hide checkpoints from teammates on a shared GPU box)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)
    return handle, temporary


class DiskFull(OSError):
    """A save failed for want of space (ENOSPC, or over a quota), said in words with the file it was saving:
    torch says only `enforce fail at inline_container.cc`, and the OS names no file."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device while saving {path.name} in {path.parent}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def saving(path: Path) -> Iterator[None]:
    """Running out of space inside the block is a DiskFull saving `path`."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE and not isinstance(error, DiskFull):
            raise DiskFull(path) from error
        raise


def raises_disk_full(save: Callable[Concatenate[Path, P], R]) -> Callable[Concatenate[Path, P], R]:
    """A save function, given the path it writes first, whose running out of space is a DiskFull."""
    @functools.wraps(save)
    def saves(path: Path, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with saving(path):
            return save(path, *args, **kwargs)

    return saves


@raises_disk_full
def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON in one rename, so a reader never sees half a file; a write that
    fails (a full disk: DiskFull) leaves no temporary file behind."""
    handle, temporary = temporary_beside(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json_table(path: Path) -> dict[str, Any]:
    """A small JSON file that should hold a table, or {} when it cannot be used: missing or unreadable,
    not UTF-8 (a UnicodeDecodeError is a ValueError, as a JSONDecodeError is), nested deeper than the
    parser goes, or valid JSON that is not a table. Run folders are written by other processes and may be
    damaged or edited by hand; nothing read from one may stop whoever reads it."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


class RunControl:
    """Pause, resume and stop requests for a running `train`, safe to call from any thread.

    Subclasses can pull requests from elsewhere by overriding `poll`, which the training loop calls at
    each progress report and while paused.
    """

    def __init__(self) -> None:
        self._paused = threading.Event()
        self._stop = threading.Event()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def poll(self) -> None:
        """Fetch outside requests; the base class has none."""


class FileControl(RunControl):
    """A RunControl that also obeys a control file, `{"command": "run" | "pause" | "stop"}`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def poll(self) -> None:
        """Read the file each time: it states what the run should be doing, so reading it again is
        harmless, and no change is missed on a file system with coarse timestamps."""
        command = read_json_table(self._path).get("command")
        if command == "pause":
            self.pause()
        elif command == "run":
            self.resume()
        elif command == "stop":
            self.stop()
