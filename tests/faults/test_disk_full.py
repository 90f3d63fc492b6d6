"""A full disk: a checkpoint or JSON file that cannot be saved ends the run as `failed`, saying so in words
(not torch's `enforce fail at inline_container.cc`), the previous checkpoint intact, no empty run folder
left, and the dashboard shows the same text. Tested with a writer that raises ENOSPC, and on a real full
filesystem (a small tmpfs) where this machine lets the tests mount one."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import small_config, write_synthetic_dataset
from textual.content import Content
from textual.widgets import RichLog

from mnist_tui import control
from mnist_tui.__main__ import main
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.control import DiskFull
from mnist_tui.engine import train
from mnist_tui.events import EpochEnded, RunFailed
from mnist_tui.runs import RunDir, create_run
from mnist_tui.tui.app import MnistTuiApp

SIZE = (120, 30)


class FullDisk:
    """Files opened with os.fdopen (every atomic save: checkpoints and JSON) whose writes raise ENOSPC once
    the disk is `full`, as a filesystem does when it has no block left."""

    def __init__(self) -> None:
        self.full = False
        self.fdopen = os.fdopen

    def open(self, fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        stream = self.fdopen(fd, mode, *args, **kwargs)
        if "w" not in mode:
            return stream
        write, disk = stream.write, self

        def refuse(data: Any) -> int:
            if disk.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write(data)

        stream.write = refuse  # type: ignore[method-assign]
        return stream


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    full = FullDisk()
    monkeypatch.setattr(os, "fdopen", full.open)
    return full


def test_a_checkpoint_that_does_not_fit_fails_the_run_and_keeps_the_last(disk: FullDisk, tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "datasets")
    run = create_run(tmp_path / "runs", small_config(epochs=3))
    events = []
    for event in train(run.config(), run.path, data):
        events.append(event)
        if isinstance(event, EpochEnded) and event.epoch == 2:
            disk.full = True  # the next save is epoch 2's last.pt
    failed = events[-1]
    assert isinstance(failed, RunFailed) and failed.epoch == 2
    assert failed.message == (f"no space left on device while saving last.pt in {run.path}; "
                              "the previous checkpoint is intact")
    assert load_checkpoint(run.path / "last.pt").epoch == 1
    assert sorted(p.name for p in run.path.iterdir()) == ["best.pt", "config.json", "control.json", "last.pt",
                                                          "status.json"]  # no temporary left


def test_json_that_does_not_fit_is_disk_full_naming_the_file(disk: FullDisk, tmp_path: Path) -> None:
    disk.full = True
    with pytest.raises(DiskFull, match=r"no space left on device while saving control\.json in "):
        control.write_json_atomic(tmp_path / "control.json", {"command": "stop"})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_status_is_written_even_with_no_room_for_a_copy(disk: FullDisk, tmp_path: Path) -> None:
    run = create_run(tmp_path / "runs", small_config())
    run.set_status("running")
    disk.full = True  # no room for the temporary copy an atomic write needs
    run.set_status("failed")
    assert run.status() == "failed" and not list(run.path.glob(".*.tmp"))


def test_no_run_folder_is_left_when_none_fits(disk: FullDisk, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              restore_signals: None) -> None:
    data = write_synthetic_dataset(tmp_path / "datasets")
    disk.full = True
    code = main(["train", "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("mnist-tui: error: cannot create a run folder: no space left on device while saving "
                          f"config.json in {tmp_path / 'runs'}/"), err
    assert list((tmp_path / "runs").iterdir()) == []


async def test_the_dashboard_says_a_full_disk_in_words_and_leaves_no_run(disk: FullDisk, tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "datasets")
    app = MnistTuiApp(data_dir=data, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        disk.full = True
        app.start_run(small_config())
        await pilot.pause(0.2)
        toasts = [Content.from_markup(n.message).plain for n in app._notifications]
        assert any("no space left on device while saving config.json in " in toast for toast in toasts), toasts
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem with little room, mounted for the test; skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    size = 2 * 1_700_000  # two of the mlp's checkpoints (about 1.3 MB each, with Adam's state) and the rest
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_train_on_a_full_filesystem(small_tmpfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          restore_signals: None) -> None:
    data = write_synthetic_dataset(tmp_path / "datasets")
    runs = small_tmpfs / "runs"
    code = main(["train", "--data-dir", str(data), "--runs-dir", str(runs), "--json", "--epochs", "3",
                 "--batch-size", "32", "--device", "cpu", "--num-threads", "1"])
    err = capsys.readouterr().err
    [run] = [RunDir(path) for path in runs.iterdir()]
    expected = f"no space left on device while saving last.pt in {run.path}; the previous checkpoint is intact"
    assert code == 1 and err == f"mnist-tui: run failed: {expected}\n"
    assert run.status() == "failed"
    assert load_checkpoint(run.path / "last.pt").epoch == 1
    assert not list(run.path.glob(".*.tmp"))
    app = MnistTuiApp(data_dir=data, runs_dir=runs, download=False, refresh_seconds=0.05, attach=run)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.training_screen
        for _ in range(200):
            if screen.state == "failed":
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        log = "".join(line.text for line in screen.query_one(RichLog).lines)
        assert "".join(f"failed: {expected}".split()) in "".join(log.split())  # the log wraps long lines
