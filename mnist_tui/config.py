"""The run configuration: one typed, validated place for every training setting.

Each setting is declared once, as a TrainConfig field with its `Setting` (type, range or choices, label,
help); the validator, the settings form and the `train` flags are derived from those. The form, the CLI
flags and config files all go through `TrainConfig.from_mapping`, so a value is checked by the same rule
wherever it comes from. Defaults are the tutorial's.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

MODELS = ("mlp", "cnn", "cnn-wide")
DATASETS = ("mnist", "fashion-mnist", "kmnist")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle")
PRECISIONS = ("fp32", "tf32", "bf16")
MAX_TRAIN_SIZE = 60000
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {},
    "cnn": {"batch_size": 128, "epochs": 3, "lr": 0.003, "scheduler": "onecycle"},
    "cnn-wide": {"batch_size": 128, "epochs": 3, "lr": 0.003, "scheduler": "onecycle"},
}
"""Settings each model starts from where none are given. The mlp's are the tutorial's (the dataclass
defaults); the cnn's are a short one-cycle schedule that passes 99.3% on MNIST in three CPU epochs, where
the tutorial's constant rate stalls near 99.0% (measured)."""


@dataclass(frozen=True)
class Preset:
    """A named starting point for a run: a model's defaults with some settings on top."""

    name: str
    summary: str
    """One line for lists and `--help`: what it trains and what it reaches."""
    values: Mapping[str, Any]

    def config(self) -> TrainConfig:
        return TrainConfig.from_mapping(self.values)


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("tutorial", "the tutorial's MLP: Adam 0.001, batch 256, 20 epochs (97.8% on MNIST)", {"model": "mlp"}),
    Preset("cnn", "the small convnet: one-cycle over 3 epochs, batch 128 (99.4% on MNIST)", {"model": "cnn"}),
    Preset("fast", "the small convnet, one epoch of one-cycle: 99% on MNIST in the least time",
           {"model": "cnn", "epochs": 1, "lr": 0.005}),
    Preset("best", "the wider convnet, 12 epochs with augmentation, label smoothing and weight averaging "
           "(99.6% on MNIST)",
           {"model": "cnn-wide", "epochs": 12, "augment": True, "label_smoothing": 0.1, "ema_decay": 0.999,
            "optimizer": "adamw", "weight_decay": 0.05}),
)}
"""One table of presets for `train --preset`, the settings pane and the palette; README lists the same."""


class ConfigError(ValueError):
    """A setting is invalid; `errors` maps each field name to a message a person understands."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def check_device(value: str) -> str | None:
    """The reason a device name cannot name a device, or None: whether this machine has it is the trainer's
    (and the settings pane's) to find out."""
    if value in ("auto", "cpu", "cuda", "mps"):
        return None
    if value.startswith("cuda:") and value[5:].isdigit():
        return None
    return f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}"


@dataclass(frozen=True)
class Setting:
    """What one TrainConfig field is, declared beside it: the validator, the coercion of typed text, the
    settings form and the `train` flags are all derived from this, so a new setting is written once."""

    kind: type
    """`str`, `int`, `float` or `bool`: what a form's text or a CLI string is turned into (the default's type)."""
    label: str
    """The form's name for it, at most 16 characters."""
    help: str
    """One paragraph for the form's help line and `train --help`; `code` spans in backticks."""
    choices: tuple[str, ...] = ()
    """The only values allowed; the form offers them in a list."""
    low: float | None = None
    high: float | None = None
    above_low: bool = False
    """`low` itself is refused (a learning rate of 0 trains nothing)."""
    noun: str = ""
    """What the range message calls a value (`a fraction`); by default `an integer` or `a number`."""
    caption: str = ""
    """For a bool: what ticking it does, written beside the form's checkbox."""
    check: Callable[[Any], str | None] | None = None
    """A rule of its own (the device's name), giving the reason a value is refused."""

    def bounds(self) -> str:
        """`from 1 to 60000`, `above 0 and at most 10`, or nothing for a setting without a range."""
        if self.low is None or self.high is None:
            return ""
        start = f"above {_number(self.low)} and at most" if self.above_low else f"from {_number(self.low)} to"
        return f"{start} {_number(self.high)}"

    def value_noun(self) -> str:
        return self.noun or ("an integer" if self.kind is int else "a number")


T = TypeVar("T")
_SPEC = "mnist_tui.setting"
"""The key of a field's Setting in its dataclass metadata."""


