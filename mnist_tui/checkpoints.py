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


def resume_problem(checkpoint: Checkpoint) -> str | None:
    """Why a checkpoint cannot continue its run, or None. A run's last.pt replaced by bare weights (the
    tutorial's state_dict, say) evaluates, but holds no optimizer state to go on from."""
    if checkpoint.bare_state_dict:
        return f"{checkpoint.path}: weights only (a bare state_dict), without the optimizer state a resume needs"
    if not isinstance(checkpoint.raw.get("optimizer_state"), Mapping):
        return f"{checkpoint.path}: it has no optimizer state, which a resume needs"
    return None


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
