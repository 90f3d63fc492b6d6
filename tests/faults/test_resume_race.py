"""One trainer per run folder: trainers started together on one run, as real processes, many times. The
lock is the kernel's (flock), so exactly one wins every time, the loser names the process that holds
the run, and a trainer that dies lets go of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, dead_pid, small_config, write_synthetic_dataset

from mnist_tui.control import RunControl
from mnist_tui.engine import train
from mnist_tui.events import EpochEnded, RunFinished, RunStarted
from mnist_tui.runs import RunDir, RunLocked, create_run, hold_run

ROUNDS = 25
CONTENDER = """
import sys, time
from pathlib import Path
from mnist_tui.runs import RunDir, RunLocked, hold_run
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    hold_run(RunDir(Path(sys.argv[1])))
except RunLocked as error:
    print("lost", error.pid, flush=True)
    sys.exit(3)
print("won", flush=True)
time.sleep(0.3)
"""
"""Waits for the starting gun (a file), then tries to take the run: a trainer's first step, without torch."""


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), MNIST_TUI_NO_DOWNLOAD="1")


def test_two_processes_racing_for_a_run_one_wins_every_time(tmp_path: Path) -> None:
    run = create_run(tmp_path / "runs", small_config())
    for round_ in range(ROUNDS):
        go = tmp_path / f"go{round_}"
        racers = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(run.path), str(go)], env=env(),
                                   stdout=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(0.15)  # both started and waiting
        go.touch()
        outcomes = sorted((racer.communicate(timeout=30)[0].split(), racer.returncode, racer.pid)
                          for racer in racers)
        (lost, lost_code, _), (won, won_code, winner) = outcomes
        assert (won, won_code) == (["won"], 0), outcomes
        assert (lost, lost_code) == (["lost", str(winner)], 3), outcomes


def test_a_killed_holder_lets_go(tmp_path: Path) -> None:
    run = create_run(tmp_path / "runs", small_config())
    holder = subprocess.Popen([sys.executable, "-c", CONTENDER, str(run.path), str(tmp_path)], env=env(),
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "won\n"
    with pytest.raises(RunLocked, match=f"being trained by process {holder.pid}"):
        hold_run(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    os.close(hold_run(run))


def stopped_after_one_epoch(tmp_path: Path) -> tuple[RunDir, Path]:
    """A run of two epochs stopped after its first, with its last.pt, as a resume finds it."""
    data = write_synthetic_dataset(tmp_path / "datasets")
    run = create_run(tmp_path / "runs", small_config(epochs=2))
    control = RunControl()
    for event in train(run.config(), run.path, data, control=control):
        run.append_event(event)
        if isinstance(event, EpochEnded):
            control.stop()
    run.set_status("stopped", pid=dead_pid())
    return run, data


@pytest.mark.parametrize("round_", range(2))
def test_two_resumes_started_together_train_the_run_once(round_: int, tmp_path: Path) -> None:
    run, data = stopped_after_one_epoch(tmp_path)
    command = [sys.executable, "-m", "mnist_tui", "train", "--resume", str(run.path), "--data-dir", str(data),
               "--json"]
    trainers = [subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    results = sorted((trainer.wait(timeout=120), *trainer.communicate(), trainer.pid) for trainer in trainers)
    (won_code, won_out, _, winner), (lost_code, lost_out, lost_err, _) = results
    assert won_code == 0 and json.loads(won_out.splitlines()[-1])["status"] == "completed", results
    assert lost_code == 2 and lost_out == "", results
    assert lost_err == (f"mnist-tui: error: run {run.run_id} is being trained by process {winner}; follow it with "
                        f"`mnist-tui attach {run.run_id}`\n")
    events = run.read_events(progress=False)
    assert sum(isinstance(e, RunStarted) for e in events) == 2  # the first session's and the winner's
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [1, 2]
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["stopped", "completed"]
    assert run.status() == "completed"
