"""The run's view folded from its events: what both the headless reporter and the training panel draw."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "tui"))
from fake_events import run_events

from mnist_tui.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFailed,
    RunFinished,
    RunPaused,
    RunPreparing,
    RunResumed,
    RunStarted,
    dumps,
    parse_line,
)
from mnist_tui.runview import (
    MAX_POINTS,
    EpochFigures,
    RunView,
    Trail,
    asked,
    fold,
    following,
    format_duration,
    heard_live,
)


def folded(events: list[Event], view: RunView | None = None) -> RunView:
    view = view if view is not None else following("demo", launching=False)
    for event in events:
        view = fold(view, event)
    return view


def started_event(**changes: object) -> RunStarted:
    started = run_events()[0]
    assert isinstance(started, RunStarted)
    return replace(started, **changes)  # type: ignore[arg-type]


def texts(view: RunView) -> list[str]:
    return [line.text for line in view.log]


def test_a_whole_run_folds_into_what_both_front_ends_show() -> None:
    view = folded(run_events())
    assert (view.state, view.epoch, view.step, view.epochs, view.steps, view.batch_size) == (
        "completed", 2, 10, 2, 10, 256)
    assert view.best is not None and (view.best.epoch, view.best.val_accuracy) == (2, 0.9431)
    assert view.trained_seconds == pytest.approx(2.4) and view.duration == 2.5
    assert view.train_loss == 0.25  # after an epoch, its mean
    assert len(view.loss_points) == len(view.accuracy_points) == 20
    assert view.loss_points[0] == (0.1, pytest.approx(2.3 / 2))
    assert view.accuracy_points[-1] == (2.0, pytest.approx(1 - 2.3 / 21 / 3))
    assert [e.epoch for e in view.epoch_ends] == [1, 2]
    assert [line.kind for line in view.log] == ["started", "epoch", "saved", "saved", "epoch", "saved", "saved",
                                                "finished"]
    assert texts(view)[1] == "epoch 1/2  loss 0.5000 (val 0.2500)  acc 90.00% (val 92.59%)  1.2s"
    assert texts(view)[2] == "saved last.pt (epoch 1)"
    assert texts(view)[-1] == ("completed after 2 epoch(s) in 0:00:02 (wall clock); best val accuracy 94.31% "
                               "(epoch 2), final 94.31%")
    assert view.throughput == 50000.0 and view.status == "completed"


def test_each_event_moves_the_view_as_it_says() -> None:
    view = following("demo", launching=False)
    assert (view.state, view.status, view.active) == ("starting", "starting: launching the trainer…", True)
    view = fold(view, RunPreparing("loading mnist"))
    assert view.status == "starting: loading mnist…"
    view = fold(view, started_event(note="resumed on cpu"))
    assert (view.state, view.epoch, view.step, view.lr, view.train_loss) == ("running", 0, 0, None, None)
    assert texts(view) == ["started: batch 256, adam lr 0.001, fp32, 60,000 train / 10,000 test",
                           "note: resumed on cpu"]
    view = fold(view, BatchProgress(1, 4, 10, 0.5, 0.8, 1000.0, 0.01, 2.0))
    assert (view.epoch, view.step, view.train_loss, view.lr, view.samples_per_second) == (1, 4, 0.5, 0.01, 1000.0)
    assert list(view.loss_points) == [(0.4, 0.5)] and list(view.accuracy_points) == [(0.4, 0.8)]
    assert view.done_steps == 4 and view.trained_seconds == 2.0
    view = fold(view, RunPaused(1, 4))
    assert (view.state, view.throughput, view.remaining()) == ("paused", 0.0, (None, None))
    view = fold(view, RunResumed(1, 4))
    assert view.state == "running" and texts(view)[-2:] == ["paused at epoch 1, step 4", "resumed"]
    view = fold(view, EpochEnded(1, 2, 0.4, 0.85, 0.3, 0.9, 0.01, 5.0, 2000.0, True, 2**30, 3 * 2**29))
    assert (view.epoch, view.step, view.trained_seconds, view.last_epoch_throughput) == (1, 10, 5.0, 2000.0)
    figures = view.log[-1].figures
    assert figures is not None and figures.gpu_memory == "1.0 GiB/1.5 GiB" and figures.best
    view = fold(view, CheckpointSaved(1, "last", "runs/demo/last.pt", 0))
    view = fold(view, CheckpointSaved(1, "last", "runs/demo/last.pt", 6))
    assert texts(view)[-2:] == ["saved last.pt (epoch 1)", "saved last.pt (epoch 2, step 6)"]
    assert view.log[-1].tone == "quiet"
    stopped = fold(view, RunFinished("stopped", "runs/demo", 1, 1, 0.9, 0.9, [5.0], 9.0))
    assert (stopped.state, stopped.ended, stopped.active, stopped.log[-1].tone) == ("stopped", "stopped", False,
                                                                                     "warning")
    failed = fold(view, RunFailed("loss became nan", "runs/demo", 1))
    assert (failed.state, failed.failure, texts(failed)[-1]) == ("failed", "loss became nan",
                                                                 "failed: loss became nan")
    crashed = fold(view, RunFailed("the trainer was killed by signal 9", "runs/demo", crashed=True))
    assert crashed.state == crashed.status == "crashed" and crashed.log[-1].tone == "error"


def test_a_request_is_shown_until_the_trainer_answers_it() -> None:
    running = folded(run_events()[:3])
    pausing = asked(running, "pause")
    assert pausing.status == "pausing…" and fold(pausing, run_events()[3]).status == "pausing…"
    paused = fold(pausing, RunPaused(1, 2))
    assert (paused.status, paused.awaiting) == ("paused", "")
    resuming = asked(paused, "resume")
    assert resuming.status == "resuming…" and fold(resuming, RunResumed(1, 2)).status == "running"
    # A pause taken back before the trainer saw it: the trainer never pauses, so never resumes; it trains on.
    taken_back = asked(pausing, "resume")
    assert taken_back.status == "resuming…" and not taken_back.pausing_or_paused
    assert fold(taken_back, run_events()[4]).status == "running"
    assert pausing.pausing_or_paused and paused.pausing_or_paused and not resuming.pausing_or_paused
    stopping = asked(running, "stop")
    assert stopping.status == "stopping…"
    assert fold(stopping, RunPaused(1, 2)).status == "stopping…"  # not what was asked: still waiting
    assert fold(stopping, RunFinished("stopped", "runs/demo", 0, 0, None, None)).status == "stopped"
    assert fold(stopping, RunFailed("disk full", "runs/demo")).status == "failed"


def test_a_trainer_just_launched_is_starting_whatever_the_history_replayed_says() -> None:
    """`u` on a stopped run: its log ends `stopped` until the new trainer's first word."""
    history = [*run_events(steps=10)[:15], RunFinished("stopped", "runs/demo", 1, 1, 0.9259, 0.9259, [1.2], 2.0)]
    view = folded(history, following("demo", launching=True))
    assert (view.state, view.shown_state, view.status) == ("stopped", "starting", "starting: launching the trainer…")
    assert view.active and (view.epoch, view.step) == (2, 1)  # the history is drawn: where it got to
    view = fold(heard_live(view), RunPreparing("loading mnist"))
    assert view.status == "starting: loading mnist…"
    view = fold(view, started_event(start_epoch=1))
    assert view.status == "running" and not view.launching
    # A run only looked at is what its log says.
    assert folded(history).status == "stopped"


