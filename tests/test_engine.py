"""The training loop: its event stream, determinism, pause/stop, failures, and exact resumes."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TEST_SIZE, TRAIN_SIZE

from mnist_tui import batches, engine
from mnist_tui.batches import load_split
from mnist_tui.checkpoints import ResumeState, load_checkpoint, resume_state
from mnist_tui.config import TrainConfig
from mnist_tui.control import FileControl, RunControl, write_json_atomic
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
)
from mnist_tui.runs import create_run

MakeConfig = Callable[..., TrainConfig]
STEPS = TRAIN_SIZE // 32


def run(config: TrainConfig, run_dir: Path, data_root: Path, **kwargs: object) -> list[Event]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return list(engine.train(config, run_dir, data_root, download=False, **kwargs))  # type: ignore[arg-type]


def epochs_of(events: list[Event]) -> list[EpochEnded]:
    return [e for e in events if isinstance(e, EpochEnded)]


def metrics(events: list[Event]) -> list[tuple[int, float, float, float, float, float]]:
    """What must not depend on wall time: each epoch's losses, accuracies and learning rate."""
    return [(e.epoch, e.train_loss, e.train_accuracy, e.val_loss, e.val_accuracy, e.lr) for e in epochs_of(events)]


@pytest.fixture
def report_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report (and so poll the control) after every batch, so stops and pauses land at a known step."""
    monkeypatch.setattr(engine, "REPORT_INTERVAL", 0.0)


class StopAfter(RunControl):
    """Asks to stop at the n-th poll, as a person pressing stop mid-epoch would."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls = 0
        self.limit = polls

    def poll(self) -> None:
        self.polls += 1
        if self.polls == self.limit:
            self.stop()


def test_event_stream(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    events = run(make_config(), tmp_path / "run", synthetic_root)
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted)
    assert (started.train_size, started.val_size, started.val_source) == (TRAIN_SIZE, TEST_SIZE, "test")
    assert (started.steps_per_epoch, started.parameters, started.device, started.start_epoch) == (STEPS, 109_386,
                                                                                                  "cpu", 0)
    assert started.config == make_config().to_dict()
    assert started.run_dir == str(tmp_path / "run")
    assert isinstance(finished, RunFinished)
    assert finished.status == "completed"
    assert not any(isinstance(e, RunStarted | RunFinished | RunFailed) for e in events[1:-1])

    ends = epochs_of(events)
    assert [e.epoch for e in ends] == [1, 2]
    assert all(e.epochs == 2 for e in ends)
    for epoch in (1, 2):
        end_index = events.index(ends[epoch - 1])
        progress = [e for e in events[:end_index] if isinstance(e, BatchProgress) and e.epoch == epoch]
        assert progress, f"no progress reported in epoch {epoch}"
        steps = [p.step for p in progress]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        assert steps[-1] == STEPS  # the end of an epoch is always reported
        assert all(p.steps == STEPS and p.loss > 0 and 0 <= p.accuracy <= 1 for p in progress)
        saved = events[end_index + 1]
        assert isinstance(saved, CheckpointSaved) and (saved.kind, saved.epoch) == ("last", epoch)
    saved_kinds = [(e.kind, e.epoch) for e in events if isinstance(e, CheckpointSaved)]
    assert saved_kinds[:2] == [("last", 1), ("best", 1)]  # the first epoch is always the best so far
    assert all(0 <= e.val_accuracy <= 1 and e.train_loss > 0 for e in ends)
    assert ends[-1].val_accuracy > 0.9  # the synthetic classes are learnable

    assert finished.epochs_done == 2
    assert finished.final_val_accuracy == ends[-1].val_accuracy
    assert finished.best_val_accuracy == max(e.val_accuracy for e in ends)
    assert finished.best_epoch == max(ends, key=lambda e: e.val_accuracy).epoch
    assert len(finished.epoch_seconds) == 2
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert (last.epoch, last.raw["step"]) == (2, 0)
    assert best.epoch == finished.best_epoch
    assert best.metrics["val_accuracy"] == finished.best_val_accuracy
    assert [h["epoch"] for h in last.raw["history"]] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("changes", [
    {},
    {"model": "cnn", "augment": True, "optimizer": "sgd", "scheduler": "cosine", "epochs": 1},
], ids=["mlp", "cnn-augment-sgd-cosine"])
def test_same_config_same_metrics(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                  changes: dict[str, object]) -> None:
    config = make_config(**changes)
    first = run(config, tmp_path / "a", synthetic_root)
    torch.manual_seed(12345)  # global state left by anything else must not matter
    second = run(config, tmp_path / "b", synthetic_root)
    assert metrics(first) and metrics(first) == metrics(second)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name


