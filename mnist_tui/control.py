"""Steering a run: pause, resume and stop requests, in-process or through a file another process writes.

Torch-free, so the dashboard can steer runs without importing torch.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any


def temporary_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new file in `path`'s folder to write and then rename over `path`, with the permissions a plain
    `open` would give (mkstemp's 0600 would hide checkpoints from teammates on a shared GPU box)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)
    return handle, temporary


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON in one rename, so a reader never sees half a file; a write that
    fails (a full disk) leaves no temporary file behind."""
    handle, temporary = temporary_beside(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
        try:
            command = json.loads(self._path.read_text(encoding="utf-8")).get("command")
        except (OSError, json.JSONDecodeError, AttributeError):
            return
        if command == "pause":
            self.pause()
        elif command == "run":
            self.resume()
        elif command == "stop":
            self.stop()