def test_a_run_resumed_after_a_crash_redraws_what_it_redid_once() -> None:
    events = run_events(steps=10)
    crashed_in_epoch_two = events[:19]  # started, epoch 1 and its saves, 5 steps of epoch 2
    view = folded([*crashed_in_epoch_two, RunFailed("gone", "runs/demo", crashed=True),
                   started_event(start_epoch=1), *events[14:]])
    xs = [x for x, _ in view.loss_points]
    assert xs == sorted(xs) and len(xs) == len(view.accuracy_points) == 20
    assert [e.epoch for e in view.epoch_ends] == [1, 2] and view.state == "completed"

    # One that died after an epoch's end but before its checkpoint: that epoch is done again, shown once.
    view = folded([*events[:12], RunFailed("gone", "runs/demo"), started_event(start_epoch=0), *events[1:]])
    assert [e.epoch for e in view.epoch_ends] == [1, 2]
    # A stopped run goes on where it stopped: nothing to cut, even from a log too old to say the step.
    view = folded([*crashed_in_epoch_two, RunFinished("stopped", "runs/demo", 1, 1, 0.9, 0.9, [1.2], 2.0),
                   started_event(start_epoch=1), *events[19:]])
    assert len(view.loss_points) == 20
    # A run resumed mid-epoch starts its bars where it stopped.
    resumed = fold(view, started_event(start_epoch=1, start_step=5))
    assert (resumed.epoch, resumed.step, resumed.done_steps) == (2, 5, 15)


def test_a_run_killed_without_a_word_and_resumed_redraws_what_it_redid_once() -> None:
    """kill -9 or the OOM killer leave no ending in the log: the resumed start alone says where it went on."""
    events = run_events(steps=10)
    # Killed after epoch 2 ended but before its checkpoint: epoch 2 is trained again from last.pt's epoch 1.
    killed = events[:25]
    assert isinstance(killed[-1], EpochEnded) and killed[-1].epoch == 2
    view = folded([*killed, started_event(start_epoch=1), *events[14:]])
    xs = [x for x, _ in view.loss_points]
    assert xs == sorted(xs) and len(xs) == 20
    assert [e.epoch for e in view.epoch_ends] == [1, 2]
    assert view.finished_seconds == 2 * 1.2  # the epoch redone is counted once
    # The best of the epochs thrown away goes with them, until the redone epoch says otherwise.
    cut_short = folded([*killed, started_event(start_epoch=1)])
    assert cut_short.best is not None and cut_short.best.epoch == 1 and cut_short.finished_seconds == 1.2