def test_other_seed_other_metrics(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    first = run(make_config(epochs=1), tmp_path / "a", synthetic_root)
    second = run(make_config(epochs=1, seed=1), tmp_path / "b", synthetic_root)
    assert metrics(first) != metrics(second)


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_schedulers_change_the_rate_per_step(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                             scheduler: str) -> None:
    events = run(make_config(scheduler=scheduler), tmp_path / "run", synthetic_root)
    assert isinstance(events[-1], RunFinished)
    rates = [e.lr for e in epochs_of(events)]
    assert rates[0] != rates[1]
    assert rates[-1] < 0.01 * 0.01  # both anneal to (almost) nothing by the last step


def test_stop_mid_epoch(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                        report_every_step: None) -> None:
    events = run(make_config(), tmp_path / "run", synthetic_root, control=StopAfter(5))
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.epochs_done, finished.best_val_accuracy) == ("stopped", 0, None)
    assert not epochs_of(events)
    assert [p.step for p in events if isinstance(p, BatchProgress)] == [1, 2, 3, 4, 5]
    saved = events[-2]
    assert isinstance(saved, CheckpointSaved) and (saved.kind, saved.epoch, saved.step) == ("last", 0, 5)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (last.epoch, last.raw["step"]) == (0, 5)
    assert last.build_model() is not None
    assert not (tmp_path / "run" / "best.pt").exists()


def test_stop_requested_before_start(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                     report_every_step: None) -> None:
    control = RunControl()
    control.stop()
    events = run(make_config(), tmp_path / "run", synthetic_root, control=control)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
    assert sum(isinstance(e, BatchProgress) for e in events) == 1
    assert load_checkpoint(tmp_path / "run" / "last.pt").raw["step"] == 1


def test_stop_at_epoch_end(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                           report_every_step: None) -> None:
    # A stop asked at an epoch's last step lets the epoch end: validated, saved whole, no mid-epoch state.
    events = run(make_config(epochs=3), tmp_path / "run", synthetic_root, control=StopAfter(STEPS))
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "stopped"
    assert finished.epochs_done == 1 and len(epochs_of(events)) == 1
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (last.epoch, last.raw["step"]) == (1, 0)
    assert (tmp_path / "run" / "best.pt").is_file()


