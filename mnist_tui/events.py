"""What a run reports: small frozen dataclasses that the CLI, the dashboard and the event log all consume.

Each event round-trips through one JSON object (`to_json` / `from_json`), which is one line of a run's
append-only `events.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


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
    device_uuid: str = ""
    """The GPU's UUID ("GPU-..."), which names it whatever CUDA_VISIBLE_DEVICES says; "" off a GPU."""
    device_index: int = -1
    """The CUDA ordinal (the N of cuda:N) it trained on; -1 off a GPU."""


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


Event = RunStarted | BatchProgress | EpochEnded | CheckpointSaved | RunPaused | RunResumed | RunFinished | RunFailed
EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (RunStarted, BatchProgress, EpochEnded, CheckpointSaved, RunPaused, RunResumed, RunFinished, RunFailed)
}
TERMINAL_EVENTS = (RunFinished, RunFailed)


def to_json(event: Event) -> dict[str, Any]:
    return {"event": event.name, **dataclasses.asdict(event)}


def from_json(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON object; unknown extra keys are ignored for forward compatibility."""
    cls = EVENT_TYPES[data["event"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def dumps(event: Event) -> str:
    return json.dumps(to_json(event), separators=(",", ":"))