def test_durations_from_a_damaged_log_read_as_unknown() -> None:
    assert [format_duration(s) for s in (61.4, None, float("nan"), float("inf"), 1e20, -5.0)] == [
        "0:01:01", "-", "-", "-", "-", "-"]
    view = fold(folded(run_events()[:5]), BatchProgress(1, 5, 10, 0.3, 0.9, 1e-300, 0.001, 0.2))
    assert view.remaining() is not None and "eta -" in f"eta {format_duration(view.remaining()[1])}"


def test_a_damaged_log_is_drawn_as_well_as_it_can_be() -> None:
    """Whatever order a damaged or hand-edited log puts valid events in, the fold never fails."""
    events = run_events()
    # Progress and epochs with no start; an end, then more progress; a step past its epoch; epoch 0.
    odd: list[Event] = [events[3], events[11], events[-1], events[5], BatchProgress(0, 30, 10, 0.1, 0.5, 0.0, 0.1,
                                                                                    0.0),
                        RunResumed(3, 3), RunPaused(1, 1), CheckpointSaved(0, "best", "x", 0), events[0]]
    view = folded(odd, RunView())
    assert view.state == "running" and view.epochs == 2  # the start, last, set what the others lacked
    assert len(view.log) == 6
    assert not view.loss_points  # a start from scratch after an ending trains it all again
    assert folded(list(reversed(events)), RunView()).state == "running"
    assert RunView().remaining() == (None, None) and RunView().done_steps == 0


def test_the_figures_are_rounded_once_for_every_front_end() -> None:
    figures = EpochFigures.of(EpochEnded(12, 20, 0.123456, 0.98765, float("nan"), 1.0, 0.00012345, 61.25, 12345.6,
                                         False))
    assert (figures.train_loss, figures.train_accuracy, figures.val_loss, figures.val_accuracy) == (
        "0.1235", "98.77%", "nan", "100.00%")
    assert (figures.lr, figures.seconds, figures.throughput, figures.gpu_memory) == ("0.000123", "61.2s", "12,346",
                                                                                     "")
    assert figures.line == "epoch 12/20  loss 0.1235 (val nan)  acc 98.77% (val 100.00%)  61.2s"


def test_trails_are_shared_by_views_and_stay_each_views_own() -> None:
    first = Trail[int]().append(1).append(2)
    longer = first.append(3)
    branch = first.append(9)  # an older view grows its own: it copies, the newer is untouched
    assert (list(first), list(longer), list(branch)) == ([1, 2], [1, 2, 3], [1, 2, 9])
    assert longer.since(1) == [2, 3] and longer[-1] == 3 and first == Trail([1, 2])
    cut = longer.cut(1)
    assert list(cut) == [1] and list(cut.append(5)) == [1, 5] and list(longer) == [1, 2, 3]
    with pytest.raises(IndexError):
        first[2]

    bounded = Trail[int](limit=10)
    for n in range(1000):
        bounded = bounded.append(n)
    assert len(bounded) <= 10 and bounded[-1] == 999 and list(bounded) == sorted(bounded)


def test_a_long_runs_replay_keeps_its_chart_series_bounded() -> None:
    """A 20-epoch tutorial run reporting every step (938 a epoch): the panel folds all of its log on replay."""
    view = folded(run_events(epochs=20, steps=938))
    assert len(view.loss_points) <= MAX_POINTS and len(view.accuracy_points) <= MAX_POINTS
    assert view.loss_points[-1][0] == 20.0 and len(view.epoch_ends) == 20


def test_the_eta_waits_for_a_tenth_of_the_epoch_or_uses_the_last_epochs_speed() -> None:
    view = replace(folded([started_event(config={**started_event().config, "epochs": 3, "batch_size": 100},
                                         steps_per_epoch=100)]),
                   epoch=1, step=2, samples_per_second=1000.0)  # slowed by warming up
    assert view.remaining() == (None, None)
    view = replace(view, step=10, samples_per_second=5000.0)
    assert view.remaining() == (90 * 0.02, 290 * 0.02)
    view = replace(view, epoch=2, step=2, samples_per_second=1000.0, last_epoch_throughput=4000.0)
    assert view.remaining() == (98 * 0.025, 198 * 0.025)


def test_a_crash_found_by_the_dashboard_reads_back_and_older_logs_lack_it() -> None:
    crashed = RunFailed("the trainer is gone", "runs/demo", crashed=True)
    assert parse_line(dumps(crashed)) == crashed
    old_line = json.dumps({"event": "run_failed", "message": "m", "run_dir": "r", "epoch": 0})
    assert parse_line(old_line) == RunFailed("m", "r")


def test_the_view_imports_neither_torch_nor_a_ui() -> None:
    script = ("import sys, json; import mnist_tui.runview; "
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'textual', 'rich'})))")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120, check=True)
    assert json.loads(completed.stdout.strip()) == []
