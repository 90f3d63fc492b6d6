"""The training loop: a generator of typed events that obeys pause and stop between batches.

`train` reads like pytorch/examples' mnist `main`: `prepare_training` (data, model, optimizer, schedule),
`restore` (a resume), then per epoch `train_one_epoch`, `end_epoch` (which validates) and
`save_checkpoints`, and `finished`. The state they share is one `Training`.

Loss and accuracy accumulate on the device; the host reads them only about ten times a second and at
epoch end, so a GPU is never stalled by a per-step sync, and every clock reading that becomes a figure
(samples/s, epoch seconds) comes after such a sync, so it measures work done rather than work queued.
Every random choice derives from (seed, epoch), so a run resumed from a checkpoint continues exactly as
the uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_tui.batches import (
    DeviceError,
    DeviceIdentity,
    Split,
    apply_precision,
    augment,
    autocast_for,
    batch_order,
    epoch_seed,
    identify_device,
    iterate_batches,
    load_split,
    memory_held_by_others,
    prepare,
    resolve_device,
    steps_per_epoch,
)
from mnist_tui.checkpoints import CheckpointError, ResumeState, checkpoint_payload, save_checkpoint
from mnist_tui.config import TrainConfig, held_out_count
from mnist_tui.control import DiskFull, RunControl
from mnist_tui.data import DatasetError
from mnist_tui.evaluation import predict
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
from mnist_tui.models import MODEL_SPECS, ModelSpec, build_model, parameter_count
from mnist_tui.threads import training_threads

REPORT_INTERVAL = 0.1
"""Seconds between progress reports, the only mid-epoch host-device syncs."""
PAUSE_POLL = 0.05
CONV_MODELS = ("cnn", "cnn-wide")
"""Models whose convolutions gain from channels_last and cuDNN's autotuner on a GPU."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def build_optimizer(config: TrainConfig, parameters: Any, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer, fused into one kernel per step where torch has one for the device (CPU and CUDA):
    the same update as the per-tensor loop, with a fraction of its per-step overhead."""
    fused = True if device.type in ("cpu", "cuda") else None
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.momentum > 0, fused=fused)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """A per-step schedule over the whole run, or None."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    return None


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics, updated after every
    step with a few fused kernels. Its decay warms up as (1 + n) / (10 + n), so a short run is not
    dominated by its random initial weights."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay
        self.updates = updates
        self._floats = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        self._others = [t for t in self.model.state_dict().values() if not t.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict().values()
        torch._foreach_lerp_(self._floats, [t for t in state if t.is_floating_point()], 1 - decay)
        for mine, theirs in zip(self._others, (t for t in state if not t.is_floating_point()), strict=True):
            mine.copy_(theirs)


def split_train_val(train: Split, test: Split, config: TrainConfig) -> tuple[Split, Split, str]:
    """Hold out `val_split` of the training images (seeded), or validate on the test set like the tutorial."""
    if config.val_split <= 0:
        return train, test, "test"
    held_out = held_out_count(len(train), config.val_split)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
    return train.subset(order[held_out:]), train.subset(order[:held_out]), "validation split"


class CannotTrain(RuntimeError):
    """The run cannot begin (no data, no device, no room on it, a checkpoint that does not fit); the message
    says why in one line."""


@dataclass
class Position:
    """Where training stands: whole epochs done, steps into the next, and that epoch's sums so far."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    note: str = ""


@dataclass
class Training:
    """What the parts of a training session share: the run's settings, its data and model on the device,
    and where it stands. `prepare_training` builds it, `restore` moves it to where a checkpoint left off,
    and each epoch moves it on."""

    config: TrainConfig
    run_dir: Path
    started: float
    """When this session began (time.time()), for the run's wall-clock duration."""
    threads: int
    device: torch.device
    identity: DeviceIdentity
    spec: ModelSpec
    train_split: Split
    val_split: Split
    val_source: str
    train_images: torch.Tensor | None
    """On a GPU, the training images normalised once; None where each batch is converted as it is drawn."""
    model: nn.Module
    average: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    steps: int
    """Steps per epoch."""
    position: Position = field(default_factory=Position)
    best: dict[str, Any] | None = None
    """The history record with the best validation accuracy so far."""

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and saved as the model: the average when one is kept."""
        return self.average.model if self.average is not None else self.model

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.position.history

    def elapsed(self) -> float:
        """Wall-clock seconds of all of the run's sessions, this one included."""
        return self.position.elapsed_before + time.time() - self.started

    def save(self, kind: str, epoch: int, step: int, progress: dict[str, float]) -> CheckpointSaved:
        """Save `kind`.pt (`last` or `best`): `epoch` whole epochs and `step` batches into the next."""
        path = self.run_dir / f"{kind}.pt"
        save_checkpoint(path, checkpoint_payload(
            model=self.evaluated, optimizer=self.optimizer, scheduler=self.scheduler, config=self.config,
            epoch=epoch, step=step, metrics=self.history[-1] if self.history else {}, history=self.history,
            progress=progress, elapsed=self.elapsed(), device=self.device,
            training_model=self.model if self.average is not None else None,
            averaged_steps=self.average.updates if self.average is not None else 0))
        return CheckpointSaved(epoch, kind, str(path), step)


@dataclass
class EpochTally:
    """An epoch's running sums, kept on the device so that adding to them never waits for it; the figures
    at the last report, which each BatchProgress counts from; and the epoch's clock, which carries the
    seconds of the epoch's earlier sessions and leaves pauses out."""

    epoch: int
    start_step: int
    loss_sum: torch.Tensor
    correct: torch.Tensor
    carried_seconds: float
    active_since: float
    step: int = 0
    reported_loss: float = 0.0
    reported_correct: float = 0.0
    reported_step: int = 0
    last_report: float = 0.0
    stopped: bool = False
    """A stop came before the epoch's last step."""

    @classmethod
    def starting(cls, epoch: int, position: Position, device: torch.device) -> EpochTally:
        """The tally of `epoch`, going on from the sums of `position` (a stop mid-epoch's), its clock started."""
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        loss_sum = torch.tensor(position.loss_sum, device=device, dtype=dtype)
        correct = torch.tensor(position.correct, device=device, dtype=dtype)
        now = time.perf_counter()
        return cls(epoch, position.step, loss_sum, correct, position.seconds, active_since=now, step=position.step,
                   reported_loss=position.loss_sum, reported_correct=position.correct,
                   reported_step=position.step, last_report=now)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum.add_(loss.detach(), alpha=labels.shape[0])
        self.correct.add_((logits.detach().argmax(dim=1) == labels).sum())
        self.step += 1

    def seconds(self, now: float) -> float:
        """Seconds spent training this epoch up to `now` (a perf_counter reading)."""
        return self.carried_seconds + now - self.active_since

    def report(self, steps: int, batch_size: int, lr: float) -> BatchProgress:
        """The loss, accuracy and speed since the last report. Reading the sums is the host-device sync, and
        the clock is read after it, so the speed is of work done rather than work queued."""
        total_loss, total_correct = float(self.loss_sum), float(self.correct)
        now = self.last_report = time.perf_counter()
        seen = (self.step - self.reported_step) * batch_size
        window_loss = (total_loss - self.reported_loss) / seen
        if not math.isfinite(window_loss):
            raise TrainingDiverged(f"loss became {window_loss} at epoch {self.epoch + 1}, step {self.step}")
        throughput = (self.step - self.start_step) * batch_size / max(now - self.active_since, 1e-9)
        event = BatchProgress(self.epoch + 1, self.step, steps, window_loss,
                              (total_correct - self.reported_correct) / seen, throughput, lr, self.seconds(now))
        self.reported_loss, self.reported_correct, self.reported_step = total_loss, total_correct, self.step
        return event

    def progress(self) -> dict[str, float]:
        """The sums saved with a stop mid-epoch, for a resume to carry on from."""
        return {"loss_sum": float(self.loss_sum), "correct": float(self.correct),
                "seconds": self.seconds(time.perf_counter())}


def train(config: TrainConfig, run_dir: Path, data_root: Path, *, download: bool = False,
          control: RunControl | None = None, resume: ResumeState | None = None,
          on_stage: Callable[[str], None] | None = None) -> Iterator[Event]:
    """Train per `config`, saving `last.pt` and `best.pt` in `run_dir`, yielding events as it goes.

    `on_stage` hears what it is doing before `RunStarted` (`loading mnist`, `building the model on
    cuda:0`), which on a GPU box takes seconds: the trainer logs it as RunPreparing events.

    Expected failures (missing data or device, a diverging loss, CUDA out of memory, a full disk, a resume
    state that does not fit) end the stream with RunFailed; anything else propagates to the caller.
    """
    control = control or RunControl()
    try:
        training = prepare_training(config, run_dir, data_root, download, on_stage or (lambda text: None))
        if resume is not None:
            training.position = restore(training, resume)
    except CannotTrain as error:
        yield RunFailed(str(error), str(run_dir))
        return
    training.best = max(training.history, key=lambda h: h["val_accuracy"]) if training.history else None
    yield run_started(training, data_root)
    try:
        for epoch in range(training.position.epoch, config.epochs):
            tally = yield from train_one_epoch(training, epoch, control, resume)
            if tally.stopped:  # its place is kept, so a resume goes on from the very next step
                yield training.save("last", epoch, tally.step, tally.progress())
                yield finished(training, "stopped")
                return
            ended = end_epoch(training, tally)
            yield ended
            yield from save_checkpoints(training, ended)
            if control.stopping and epoch + 1 < config.epochs:
                yield finished(training, "stopped")
                return
    except TrainingDiverged as error:
        kept = "the last good checkpoint is kept" if training.history else "no checkpoint was saved"
        yield RunFailed(f"{error}; {kept}. Try a lower learning rate.", str(run_dir), len(training.history))
        return
    except torch.cuda.OutOfMemoryError:
        yield RunFailed(f"CUDA out of memory with batch_size {config.batch_size}"
                        f"{memory_held_by_others(training.device)}; try a smaller batch or another GPU",
                        str(run_dir), len(training.history))
        return
    except DiskFull as error:  # the save was atomic: what it would have replaced is as it was
        saved = error.path.exists() or (run_dir / "last.pt").exists()
        kept = "the previous checkpoint is intact" if saved else "no checkpoint was saved before"
        yield RunFailed(f"{error}; {kept}", str(run_dir), len(training.history))
        return
    yield finished(training, "completed")


def prepare_training(config: TrainConfig, run_dir: Path, data_root: Path, download: bool,
                     stage: Callable[[str], None]) -> Training:
    """Load the data and put it, the model, its optimizer and schedule on the device, seeded from the config.

    Raises:
        CannotTrain: no data or device, too few images for a batch, or no room on the GPU.
    """
    started = time.time()
    threads = training_threads(config.num_threads)
    torch.set_num_threads(threads)
    try:
        device = resolve_device(config.device)
        stage(f"loading {config.dataset}")
        train_all = load_split(config.dataset, True, data_root, download)
        test = load_split(config.dataset, False, data_root, download)
    except (DatasetError, DeviceError) as error:
        raise CannotTrain(str(error)) from None
    train_split, val_split, val_source = split_train_val(train_all, test, config)
    if len(train_split) < config.batch_size:
        raise CannotTrain(f"batch_size {config.batch_size} is larger than the {len(train_split)} training images")
    spec = MODEL_SPECS[config.model]
    apply_precision(config.precision)
    on_gpu_conv = device.type == "cuda" and config.model in CONV_MODELS
    torch.backends.cudnn.benchmark = on_gpu_conv
    torch.manual_seed(config.seed)
    stage(f"building the model on {device}")
    try:
        identity = identify_device(device)
        val_split = val_split.to(device)
        train_split = train_split.to(device)
        # On a GPU the whole split is normalised once (188 MB for MNIST), which saves two kernels a step;
        # on a CPU gathering uint8 rows and converting them while in cache is faster (see iterate_batches).
        train_images = prepare(train_split.images, spec.mean, spec.std) if device.type == "cuda" else None
        model = build_model(config.model).to(device)
        if on_gpu_conv:
            model = model.to(memory_format=torch.channels_last)
    except torch.cuda.OutOfMemoryError:  # a shared GPU that other processes have filled
        raise CannotTrain(f"CUDA out of memory before training began: {device} has no room for {config.dataset} "
                          f"and the model{memory_held_by_others(device)}; free it (see `mnist-tui devices` or "
                          "nvidia-smi), pick another GPU with --device cuda:N, or train on --device cpu") from None
    average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    optimizer = build_optimizer(config, model.parameters(), device)
    steps = steps_per_epoch(len(train_split), config.batch_size)
    return Training(config=config, run_dir=run_dir, started=started, threads=threads, device=device,
                    identity=identity, spec=spec, train_split=train_split, val_split=val_split,
                    val_source=val_source, train_images=train_images, model=model, average=average,
                    optimizer=optimizer, scheduler=build_scheduler(config, optimizer, steps * config.epochs),
                    steps=steps)


def restore(training: Training, resume: ResumeState) -> Position:
    """Load a checkpoint's training state into the model, its weight average, optimizer and schedule, and
    say where it left off. A checkpoint from another kind of device resumes too, with a note that its
    metrics then differ from an uninterrupted run's.

    Raises:
        CannotTrain: the checkpoint's state is not of this run's model, optimizer or schedule, or it stands
            past the end of an epoch.
    """
    config, device, average, scheduler = training.config, training.device, training.average, training.scheduler
    cannot = f"cannot resume from {resume.path}"
    try:
        resume.check_settings(config)
    except CheckpointError as error:
        raise CannotTrain(f"cannot resume from {error}") from None
    if resume.step >= training.steps:
        raise CannotTrain(f"{cannot}: it stands at step {resume.step} of an epoch of {training.steps}")
    if not optimizer_state_fits(resume.optimizer_state, training.optimizer):
        raise CannotTrain(f"{cannot}: its optimizer state does not fit this run's {config.optimizer} optimizer")
    if scheduler is not None and resume.scheduler_state and not fits(resume.scheduler_state, scheduler.state_dict()):
        raise CannotTrain(f"{cannot}: its schedule's state does not fit this run's {config.scheduler} schedule")
    trained = resume.training_model_state
    training.model.load_state_dict(trained if average is not None and trained else resume.model_state)
    if average is not None:
        average.model.load_state_dict(resume.model_state)
        average.updates = resume.averaged_steps
    training.optimizer.load_state_dict(resume.optimizer_state)
    if scheduler is not None and resume.scheduler_state:
        scheduler.load_state_dict(resume.scheduler_state)
    note = ""
    if torch.device(resume.saved_on).type != device.type:
        note = (f"resumed on {device} from a checkpoint saved on {resume.saved_on}: from here its metrics differ "
                "from an uninterrupted run's")
    return Position(epoch=resume.epoch, step=resume.step, loss_sum=resume.loss_sum, correct=resume.correct,
                    seconds=resume.seconds, history=list(resume.history), elapsed_before=resume.elapsed, note=note)


def fits(saved: object, fresh: object) -> bool:
    """Whether a saved optimizer or schedule state holds what a fresh one of the same kind does, so that
    loading it cannot break a later step: a number for a number, a tensor of the same shape, as many items
    in a list. Keys only one of them has are left to torch, which fills in those older versions lacked; a
    flag saved as None (`fused` where the device had no fused kernels, an MPS run's) lets torch pick."""
    if saved is None and not isinstance(fresh, torch.Tensor | Mapping | list | tuple):
        return True
    if isinstance(fresh, Mapping):
        return isinstance(saved, Mapping) and all(fits(saved[key], fresh[key]) for key in fresh.keys() & saved.keys())
    if isinstance(fresh, list | tuple):
        return isinstance(saved, list | tuple) and len(saved) == len(fresh) and all(map(fits, saved, fresh))
    if isinstance(fresh, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == fresh.shape
    if isinstance(fresh, int | float):
        return isinstance(saved, int | float)
    if isinstance(fresh, str):
        return isinstance(saved, str)
    return True  # None, where torch picks for itself (`foreach`, say)


def optimizer_state_fits(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> bool:
    """Whether `saved` has this optimizer's parameter groups, and per-parameter tensors (moments, momentum)
    of its parameters' shapes."""
    if not fits(saved["param_groups"], optimizer.state_dict()["param_groups"]):
        return False
    shapes = {index: parameter.shape for group, saved_group in zip(optimizer.param_groups, saved["param_groups"],
                                                                    strict=True)
              for parameter, index in zip(group["params"], saved_group["params"], strict=True)}
    return all(index in shapes and all(value.shape == shapes[index] for value in entry.values()
                                       if isinstance(value, torch.Tensor) and value.dim() > 0)
               for index, entry in saved["state"].items())


def restore_random_state(resume: ResumeState, device: torch.device) -> None:
    """Continue the random streams (dropout masks) exactly where a stop mid-epoch left them. Only the
    training device's generator is kept, so a box with fewer GPUs resumes too; a list from older
    checkpoints (every GPU's) gives the entry for this device if it has one."""
    if resume.rng_state is not None:
        torch.set_rng_state(resume.rng_state)
    cuda_state = resume.cuda_rng_state
    if device.type != "cuda" or cuda_state is None:
        return
    if isinstance(cuda_state, list):
        index = device.index or 0
        if index >= len(cuda_state):
            return
        cuda_state = cuda_state[index]
    torch.cuda.set_rng_state(cuda_state, device)


def run_started(training: Training, data_root: Path) -> RunStarted:
    config, position, run_dir = training.config, training.position, training.run_dir
    return RunStarted(run_dir.name, str(run_dir), config.to_dict(), str(training.device),
                      training.identity.description, parameter_count(training.model), len(training.train_split),
                      len(training.val_split), training.val_source, training.steps, position.epoch,
                      training.started, position.elapsed_before, position.step, str(data_root.absolute()),
                      device_index=training.identity.index, device_uuid=training.identity.uuid, note=position.note,
                      threads=training.threads)


def begin_epoch(training: Training, epoch: int, resume: ResumeState | None) -> torch.Generator:
    """Set the random streams of `epoch`: each epoch's derive from (seed, epoch), and the one a stop cut
    short goes on where the stop left them. Returns the epoch's augmentation generator, past the draws of
    the steps already done."""
    config, device, position = training.config, training.device, training.position
    if epoch == position.epoch and position.step and resume is not None and resume.rng_state is not None:
        restore_random_state(resume, device)
    else:
        torch.manual_seed(epoch_seed(config.seed, epoch))
        position.step, position.loss_sum, position.correct, position.seconds = 0, 0.0, 0.0, 0.0
    augment_rng = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch) + 1)
    if position.step and config.augment:
        # Replay the augmentation draws of the skipped batches so the random stream lines up.
        for _ in range(position.step):
            augment(torch.zeros(config.batch_size, 1, 28, 28, device=device), augment_rng)
    return augment_rng


def train_one_epoch(training: Training, epoch: int, control: RunControl, resume: ResumeState | None
                    ) -> Generator[Event, None, EpochTally]:
    """Train one epoch from where it stands (a stop mid-epoch left it part done), reporting progress about
    ten times a second and obeying pause and stop at each report. Returns the epoch's tally, `stopped`
    if a stop came before its last step."""
    config, device, model, optimizer = training.config, training.device, training.model, training.optimizer
    scheduler, average, spec, position = training.scheduler, training.average, training.spec, training.position
    augment_rng = begin_epoch(training, epoch, resume)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    order = batch_order(len(training.train_split), config.seed, epoch, device)
    train_images = training.train_images
    source = training.train_split if train_images is None else Split(train_images, training.train_split.labels)
    tally = EpochTally.starting(epoch, position, device)
    for images, labels in iterate_batches(source, config.batch_size, order, True, position.step):
        x = prepare(images, spec.mean, spec.std) if train_images is None else images
        if config.augment:
            x = augment(x, augment_rng)
        with autocast_for(config.precision, device):
            logits = model(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update(model)
        tally.add(loss, logits, labels)
        if (time.perf_counter() - tally.last_report < REPORT_INTERVAL and tally.step < training.steps
                and not control.stopping):
            continue
        yield tally.report(training.steps, config.batch_size, optimizer.param_groups[0]["lr"])
        control.poll()
        if control.paused and not control.stopping:
            tally.active_since += yield from wait_while_paused(control, epoch + 1, tally.step)
            tally.last_report = time.perf_counter()
        if control.stopping and tally.step < training.steps:
            tally.stopped = True
            break
    return tally


def wait_while_paused(control: RunControl, epoch: int, step: int) -> Generator[Event, None, float]:
    """Hold between two batches until the run is resumed or stopped. Returns the seconds held, which the
    epoch's clock leaves out."""
    paused_at = time.perf_counter()
    yield RunPaused(epoch, step)
    while control.paused and not control.stopping:
        time.sleep(PAUSE_POLL)
        control.poll()
    held = time.perf_counter() - paused_at
    if not control.stopping:
        yield RunResumed(epoch, step)
    return held


def end_epoch(training: Training, tally: EpochTally) -> EpochEnded:
    """The epoch's training figures (the sync at its end), its weights validated, and its record added to
    the history."""
    config, history = training.config, training.history
    seen = training.steps * config.batch_size
    train_loss, train_accuracy = float(tally.loss_sum) / seen, float(tally.correct) / seen
    train_seconds = tally.seconds(time.perf_counter())
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"loss became {train_loss} in epoch {tally.epoch + 1}")
    val_loss, val_accuracy = validate(training.evaluated, training.val_split, training.spec.mean, training.spec.std)
    epoch_seconds = tally.seconds(time.perf_counter())
    is_best = training.best is None or val_accuracy > training.best["val_accuracy"]
    record = {"epoch": tally.epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
              "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": training.optimizer.param_groups[0]["lr"],
              "epoch_seconds": epoch_seconds, "samples_per_second": seen / train_seconds}
    peak, reserved = gpu_memory(training.device)
    history.append(record)
    if is_best:
        training.best = record
    return EpochEnded(tally.epoch + 1, config.epochs, train_loss, train_accuracy, val_loss, val_accuracy,
                      record["lr"], epoch_seconds, record["samples_per_second"], is_best,
                      gpu_memory_peak=peak, gpu_memory_reserved=reserved)


def save_checkpoints(training: Training, ended: EpochEnded) -> Iterator[CheckpointSaved]:
    """last.pt after every epoch, and best.pt after one that validated better than all before it."""
    yield training.save("last", ended.epoch, 0, {})
    if ended.is_best:
        yield training.save("best", ended.epoch, 0, {})


def validate(model: nn.Module, split: Split, mean: float, std: float) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on a device-resident split, in float32 whatever the training precision."""
    logits = predict(model, split, mean, std)
    loss = float(F.cross_entropy(logits, split.labels))
    return loss, int((logits.argmax(dim=1) == split.labels).sum()) / len(split)


def gpu_memory(device: torch.device) -> tuple[int | None, int | None]:
    """This epoch's peak allocated and the reserved bytes on a GPU; (None, None) elsewhere."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device), torch.cuda.memory_reserved(device)


def finished(training: Training, status: str) -> RunFinished:
    history, best = training.history, training.best
    return RunFinished(
        status=status,
        run_dir=str(training.run_dir),
        epochs_done=len(history),
        best_epoch=best["epoch"] if best else 0,
        best_val_accuracy=best["val_accuracy"] if best else None,
        final_val_accuracy=history[-1]["val_accuracy"] if history else None,
        epoch_seconds=[h["epoch_seconds"] for h in history],
        duration=training.elapsed(),
    )
