"""Checkpoints: atomic saves, safe loads, and discovery.

A checkpoint is a plain dict of tensors and primitives, so it loads with `torch.load(weights_only=True)`
and never runs code from the file. A bare state_dict of a registered model (the tutorial's
`model.state_dict()`) loads too, with its model's standard preprocessing assumed (for the mlp, the
tutorial's [0, 1] pixels).
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from mnist_tui import __version__
from mnist_tui.config import ConfigError, TrainConfig
from mnist_tui.control import raises_disk_full, temporary_beside
from mnist_tui.data import first_line, not_a_file
from mnist_tui.events import saved_position
from mnist_tui.models import MODEL_SPECS, build_model, match_state_dict

FORMAT = "mnist-tui-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A file cannot be used as a checkpoint; the message says why in one line."""


@dataclass(frozen=True)
class Checkpoint:
    """What a loaded checkpoint offers: enough to rebuild the model and to resume its run."""

    path: Path
    model_name: str
    model_state: dict[str, torch.Tensor]
    config: TrainConfig
    mean: float
    std: float
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    bare_state_dict: bool = False

    def build_model(self) -> nn.Module:
        model = build_model(self.model_name)
        model.load_state_dict(self.model_state)
        return model


@raises_disk_full
def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write atomically: temporary file in the same folder, fsync, rename, so a crash never leaves half a file.
    No space for it is a DiskFull, and the file it would have replaced is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = temporary_beside(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            _save_to(stream, payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _save_to(stream: BinaryIO, payload: Mapping[str, Any]) -> None:
    """torch.save into `stream`, with the OSError of a failed write raised as it is: torch turns it into
    its own RuntimeError (`enforce fail at inline_container.cc`), which says nothing of a full disk."""
    failed: list[OSError] = []

    class Writer:
        def write(self, data: bytes) -> int:
            try:
                return stream.write(data)
            except OSError as error:
                failed.append(error)
                raise

        def flush(self) -> None:
            stream.flush()

    try:
        torch.save(dict(payload), Writer())  # type: ignore[arg-type]
    except RuntimeError:
        if failed:
            raise failed[0] from None
        raise


def checkpoint_payload(*, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                       config: TrainConfig, epoch: int, step: int, metrics: Mapping[str, Any],
                       history: list[dict[str, Any]], progress: Mapping[str, float], elapsed: float,
                       device: torch.device, training_model: nn.Module | None = None, averaged_steps: int = 0
                       ) -> dict[str, Any]:
    """The plain dict saved as a checkpoint; `epoch` counts whole epochs done, `step` batches into the next,
    `elapsed` the wall-clock seconds of the run's sessions so far, pauses included.

    Every tensor in it is on the CPU, so a checkpoint written on a GPU loads on a machine without one.
    `model` holds the weights that are evaluated (the weight average when `ema_decay` is on, with the
    weights being trained in `training_model_state`); the RNG state kept besides the CPU's is the training
    device's own, so a box with fewer GPUs resumes it."""
    import torchvision

    spec = MODEL_SPECS[config.model]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "model_state": _on_cpu(model.state_dict()),
        "training_model_state": _on_cpu(training_model.state_dict()) if training_model is not None else None,
        "averaged_steps": averaged_steps,
        "optimizer_state": _on_cpu(optimizer.state_dict()),
        "scheduler_state": _on_cpu(scheduler.state_dict()) if scheduler is not None else None,
        "config": config.to_dict(),
        "epoch": epoch,
        "step": step,
        "progress": dict(progress),
        "elapsed": elapsed,
        "metrics": dict(metrics),
        "history": history,
        "preprocessing": {"scale": 1 / 255, "mean": spec.mean, "std": spec.std},
        "device": str(device),
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "versions": {"mnist_tui": __version__, "torch": str(torch.__version__),
                     "torchvision": str(torchvision.__version__)},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _on_cpu(value: Any) -> Any:
    """`value` with every tensor inside it (dicts, lists, tuples) copied to the CPU and detached."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value


CODE_RUNNING_MODULES = frozenset({"builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "socket",
                                  "importlib", "runpy", "pty", "code", "codecs", "pickle", "marshal", "ctypes",
                                  "webbrowser", "operator", "functools", "io", "types", "pdb", "bdb", "timeit",
                                  "multiprocessing", "threading"})
"""Top-level modules whose globals in a pickle mean an attempt to run code rather than a model class."""
BARE_STATE_DICT_NOTE = "bare state_dict: the model's standard preprocessing assumed"
"""Said wherever a bare state_dict is evaluated: the file itself does not say how its inputs were scaled."""

WHOLE_MODEL_HINT = (
    "it holds a whole pickled model (torch.save(model)), which can only be loaded by running code from the "
    "file, so it is refused. Re-save its weights where the model class exists: "
    "torch.save(model.state_dict(), 'model.pt')")


STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model_state", "model")
"""Where other training scripts keep the weights in a checkpoint dict (PyTorch's own tutorials use the first)."""


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint or a bare state_dict of a registered model, safely.

    Raises:
        CheckpointError: missing, truncated, corrupt, foreign or unsafe file, in one line.
    """
    if path.is_dir():
        inside = [str(path / name) for name in ("best.pt", "last.pt") if (path / name).is_file()]
        hint = f"; its checkpoints: {', '.join(inside)}" if inside else ""
        raise CheckpointError(f"{path}: a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: {not_a_file(path)}")
    try:
        with warnings.catch_warnings():  # a plain pickle draws a two-line warning; the error below says it all
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: {_unpickling_reason(str(error))}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError,
            AttributeError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch file, truncated or corrupt "
                              f"({first_line(error)})") from None
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        return _from_payload(path, data)
    weights = _state_dict_in(data)
    if weights is not None:
        model_name = match_state_dict(weights)
        if model_name is None:
            raise CheckpointError(f"{path}: a state_dict, but not of a known model ({', '.join(MODEL_SPECS)})")
        # A bare state_dict carries no preprocessing: assume its model's own, which for the mlp is the
        # tutorial's ToTensor() pixels in [0, 1].
        spec = MODEL_SPECS[model_name]
        return Checkpoint(path, model_name, weights, TrainConfig(model=model_name), spec.mean, spec.std,
                          bare_state_dict=True)
    raise CheckpointError(f"{path}: not an mnist-tui checkpoint nor a state_dict of a known model")


@dataclass(frozen=True)
class ResumeState:
    """What a run's last.pt holds to go on exactly where the run left off, every part checked for its type
    when it is read (`resume_state`), so a bad file is refused in one line before training begins rather
    than by a KeyError halfway through restoring it."""

    path: Path
    config: TrainConfig
    """The settings of the run that saved it: its state fits only the same model, optimizer and schedule."""
    epoch: int
    """Whole epochs done."""
    step: int
    """Batches done into the next epoch, when a stop saved it mid-epoch; else 0."""
    model_state: dict[str, torch.Tensor]
    """The evaluated weights: the weight average when the run keeps one."""
    training_model_state: dict[str, torch.Tensor] | None
    """The weights being trained, when a weight average is kept besides them."""
    averaged_steps: int
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any] | None
    history: tuple[dict[str, Any], ...]
    """One record per epoch done, as EpochEnded reports it."""
    loss_sum: float
    """The next epoch's sums so far (a stop mid-epoch): its training loss and correct predictions."""
    correct: float
    seconds: float
    """The next epoch's training seconds so far."""
    elapsed: float
    """Wall-clock seconds of the run's sessions so far, pauses included."""
    saved_on: str
    """The device it trained on: resumed on another kind, its metrics differ from an uninterrupted run's."""
    rng_state: torch.Tensor | None
    cuda_rng_state: torch.Tensor | list[torch.Tensor] | None
    """The training GPU's generator state; a list (every GPU's) in older checkpoints."""

    def check_settings(self, config: TrainConfig) -> None:
        """Refuse to go on under settings other than those whose state it holds (another run's last.pt).

        Raises:
            CheckpointError: its model, optimizer or schedule is not `config`'s, in one line.
        """
        for name in RESTORED_SETTINGS:
            saved, wanted = getattr(self.config, name), getattr(config, name)
            if saved != wanted:
                raise CheckpointError(f"{self.path}: it was saved with {name} {saved}, and the run trains with "
                                      f"{name} {wanted}")


RESTORED_SETTINGS = ("model", "optimizer", "scheduler")
"""The settings whose state a checkpoint restores: a resume must train with the same ones."""


HISTORY_FIGURES = ("val_accuracy", "epoch_seconds")
"""The figures of each history record that a resumed run reads, besides its epoch."""


def load_resume_state(path: Path, config: TrainConfig) -> ResumeState:
    """The state to continue a run from, read from its last.pt at `path` and found to be that run's: trained
    with `config`'s model, optimizer and schedule. What `train --resume` and the dashboard's Resume check.

    Raises:
        CheckpointError: the file is missing, damaged or foreign, or holds another run's state, in one line.
    """
    state = resume_state(load_checkpoint(path))
    state.check_settings(config)
    return state


def resume_state(checkpoint: Checkpoint) -> ResumeState:
    """What `checkpoint` holds to continue its run, checked part by part. A run's last.pt replaced by bare
    weights (the tutorial's state_dict, say) evaluates, but holds no optimizer state to go on from.

    Raises:
        CheckpointError: bare weights, no optimizer state, or a part missing or of the wrong type, in one line.
    """
    path, raw = checkpoint.path, checkpoint.raw
    if checkpoint.bare_state_dict:
        raise CheckpointError(f"{path}: weights only (a bare state_dict), without the optimizer state a resume needs")
    if raw.get("optimizer_state") is None:
        raise CheckpointError(f"{path}: it has no optimizer state, which a resume needs")
    try:
        progress = _optional(raw, "progress", Mapping) or {}
        history = tuple(_history_record(record) for record in _optional(raw, "history", list) or [])
        seconds = _number(progress, "seconds")
        cuda_rng_state = _cuda_rng_state(raw.get("cuda_rng_state"))
        saved_on = _optional(raw, "device", str) or ("cuda" if cuda_rng_state is not None else "cpu")
        torch.device(saved_on)  # a name torch does not know is damage, not a device
        state = ResumeState(
            path=path,
            config=checkpoint.config,
            epoch=_count(checkpoint.epoch, "epoch"),
            step=_count(raw.get("step", 0), "step"),
            model_state=checkpoint.model_state,
            training_model_state=_training_model_state(raw, checkpoint.model_name),
            averaged_steps=_count(raw.get("averaged_steps") or 0, "averaged_steps"),
            optimizer_state=_optimizer_state(raw),
            scheduler_state=_dict_or_none(_optional(raw, "scheduler_state", Mapping)),
            history=history,
            loss_sum=_number(progress, "loss_sum"),
            correct=_number(progress, "correct"),
            seconds=seconds,
            # Checkpoints from before `elapsed` was saved: their epochs' seconds are the best estimate.
            elapsed=_number(raw, "elapsed", sum(float(h["epoch_seconds"]) for h in history) + seconds),
            saved_on=saved_on,
            rng_state=_rng_state(raw.get("rng_state")),
            cuda_rng_state=cuda_rng_state,
        )
        if state.step and state.rng_state is None:  # the shuffle of the epoch it stopped in is gone
            raise ValueError(f"step is {state.step} of an epoch, without the rng_state that epoch was shuffled by")
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: damaged mnist-tui checkpoint ({first_line(error)})") from None
    return state


def _required(raw: Mapping[str, Any], name: str, kind: type) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind):
        raise TypeError(f"{name} is {type(value).__name__}, not {_kind_name(kind)}")
    return value


def _optional(raw: Mapping[str, Any], name: str, kind: type) -> Any:
    """`raw[name]` if it is of `kind`, None if it is absent or None; anything else is damage."""
    return None if raw.get(name) is None else _required(raw, name, kind)


KIND_NAMES: dict[type, str] = {Mapping: "a dict", list: "a list", str: "a string"}


def _kind_name(kind: type) -> str:
    return KIND_NAMES.get(kind, kind.__name__)


def _number(raw: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is {type(value).__name__}, not a number")
    return float(value)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is {value!r}, not a count")
    return value


def _history_record(record: object) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise TypeError(f"a history record is {type(record).__name__}, not a dict")
    _count(record.get("epoch"), "a history record's epoch")
    for name in HISTORY_FIGURES:
        if name not in record:
            raise ValueError(f"a history record has no {name}")
        _number(record, name)
    return dict(record)


def _training_model_state(raw: Mapping[str, Any], model_name: str) -> dict[str, torch.Tensor] | None:
    state = _optional(raw, "training_model_state", Mapping)
    if state is not None and match_state_dict(state) != model_name:
        raise ValueError(f"training_model_state does not fit the {model_name!r} model")
    return _dict_or_none(state)


def _dict_or_none(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def _optimizer_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's state_dict, in the shape `Optimizer.load_state_dict` reads: per-parameter state of
    tensors and numbers (or None, for a buffer not made yet), and parameter groups that name their parameters."""
    state = _required(raw, "optimizer_state", Mapping)
    per_parameter = _required(state, "state", Mapping)
    for entry in per_parameter.values():
        if not isinstance(entry, Mapping) or not all(
                item is None or isinstance(item, torch.Tensor | int | float) for item in entry.values()):
            raise TypeError("optimizer_state holds a parameter state that is not tensors and numbers")
    for group in _required(state, "param_groups", list):
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), list):
            raise TypeError("optimizer_state holds a parameter group without its parameters")
    return dict(state)


def _rng_state(value: object) -> torch.Tensor | None:
    """A CPU generator state, tried on a generator of its own so that one torch would refuse is damage."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"rng_state is {type(value).__name__}, not a tensor")
    torch.Generator().set_state(value)
    return value


def _cuda_rng_state(value: object) -> torch.Tensor | list[torch.Tensor] | None:
    """A GPU generator's state, or (older checkpoints) a list of every GPU's; checked for its type only,
    since only a GPU can say more."""
    if value is None:
        return None
    states = [s for s in (value if isinstance(value, list | tuple) else [value])
              if isinstance(s, torch.Tensor) and s.dtype == torch.uint8]
    if len(states) != (len(value) if isinstance(value, list | tuple) else 1):
        raise TypeError("cuda_rng_state is not a GPU generator's state")
    return states if isinstance(value, list | tuple) else states[0]


def _state_dict_in(data: object) -> dict[str, torch.Tensor] | None:
    """The weights in a bare state_dict, or in a training script's checkpoint dict under one of
    STATE_DICT_KEYS; with DistributedDataParallel's `module.` prefix taken off. None if there are none."""
    def is_state_dict(value: object) -> bool:
        return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())

    if not isinstance(data, Mapping):
        return None
    found = data if is_state_dict(data) else next(
        (data[key] for key in STATE_DICT_KEYS if is_state_dict(data.get(key))), None)
    if found is None:
        return None
    if all(str(name).startswith("module.") for name in found):
        return {str(name).removeprefix("module."): tensor for name, tensor in found.items()}
    return dict(found)


def _from_payload(path: Path, data: Mapping[str, Any]) -> Checkpoint:
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: damaged mnist-tui checkpoint (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer mnist-tui (format {version}); upgrade mnist-tui to read it")
    try:
        config_values, preprocessing, state = data["config"], data["preprocessing"], data["model_state"]
        for name, value in (("config", config_values), ("preprocessing", preprocessing), ("model_state", state)):
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} is {type(value).__name__}, not a dict")
        config = TrainConfig.from_mapping(config_values)
        if match_state_dict(state) != config.model:
            raise CheckpointError(f"{path}: its weights do not fit the {config.model!r} model it names")
        return Checkpoint(path, config.model, dict(state), config, float(preprocessing["mean"]),
                          float(preprocessing["std"]), int(data.get("epoch", 0)), dict(data.get("metrics", {})),
                          dict(data))
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as error:
        raise CheckpointError(f"{path}: damaged mnist-tui checkpoint ({first_line(error)})") from None


def _unpickling_reason(message: str) -> str:
    """Explain why the safe unpickler refused a file, from the global it refused to import."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if match is None:
        return "not a readable PyTorch file (corrupt, or not a checkpoint)"
    name = match.group(1)
    module, _, attribute = name.rpartition(".")
    top = module.split(".")[0] if module else "builtins"  # torch names builtins without their module
    if top in CODE_RUNNING_MODULES:
        return (f"refused: loading it would call {name}, which runs code; a checkpoint never needs that "
                "(this file may be malicious)")
    if top == "numpy":
        return (f"it holds numpy values (loading would import {name}); re-save them as tensors or plain "
                "numbers (.item())")
    if not attribute[:1].isupper():  # a function, not the model class a whole pickled model needs
        return f"refused: loading it would call {name}; a checkpoint of tensors and plain values never needs that"
    return f"{WHOLE_MODEL_HINT} (loading would import {name})"


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint found on disk, described without loading its tensors into a model."""

    path: Path
    run_id: str
    kind: str
    model: str
    dataset: str
    epoch: int
    val_accuracy: float | None
    created: str
    step: int = 0
    """Steps into the next epoch, for a checkpoint a stop saved mid-epoch."""

    @property
    def position(self) -> str:
        return saved_position(self.epoch, self.step)


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """Describe a checkpoint for a list; raises CheckpointError like `load_checkpoint`."""
    checkpoint = load_checkpoint(path)
    kind = path.stem if path.stem in ("best", "last") else "file"
    step = int(checkpoint.raw.get("step", 0))
    return CheckpointInfo(
        path=path,
        run_id=path.parent.name,
        kind=kind,
        model=checkpoint.model_name,
        dataset=checkpoint.config.dataset,
        epoch=checkpoint.epoch,
        # A stop mid-epoch saves weights that were never validated; its metrics are the epoch before's.
        val_accuracy=None if step else checkpoint.metrics.get("val_accuracy"),
        created=str(checkpoint.raw.get("created", "")),
        step=step,
    )


def discover_checkpoints(runs_root: Path) -> list[Path]:
    """Every best.pt and last.pt under the runs folder, newest run first."""
    if not runs_root.is_dir():
        return []
    found = [p for p in runs_root.glob("*/*.pt") if p.stem in ("best", "last")]
    return sorted(found, key=lambda p: (p.parent.name, p.stem), reverse=True)
