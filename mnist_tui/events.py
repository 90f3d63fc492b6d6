"""What a run reports: small frozen dataclasses that the CLI, the dashboard and the event log all consume.

Each event round-trips through one JSON object (`to_json` / `from_json`), which is one line of a run's
append-only `events.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mnist_tui.config import ConfigError, TrainConfig, known_settings


@dataclass(frozen=True)
class RunStarted:
    """Training is about to begin (or resume at `start_epoch`)."""

    name: ClassVar[str] = "run_started"
    run_id: str
    run_dir: str
    config: dict[str, Any]
    device: str
    device_name: str
    parameters: int
    train_size: int
    val_size: int
    val_source: str
    steps_per_epoch: int
    start_epoch: int = 0
    time: float = 0.0
    elapsed_before: float = 0.0
    """Wall-clock seconds of the run's earlier sessions, when it resumes."""
    start_step: int = 0
    """Batches into `start_epoch + 1` it resumes at: a run stopped mid-epoch goes on where it stopped."""
    data_dir: str = ""
    """The data root it trained from, absolute: a resume looks there first."""
    device_index: int = -1
    """The CUDA ordinal it trains on in its own process, -1 off CUDA."""
    device_uuid: str = ""
    """The GPU's `GPU-...` UUID, which names it whatever CUDA_VISIBLE_DEVICES says; empty off CUDA."""
    note: str = ""
    """Something a person should know about this session, such as a resume on another kind of device."""
    threads: int = 0
    """Torch's CPU threads for this session (see threads.py); 0 in logs from before it was recorded."""


@dataclass(frozen=True)
class RunPreparing:
    """What a trainer is doing before its run can start (loading the data, building the model on its
    device): seconds on a GPU box, which a person should not watch in silence."""

    name: ClassVar[str] = "run_preparing"
    stage: str
    """`loading mnist`, `building the model on cuda:0`: said as `starting: <stage>…`."""


@dataclass(frozen=True)
class BatchProgress:
    """Progress inside an epoch, sent about ten times a second; loss/accuracy are since the last report."""

    name: ClassVar[str] = "batch_progress"
    epoch: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples_per_second: float
    lr: float
    elapsed: float


@dataclass(frozen=True)
class EpochEnded:
    """An epoch finished and was validated; `epoch` counts from 1."""

    name: ClassVar[str] = "epoch_end"
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    epoch_seconds: float
    samples_per_second: float
    is_best: bool
    gpu_memory_peak: int | None = None
    """Bytes: the most the epoch had allocated on its GPU at once; None off CUDA."""
    gpu_memory_reserved: int | None = None
    """Bytes held by torch's caching allocator on the GPU at the epoch's end; None off CUDA."""


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint file was written atomically."""

    name: ClassVar[str] = "checkpoint_saved"
    epoch: int
    """Epochs completed."""
    kind: str
    path: str
    step: int = 0
    """Steps into the next epoch, for a save on stop; 0 at an epoch's end."""

    @property
    def position(self) -> str:
        """As the training log says it: `3`, or `4, step 66` for a stop mid-epoch."""
        return saved_position(self.epoch, self.step)


def saved_position(epoch: int, step: int) -> str:
    """Where in training a checkpoint was saved, as the log and the checkpoint list both say it: `3` after
    three whole epochs, `4, step 66` for a stop 66 batches into the fourth."""
    return f"{epoch + 1}, step {step}" if step else str(epoch)


@dataclass(frozen=True)
class RunPaused:
    """Training is paused between two batches."""

    name: ClassVar[str] = "run_paused"
    epoch: int
    step: int


@dataclass(frozen=True)
class RunResumed:
    """Training continues after a pause."""

    name: ClassVar[str] = "run_resumed"
    epoch: int
    step: int


@dataclass(frozen=True)
class RunFinished:
    """The run ended normally: `status` is `completed`, or `stopped` when asked to stop."""

    name: ClassVar[str] = "run_finished"
    status: str
    run_dir: str
    epochs_done: int
    best_epoch: int
    best_val_accuracy: float | None
    final_val_accuracy: float | None
    epoch_seconds: list[float] = field(default_factory=list)
    duration: float = 0.0