def setting(default: T, *, label: str, help: str, choices: tuple[str, ...] = (), low: float | None = None,
            high: float | None = None, above_low: bool = False, noun: str = "", caption: str = "",
            check: Callable[[Any], str | None] | None = None) -> T:
    """A TrainConfig field: its default, and its Setting in the field's metadata. The help is kept as one
    paragraph however its source is wrapped."""
    spec = Setting(type(default), label, " ".join(help.split()), choices, low, high, above_low, noun, caption, check)
    return field(default=default, metadata={_SPEC: spec})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a run trains. Two runs with equal configs on CPU give equal metrics."""

    model: str = setting(
        "mlp", label="model", choices=MODELS,
        help="""Architecture from the model registry: `mlp` (the tutorial's 784-128-64-10), `cnn` (a small
        convnet) or `cnn-wide` (the same, wider).""")
    dataset: str = setting(
        "mnist", label="dataset", choices=DATASETS,
        help="Which 28x28 grey 10-class dataset: `mnist`, `fashion-mnist` or `kmnist`.")
    batch_size: int = setting(
        256, label="batch size", low=1, high=MAX_TRAIN_SIZE,
        help="Training images per optimizer step (the tutorial's 256); the last short batch is dropped.")
    epochs: int = setting(
        20, label="epochs", low=1, high=1000,
        help="Full passes over the training split.")
    lr: float = setting(
        0.001, label="learning rate", low=0, high=10, above_low=True,
        help="Learning rate (peak rate for the onecycle scheduler).")
    optimizer: str = setting(
        "adam", label="optimizer", choices=OPTIMIZERS,
        help="`adam` (the tutorial's), `adamw` (decoupled weight decay) or `sgd` (with momentum).")
    momentum: float = setting(
        0.9, label="momentum", low=0, high=0.999,
        help="Momentum for `sgd`; ignored by the Adam family.")
    weight_decay: float = setting(
        0.0, label="weight decay", low=0, high=1,
        help="L2 penalty (decoupled for adamw).")
    scheduler: str = setting(
        "none", label="lr schedule", choices=SCHEDULERS,
        help="Learning-rate schedule: `none`, `cosine` (anneal to zero) or `onecycle` (warm up, then anneal).")
    val_split: float = setting(
        0.0, label="validation split", low=0, high=0.5, noun="a fraction",
        help="""Fraction of the training split held out for validation; 0 validates on the test set, as the
        tutorial.""")
    augment: bool = setting(
        False, label="augment", caption="shift and rotate",
        help="Random per-sample shifts (up to 2 px) and rotations (up to 10 degrees), done on the device.")
    label_smoothing: float = setting(
        0.0, label="label smoothing", low=0, high=0.5,
        help="Share of each target spread over the other classes (0 is the tutorial's plain cross-entropy).")
    ema_decay: float = setting(
        0.0, label="EMA decay", low=0, high=0.9999,
        help="Validate and save an exponential moving average of the weights with this decay per step (0: off).")
    seed: int = setting(
        0, label="seed", low=0, high=2**31 - 1,
        help="Seeds weights, shuffling, augmentation and dropout.")
    device: str = setting(
        "auto", label="device", check=check_device,
        help="""`auto` (the visible GPU with the most free memory, then mps, then cpu), `cpu`, `cuda` (the same
        choice among GPUs), `cuda:N` (as given) or `mps`.""")
    precision: str = setting(
        "fp32", label="precision", choices=PRECISIONS,
        help="""`fp32` (IEEE single precision: the tutorial's numerics), `tf32` (TensorFloat-32 matrix products
        on CUDA; fp32 elsewhere) or `bf16` (bfloat16 autocast of the forward pass).""")
    num_threads: int = setting(
        0, label="CPU threads", low=0, high=256,
        help="""CPU threads for torch; 0 fits them to the cores free: those the trainer may use, less the load
        average.""")

    @classmethod
    def defaults_for(cls, model: str) -> TrainConfig:
        """The starting settings for a model: the tutorial's, with that model's own defaults on top."""
        return cls(model=model, **MODEL_DEFAULTS.get(model, {}))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """Build a config from loose values (strings from a form or CLI, JSON/TOML types), checking all.

        Fields not in `values` come from `base`, else from the chosen model's defaults.

        Raises:
            ConfigError: naming every unknown key and every invalid value.
        """
        if base is None:
            model = str(values.get("model", cls.model)).strip().lower()
            base = cls.defaults_for(model) if model in MODEL_DEFAULTS else cls()
        errors = {key: f"unknown setting {key!r}" for key in values if key not in SETTINGS}
        changes: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in SETTINGS:
                continue
            try:
                changes[key] = coerce_value(key, raw)
            except ConfigError as error:
                errors.update(error.errors)
                continue
            message = check_value(key, changes[key])
            if message:
                errors[key] = message
        if errors:
            raise ConfigError(errors)
        config = dataclasses.replace(base, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError listing every field whose value is out of range."""
        errors = {}
        for name in SETTINGS:
            message = check_value(name, getattr(self, name))
            if message:
                errors[name] = message
        if not errors.keys() & {"batch_size", "val_split"}:
            train_images = MAX_TRAIN_SIZE - held_out_count(MAX_TRAIN_SIZE, self.val_split)
            if self.batch_size > train_images:
                errors["batch_size"] = (f"batch_size must be at most {train_images}, the training images left "
                                        f"after val_split {_number(self.val_split)}, got {self.batch_size}")
        if errors:
            raise ConfigError(errors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SETTINGS: dict[str, Setting] = {f.name: f.metadata[_SPEC] for f in fields(TrainConfig)}
"""Each setting's declaration, in the form's order: what the form, the `train` flags and the validator read."""


def known_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without the keys this version has no setting for: settings a later mnist-tui saved (in a
    run's log, the dashboard's memory) still read, their new keys left out."""
    return {key: value for key, value in values.items() if key in SETTINGS}


def coerce_value(name: str, raw: Any) -> Any:
    """Turn a raw value (a form's text, a CLI string, a JSON value) into the field's type."""
    kind = SETTINGS[name].kind
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(raw, bool):
            raise ValueError
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind is float:
            return float(str(raw).strip()) if isinstance(raw, str) else float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw.strip().lower()
    except (TypeError, ValueError):
        article = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}
        raise ConfigError({name: f"{name} must be {article[kind.__name__]}, got {raw!r}"}) from None


def held_out_count(train_images: int, val_split: float) -> int:
    """How many training images `val_split` holds out for validation: at least one when it is above 0."""
    return max(1, round(train_images * val_split)) if val_split > 0 else 0


def _number(value: float) -> str:
    """Integers in full (2147483647, not 2.14748e+09), other numbers briefly."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def check_value(name: str, value: Any) -> str | None:
    """The reason a typed value is invalid for a field, or None when it is fine. The one validator: each
    rule is the field's Setting."""
    spec = SETTINGS[name]
    if spec.choices:
        return None if value in spec.choices else f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.check is not None:
        return spec.check(value)
    if spec.low is None or spec.high is None:
        return None
    too_low = value <= spec.low if spec.above_low else value < spec.low
    if too_low or value > spec.high or value != value:  # the last: NaN, which no comparison catches
        return f"{name} must be {spec.value_noun()} {spec.bounds()}, got {_number(value)}"
    return None


def load_config(path: Path) -> TrainConfig:
    """Read a TOML or JSON settings file (by suffix) into a validated config.

    Raises:
        ConfigError: the file is missing, unreadable, malformed or holds invalid values (each message
            names the file).
    """
    values = read_config_values(path)
    try:
        return TrainConfig.from_mapping(values)
    except ConfigError as error:
        raise ConfigError({key: f"{path}: {message}" for key, message in error.errors.items()}) from None


def read_config_values(path: Path) -> dict[str, Any]:
    """The raw settings in a TOML or JSON file (by suffix), not yet checked.

    Raises:
        ConfigError: the file is missing, unreadable or malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError({"file": f"cannot read config file {path}: {error.strerror}"}) from None
    except UnicodeDecodeError:
        raise ConfigError({"file": f"config file {path} is not text (TOML or JSON expected)"}) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError({"file": f"config file {path} is not valid {_format(path)}: {error}"}) from None
    if not isinstance(data, dict):
        raise ConfigError({"file": f"config file {path} must hold a table of settings"})
    return data


def save_config(config: TrainConfig, path: Path) -> None:
    """Write a config as TOML or JSON (by suffix) so that `load_config` reads it back equal.

    Raises:
        ConfigError: the name ends in neither .toml nor .json.
        OSError: the folder does not exist (a typo there should not make folders) or cannot be written.
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError({"file": f"{path.name}: a settings file ends in .toml or .json"})
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"no folder {path.parent}", str(path.parent))
    if suffix == ".json":
        text = json.dumps(config.to_dict(), indent=2) + "\n"
    else:
        text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in config.to_dict().items())
    path.write_text(text, encoding="utf-8")


def _format(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "TOML"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)
