"""One view of a run, folded from its events: what the headless reporter and the training panel both draw.

`fold(view, event)` returns the next `RunView`; a front-end keeps the latest and renders it. The words and
the rounding of every figure (a log line, an epoch's numbers, how a run ended) are made here once, so the
CLI and the dashboard can never disagree. Pure and cheap: no torch, no Textual, no Rich, and folding the
thousands of progress reports of a long run's log stays linear (see `Trail`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mnist_tui.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFinished,
    RunPaused,
    RunPreparing,
    RunResumed,
    RunStarted,
)
from mnist_tui.runs import ACTIVE_STATUSES
from mnist_tui.telemetry import bare_gpu_uuid

Item = TypeVar("Item")
MAX_POINTS = 4000
"""Per-report chart points a view keeps; past it, every other one is dropped (never the epochs)."""
FIRST_STAGE = "launching the trainer"
"""What a run is doing before its trainer has said anything."""


class Trail(Generic[Item]):
    """An append-only sequence that successive views share. Appending to the newest view's trail extends
    one list in place, so folding n events costs O(n) where tuple copies would cost O(n²); an older view
    keeps seeing only its own prefix, and one that grows a branch of its own copies it first. With a
    `limit`, every other item is dropped when it is passed, so the trail stays bounded (the newest kept)."""

    __slots__ = ("_items", "_length", "_limit")

    def __init__(self, items: list[Item] | None = None, length: int | None = None, limit: int = 0) -> None:
        self._items: list[Item] = items if items is not None else []
        self._length = len(self._items) if length is None else length
        self._limit = limit

    def append(self, item: Item) -> Trail[Item]:
        items = self._items if self._length == len(self._items) else self._items[:self._length]
        items.append(item)
        if self._limit and len(items) > self._limit:
            items = items[(len(items) - 1) % 2::2]  # every other one, ending with the newest
        return Trail(items, len(items), self._limit)

    def cut(self, length: int) -> Trail[Item]:
        """The first `length` items."""
        return Trail(self._items, min(length, self._length), self._limit)

    def since(self, start: int) -> list[Item]:
        """The items from index `start` on: what a front-end has not drawn yet."""
        return self._items[start:self._length]

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items[:self._length])

    def __getitem__(self, index: int) -> Item:
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self._items[index % self._length]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trail) and len(self) == len(other) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Trail({list(self)!r})"


Point = tuple[float, float]


def points() -> Trail[Point]:
    return Trail(limit=MAX_POINTS)


def cut_after(trail: Trail[Point], x: float) -> Trail[Point]:
    """The points up to `x`: a run resumed from an earlier checkpoint trains the rest again."""
    length = len(trail)
    while length and trail[length - 1][0] > x:
        length -= 1
    return trail.cut(length)


# Figures: each number rounded one way, whoever shows it ------------------------------------------------

MAX_DURATION = 10 * 365 * 86400.0
"""Seconds past which a duration read from a log is damage, not a run: shown as `-`."""


def format_duration(seconds: float | None) -> str:
    if seconds is None or not 0 <= seconds <= MAX_DURATION:  # also NaN
        return "-"
    return str(dt.timedelta(seconds=round(seconds)))


def format_percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def format_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_lr(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def format_throughput(value: float | None) -> str:
    """Images a second, `50,000`; `-` while unknown."""
    return f"{value:,.0f}" if value else "-"


def format_memory(size: int | None) -> str:
    """Bytes in binary units, short: `512 MiB`, `7.5 GiB`, `71 GiB`."""
    if size is None:
        return "-"
    gib = size / 2**30
    if gib >= 10:
        return f"{gib:.0f} GiB"
    if gib >= 1:
        return f"{gib:.1f} GiB"
    return f"{size / 2**20:.0f} MiB"


def format_gpu_memory(event: EpochEnded) -> str:
    """An epoch's GPU memory as `412 MiB/1.0 GiB` (peak allocated / reserved), or "" off a GPU."""
    if event.gpu_memory_peak is None:
        return ""
    return f"{format_memory(event.gpu_memory_peak)}/{format_memory(event.gpu_memory_reserved)}"


