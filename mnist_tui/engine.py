"""The training loop: a generator of typed events that obeys pause and stop between batches.

Loss and accuracy accumulate on the device; the host reads them only about ten times a second and at
epoch end, so a GPU is never stalled by a per-step sync. Every random choice derives from (seed, epoch),
so a run resumed from a checkpoint continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mnist_tui.batches import (
    DeviceError,
    Split,
    augment,
    batch_order,
    describe_device,
    epoch_seed,
    iterate_batches,
    load_split,
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


def split_train_val(train: Split, test: Split, config: TrainConfig) -> tuple[Split, Split, str]:
    """Hold out `val_split` of the training images (seeded), or validate on the test set like the tutorial."""
    if config.val_split <= 0:
        return train, test, "test"
    held_out = held_out_count(len(train), config.val_split)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
    return train.subset(order[held_out:]), train.subset(order[:held_out]), "validation split"


def train(config: TrainConfig, run_dir: Path, data_root: Path, *, download: bool = False,
          control: RunControl | None = None, resume: Checkpoint | None = None) -> Iterator[Event]:
    """Train per `config`, saving `last.pt` and `best.pt` in `run_dir`, yielding events as it goes.

    Expected failures (missing data or device, a diverging loss, CUDA out of memory) end the stream with
    RunFailed; anything else propagates to the caller.
    """
    control = control or RunControl()
    started = time.time()
    threads = training_threads(config.num_threads)
    torch.set_num_threads(threads)
    try:
        device = resolve_device(config.device)
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
    torch.manual_seed(config.seed)
    try:
        train_split, val_split = train_split.to(device), val_split.to(device)
        model = build_model(config.model).to(device)
    except torch.cuda.OutOfMemoryError:  # a shared GPU that other processes have filled
        yield RunFailed(f"CUDA out of memory before training began: {describe_device(device)} has no room for "
                        f"{config.dataset} and the model; free it (see nvidia-smi) or train on --device cpu",
                        str(run_dir))
        return
    optimizer = build_optimizer(config, model.parameters(), device)
    steps = steps_per_epoch(len(train_split), config.batch_size)
    scheduler = build_scheduler(config, optimizer, steps * config.epochs)
    history: list[dict[str, Any]] = []
    start_epoch, start_step, progress = 0, 0, {"loss_sum": 0.0, "correct": 0.0, "seconds": 0.0}
    elapsed_before = 0.0
    if resume is not None:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.raw["optimizer_state"])
        if scheduler is not None and resume.raw.get("scheduler_state"):
            scheduler.load_state_dict(resume.raw["scheduler_state"])
        history = list(resume.raw.get("history", []))
        start_epoch, start_step = resume.epoch, int(resume.raw.get("step", 0))
        progress = dict(resume.raw.get("progress") or progress)
        # Checkpoints from before `elapsed` was saved: their epochs' seconds are the best estimate.
        elapsed_before = float(resume.raw.get("elapsed", sum(h["epoch_seconds"] for h in history)
                                              + progress.get("seconds", 0.0)))

    yield RunStarted(run_dir.name, str(run_dir), config.to_dict(), str(device), describe_device(device),
                     parameter_count(model), len(train_split), len(val_split), val_source, steps,
                     start_epoch, started, elapsed_before, start_step, str(data_root.absolute()), threads=threads)

    def elapsed() -> float:
        """Wall-clock seconds of all of the run's sessions, this one included."""
        return elapsed_before + time.time() - started

    def save(kind: str, epoch: int, step: int, progress_now: dict[str, float]) -> CheckpointSaved:
        path = run_dir / f"{kind}.pt"
        metrics = history[-1] if history else {}
        save_checkpoint(path, checkpoint_payload(
            model=model, optimizer=optimizer, scheduler=scheduler, config=config, epoch=epoch, step=step,
            metrics=metrics, history=history, progress=progress_now, elapsed=elapsed()))
        return CheckpointSaved(epoch, kind, str(path), step)

    best = max(history, key=lambda h: h["val_accuracy"]) if history else None
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    try:
        for epoch in range(start_epoch, config.epochs):
            if epoch == start_epoch and start_step and resume is not None and "rng_state" in resume.raw:
                # Mid-epoch: continue the random stream (dropout masks) exactly where the stop left it.
                torch.set_rng_state(resume.raw["rng_state"])
                if device.type == "cuda" and resume.raw.get("cuda_rng_state"):
                    torch.cuda.set_rng_state_all(resume.raw["cuda_rng_state"])
            else:
                torch.manual_seed(epoch_seed(config.seed, epoch))
                start_step, progress = 0, {"loss_sum": 0.0, "correct": 0.0, "seconds": 0.0}
            augment_rng = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch) + 1)
            if start_step and config.augment:
                # Replay the augmentation draws of the skipped batches so the random stream lines up.
                for _ in range(start_step):
                    augment(torch.zeros(config.batch_size, 1, 28, 28, device=device), augment_rng)
            model.train()
            order = batch_order(len(train_split), config.seed, epoch, device)
            loss_sum = torch.tensor(progress["loss_sum"], device=device, dtype=sum_dtype)
            correct = torch.tensor(progress["correct"], device=device, dtype=sum_dtype)
            carried_seconds = progress["seconds"]
            active_since = last_report = time.perf_counter()
            reported_loss, reported_correct, reported_step = float(loss_sum), float(correct), start_step
            step = start_step
            for images, labels in iterate_batches(train_split, config.batch_size, order, True, start_step):
                x = prepare(images, spec.mean, spec.std)
                if config.augment:
                    x = augment(x, augment_rng)
                logits = model(x)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach() * labels.shape[0]
                correct += (logits.detach().argmax(dim=1) == labels).sum()
                step += 1
                now = time.perf_counter()
                if now - last_report < REPORT_INTERVAL and step < steps and not control.stopping:
                    continue
                last_report = now
                total_loss, total_correct = float(loss_sum), float(correct)
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

            train_seconds = carried_seconds + time.perf_counter() - active_since
            seen = steps * config.batch_size
            train_loss, train_accuracy = float(loss_sum) / seen, float(correct) / seen
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch + 1}")
            logits = predict(model, val_split, spec.mean, spec.std)
            val_loss = float(F.cross_entropy(logits, val_split.labels))
            val_accuracy = int((logits.argmax(dim=1) == val_split.labels).sum()) / len(val_split)
            epoch_seconds = carried_seconds + time.perf_counter() - active_since
            is_best = best is None or val_accuracy > best["val_accuracy"]
            record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
                      "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": optimizer.param_groups[0]["lr"],
                      "epoch_seconds": epoch_seconds, "samples_per_second": seen / train_seconds}
            history.append(record)
            if is_best:
                best = record
            yield EpochEnded(epoch + 1, config.epochs, train_loss, train_accuracy, val_loss, val_accuracy,
                             record["lr"], epoch_seconds, record["samples_per_second"], is_best)
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
        yield RunFailed(f"CUDA out of memory with batch_size {config.batch_size}; try a smaller batch",
                        str(run_dir), len(history))
        return
    except DiskFull as error:  # the save was atomic: what it would have replaced is as it was
        saved = error.path.exists() or (run_dir / "last.pt").exists()
        kept = "the previous checkpoint is intact" if saved else "no checkpoint was saved before"
        yield RunFailed(f"{error}; {kept}", str(run_dir), len(history))
        return
    yield _finished("completed", run_dir, history, best, elapsed())


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
