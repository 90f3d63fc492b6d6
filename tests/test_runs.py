"""Run folders: layout, the event log, status (with crash detection) and the run list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import dead_pid

from mnist_tui.config import TrainConfig
from mnist_tui.control import write_json_atomic
from mnist_tui.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    dumps,
    from_json,
    to_json,
)
from mnist_tui.runs import RunDir, create_run, list_runs, process_alive, resolve_runs_dir, summarize

CONFIG = TrainConfig(epochs=3, batch_size=64, device="cpu")

SAMPLE_EVENTS: list[Event] = [
    RunStarted("r", "/runs/r", CONFIG.to_dict(), "cpu", "CPU (2 threads)", 109_386, 60000, 10000, "test", 234, 0,
               1700000000.5),
    BatchProgress(1, 10, 234, 0.5, 0.875, 12345.6, 0.001, 1.25),
    RunPaused(1, 10),
    RunResumed(1, 10),
    EpochEnded(1, 3, 0.4, 0.9, 0.3, 0.93, 0.001, 4.5, 13000.0, True),
    CheckpointSaved(1, "best", "/runs/r/best.pt"),
    RunFinished("stopped", "/runs/r", 1, 1, 0.93, 0.93, [4.5], 6.0),
    RunFailed("loss became nan", "/runs/r", 1),
]


def test_create_run_layout(runs_dir: Path) -> None:
    run = create_run(runs_dir / "nested", CONFIG)
    assert run.path.parent == runs_dir / "nested"
    assert re.fullmatch(r"\d{8}-\d{6}-mlp-[0-9a-f]{4}", run.run_id)
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "control.json", "status.json"]
    assert json.loads((run.path / "config.json").read_text(encoding="utf-8")) == CONFIG.to_dict()
    assert run.config() == CONFIG
    assert json.loads(run.control_path.read_text(encoding="utf-8")) == {"command": "run"}
    status = json.loads((run.path / "status.json").read_text(encoding="utf-8"))
    assert (status["status"], status["pid"]) == ("starting", os.getpid())
    assert run.status() == "starting"
    assert run.read_events() == []


def test_a_starting_trainer_removes_the_temporaries_a_killed_one_left(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    (run.path / ".last.pt.sx2pxlt9.tmp").write_bytes(b"")  # killed while saving
    (run.path / ".control.json.k3j2a1.tmp").write_bytes(b"")  # a dashboard's, being written right now
    run.remove_leftovers()
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".control.json.k3j2a1.tmp", "config.json", "control.json", "status.json"]


def test_a_run_remembers_the_data_it_trained_on_while_it_is_there(runs_dir: Path, synthetic_root: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    assert run.data_root("mnist") is None  # never started
    started = SAMPLE_EVENTS[0]
    assert isinstance(started, RunStarted)
    run.append_event(replace(started, data_dir=str(synthetic_root)))
    assert run.data_root("mnist") == synthetic_root
    assert run.data_root("fashion-mnist") is None  # not there: the caller's folder it is


def test_two_runs_get_two_folders(runs_dir: Path) -> None:
    first, second = create_run(runs_dir, CONFIG), create_run(runs_dir, CONFIG)
    assert first.path != second.path


def test_send_replaces_the_command(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    for command in ("pause", "run", "stop"):
        run.send(command)
        assert json.loads(run.control_path.read_text(encoding="utf-8")) == {"command": command}
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda e: e.name)
def test_event_json_round_trip(event: Event) -> None:
    line = dumps(event)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == event.name
    assert from_json(data) == event
    assert from_json(dict(to_json(event), added_in_a_later_version=1)) == event


def test_append_and_read_events(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    for event in SAMPLE_EVENTS:
        run.append_event(event)
    assert run.read_events() == SAMPLE_EVENTS
    assert run.read_events(progress=False) == [e for e in SAMPLE_EVENTS if not isinstance(e, BatchProgress)]
    lines = run.events_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(SAMPLE_EVENTS)
    assert all(json.loads(line)["event"] for line in lines)


def test_a_damaged_log_loses_only_its_damaged_lines(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    run.append_event(SAMPLE_EVENTS[0])
    with open(run.events_path, "a", encoding="utf-8") as stream:
        stream.write('{"event": "from_a_later_version"}\nnot json\n{"event": "epoch_ended", "ep')  # then killed
    for event in SAMPLE_EVENTS[1:]:  # a resumed trainer appends on
        run.append_event(event)
    assert run.read_events() == SAMPLE_EVENTS
    assert summarize(run).status != "unreadable"


def test_status_running_while_the_process_lives(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    run.set_status("running")
    assert run.status() == "running"
    run.set_status("paused", pid=os.getpid())
    assert run.status() == "paused"


@pytest.mark.parametrize("status", ["starting", "running", "paused"])
def test_status_crashed_when_the_process_is_gone(runs_dir: Path, status: str) -> None:
    run = create_run(runs_dir, CONFIG)
    run.set_status(status, pid=dead_pid())
    assert run.status() == "crashed"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_status_crashed_when_the_pid_now_names_another_process(runs_dir: Path) -> None:
    """After a reboot the pid a trainer had may belong to another process: its start time tells them apart."""
    run = create_run(runs_dir, CONFIG)
    run.set_status("running")
    record = json.loads((run.path / "status.json").read_text())
    record["pid_started"] = str(int(record["pid_started"]) - 1)
    (run.path / "status.json").write_text(json.dumps(record))
    assert run.status() == "crashed"


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs /proc")
def test_a_process_whose_name_is_not_ascii_is_read_all_the_same(runs_dir: Path) -> None:
    """A reused pid may belong to any process; its name must not stop the status from being read."""
    named = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                              "open('/proc/self/comm', 'wb').write(b'\\xff\\xfe-trainer')\n"
                              "print(flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert named.stdout is not None and named.stdout.readline()
        assert b"\xff" in Path(f"/proc/{named.pid}/stat").read_bytes()
        run = create_run(runs_dir, CONFIG)
        run.set_status("running", pid=named.pid)
        assert process_alive(named.pid) and run.status() == "running"
    finally:
        named.kill()
        named.wait()


@pytest.mark.parametrize("status", ["completed", "stopped", "failed"])
def test_final_status_is_kept_after_the_process_ends(runs_dir: Path, status: str) -> None:
    run = create_run(runs_dir, CONFIG)
    run.set_status(status, pid=dead_pid())
    assert run.status() == status


def test_status_without_a_pid_is_not_running(runs_dir: Path) -> None:
    # A status file with no pid (or pid 0) cannot belong to a live trainer. `int(pid or 0) or -1` passes -1
    # to os.kill, which signals every process the user owns and so always "succeeds".
    run = create_run(runs_dir, CONFIG)
    write_json_atomic(run.path / "status.json", {"status": "running"})
    assert run.status() == "crashed"


def test_status_unknown_when_unreadable(runs_dir: Path) -> None:
    run = create_run(runs_dir, CONFIG)
    (run.path / "status.json").write_text("{half", encoding="utf-8")
    assert run.status() == "unknown"
    (run.path / "status.json").unlink()
    assert run.status() == "unknown"


def test_process_alive() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(dead_pid())


def test_zombie_is_not_alive() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{process.pid}/stat")
        if not stat.exists():
            pytest.skip("no /proc on this system")
        deadline = time.monotonic() + 30
        while stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not process_alive(process.pid)
    finally:
        process.wait()


def make_run(runs_dir: Path, run_id: str, events: list[Event], status: str, config: TrainConfig = CONFIG) -> RunDir:
    run = RunDir(runs_dir / run_id)
    run.path.mkdir(parents=True)
    write_json_atomic(run.path / "config.json", config.to_dict())
    for event in events:
        run.append_event(event)
    run.set_status(status, pid=dead_pid())
    return run


def epoch(number: int, accuracy: float) -> EpochEnded:
    return EpochEnded(number, 3, 0.5, 0.8, 0.4, accuracy, 0.001, 2.0, 1000.0, True)


def test_list_runs(runs_dir: Path) -> None:
    started = RunStarted("x", "x", CONFIG.to_dict(), "cpu", "CPU", 1, 1, 1, "test", 1, 0, time.time() - 30)
    make_run(runs_dir, "20240101-000000-mlp-aaaa",
             [started, epoch(1, 0.9), epoch(2, 0.95), epoch(3, 0.94),
              RunFinished("completed", "x", 3, 2, 0.95, 0.94, [2.0, 2.0, 2.0], 7.5)], "completed")
    make_run(runs_dir, "20240102-000000-cnn-bbbb",
             [started, epoch(1, 0.5), RunFailed("loss became nan at epoch 2, step 3", "x", 1)], "failed",
             TrainConfig(model="cnn", epochs=3))
    make_run(runs_dir, "20240103-000000-mlp-cccc", [started, epoch(1, 0.7)], "running")
    (runs_dir / "not-a-run").mkdir()
    broken = runs_dir / "20240104-000000-mlp-dddd"
    broken.mkdir()
    (broken / "config.json").write_text("{broken", encoding="utf-8")
    not_settings = runs_dir / "20240105-000000-mlp-eeee"
    not_settings.mkdir()
    (not_settings / "config.json").write_text("[1]", encoding="utf-8")  # JSON, but not a table of settings
    (runs_dir / "stray-file.txt").write_text("hello", encoding="utf-8")

    summaries = list_runs(runs_dir)
    assert [s.run_id for s in summaries] == ["20240105-000000-mlp-eeee", "20240104-000000-mlp-dddd",
                                             "20240103-000000-mlp-cccc", "20240102-000000-cnn-bbbb",
                                             "20240101-000000-mlp-aaaa"]
    not_a_table, unreadable, crashed, failed, completed = summaries
    assert unreadable.status == "unreadable" and "config.json is not valid JSON" in unreadable.message
    assert not_a_table.status == "unreadable" and "must hold a table of settings" in not_a_table.message
    assert (completed.status, completed.model, completed.dataset) == ("completed", "mlp", "mnist")
    assert (completed.epochs_done, completed.epochs, completed.best_val_accuracy) == (3, 3, 0.95)
    assert completed.duration == 7.5
    assert completed.message == ""
    assert (failed.status, failed.model, failed.epochs_done) == ("failed", "cnn", 1)
    assert failed.message == "loss became nan at epoch 2, step 3"
    assert (crashed.status, crashed.epochs_done, crashed.best_val_accuracy) == ("crashed", 1, 0.7)
    assert crashed.duration is not None and crashed.duration > 0
    assert json.loads(json.dumps([s.to_json() for s in summaries]))[2]["run_id"] == crashed.run_id
    diverged = replace(failed, train_losses=[0.5, float("nan")], val_losses=[float("inf"), 0.25])
    assert json.loads(json.dumps(diverged.to_json(), allow_nan=False))["train_losses"] == [0.5, None]
    assert diverged.to_json()["val_losses"] == [None, 0.25]  # `runs --json` stays JSON that any reader takes


def test_a_resumed_runs_duration_is_its_training_time_over_all_sessions(runs_dir: Path) -> None:
    def started(at: float, elapsed_before: float) -> RunStarted:
        return RunStarted("x", "x", CONFIG.to_dict(), "cpu", "CPU", 1, 1, 1, "test", 1, 1, at, elapsed_before)

    a_day_ago = time.time() - 86400
    first_session: list[Event] = [started(a_day_ago, 0.0), epoch(1, 0.9),
                     RunFinished("stopped", "x", 1, 1, 0.9, 0.9, [2.0], 3.0)]
    finished = make_run(runs_dir, "20240101-000000-mlp-aaaa", [
        *first_session, started(a_day_ago + 3600, 3.0), epoch(2, 0.95), epoch(3, 0.96),
        RunFinished("completed", "x", 3, 3, 0.96, 0.96, [2.0] * 3, 7.5)], "completed")
    assert summarize(finished).duration == 7.5

    # The second session died after 5 s: 3 + 5, not the day since the first session began.
    crashed = make_run(runs_dir, "20240102-000000-mlp-bbbb", [*first_session, started(time.time() - 5, 3.0)],
                       "running")
    assert summarize(crashed).status == "crashed"
    assert summarize(crashed).duration == pytest.approx(8.0, abs=2.0)

    # A resume that failed before it began (its data gone) leaves the run's time as it was.
    failed = make_run(runs_dir, "20240103-000000-mlp-cccc",
                      [*first_session, RunFailed("dataset not found", "x", 1)], "failed")
    assert (summarize(failed).status, summarize(failed).duration) == ("failed", 3.0)
    assert summarize(failed).message == "dataset not found"


def test_summary_of_a_fresh_run(runs_dir: Path) -> None:
    summary = summarize(create_run(runs_dir, CONFIG))
    assert (summary.status, summary.epochs_done, summary.best_val_accuracy, summary.duration) == (
        "starting", 0, None, None)


def test_list_runs_of_a_missing_folder(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "nowhere") == []


def test_resolve_runs_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_TUI_RUNS", raising=False)
    assert resolve_runs_dir() == Path("runs")
    monkeypatch.setenv("MNIST_TUI_RUNS", str(tmp_path / "env"))
    assert resolve_runs_dir() == tmp_path / "env"
    assert resolve_runs_dir(tmp_path / "flag") == tmp_path / "flag"
