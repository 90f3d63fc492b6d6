"""The training loop: a generator of typed events that obeys pause and stop between batches.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_tui.batches import (
    DeviceError,
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
from mnist_tui.checkpoints import Checkpoint, checkpoint_payload, save_checkpoint
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
from mnist_tui.models import MODEL_SPECS, build_model, parameter_count
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

    def progress(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seconds": self.seconds}


def restore(resume: Checkpoint, model: nn.Module, average: WeightAverage | None, optimizer: torch.optim.Optimizer,
            scheduler: Any, device: torch.device) -> Position:
    """Load a checkpoint's training state and say where it left off. A checkpoint from another kind of
    device resumes too, with a note that its metrics then differ from an uninterrupted run's."""
    raw = resume.raw
    training_state = raw.get("training_model_state")
    model.load_state_dict(training_state if average is not None and training_state else resume.model_state)
    if average is not None:
        average.model.load_state_dict(resume.model_state)
        average.updates = int(raw.get("averaged_steps") or 0)
    optimizer.load_state_dict(raw["optimizer_state"])
    if scheduler is not None and raw.get("scheduler_state"):
        scheduler.load_state_dict(raw["scheduler_state"])
    history = list(raw.get("history", []))
    progress = dict(raw.get("progress") or {})
    saved_on = str(raw.get("device") or ("cuda" if raw.get("cuda_rng_state") is not None else "cpu"))
    note = ""
    if torch.device(saved_on).type != device.type:
        note = (f"resumed on {device} from a checkpoint saved on {saved_on}: from here its metrics differ from "
                "an uninterrupted run's")
    return Position(
        epoch=resume.epoch, step=int(raw.get("step", 0)),
        loss_sum=float(progress.get("loss_sum", 0.0)), correct=float(progress.get("correct", 0.0)),
        seconds=float(progress.get("seconds", 0.0)), history=history,
        # Checkpoints from before `elapsed` was saved: their epochs' seconds are the best estimate.
        elapsed_before=float(raw.get("elapsed", sum(h["epoch_seconds"] for h in history)
                                     + float(progress.get("seconds", 0.0)))),
        note=note)


def restore_random_state(resume: Checkpoint, device: torch.device) -> None:
    """Continue the random streams (dropout masks) exactly where a stop mid-epoch left them. Only the
    training device's generator is kept, so a box with fewer GPUs resumes too; a list from older
    checkpoints (every GPU's) gives the entry for this device if it has one."""
    torch.set_rng_state(resume.raw["rng_state"])
    cuda_state = resume.raw.get("cuda_rng_state")
    if device.type != "cuda" or cuda_state is None:
        return
    if isinstance(cuda_state, list | tuple):
        index = device.index or 0
        if index >= len(cuda_state):
            return
        cuda_state = cuda_state[index]
    torch.cuda.set_rng_state(cuda_state, device)