@dataclass(frozen=True)
class EpochFigures:
    """An epoch's numbers as text: the panel writes them as a line, the CLI as a table row."""

    epoch: int
    epochs: int
    train_loss: str
    train_accuracy: str
    val_loss: str
    val_accuracy: str
    lr: str
    seconds: str
    throughput: str
    gpu_memory: str
    """`peak/reserved`, or "" off a GPU."""
    best: bool

    @classmethod
    def of(cls, event: EpochEnded) -> EpochFigures:
        return cls(event.epoch, event.epochs, format_loss(event.train_loss), format_percent(event.train_accuracy),
                   format_loss(event.val_loss), format_percent(event.val_accuracy), format_lr(event.lr),
                   f"{event.epoch_seconds:.1f}s", format_throughput(event.samples_per_second),
                   format_gpu_memory(event), event.is_best)

    @property
    def line(self) -> str:
        """One line in 80 columns (a wrapped one would take a row of the five the panel's log has there)."""
        return (f"epoch {self.epoch:>{len(str(self.epochs))}}/{self.epochs}  loss {self.train_loss} "
                f"(val {self.val_loss})  acc {self.train_accuracy} (val {self.val_accuracy})  {self.seconds}")


@dataclass(frozen=True)
class LogLine:
    """A line of the run's story as plain text (never markup: each front-end escapes and styles it)."""

    kind: str
    """What it tells: started, note, epoch, saved, paused, resumed, finished, failed."""
    text: str
    tone: str = ""
    """How to show it: "" plain, `good`, `warning`, `error` or `quiet`."""
    figures: EpochFigures | None = None
    """An epoch line's numbers, for a front-end that lays them out in columns."""


def finished_line(event: RunFinished) -> str:
    took = format_duration(event.duration)
    if not event.epochs_done:
        return f"{event.status} in {took}, before its first epoch ended; last.pt keeps where it got to"
    return (f"{event.status} after {event.epochs_done} epoch(s) in {took} (wall clock); best val accuracy "
            f"{format_percent(event.best_val_accuracy)} (epoch {event.best_epoch}), final "
            f"{format_percent(event.final_val_accuracy)}")


def started_line(event: RunStarted) -> str:
    config = event.config
    return (f"started: batch {config['batch_size']}, {config['optimizer']} lr {format_lr(config['lr'])}, "
            f"{config['precision']}, {event.train_size:,} train / {event.val_size:,} {event.val_source}")


