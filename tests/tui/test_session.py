"""The async wrapper against real trainer processes: a run that finishes, is steered, or crashes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import dead_pid, small_config
from fake_events import run_events

from mnist_tui.events import (
    BatchProgress,
    EpochEnded,
    Event,
    RunFailed,
    RunFinished,
    RunPaused,
    RunPreparing,
    RunStarted,
)
from mnist_tui.runs import RunDir, create_run
from mnist_tui.session import TrainingSession, spawn_trainer


async def collect(session: TrainingSession,
                  on_event: Callable[[Event, TrainingSession], None] | None = None) -> list[Event]:
    events = []
    async for event in session.events():
        events.append(event)
        if on_event is not None:
            on_event(event, session)
    return events


async def test_wrapper_streams_a_whole_run_from_a_trainer_process(synthetic_root: Path, runs_dir: Path) -> None:
    session = TrainingSession.start(small_config(epochs=2), runs_dir, synthetic_root, download=False)
    sessions: list[bool] = []

    def check_detached(event: Event, session: TrainingSession) -> None:
        if isinstance(event, RunStarted) and session.process is not None:
            # Its own session: a hang-up of the dashboard's terminal never reaches the trainer.
            sessions.append(os.getsid(session.process.pid) == session.process.pid != os.getsid(0))

    events = await collect(session, check_detached)
    assert sessions == [True]
    assert [type(e) for e in events[:3]] == [RunPreparing, RunPreparing, RunStarted]  # it says what it does first
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [1, 2]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    assert session.process is not None and session.process.wait(timeout=30) == 0
    assert session.run.status() == "completed"
    assert (session.run.path / "best.pt").is_file()


async def test_wrapper_pauses_and_stops_the_trainer(synthetic_root: Path, runs_dir: Path) -> None:
    config = small_config(epochs=50, batch_size=8)
    session = TrainingSession.start(config, runs_dir, synthetic_root, download=False)
    seen: list[str] = []

    def steer(event: Event, session: TrainingSession) -> None:
        if isinstance(event, BatchProgress) and "pause" not in seen:
            seen.append("pause")
            session.pause()
        elif isinstance(event, RunPaused):
            seen.append("paused")
            session.stop()

    events = await collect(session, steer)
    assert seen == ["pause", "paused"]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
    assert session.run.status() == "stopped"
    assert (session.run.path / "last.pt").is_file()


async def test_wrapper_reports_a_trainer_killed_mid_run(synthetic_root: Path, runs_dir: Path) -> None:
    session = TrainingSession.start(small_config(epochs=500, batch_size=8), runs_dir, synthetic_root, download=False)

    def kill(event: Event, session: TrainingSession) -> None:
        if isinstance(event, BatchProgress) and session.process is not None and session.process.poll() is None:
            os.kill(session.process.pid, signal.SIGKILL)

    events = await collect(session, kill)
    assert isinstance(events[-1], RunFailed)
    assert "killed by signal 9" in events[-1].message
    assert session.run.status() == "crashed"


async def test_wrapper_reports_a_trainer_that_cannot_start(synthetic_root: Path, runs_dir: Path) -> None:
    run = create_run(runs_dir, small_config())
    (run.path / "config.json").write_text(json.dumps({"batch_size": 0}))
    events = await collect(TrainingSession(run, spawn_trainer(run, synthetic_root, download=False)))
    assert isinstance(events[-1], RunFailed)
    assert "exited with code 2" in events[-1].message
    assert "batch_size must be an integer from 1 to 60000, got 0" in events[-1].message


async def test_wrapper_reports_a_missing_dataset_as_a_failed_run(tmp_path: Path, runs_dir: Path) -> None:
    session = TrainingSession.start(small_config(), runs_dir, tmp_path / "empty", download=False)
    events = await collect(session)
    assert isinstance(events[-1], RunFailed)
    assert "dataset not found" in events[-1].message and "mnist-tui data import" in events[-1].message


async def test_the_dashboards_resume_continues_a_stopped_run_to_the_end(synthetic_root: Path, runs_dir: Path,
                                                                        tmp_path: Path) -> None:
    # Batches of two make epochs long enough (256 steps) for the stop to land inside the run.
    session = TrainingSession.start(small_config(epochs=6, batch_size=2), runs_dir, synthetic_root, download=False)

    def stop_in_epoch_two(event: Event, session: TrainingSession) -> None:
        if isinstance(event, BatchProgress) and event.epoch == 2:
            session.stop()

    first = await collect(session, stop_in_epoch_two)
    assert isinstance(first[-1], RunFinished) and first[-1].status == "stopped"

    # A dashboard started elsewhere, with another data folder: the run goes on with the data it trained on.
    resumed = TrainingSession.continue_run(session.run, tmp_path / "elsewhere", download=False)
    events = await collect(resumed)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed", events[-1]
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [1, 2, 3, 4, 5, 6]
    assert session.run.status() == "completed"


async def test_a_resumed_trainer_that_dies_is_reported_even_after_an_earlier_end(synthetic_root: Path,
                                                                                runs_dir: Path) -> None:
    session = TrainingSession.start(small_config(epochs=1), runs_dir, synthetic_root, download=False)
    assert isinstance((await collect(session))[-1], RunFinished)
    # Without its last.pt the new trainer exits at once; the log's old ending must not hide that.
    (session.run.path / "last.pt").unlink()
    replaying: list[bool] = []
    events = await collect(TrainingSession.continue_run(session.run, synthetic_root, download=False),
                           lambda event, session: replaying.append(session.replaying))
    assert isinstance(events[-1], RunFailed) and replaying[0] and not replaying[-1]  # old run, new news
    assert "exited with code 2" in events[-1].message and "last.pt" in events[-1].message
    assert session.run.status() == "completed"  # a trainer that refused to start changed nothing


async def test_a_watching_session_follows_a_run_resumed_elsewhere(synthetic_root: Path, runs_dir: Path) -> None:
    # Epochs of a tenth of a second: enough of them that the stop, sent on the first report read back from
    # the log, lands before the run would have completed.
    session = TrainingSession.start(small_config(epochs=10, batch_size=2), runs_dir, synthetic_root, download=False)

    def stop_early(event: Event, session: TrainingSession) -> None:
        if isinstance(event, BatchProgress):
            session.stop()

    last = (await collect(session, stop_early))[-1]
    assert isinstance(last, RunFinished) and last.status == "stopped"
    watcher = TrainingSession.attach(session.run)
    ends: list[Event] = []

    async def watch() -> None:
        async for event in watcher.events(watch=True):
            if isinstance(event, RunFinished | RunFailed):
                ends.append(event)
                if len(ends) == 2:
                    return

    watching = asyncio.create_task(watch())
    for _ in range(100):  # until the watcher has read the whole stopped run
        if ends:
            break
        await asyncio.sleep(0.05)
    assert not watching.done()
    session.run.send("run")  # as `mnist-tui train --resume` does
    elsewhere = spawn_trainer(session.run, synthetic_root, download=False, resume=True)
    await asyncio.wait_for(watching, timeout=120)
    assert elsewhere.wait(timeout=30) == 0
    assert [(type(e).__name__, getattr(e, "status", "")) for e in ends] == [
        ("RunFinished", "stopped"), ("RunFinished", "completed")]


async def test_a_watching_session_ends_with_a_run_that_cannot_go_on(tmp_path: Path, runs_dir: Path) -> None:
    completed = create_run(runs_dir, small_config(epochs=2))
    for event in run_events(str(completed.path)):
        completed.append_event(event)
    completed.set_status("completed")

    async def watch_completed() -> list[Event]:
        return [e async for e in TrainingSession.attach(completed).events(watch=True)]

    assert isinstance((await asyncio.wait_for(watch_completed(), timeout=5))[-1], RunFinished)

    stopped = create_run(runs_dir, small_config(epochs=2))
    stopped.append_event(run_events(str(stopped.path))[0])
    stopped.append_event(RunFinished("stopped", str(stopped.path), 0, 0, None, None, [], 1.0))
    stopped.set_status("stopped")
    ends: list[Event] = []

    async def watch() -> None:
        async for event in TrainingSession.attach(stopped).events(watch=True):
            ends.append(event)

    watching = asyncio.create_task(watch())
    await asyncio.sleep(0.5)
    # A resume that fails at once (its data gone) is never seen running; its word in the log still shows.
    stopped.append_event(RunFailed("dataset not found", str(stopped.path)))
    stopped.set_status("failed")
    for _ in range(100):
        if isinstance(ends[-1], RunFailed):
            break
        await asyncio.sleep(0.05)
    assert isinstance(ends[-1], RunFailed) and ends[-1].message == "dataset not found", ends
    shutil.rmtree(stopped.path)  # deleted from Runs: nothing left to watch
    await asyncio.wait_for(watching, timeout=5)


async def test_a_session_tells_the_history_it_replays_from_news(runs_dir: Path) -> None:
    run = create_run(runs_dir, small_config(epochs=2))
    run.append_event(run_events(str(run.path))[0])
    run.append_event(RunFailed("dataset not found", str(run.path)))
    run.set_status("failed")
    watcher = TrainingSession.attach(run)
    seen: list[tuple[str, bool]] = []

    async def watch() -> None:
        async for event in watcher.events(watch=True):
            seen.append((type(event).__name__, watcher.replaying))

    async def until(count: int) -> None:
        for _ in range(100):
            if len(seen) >= count:
                return
            await asyncio.sleep(0.05)

    watching = asyncio.create_task(watch())
    await until(2)
    run.append_event(RunFailed("dataset still not found", str(run.path)))  # a resume elsewhere that failed
    await until(3)
    shutil.rmtree(run.path)
    await asyncio.wait_for(watching, timeout=5)
    assert seen == [("RunStarted", True), ("RunFailed", True), ("RunFailed", False)]


async def test_a_crash_found_on_opening_a_run_is_history(runs_dir: Path) -> None:
    run = create_run(runs_dir, small_config())
    run.append_event(run_events(str(run.path))[0])
    run.set_status("running", pid=dead_pid())  # killed long ago, without a last word
    session = TrainingSession.attach(run)
    seen: list[tuple[str, bool]] = []
    async for event in session.events():
        seen.append((type(event).__name__, session.replaying))
    assert seen == [("RunStarted", True), ("RunFailed", True)]
    # Crashed, as Runs lists it: the panel is told so by the event, and reads no files to find it out.
    assert isinstance(event, RunFailed) and event.crashed


async def test_an_unreadable_event_log_ends_the_stream_with_why(runs_dir: Path) -> None:
    run = create_run(runs_dir, small_config())
    run.events_path.mkdir()  # stands in for a log this user may not read (the tests run as root)
    events = await asyncio.wait_for(collect(TrainingSession.attach(run)), timeout=5)
    assert len(events) == 1 and isinstance(events[0], RunFailed)
    assert events[0].message.startswith("cannot read the run's event log")


async def test_a_trainer_that_cannot_be_started_leaves_a_failed_run(synthetic_root: Path, runs_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_processes(*args: object, **kwargs: object) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    with pytest.raises(OSError):
        TrainingSession.start(small_config(), runs_dir, synthetic_root, download=False)
    [run] = [RunDir(path) for path in runs_dir.iterdir()]
    assert run.status() == "failed"
    assert "could not start the trainer" in run.read_events()[-1].message  # type: ignore[union-attr]