def train(config: TrainConfig, run_dir: Path, data_root: Path, *, download: bool = False,
          control: RunControl | None = None, resume: Checkpoint | None = None,
          on_stage: Callable[[str], None] | None = None) -> Iterator[Event]:
    """Train per `config`, saving `last.pt` and `best.pt` in `run_dir`, yielding events as it goes.

    `on_stage` hears what it is doing before `RunStarted` (`loading mnist`, `building the model on
    cuda:0`), which on a GPU box takes seconds: the trainer logs it as RunPreparing events.

    Expected failures (missing data or device, a diverging loss, CUDA out of memory, a full disk) end the
    stream with RunFailed; anything else propagates to the caller.
    """
    control = control or RunControl()
    stage = on_stage or (lambda text: None)
    started = time.time()
    threads = training_threads(config.num_threads)
    torch.set_num_threads(threads)
    try:
        device = resolve_device(config.device)
        stage(f"loading {config.dataset}")
        train_all = load_split(config.dataset, True, data_root, download)
        test = load_split(config.dataset, False, data_root, download)
    except (DatasetError, DeviceError) as error:
        yield RunFailed(str(error), str(run_dir))
        return
    train_split, val_split, val_source = split_train_val(train_all, test, config)
    if len(train_split) < config.batch_size:
        yield RunFailed(f"batch_size {config.batch_size} is larger than the {len(train_split)} training images",
                        str(run_dir))
        return
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
        yield RunFailed(f"CUDA out of memory before training began: {device} has no room for {config.dataset} "
                        f"and the model{memory_held_by_others(device)}; free it (see `mnist-tui devices` or "
                        "nvidia-smi), pick another GPU with --device cuda:N, or train on --device cpu",
                        str(run_dir))
        return
    average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    evaluated = average.model if average is not None else model
    optimizer = build_optimizer(config, model.parameters(), device)
    steps = steps_per_epoch(len(train_split), config.batch_size)
    scheduler = build_scheduler(config, optimizer, steps * config.epochs)
    position = Position()
    if resume is not None:
        position = restore(resume, model, average, optimizer, scheduler, device)
    history = position.history

    yield RunStarted(run_dir.name, str(run_dir), config.to_dict(), str(device), identity.description,
                     parameter_count(model), len(train_split), len(val_split), val_source, steps,
                     position.epoch, started, position.elapsed_before, position.step, str(data_root.absolute()),
                     device_index=identity.index, device_uuid=identity.uuid, note=position.note,
                     threads=threads)

    def elapsed() -> float:
        """Wall-clock seconds of all of the run's sessions, this one included."""
        return position.elapsed_before + time.time() - started

    def save(kind: str, epoch: int, step: int, progress_now: dict[str, float]) -> CheckpointSaved:
        path = run_dir / f"{kind}.pt"
        metrics = history[-1] if history else {}
        save_checkpoint(path, checkpoint_payload(
            model=evaluated, optimizer=optimizer, scheduler=scheduler, config=config, epoch=epoch, step=step,
            metrics=metrics, history=history, progress=progress_now, elapsed=elapsed(), device=device,
            training_model=model if average is not None else None,
            averaged_steps=average.updates if average is not None else 0))
        return CheckpointSaved(epoch, kind, str(path), step)

    best = max(history, key=lambda h: h["val_accuracy"]) if history else None
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    try:
        for epoch in range(position.epoch, config.epochs):
            if epoch == position.epoch and position.step and resume is not None and "rng_state" in resume.raw:
                restore_random_state(resume, device)
            else:
                torch.manual_seed(epoch_seed(config.seed, epoch))
                position.step, position.loss_sum, position.correct, position.seconds = 0, 0.0, 0.0, 0.0
            start_step = position.step
            augment_rng = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch) + 1)
            if start_step and config.augment:
                # Replay the augmentation draws of the skipped batches so the random stream lines up.
                for _ in range(start_step):
                    augment(torch.zeros(config.batch_size, 1, 28, 28, device=device), augment_rng)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            model.train()
            order = batch_order(len(train_split), config.seed, epoch, device)
            source = train_split if train_images is None else Split(train_images, train_split.labels)
            loss_sum = torch.tensor(position.loss_sum, device=device, dtype=sum_dtype)
            correct = torch.tensor(position.correct, device=device, dtype=sum_dtype)
            carried_seconds = position.seconds
            active_since = last_report = time.perf_counter()
            reported_loss, reported_correct, reported_step = position.loss_sum, position.correct, start_step
            step = start_step
            for images, labels in iterate_batches(source, config.batch_size, order, True, start_step):
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
                loss_sum.add_(loss.detach(), alpha=labels.shape[0])
                correct.add_((logits.detach().argmax(dim=1) == labels).sum())
                step += 1
                if time.perf_counter() - last_report < REPORT_INTERVAL and step < steps and not control.stopping:
                    continue
                total_loss, total_correct = float(loss_sum), float(correct)  # the sync: the clock reads after it
                now = last_report = time.perf_counter()
                seen = (step - reported_step) * config.batch_size
                window_loss = (total_loss - reported_loss) / seen
                if not math.isfinite(window_loss):
                    raise TrainingDiverged(f"loss became {window_loss} at epoch {epoch + 1}, step {step}")
                throughput = (step - start_step) * config.batch_size / max(now - active_since, 1e-9)
                yield BatchProgress(epoch + 1, step, steps, window_loss, (total_correct - reported_correct) / seen,
                                    throughput, optimizer.param_groups[0]["lr"], carried_seconds + now - active_since)
                reported_loss, reported_correct, reported_step = total_loss, total_correct, step
                control.poll()
                if control.paused and not control.stopping:
                    paused_at = time.perf_counter()
                    yield RunPaused(epoch + 1, step)
                    while control.paused and not control.stopping:
                        time.sleep(PAUSE_POLL)
                        control.poll()
                    active_since += time.perf_counter() - paused_at
                    last_report = time.perf_counter()
                    if not control.stopping:
                        yield RunResumed(epoch + 1, step)
                if control.stopping and step < steps:
                    snapshot = {"loss_sum": total_loss, "correct": total_correct,
                                "seconds": carried_seconds + time.perf_counter() - active_since}
                    yield save("last", epoch, step, snapshot)
                    yield _finished("stopped", run_dir, history, best, elapsed())
                    return

            seen = steps * config.batch_size
            train_loss, train_accuracy = float(loss_sum) / seen, float(correct) / seen
            train_seconds = carried_seconds + time.perf_counter() - active_since
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch + 1}")
            val_loss, val_accuracy = validate(evaluated, val_split, spec.mean, spec.std)
            epoch_seconds = carried_seconds + time.perf_counter() - active_since
            is_best = best is None or val_accuracy > best["val_accuracy"]
            record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
                      "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": optimizer.param_groups[0]["lr"],
                      "epoch_seconds": epoch_seconds, "samples_per_second": seen / train_seconds}
            peak, reserved = gpu_memory(device)
            history.append(record)
            if is_best:
                best = record
            yield EpochEnded(epoch + 1, config.epochs, train_loss, train_accuracy, val_loss, val_accuracy,
                             record["lr"], epoch_seconds, record["samples_per_second"], is_best,
                             gpu_memory_peak=peak, gpu_memory_reserved=reserved)
            yield save("last", epoch + 1, 0, {})
            if is_best:
                yield save("best", epoch + 1, 0, {})
            if control.stopping and epoch + 1 < config.epochs:
                yield _finished("stopped", run_dir, history, best, elapsed())
                return
    except TrainingDiverged as error:
        kept = "the last good checkpoint is kept" if history else "no checkpoint was saved"
        yield RunFailed(f"{error}; {kept}. Try a lower learning rate.", str(run_dir), len(history))
        return
    except torch.cuda.OutOfMemoryError:
        yield RunFailed(f"CUDA out of memory with batch_size {config.batch_size}{memory_held_by_others(device)}; "
                        "try a smaller batch or another GPU", str(run_dir), len(history))
        return
    except DiskFull as error:  # the save was atomic: what it would have replaced is as it was
        saved = error.path.exists() or (run_dir / "last.pt").exists()
        kept = "the previous checkpoint is intact" if saved else "no checkpoint was saved before"
        yield RunFailed(f"{error}; {kept}", str(run_dir), len(history))
        return
    yield _finished("completed", run_dir, history, best, elapsed())


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


def _finished(status: str, run_dir: Path, history: list[dict[str, Any]], best: dict[str, Any] | None,
              duration: float) -> RunFinished:
    return RunFinished(
        status=status,
        run_dir=str(run_dir),
        epochs_done=len(history),
        best_epoch=best["epoch"] if best else 0,
        best_val_accuracy=best["val_accuracy"] if best else None,
        final_val_accuracy=history[-1]["val_accuracy"] if history else None,
        epoch_seconds=[h["epoch_seconds"] for h in history],
        duration=duration,
    )
