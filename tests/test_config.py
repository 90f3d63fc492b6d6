"""TrainConfig: the tutorial's defaults, one validator for every source, readable errors, file round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from mnist_tui.__main__ import build_parser
from mnist_tui.config import (
    MODELS,
    SETTINGS,
    ConfigError,
    TrainConfig,
    check_value,
    coerce_value,
    load_config,
    save_config,
)


def test_defaults_are_the_tutorials() -> None:
    config = TrainConfig()
    assert config.model == "mlp"
    assert config.dataset == "mnist"
    assert config.batch_size == 256
    assert config.epochs == 20
    assert config.lr == 0.001
    assert config.optimizer == "adam"
    assert config.scheduler == "none"
    assert config.augment is False
    assert config.val_split == 0
    config.validate()


def test_every_field_declares_its_setting() -> None:
    defaults = TrainConfig()
    assert list(SETTINGS) == [f.name for f in dataclasses.fields(TrainConfig)]
    for name, spec in SETTINGS.items():
        assert spec.kind is type(getattr(defaults, name)), name
        assert 0 < len(spec.label) <= 16, f"{name}'s label must fit the form's label column"
        assert len(spec.help) > 10 and "\n" not in spec.help and "  " not in spec.help, name
        assert check_value(name, getattr(defaults, name)) is None, name
        if spec.kind is bool:
            assert spec.caption, f"{name}'s checkbox needs words of its own"
    labels = [spec.label for spec in SETTINGS.values()]
    assert len(set(labels)) == len(labels)


def test_the_validator_follows_each_settings_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rules come from the declarations alone: change one, and the validator and coercion follow.
    monkeypatch.setitem(SETTINGS, "epochs", dataclasses.replace(SETTINGS["epochs"], high=5))
    with pytest.raises(ConfigError, match="epochs must be an integer from 1 to 5, got 6"):
        TrainConfig.from_mapping({"epochs": "6"})
    monkeypatch.setitem(SETTINGS, "optimizer", dataclasses.replace(SETTINGS["optimizer"], choices=("sgd",)))
    assert check_value("optimizer", "adam") == "optimizer must be one of sgd, got 'adam'"
    monkeypatch.setitem(SETTINGS, "seed", dataclasses.replace(SETTINGS["seed"], kind=float))
    assert coerce_value("seed", "1.5") == 1.5


@pytest.mark.parametrize("name", [name for name, spec in SETTINGS.items() if spec.low is not None])
def test_each_range_is_enforced_at_its_ends(name: str) -> None:
    spec = SETTINGS[name]
    assert spec.low is not None and spec.high is not None
    step = 1 if spec.kind is int else 1e-6
    assert check_value(name, spec.kind(spec.high)) is None
    message = check_value(name, spec.kind(spec.high + step))
    assert message is not None and message.startswith(f"{name} must be {spec.value_noun()} {spec.bounds()}, got ")
    assert (check_value(name, spec.kind(spec.low)) is None) is not spec.above_low
    assert check_value(name, spec.kind(spec.low - step)) is not None


@pytest.mark.parametrize("name", [name for name, spec in SETTINGS.items() if spec.choices])
def test_choices_are_the_declared_ones(name: str) -> None:
    for choice in SETTINGS[name].choices:
        assert TrainConfig.from_mapping({name: choice.upper()}).to_dict()[name] == choice
    assert check_value(name, "nothing-like-it") == (f"{name} must be one of {', '.join(SETTINGS[name].choices)}, "
                                                     "got 'nothing-like-it'")


def test_train_flags_come_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for name, spec in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        if spec.kind is bool:
            assert getattr(parser.parse_args(["train", flag]), name) is True
            assert getattr(parser.parse_args(["train", f"--no-{flag[2:]}"]), name) is False
        else:  # kept as text: from_mapping checks it with the one validator
            value = spec.choices[-1] if spec.choices else "7"
            assert getattr(parser.parse_args(["train", flag, value]), name) == value
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # however argparse wraps it
    for spec in SETTINGS.values():
        assert "".join(spec.help.split()) in help_text


def test_from_mapping_coerces_strings() -> None:
    config = TrainConfig.from_mapping({
        "model": " CNN ", "batch_size": "64", "epochs": " 3", "lr": "0.01", "momentum": "0.5",
        "weight_decay": "1e-4", "val_split": "0.1", "augment": "yes", "seed": "7", "num_threads": "2",
        "optimizer": "SGD", "scheduler": "cosine", "device": "cpu", "dataset": "fashion-mnist",
    })
    assert config == TrainConfig(model="cnn", batch_size=64, epochs=3, lr=0.01, momentum=0.5, weight_decay=1e-4,
                                 val_split=0.1, augment=True, seed=7, num_threads=2, optimizer="sgd",
                                 scheduler="cosine", device="cpu", dataset="fashion-mnist")
    assert isinstance(config.batch_size, int)
    assert isinstance(config.lr, float)


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("1", True), ("on", True), (True, True), ("False", False), ("no", False), ("0", False),
    (False, False),
])
def test_from_mapping_booleans(raw: Any, expected: bool) -> None:
    assert TrainConfig.from_mapping({"augment": raw}).augment is expected


def test_from_mapping_accepts_json_types() -> None:
    config = TrainConfig.from_mapping({"batch_size": 128, "epochs": 5.0, "lr": 1, "augment": True})
    assert (config.batch_size, config.epochs, config.lr, config.augment) == (128, 5, 1.0, True)
    assert isinstance(config.epochs, int)
    assert isinstance(config.lr, float)


def test_from_mapping_starts_from_the_models_defaults() -> None:
    assert TrainConfig.from_mapping({}) == TrainConfig()
    assert TrainConfig.from_mapping({"model": "mlp"}) == TrainConfig()
    cnn = TrainConfig.from_mapping({"model": "CNN"})
    assert cnn == TrainConfig.defaults_for("cnn")
    assert (cnn.model, cnn.batch_size, cnn.epochs, cnn.lr, cnn.scheduler) == ("cnn", 128, 3, 0.003, "onecycle")
    assert TrainConfig.from_mapping({"model": "cnn", "epochs": "5"}).epochs == 5
    for model in MODELS:
        TrainConfig.defaults_for(model).validate()


def test_from_mapping_keeps_base_values() -> None:
    base = TrainConfig(epochs=3, model="cnn")
    config = TrainConfig.from_mapping({"lr": "0.1"}, base)
    assert (config.epochs, config.model, config.lr) == (3, "cnn", 0.1)


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"batch_size": 0}, "batch_size", "batch_size must be an integer from 1 to 60000, got 0"),
    ({"batch_size": "0"}, "batch_size", "batch_size must be an integer from 1 to 60000, got 0"),
    ({"batch_size": 60001}, "batch_size", "batch_size must be an integer from 1 to 60000, got 60001"),
    ({"batch_size": "many"}, "batch_size", "batch_size must be an integer, got 'many'"),
    ({"batch_size": "1.5"}, "batch_size", "batch_size must be an integer, got '1.5'"),
    ({"batch_size": 1.5}, "batch_size", "batch_size must be an integer, got 1.5"),
    ({"batch_size": True}, "batch_size", "batch_size must be an integer, got True"),
    ({"epochs": 0}, "epochs", "epochs must be an integer from 1 to 1000, got 0"),
    ({"epochs": 1001}, "epochs", "epochs must be an integer from 1 to 1000, got 1001"),
    ({"lr": 0}, "lr", "lr must be a number above 0 and at most 10, got 0"),
    ({"lr": "-0.1"}, "lr", "lr must be a number above 0 and at most 10, got -0.1"),
    ({"lr": "nan"}, "lr", "lr must be a number above 0 and at most 10, got nan"),
    ({"lr": "fast"}, "lr", "lr must be a number, got 'fast'"),
    ({"momentum": 1}, "momentum", "momentum must be a number from 0 to 0.999, got 1"),
    ({"weight_decay": -1}, "weight_decay", "weight_decay must be a number from 0 to 1, got -1"),
    ({"val_split": 0.6}, "val_split", "val_split must be a fraction from 0 to 0.5, got 0.6"),
    ({"val_split": 0.5, "batch_size": 60000}, "batch_size",
     "batch_size must be at most 30000, the training images left after val_split 0.5, got 60000"),
    ({"seed": -1}, "seed", "seed must be an integer from 0 to"),
    ({"num_threads": 1000}, "num_threads", "num_threads must be an integer from 0 to 256, got 1000"),
    ({"augment": "maybe"}, "augment", "augment must be true or false, got 'maybe'"),
    ({"model": "resnet"}, "model", "model must be one of mlp, cnn, cnn-wide, got 'resnet'"),
    ({"model": 3}, "model", "model must be text, got 3"),
    ({"dataset": "cifar"}, "dataset", "dataset must be one of mnist, fashion-mnist, kmnist, got 'cifar'"),
    ({"optimizer": "rmsprop"}, "optimizer", "optimizer must be one of adam, adamw, sgd, got 'rmsprop'"),
    ({"scheduler": "step"}, "scheduler", "scheduler must be one of none, cosine, onecycle, got 'step'"),
    ({"device": "tpu"}, "device", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ({"device": "cuda:x"}, "device", "device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
])
def test_bad_values_name_the_field(values: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping(values)
    assert list(caught.value.errors) == [field]
    assert caught.value.errors[field].startswith(message)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_batch_size_zero_message_is_exact() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping({"batch_size": 0})
    assert str(caught.value) == "batch_size must be an integer from 1 to 60000, got 0"


def test_every_out_of_range_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping({"batch_size": 0, "epochs": "0", "model": "vgg"})
    assert set(caught.value.errors) == {"batch_size", "epochs", "model"}


def test_type_errors_do_not_hide_range_errors() -> None:
    # from_mapping promises to name "every unknown key and every invalid value", so a form can mark all
    # bad fields at once, not one round trip per kind of mistake.
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping({"batch_size": 0, "lr": "x", "model": "vgg", "colour": "red"})
    assert set(caught.value.errors) == {"batch_size", "lr", "model", "colour"}


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping({"batchsize": 64})
    assert caught.value.errors == {"batchsize": "unknown setting 'batchsize'"}


def test_validate_catches_direct_construction() -> None:
    with pytest.raises(ConfigError, match="epochs must be an integer from 1 to 1000, got 0"):
        TrainConfig(epochs=0).validate()


def test_valid_edge_values_pass() -> None:
    config = TrainConfig.from_mapping({"batch_size": 30000, "lr": 10, "val_split": 0.5, "momentum": 0,
                                       "num_threads": 0, "device": "cuda:1"})
    assert config.device == "cuda:1"
    assert TrainConfig.from_mapping({"batch_size": 60000}).batch_size == 60000


@pytest.mark.parametrize("suffix", [".toml", ".json", ".TOML"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    config = TrainConfig(model="cnn", batch_size=64, epochs=3, lr=3e-4, optimizer="adamw", weight_decay=1e-5,
                         scheduler="onecycle", val_split=0.1, augment=True, seed=42, device="cpu", num_threads=2)
    path = tmp_path / f"settings{suffix}"
    save_config(config, path)
    assert load_config(path) == config


def test_saving_refuses_other_suffixes_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"settings.yaml: a settings file ends in .toml or .json"):
        save_config(TrainConfig(), tmp_path / "settings.yaml")
    with pytest.raises(FileNotFoundError, match="no folder"):
        save_config(TrainConfig(), tmp_path / "typo" / "settings.toml")
    assert list(tmp_path.iterdir()) == []


def test_saved_json_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_config(TrainConfig(), path)
    assert json.loads(path.read_text(encoding="utf-8")) == TrainConfig().to_dict()


def test_a_partial_config_file_takes_its_models_defaults(tmp_path: Path) -> None:
    path = tmp_path / "partial.toml"
    path.write_text('model = "cnn"\nepochs = 2\n', encoding="utf-8")
    config = load_config(path)
    assert (config.model, config.epochs, config.lr, config.scheduler) == ("cnn", 2, 0.003, "onecycle")


def test_a_binary_config_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "weights.toml"
    path.write_bytes(b"\x80\x81\xfe\xff" * 10)
    with pytest.raises(ConfigError, match="is not text"):
        load_config(path)


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("bad.toml", "epochs = = 3\n", "is not valid TOML"),
    ("bad.json", "{epochs: 3", "is not valid JSON"),
    ("list.json", "[1, 2]", "must hold a table of settings"),
    ("values.toml", "epochs = 0\n", "epochs must be an integer from 1 to 1000, got 0"),
    ("unknown.toml", "colour = 'red'\n", "unknown setting 'colour'"),
])
def test_malformed_files_give_config_error(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_gives_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "cannot read config file" in str(caught.value)