# The view ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunView:
    """Everything a front-end shows of one run, as its events have told it so far."""

    state: str = "idle"
    """idle, starting, running, paused, completed, stopped, failed or crashed: as the events tell it."""
    stage: str = FIRST_STAGE
    """What a starting trainer says it is doing (RunPreparing), shown as `starting: <stage>…`."""
    launching: bool = False
    """A trainer was just started for the run and has not been heard from live: whatever the log's history
    says, the run is starting (a front-end clears it with `heard_live`)."""
    awaiting: str = ""
    """`pause`, `resume` or `stop` while the trainer has been asked to and has not yet."""
    run_id: str = ""
    started: RunStarted | None = None
    """The latest start: the run's settings, device and sizes."""
    ended: str = ""
    """How the latest session ended (a finished status, `failed`, `crashed`), "" while none has."""
    epoch: int = 0
    """The epoch under way (from 1), or the last one ended."""
    step: int = 0
    samples_per_second: float = 0.0
    last_epoch_throughput: float = 0.0
    lr: float | None = None
    train_loss: float | None = None
    """The latest report's training loss; after an epoch, its mean."""
    best: EpochEnded | None = None
    finished_seconds: float = 0.0
    """Training time of the epochs ended, pauses and data loading left out."""
    epoch_elapsed: float = 0.0
    """Training time into the epoch under way."""
    duration: float | None = None
    """The wall-clock time the run's end reported."""
    failure: str = ""
    loss_points: Trail[Point] = field(default_factory=points)
    """(epoch, loss) per progress report, x in fractional epochs."""
    accuracy_points: Trail[Point] = field(default_factory=points)
    """(epoch, training accuracy) per progress report."""
    epoch_ends: Trail[EpochEnded] = field(default_factory=Trail)
    log: Trail[LogLine] = field(default_factory=Trail)

    @property
    def shown_state(self) -> str:
        return "starting" if self.launching else self.state

    @property
    def active(self) -> bool:
        """A trainer is (or is about to be) at work: it can be paused and stopped."""
        return self.shown_state in ACTIVE_STATUSES

    @property
    def pausing_or_paused(self) -> bool:
        """Whether the run is paused or asked to be (and not asked to resume since): what `p` toggles, so a
        second `p` before the trainer answers takes the first back."""
        return self.awaiting == "pause" or (self.shown_state == "paused" and self.awaiting != "resume")

    @property
    def epochs(self) -> int:
        return int(self.started.config["epochs"]) if self.started else 0

    @property
    def steps(self) -> int:
        return self.started.steps_per_epoch if self.started else 0

    @property
    def batch_size(self) -> int:
        return int(self.started.config["batch_size"]) if self.started else 0

    @property
    def device(self) -> str:
        return self.started.device if self.started else ""

    @property
    def device_uuid(self) -> str:
        """Its GPU's UUID without NVML's `GPU-` prefix (torch leaves it out), "" off a GPU or unknown."""
        return bare_gpu_uuid(self.started.device_uuid) if self.started else ""

    @property
    def trained_seconds(self) -> float:
        return self.finished_seconds + self.epoch_elapsed

    @property
    def done_steps(self) -> int:
        return (self.epoch - 1) * self.steps + self.step if self.epoch else 0

    @property
    def throughput(self) -> float:
        """Live while it runs; once it has ended, its last epoch's average; nothing while paused."""
        return {"running": self.samples_per_second, "completed": self.last_epoch_throughput}.get(
            self.shown_state, 0.0)

    @property
    def status(self) -> str:
        """The run's state in words, a request on its way included: `starting: loading mnist…`, `pausing…`."""
        if self.awaiting:
            return {"pause": "pausing…", "resume": "resuming…", "stop": "stopping…"}[self.awaiting]
        if self.shown_state == "starting":
            return f"starting: {self.stage}…"
        return self.shown_state

    def remaining(self) -> tuple[float | None, float | None]:
        """Seconds left in the epoch and the run, from this epoch's throughput once a tenth of it is done,
        before that from the last epoch's; None until one is known. An epoch's first steps pay for warming
        up and would put the estimate minutes off."""
        early = self.step < max(2, self.steps // 10)
        rate = self.last_epoch_throughput if early else self.samples_per_second
        if rate <= 0 or self.shown_state != "running":
            return None, None
        per_step = self.batch_size / rate
        return (self.steps - self.step) * per_step, (self.epochs * self.steps - self.done_steps) * per_step


def following(run_id: str, launching: bool) -> RunView:
    """The view of a run about to be followed: `launching` when this front-end just started its trainer."""
    return RunView(state="starting", run_id=run_id, launching=launching)


def asked(view: RunView, request: str) -> RunView:
    """The view once `pause`, `resume` or `stop` has been sent, before the trainer answers."""
    return dataclasses.replace(view, awaiting=request)


def heard_live(view: RunView) -> RunView:
    """The view once the trainer's own events arrive: from here on its story is the run's state."""
    return dataclasses.replace(view, launching=False) if view.launching else view


def fold(view: RunView, event: Event) -> RunView:
    """The view after `event`. Never raises: a damaged log's events are drawn as well as they can be."""
    replace = dataclasses.replace
    if isinstance(event, BatchProgress):  # the hot path: most of a log
        x = event.epoch - 1 + event.step / event.steps
        # Training on: a resume asked for is done, even one that took back a pause the trainer never saw.
        awaiting = "" if view.awaiting == "resume" and view.state == "running" else view.awaiting
        return replace(view, epoch=event.epoch, step=event.step, samples_per_second=event.samples_per_second,
                       awaiting=awaiting,
                       lr=event.lr, epoch_elapsed=event.elapsed, train_loss=event.loss,
                       loss_points=view.loss_points.append((x, event.loss)),
                       accuracy_points=view.accuracy_points.append((x, event.accuracy)))
    if isinstance(event, RunPreparing):
        return replace(view, state="starting", stage=event.stage)
    if isinstance(event, RunStarted):
        return _started(view, event)
    if isinstance(event, EpochEnded):
        figures = EpochFigures.of(event)
        return replace(view, epoch=event.epoch, step=view.steps, train_loss=event.train_loss,
                       best=event if event.is_best else view.best, epoch_ends=view.epoch_ends.append(event),
                       finished_seconds=view.finished_seconds + event.epoch_seconds, epoch_elapsed=0.0,
                       last_epoch_throughput=event.samples_per_second,
                       log=view.log.append(LogLine("epoch", figures.line, figures=figures)))
    if isinstance(event, CheckpointSaved):
        return replace(view, log=view.log.append(
            LogLine("saved", f"saved {event.kind}.pt (epoch {event.position})", "quiet")))
    if isinstance(event, RunPaused):
        return replace(view, state="paused", awaiting="" if view.awaiting == "pause" else view.awaiting,
                       log=view.log.append(LogLine("paused", f"paused at epoch {event.epoch}, step {event.step}",
                                                   "warning")))
    if isinstance(event, RunResumed):
        return replace(view, state="running", awaiting="" if view.awaiting == "resume" else view.awaiting,
                       log=view.log.append(LogLine("resumed", "resumed", "good")))
    if isinstance(event, RunFinished):
        tone = "good" if event.status == "completed" else "warning"
        return replace(view, state=event.status, ended=event.status, awaiting="", duration=event.duration,
                       log=view.log.append(LogLine("finished", finished_line(event), tone)))
    # RunFailed: a trainer that died without a word is `crashed`, as Runs lists it; one that said why, `failed`.
    state = "crashed" if event.crashed else "failed"
    return replace(view, state=state, ended=state, awaiting="", failure=event.message,
                   log=view.log.append(LogLine("failed", f"failed: {event.message}", "error")))


def _started(view: RunView, event: RunStarted) -> RunView:
    loss_points, accuracy_points, epoch_ends = view.loss_points, view.accuracy_points, view.epoch_ends
    best, finished_seconds = view.best, view.finished_seconds
    if view.ended != "stopped":
        # A trainer that crashed, failed or was killed without a word got further than its last checkpoint:
        # the resumed one redoes that part. (One that stopped saved where it was; and logs from before
        # `start_step` lack it.) A first start has nothing to cut.
        resumed_at = event.start_epoch + event.start_step / event.steps_per_epoch
        loss_points, accuracy_points = cut_after(loss_points, resumed_at), cut_after(accuracy_points, resumed_at)
        kept = len(epoch_ends)
        while kept and epoch_ends[kept - 1].epoch > event.start_epoch:
            kept -= 1
        if kept < len(epoch_ends):  # the epochs redone take their best and their time with them
            epoch_ends = epoch_ends.cut(kept)
            best = next((end for end in reversed(list(epoch_ends)) if end.is_best), None)
            finished_seconds = sum(end.epoch_seconds for end in epoch_ends)
    epoch, step = ((event.start_epoch + 1, event.start_step) if event.start_step
                   else (event.start_epoch, event.steps_per_epoch if event.start_epoch else 0))
    log = view.log.append(LogLine("started", started_line(event)))
    if event.note:
        log = log.append(LogLine("note", f"note: {event.note}", "warning"))
    return dataclasses.replace(view, state="running", ended="", run_id=event.run_id, started=event,
                               epoch=epoch, step=step, failure="", loss_points=loss_points,
                               accuracy_points=accuracy_points, epoch_ends=epoch_ends, best=best,
                               finished_seconds=finished_seconds, log=log)