class Gate(RunControl):
    """Holds the trainer at its n-th poll until another thread lets it go."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.polls = 0
        self.at = at
        self.reached = threading.Event()
        self.release = threading.Event()

    def poll(self) -> None:
        self.polls += 1
        if self.polls == self.at:
            self.reached.set()
            assert self.release.wait(30), "the test never released the trainer"


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def train_in_thread(events: list[Event], *args: object, **kwargs: object) -> threading.Thread:
    def work() -> None:
        events.extend(engine.train(*args, **kwargs))  # type: ignore[arg-type]

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_pause_and_resume_from_another_thread(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                              report_every_step: None) -> None:
    control = Gate(at=3)
    events: list[Event] = []
    (tmp_path / "run").mkdir()
    worker = train_in_thread(events, make_config(epochs=1), tmp_path / "run", synthetic_root, control=control)
    assert control.reached.wait(30)
    control.pause()
    control.release.set()
    wait_for(lambda: any(isinstance(e, RunPaused) for e in events))
    count = len(events)
    time.sleep(0.3)  # several pause polls: a paused trainer emits nothing and trains nothing
    assert len(events) == count
    assert worker.is_alive()
    control.resume()
    worker.join(30)
    assert not worker.is_alive()

    kinds = [type(e) for e in events]
    paused = kinds.index(RunPaused)
    assert kinds[paused + 1] is RunResumed
    pause_event, resume_event = events[paused], events[paused + 1]
    assert isinstance(pause_event, RunPaused) and isinstance(resume_event, RunResumed)
    assert (pause_event.epoch, pause_event.step) == (resume_event.epoch, resume_event.step) == (1, 3)
    after = events[paused + 2]
    assert isinstance(after, BatchProgress) and after.step == 4
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"


def test_pause_then_stop(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                         report_every_step: None) -> None:
    control = Gate(at=2)
    events: list[Event] = []
    (tmp_path / "run").mkdir()
    worker = train_in_thread(events, make_config(), tmp_path / "run", synthetic_root, control=control)
    assert control.reached.wait(30)
    control.pause()
    control.release.set()
    wait_for(lambda: any(isinstance(e, RunPaused) for e in events))
    control.stop()
    worker.join(30)
    assert not worker.is_alive()
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
    assert load_checkpoint(tmp_path / "run" / "last.pt").raw["step"] == 2


def test_file_control_steers_a_run(synthetic_root: Path, runs_dir: Path, make_config: MakeConfig,
                                   report_every_step: None) -> None:
    config = make_config(epochs=1)
    run_dir = create_run(runs_dir, config)
    run_dir.send("stop")
    events = list(engine.train(config, run_dir.path, synthetic_root, control=FileControl(run_dir.control_path)))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
    assert sum(isinstance(e, BatchProgress) for e in events) == 1


def test_file_control_obeys_each_command(tmp_path: Path) -> None:
    path = tmp_path / "control.json"
    control = FileControl(path)
    control.poll()  # no file yet: nothing happens
    assert not control.paused and not control.stopping
    write_json_atomic(path, {"command": "pause"})
    control.poll()
    assert control.paused
    write_json_atomic(path, {"command": "run"})
    control.poll()
    assert not control.paused
    path.write_text("{not json", encoding="utf-8")
    control.poll()
    write_json_atomic(path, ["stop"])
    control.poll()
    assert not control.paused and not control.stopping
    write_json_atomic(path, {"command": "stop"})
    control.poll()
    assert control.stopping
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control.json"]  # no temporary files left


def test_file_control_pause_and_run(synthetic_root: Path, runs_dir: Path, make_config: MakeConfig,
                                    report_every_step: None) -> None:
    config = make_config(epochs=1)
    run_dir = create_run(runs_dir, config)
    run_dir.send("pause")
    events: list[Event] = []
    worker = train_in_thread(events, config, run_dir.path, synthetic_root,
                             control=FileControl(run_dir.control_path))
    wait_for(lambda: any(isinstance(e, RunPaused) for e in events))
    run_dir.send("run")
    worker.join(30)
    assert not worker.is_alive()
    kinds = [type(e) for e in events]
    assert kinds.index(RunResumed) == kinds.index(RunPaused) + 1
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"


def test_diverging_loss_fails_and_keeps_the_good_checkpoint(synthetic_root: Path, tmp_path: Path,
                                                            make_config: MakeConfig,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real_prepare = engine.prepare
    calls = 0

    def poisoned(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        """Good inputs for the first epoch, NaN from the second: the loss becomes NaN mid-run."""
        nonlocal calls
        calls += 1
        x = real_prepare(images, mean, std)
        return x if calls <= STEPS else x * float("nan")

    monkeypatch.setattr(engine, "prepare", poisoned)
    run_dir = tmp_path / "run"
    events = run(make_config(epochs=3), run_dir, synthetic_root)
    failed = events[-1]
    assert isinstance(failed, RunFailed), failed
    assert "loss became nan" in failed.message
    assert "epoch 2" in failed.message
    assert "lower learning rate" in failed.message
    assert failed.epoch == 1
    assert failed.run_dir == str(run_dir)
    assert len(epochs_of(events)) == 1
    for name in ("last.pt", "best.pt"):
        checkpoint = load_checkpoint(run_dir / name)
        assert checkpoint.epoch == 1
        assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


def test_missing_dataset_fails_cleanly(tmp_path: Path, make_config: MakeConfig) -> None:
    events = run(make_config(), tmp_path / "run", tmp_path / "no-data")
    assert len(events) == 1
    failed = events[0]
    assert isinstance(failed, RunFailed)
    assert "mnist-tui data import" in failed.message
    assert str((tmp_path / "no-data" / "MNIST" / "raw").absolute()) in failed.message
    assert list((tmp_path / "run").iterdir()) == []


def cuda_out_of_memory(*args: object) -> torch.Tensor:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 46.00 MiB")


def test_a_full_gpu_before_training_fails_cleanly(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches.Split, "to", cuda_out_of_memory)
    events = run(make_config(), tmp_path / "run", synthetic_root)
    assert len(events) == 1 and isinstance(events[0], RunFailed)
    assert "out of memory before training began" in events[0].message and "--device cpu" in events[0].message


def test_running_out_of_gpu_memory_mid_run_fails_cleanly(synthetic_root: Path, tmp_path: Path,
                                                         make_config: MakeConfig,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "prepare", cuda_out_of_memory)
    events = run(make_config(batch_size=32), tmp_path / "run", synthetic_root)
    failed = events[-1]
    assert isinstance(failed, RunFailed) and "out of memory with batch_size 32; try a smaller batch" in failed.message


def test_missing_device_fails_cleanly(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    events = run(make_config(device="cuda:99"), tmp_path / "run", synthetic_root)
    assert len(events) == 1 and isinstance(events[0], RunFailed)
    assert "cuda:99" in events[0].message


def test_batch_larger_than_data_fails_cleanly(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    events = run(make_config(batch_size=TRAIN_SIZE + 1), tmp_path / "run", synthetic_root)
    assert len(events) == 1 and isinstance(events[0], RunFailed)
    assert "larger than" in events[0].message


def test_val_split_holds_out_training_data(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    events = run(make_config(val_split=0.25, epochs=1), tmp_path / "run", synthetic_root)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.val_source == "validation split"
    assert (started.train_size, started.val_size) == (TRAIN_SIZE - 128, 128)
    assert started.steps_per_epoch == (TRAIN_SIZE - 128) // 32
    assert isinstance(events[-1], RunFinished)
    split_train, split_val, source = engine.split_train_val(
        load_split("mnist", True, synthetic_root), load_split("mnist", False, synthetic_root),
        make_config(val_split=0.25))
    assert source == "validation split"
    seen = set(map(bytes, split_train.images.flatten(1).numpy())) & set(map(bytes, split_val.images.flatten(1).numpy()))
    assert not seen, "a held-out image is also trained on"


def uninterrupted_and_resumed(config: TrainConfig, stop_at: int, data_root: Path, tmp_path: Path
                              ) -> tuple[list[Event], list[Event], list[Event]]:
    whole = run(config, tmp_path / "whole", data_root)
    stopped = run(config, tmp_path / "split", data_root, control=StopAfter(stop_at))
    assert isinstance(stopped[-1], RunFinished) and stopped[-1].status == "stopped"
    torch.manual_seed(999)  # as a fresh process would be: nothing may depend on leftover global state
    resumed = run(config, tmp_path / "split", data_root,
                  resume=resume_state(load_checkpoint(tmp_path / "split" / "last.pt")))
    return whole, stopped, resumed


@pytest.mark.parametrize(("changes", "stop_at"), [
    ({}, 5),
    ({"epochs": 3}, STEPS + 7),
    ({"model": "cnn", "augment": True, "optimizer": "adamw", "scheduler": "onecycle"}, 6),
], ids=["mlp-first-epoch", "mlp-second-epoch", "cnn-augment-onecycle"])
def test_resume_mid_epoch_matches_uninterrupted_run(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                                    report_every_step: None, changes: dict[str, object],
                                                    stop_at: int) -> None:
    config = make_config(**changes)
    whole, stopped, resumed = uninterrupted_and_resumed(config, stop_at, synthetic_root, tmp_path)
    started = resumed[0]
    assert isinstance(started, RunStarted)
    assert started.start_epoch == (stop_at - 1) // STEPS
    assert started.start_step == stop_at % STEPS
    first_step = next(e for e in resumed if isinstance(e, BatchProgress))
    assert first_step.step == stop_at % STEPS + 1
    assert metrics(stopped) + metrics(resumed) == metrics(whole)
    done_whole, done_resumed = whole[-1], resumed[-1]
    assert isinstance(done_whole, RunFinished) and isinstance(done_resumed, RunFinished)
    assert done_resumed.status == "completed"
    assert done_resumed.final_val_accuracy == done_whole.final_val_accuracy
    assert done_resumed.best_val_accuracy == done_whole.best_val_accuracy
    assert done_resumed.epochs_done == done_whole.epochs_done
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name


def test_resume_at_epoch_boundary(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                  report_every_step: None) -> None:
    config = make_config(epochs=3)
    whole, stopped, resumed = uninterrupted_and_resumed(config, STEPS, synthetic_root, tmp_path)
    assert len(metrics(stopped)) == 1
    assert metrics(stopped) + metrics(resumed) == metrics(whole)
    first_session, second_start, second_end = stopped[-1], resumed[0], resumed[-1]
    assert isinstance(first_session, RunFinished) and isinstance(second_start, RunStarted)
    assert isinstance(second_end, RunFinished)
    assert 0 < second_start.elapsed_before <= first_session.duration
    assert second_end.duration > second_start.elapsed_before, "a resumed run's duration counts every session"


def test_resuming_a_checkpoint_saved_before_elapsed_was_kept_counts_its_epochs_time(
        synthetic_root: Path, tmp_path: Path, make_config: MakeConfig, report_every_step: None) -> None:
    config = make_config(epochs=3)
    run(config, tmp_path / "run", synthetic_root, control=StopAfter(STEPS + 3))
    older = load_checkpoint(tmp_path / "run" / "last.pt")
    del older.raw["elapsed"]
    started = run(config, tmp_path / "run", synthetic_root, resume=resume_state(older))[0]
    assert isinstance(started, RunStarted)
    epoch_seconds = sum(h["epoch_seconds"] for h in older.raw["history"]) + older.raw["progress"]["seconds"]
    assert started.elapsed_before == pytest.approx(epoch_seconds) and epoch_seconds > 0


def test_resume_of_a_finished_run_does_nothing_more(synthetic_root: Path, tmp_path: Path,
                                                    make_config: MakeConfig) -> None:
    first = run(make_config(), tmp_path / "run", synthetic_root)
    again = run(make_config(), tmp_path / "run", synthetic_root,
                resume=resume_state(load_checkpoint(tmp_path / "run" / "last.pt")))
    assert not epochs_of(again)
    finished = again[-1]
    assert isinstance(finished, RunFinished) and finished.status == "completed"
    assert finished.final_val_accuracy == epochs_of(first)[-1].val_accuracy




def resume_of(run_dir: Path, **changes: object) -> ResumeState:
    """The resume state of `run_dir`'s last.pt, with `changes` made to it as a hand edit would."""
    return dataclasses.replace(resume_state(load_checkpoint(run_dir / "last.pt")), **changes)  # type: ignore[arg-type]