@dataclass(frozen=True)
class RunFailed:
    """The run ended on an error; the last good checkpoint, if any, is kept."""

    name: ClassVar[str] = "run_failed"
    message: str
    run_dir: str
    epoch: int = 0
    crashed: bool = False
    """The trainer died without a word, as the dashboard's session finds (the run's status says a trainer
    is at work, its process is gone): Runs lists such a run `crashed`, and so does the panel."""


Event = (RunPreparing | RunStarted | BatchProgress | EpochEnded | CheckpointSaved | RunPaused | RunResumed
         | RunFinished | RunFailed)
EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (RunPreparing, RunStarted, BatchProgress, EpochEnded, CheckpointSaved, RunPaused, RunResumed,
                RunFinished, RunFailed)
}
TERMINAL_EVENTS = (RunFinished, RunFailed)


def to_json(event: Event) -> dict[str, Any]:
    return {"event": event.name, **dataclasses.asdict(event)}


class EventError(ValueError):
    """A line of an event log that is not a valid event: the readers skip it and count it."""


MINUS_ONE_FOR_NONE = ("device_index",)
"""Integer fields where -1 means there is none (no CUDA ordinal off a GPU)."""
AT_LEAST_ONE = frozenset({"steps", "steps_per_epoch", "epochs"})
"""Counts that divide or bound others: a zero would be a division by zero or an empty bar."""
FINISHED_STATUSES = ("completed", "stopped")


def from_json(data: object) -> Event:
    """Rebuild an event from its JSON object and check it: each field of the type its class declares and in
    its range (counts not negative, accuracies from 0 to 1, a run_started's config valid), so whatever draws
    an event can trust it. Unknown extra keys are ignored for forward compatibility.

    Raises:
        EventError: not an object, not a known event, a field missing, of the wrong type or out of range.
    """
    if not isinstance(data, dict):
        raise EventError(f"not a JSON object but {type(data).__name__}")
    name = data.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EventError(f"unknown event {name!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _checked(cls.name, f.name, str(f.type), data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EventError(f"{cls.name} without {f.name}")
    if cls is RunFinished and values["status"] not in FINISHED_STATUSES:
        raise EventError(f"run_finished with status {values['status']!r}")
    if cls is RunStarted:
        values["config"] = _checked_config(values["config"])
    return cls(**values)


def _checked(event: str, name: str, annotation: str, value: object) -> Any:
    """`value` as the field's declared type, within its range; EventError if it is not."""
    def wrong() -> EventError:
        return EventError(f"{event}.{name} is {value!r}, not {annotation}")

    if annotation.endswith(" | None"):
        if value is None:
            return None
        annotation = annotation.removesuffix(" | None")
    if annotation == "list[float]":
        if not isinstance(value, list):
            raise wrong()
        return [_checked(event, name, "float", item) for item in value]
    if annotation == "str":
        if not isinstance(value, str):
            raise wrong()
        return value
    if annotation == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if annotation.startswith("dict["):
        if not isinstance(value, dict):
            raise wrong()
        return value
    if annotation == "int":
        lowest = 1 if name in AT_LEAST_ONE else -1 if name in MINUS_ONE_FOR_NONE else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise wrong()
        return value
    if annotation == "float":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong()
        try:
            number = float(value)
        except OverflowError:
            raise wrong() from None
        # Losses may be NaN or infinite (a diverged model's validation); nothing else may be.
        if "loss" not in name and not (math.isfinite(number) and 0 <= number <= (1 if name.endswith("accuracy")
                                                                                 else math.inf)):
            raise wrong()
        return number
    raise wrong()  # a field type this reader does not know how to check: a bug, and found by the tests


def _checked_config(values: dict[str, Any]) -> dict[str, Any]:
    """A run_started's settings, valid and complete (what draws them indexes them), keys from a later
    version left out."""
    try:
        return TrainConfig.from_mapping(known_settings(values)).to_dict()
    except ConfigError as error:
        raise EventError(f"run_started with invalid settings: {error}") from None


def parse_line(line: str | bytes) -> Event:
    """One line of an event log as an event.

    Raises:
        EventError: the line is not UTF-8, not JSON (or nested too deep to parse), or not a valid event.
    """
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise EventError(f"not JSON ({type(error).__name__})") from None
    return from_json(data)


def dumps(event: Event) -> str:
    return json.dumps(to_json(event), separators=(",", ":"))
