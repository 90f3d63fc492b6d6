"""Torch's threads fitted to the cores free when the settings leave them open, recorded in run_started (a
field older logs lack, so they still parse) and said in the CLI's start line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, small_config, write_synthetic_dataset
from rich.console import Console

from mnist_tui import threads
from mnist_tui.engine import train
from mnist_tui.events import RunStarted, dumps, parse_line
from mnist_tui.reporting import ConsoleReporter
from mnist_tui.threads import training_threads


@pytest.mark.parametrize(("requested", "cores", "busy", "expected"), [
    (0, 2, 0.1, 2),    # an idle box: every core
    (0, 2, 1.2, 1),    # the dashboard and another trainer on a 2-core box: one thread, not two fighting
    (0, 2, 9.0, 1),    # overloaded: still one
    (0, 16, 3.4, 13),  # what is left of a big box
    (3, 2, 9.0, 3),    # a number in the settings is obeyed
])
def test_threads_are_the_cores_free(requested: int, cores: int, busy: float, expected: int) -> None:
    assert training_threads(requested, cores, busy) == expected


def test_usable_cores_follow_the_affinity_not_the_machine() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from mnist_tui.threads import usable_cores; print(usable_cores())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT))).stdout
    assert out.strip() == "1"


def test_a_run_records_and_uses_the_threads_it_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.3)  # one core's worth of other work
    data = write_synthetic_dataset(tmp_path / "datasets")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.set_num_threads(2)
    started, *_ = train(small_config(epochs=1, num_threads=0), run_dir, data)
    assert isinstance(started, RunStarted) and started.threads == 1 and torch.get_num_threads() == 1
    assert started.device_name == "CPU (1 thread)"


def test_a_log_from_before_threads_were_recorded_still_parses() -> None:
    started = RunStarted("r", "runs/r", small_config().to_dict(), "cpu", "CPU (2 threads)", 1, 1, 1, "test", 1,
                         threads=2)
    old = json.loads(dumps(started))
    del old["threads"]
    assert parse_line(json.dumps(old)) == RunStarted("r", "runs/r", small_config().to_dict(), "cpu",
                                                     "CPU (2 threads)", 1, 1, 1, "test", 1)


@pytest.mark.parametrize(("requested", "said"), [(0, "1 torch thread (fitted to the cores free)"),
                                                 (4, "4 torch threads (as set)")])
def test_the_start_line_says_how_many_threads_and_why(requested: int, said: str) -> None:
    out = io.StringIO()
    config = small_config(num_threads=requested)
    reporter = ConsoleReporter(config, Console(file=out, width=300))
    reporter.show(RunStarted("r", "runs/r", config.to_dict(), "cpu", "CPU", 1, 512, 128, "test", 16,
                             threads=requested or 1))
    reporter.close()
    head, started = out.getvalue().splitlines()[:2]
    assert head.endswith(f"on mnist, cpu CPU; {said}") and started.endswith("512 train / 128 test")


def test_busy_cores_are_measured_now_on_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    calls: list[float] = []

    def per_core(interval: float, percpu: bool) -> list[float]:
        calls.append(interval)
        return [50.0, 80.0, 100.0]

    monkeypatch.setattr(psutil, "cpu_percent", per_core)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.busy_cores() == pytest.approx(1.3)  # the third core is not ours to use
    assert calls == [threads.SAMPLE_SECONDS]  # a reading now, not the minute's load average