def refused_resume(config: TrainConfig, resume: ResumeState, data_root: Path, run_dir: Path) -> str:
    """The one line a resume that cannot go on ends with: a RunFailed before anything starts or is saved."""
    before = (run_dir / "last.pt").read_bytes()
    events = run(config, run_dir, data_root, resume=resume)
    assert len(events) == 1 and isinstance(events[0], RunFailed), events
    assert (run_dir / "last.pt").read_bytes() == before
    message = events[0].message
    assert "\n" not in message and message.startswith(f"cannot resume from {run_dir / 'last.pt'}: "), message
    return message


def test_a_resume_under_other_settings_is_refused(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                                  report_every_step: None) -> None:
    run(make_config(), tmp_path / "run", synthetic_root, control=StopAfter(3))
    resume = resume_of(tmp_path / "run")
    said = refused_resume(make_config(model="cnn"), resume, synthetic_root, tmp_path / "run")
    assert "saved with model mlp, and the run trains with model cnn" in said
    said = refused_resume(make_config(scheduler="cosine"), resume, synthetic_root, tmp_path / "run")
    assert "scheduler none, and the run trains with scheduler cosine" in said


def test_a_resume_past_the_end_of_an_epoch_is_refused(synthetic_root: Path, tmp_path: Path,
                                                      make_config: MakeConfig, report_every_step: None) -> None:
    run(make_config(), tmp_path / "run", synthetic_root, control=StopAfter(3))
    said = refused_resume(make_config(), resume_of(tmp_path / "run", step=STEPS), synthetic_root, tmp_path / "run")
    assert f"it stands at step {STEPS} of an epoch of {STEPS}" in said


