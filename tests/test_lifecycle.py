"""Runs that outlive their terminal: detached trainers, crashes, and resuming to the same result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Trained, small_config

from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.config import save_config
from mnist_tui.events import CheckpointSaved
from mnist_tui.runs import RunDir, list_runs

TRAIN = [sys.executable, "-m", "mnist_tui", "train", "--no-download"]


def wait_until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def epoch_count(run: RunDir) -> int:
    return len(run.epoch_events())


def test_detach_prints_the_run_id_and_the_run_finishes_on_its_own(synthetic_root: Path, runs_dir: Path,
                                                                   tmp_path: Path) -> None:
    config_file = tmp_path / "run.toml"
    save_config(small_config(epochs=2), config_file)
    done = subprocess.run([*TRAIN, "--detach", "--config", str(config_file), "--data-dir", str(synthetic_root),
                           "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    run = RunDir(runs_dir / run_id)
    assert run.path.is_dir(), done.stdout
    wait_until(lambda: run.status() == "completed")
    assert epoch_count(run) == 2


def test_a_trainer_killed_mid_epoch_is_crashed_and_its_last_checkpoint_loads(synthetic_root: Path,
                                                                             runs_dir: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "run.toml"
    save_config(small_config(epochs=200, batch_size=8), config_file)
    trainer = subprocess.Popen([*TRAIN, "--json", "--config", str(config_file), "--data-dir", str(synthetic_root),
                                "--runs-dir", str(runs_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(runs_dir.iterdir()))
        run = RunDir(next(runs_dir.iterdir()))
        # Wait for the checkpoint of epoch 2 (it is written after the epoch's event), then kill mid-epoch 3.
        wait_until(lambda: any(isinstance(e, CheckpointSaved) and e.kind == "last" and e.epoch >= 2
                               for e in run.read_events()))
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=10)
    finally:
        trainer.kill()
    assert run.status() == "crashed"
    checkpoint = load_checkpoint(run.path / "last.pt")
    assert checkpoint.epoch >= 2
    assert [s.status for s in list_runs(runs_dir)] == ["crashed"]
    listing = subprocess.run([sys.executable, "-m", "mnist_tui", "runs", "--json", "--runs-dir", str(runs_dir)],
                             capture_output=True, text=True, timeout=60)
    assert json.loads(listing.stdout)[0]["status"] == "crashed"


def test_a_stopped_run_resumed_ends_with_the_metrics_of_an_uninterrupted_one(synthetic_root: Path,
                                                                              tmp_path: Path) -> None:
    config_file = tmp_path / "run.toml"
    save_config(small_config(epochs=3, batch_size=2, augment=True), config_file)
    common = ["--config", str(config_file), "--data-dir", str(synthetic_root)]

    straight_runs = tmp_path / "straight"
    subprocess.run([*TRAIN, "--json", *common, "--runs-dir", str(straight_runs)], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    straight = RunDir(next(straight_runs.iterdir())).epoch_events()

    # The same run, stopped in the middle of its second epoch (SIGTERM saves last.pt), then resumed.
    stopped_runs = tmp_path / "stopped"
    trainer = subprocess.Popen([*TRAIN, "--json", *common, "--runs-dir", str(stopped_runs)],
                               stdout=subprocess.PIPE, text=True)
    assert trainer.stdout is not None
    for line in trainer.stdout:
        event = json.loads(line)
        if event["event"] == "batch_progress" and event["epoch"] == 2:
            trainer.send_signal(signal.SIGTERM)
            break
    trainer.communicate(timeout=60)
    assert trainer.returncode == 130, "stopped, not done: `train && eval` must go no further"
    run = RunDir(next(stopped_runs.iterdir()))
    assert run.status() == "stopped"
    assert load_checkpoint(run.path / "last.pt").raw["step"] > 0, "stopped mid-epoch"

    resumed = subprocess.run([*TRAIN, "--json", "--resume", run.run_id, "--runs-dir", str(stopped_runs),
                              "--data-dir", str(synthetic_root)], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert run.status() == "completed"
    after = run.epoch_events()
    assert [e.epoch for e in after] == [1, 2, 3], "the curves continue in the same log"
    assert [(e.val_loss, e.val_accuracy) for e in after] == [(e.val_loss, e.val_accuracy) for e in straight]
    assert after[-1].train_loss == straight[-1].train_loss


def test_resume_refuses_a_run_that_is_still_live_or_unknown(runs_dir: Path) -> None:
    from mnist_tui.__main__ import main
    from mnist_tui.runs import create_run

    run = create_run(runs_dir, small_config())
    run.set_status("running")  # this test process is alive, so the run counts as live
    assert main(["train", "--resume", run.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert main(["train", "--resume", "no-such-run", "--runs-dir", str(runs_dir)]) == 2


def test_resume_of_a_run_that_never_saved_says_there_is_nothing_to_resume(
        runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mnist_tui.__main__ import main
    from mnist_tui.runs import create_run

    run = create_run(runs_dir, small_config())
    run.set_status("failed")  # aborted by a second Ctrl+C in its first epoch
    assert main(["train", "--resume", run.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert "ended before it saved a checkpoint" in capsys.readouterr().err


def test_resume_refuses_a_run_whose_status_is_unknown(trained: Trained, runs_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mnist_tui.__main__ import main

    run = RunDir(runs_dir / "unknown")
    shutil.copytree(trained.run_dir, run.path)  # with a last.pt to go on from, but no status.json
    (run.path / "config.json").write_text(json.dumps(small_config().to_dict()))
    assert main(["train", "--resume", run.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert "no readable status.json, so it might still be training" in capsys.readouterr().err


def test_a_run_folder_that_cannot_be_written_is_an_error_not_a_traceback(
        trained: Trained, runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mnist_tui.__main__ import main

    run = RunDir(runs_dir / "stuck")
    shutil.copytree(trained.run_dir, run.path)
    (run.path / "config.json").write_text(json.dumps(small_config().to_dict()))
    run.set_status("stopped")
    (run.path / "control.json").unlink(missing_ok=True)
    (run.path / "control.json").mkdir()  # resuming writes it first
    assert main(["train", "--resume", run.run_id, "--runs-dir", str(runs_dir)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mnist-tui: error: ") and "control.json" in line


def test_resume_names_a_damaged_config_file(trained: Trained, runs_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from mnist_tui.__main__ import main

    run = RunDir(runs_dir / "damaged")
    shutil.copytree(trained.run_dir, run.path)
    run.set_status("stopped")
    (run.path / "config.json").write_text("{")
    assert main(["train", "--resume", run.run_id, "--runs-dir", str(runs_dir)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mnist-tui: error: ") and str(run.path / "config.json") in line
    assert "Expecting property name" in line


def test_resume_detached_continues_in_the_background(synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "run.toml"
    save_config(small_config(epochs=3, batch_size=4), config_file)
    trainer = subprocess.Popen([*TRAIN, "--json", "--config", str(config_file), "--data-dir", str(synthetic_root),
                                "--runs-dir", str(runs_dir)], stdout=subprocess.PIPE, text=True)
    assert trainer.stdout is not None
    for line in trainer.stdout:
        if json.loads(line)["event"] == "batch_progress":
            trainer.send_signal(signal.SIGTERM)
            break
    trainer.communicate(timeout=60)
    run = RunDir(next(runs_dir.iterdir()))
    assert run.status() == "stopped"
    # No --data-dir, and none in the environment: it goes on with the data it trained on.
    env = {name: value for name, value in os.environ.items() if name != "MNIST_TUI_DATA"}
    done = subprocess.run([*TRAIN, "--resume", run.run_id, "--detach", "--runs-dir", str(runs_dir)],
                          capture_output=True, text=True, timeout=60, env={**env, "MNIST_TUI_NO_DOWNLOAD": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == run.run_id
    wait_until(lambda: run.status() == "completed")
    assert [e.epoch for e in run.epoch_events()] == [1, 2, 3]