def test_optimizer_state_that_does_not_fit_the_model_is_refused(synthetic_root: Path, tmp_path: Path,
                                                                make_config: MakeConfig,
                                                                report_every_step: None) -> None:
    run(make_config(), tmp_path / "run", synthetic_root, control=StopAfter(3))
    optimizer_state = resume_of(tmp_path / "run").optimizer_state
    moments = {**optimizer_state["state"][0], "exp_avg": torch.zeros(3)}
    misshapen = {**optimizer_state, "state": {**optimizer_state["state"], 0: moments}}
    fewer = {**optimizer_state, "param_groups": [{**optimizer_state["param_groups"][0], "params": [0, 1]}]}
    no_rate = {**optimizer_state, "param_groups": [{**optimizer_state["param_groups"][0], "lr": "fast"}]}
    for state in (misshapen, fewer, no_rate):
        said = refused_resume(make_config(), resume_of(tmp_path / "run", optimizer_state=state), synthetic_root,
                              tmp_path / "run")
        assert "its optimizer state does not fit this run's adam optimizer" in said


def test_schedule_state_that_does_not_fit_is_refused(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                                     report_every_step: None) -> None:
    config = make_config(scheduler="cosine")
    run(config, tmp_path / "run", synthetic_root, control=StopAfter(3))
    schedule = resume_of(tmp_path / "run").scheduler_state
    assert schedule is not None
    for state in ({**schedule, "base_lrs": "high"}, {**schedule, "last_epoch": [3]}):
        said = refused_resume(config, resume_of(tmp_path / "run", scheduler_state=state), synthetic_root,
                              tmp_path / "run")
        assert "its schedule's state does not fit this run's cosine schedule" in said


def test_a_flag_saved_as_none_fits_what_torch_picks_here() -> None:
    """An MPS run's Adam saves `fused: None`; on a CPU or a GPU a fresh one says True or False."""
    saved = {"state": {}, "param_groups": [{"lr": 0.001, "fused": None, "params": [0]}]}
    fresh = {"state": {}, "param_groups": [{"lr": 0.001, "fused": True, "params": [0]}]}
    assert engine.fits(saved, fresh)
    assert not engine.fits({"state": {0: {"exp_avg": None}}}, {"state": {0: {"exp_avg": torch.zeros(2)}}})
