"""The GPU box's code paths, checked on a CPU: presets, precision, weight averaging, checkpoints that travel,
and resuming on another kind of device. The parts only a GPU can run are in test_cuda.py."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO_ROOT

from mnist_tui import engine
from mnist_tui.__main__ import build_parser, config_from_args
from mnist_tui.batches import autocast_for
from mnist_tui.checkpoints import _on_cpu, load_checkpoint, resume_state
from mnist_tui.config import PRECISIONS, PRESETS, ConfigError, TrainConfig
from mnist_tui.events import EpochEnded, Event, RunFinished, RunStarted
from mnist_tui.telemetry import pick_freest

MakeConfig = Callable[..., TrainConfig]


def run(config: TrainConfig, run_dir: Path, data_root: Path, **kwargs: Any) -> list[Event]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return list(engine.train(config, run_dir, data_root, **kwargs))


# Presets --------------------------------------------------------------------------------------------


def test_every_preset_is_a_valid_config() -> None:
    for preset in PRESETS.values():
        config = preset.config()
        assert config.model in ("mlp", "cnn", "cnn-wide")
        assert preset.summary


def test_tutorial_and_cnn_presets_are_the_models_defaults() -> None:
    assert PRESETS["tutorial"].config() == TrainConfig.defaults_for("mlp") == TrainConfig()
    assert PRESETS["cnn"].config() == TrainConfig.defaults_for("cnn")


def test_fast_and_best_presets_are_what_readme_says() -> None:
    fast, best = PRESETS["fast"].config(), PRESETS["best"].config()
    assert fast.epochs < TrainConfig.defaults_for("cnn").epochs
    assert best.augment and best.ema_decay > 0 and best.label_smoothing > 0 and best.scheduler == "onecycle"


def test_readme_lists_every_preset() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Presets", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `([\w-]+)` \|", section, flags=re.MULTILINE)
    assert listed == list(PRESETS)


def test_train_preset_flag_with_overrides() -> None:
    args = build_parser().parse_args(["train", "--preset", "best", "--epochs", "2"])
    config = config_from_args(args)
    assert config == dataclasses.replace(PRESETS["best"].config(), epochs=2)


def test_train_refuses_an_unknown_preset() -> None:
    from mnist_tui.__main__ import main

    assert main(["train", "--preset", "fastest"]) == 2


# Precision and the other new settings ---------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_is_accepted(precision: str) -> None:
    assert TrainConfig.from_mapping({"precision": precision.upper()}).precision == precision


def test_unknown_precision_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="precision must be one of fp32, tf32, bf16, got 'fp16'"):
        TrainConfig.from_mapping({"precision": "fp16"})


@pytest.mark.parametrize(("name", "value"), [("label_smoothing", 0.6), ("ema_decay", 1.0), ("ema_decay", -0.1)])
def test_new_settings_are_range_checked(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        TrainConfig.from_mapping({name: value})


def test_bf16_autocasts_the_forward_pass_and_fp32_does_not() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast_for("bf16", torch.device("cpu")):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast_for("fp32", torch.device("cpu")):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


def test_bf16_run_trains_and_validates_in_float32(synthetic_root: Path, tmp_path: Path,
                                                  make_config: MakeConfig) -> None:
    events = run(make_config(precision="bf16"), tmp_path / "run", synthetic_root)
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert isinstance(events[-1], RunFinished) and len(epochs) == 2
    assert epochs[-1].val_accuracy > 0.5
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(t.dtype == torch.float32 for t in checkpoint.model_state.values() if t.is_floating_point())


def test_label_smoothing_changes_the_loss(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    plain = run(make_config(epochs=1), tmp_path / "a", synthetic_root)
    smoothed = run(make_config(epochs=1, label_smoothing=0.2), tmp_path / "b", synthetic_root)
    first = next(e for e in plain if isinstance(e, EpochEnded))
    second = next(e for e in smoothed if isinstance(e, EpochEnded))
    assert second.train_loss > first.train_loss  # a smoothed target can never be met exactly


def test_a_cpu_run_reports_no_gpu_memory_and_no_gpu(synthetic_root: Path, tmp_path: Path,
                                                    make_config: MakeConfig) -> None:
    events = run(make_config(epochs=1), tmp_path / "run", synthetic_root)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.device, started.device_index, started.device_uuid, started.note) == ("cpu", -1, "", "")
    epoch = next(e for e in events if isinstance(e, EpochEnded))
    assert (epoch.gpu_memory_peak, epoch.gpu_memory_reserved) == (None, None)


# Weight averaging ------------------------------------------------------------------------------------


def test_weight_average_follows_the_weights_with_a_warm_up() -> None:
    model = torch.nn.Linear(2, 1)
    average = engine.WeightAverage(model, decay=0.99)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)  # the first update's decay is (1 + 1) / (10 + 1), not 0.99
    averaged = average.model.state_dict()["weight"]
    assert torch.allclose(averaged, before * 2 / 11 + 9 / 11)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_run_saves_the_averaged_weights_and_the_trained_ones(synthetic_root: Path, tmp_path: Path,
                                                                 make_config: MakeConfig) -> None:
    events = run(make_config(ema_decay=0.9), tmp_path / "run", synthetic_root)
    assert isinstance(events[-1], RunFinished)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    trained = checkpoint.raw["training_model_state"]
    assert trained.keys() == checkpoint.model_state.keys()
    assert any(not torch.equal(trained[k], checkpoint.model_state[k]) for k in trained)
    assert checkpoint.raw["averaged_steps"] == 2 * (512 // 32)


def test_ema_run_resumed_mid_epoch_matches_the_uninterrupted_run(synthetic_root: Path, tmp_path: Path,
                                                                  make_config: MakeConfig,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_tui.control import RunControl

    monkeypatch.setattr(engine, "REPORT_INTERVAL", 0.0)
    config = make_config(ema_decay=0.9, model="cnn", epochs=2, batch_size=64)
    whole = run(config, tmp_path / "whole", synthetic_root)

    class StopAt(RunControl):
        def __init__(self) -> None:
            super().__init__()
            self.polls = 0

        def poll(self) -> None:
            self.polls += 1
            if self.polls == 11:  # three steps into the second epoch
                self.stop()

    run(config, tmp_path / "split", synthetic_root, control=StopAt())
    resumed = run(config, tmp_path / "split", synthetic_root,
                  resume=resume_state(load_checkpoint(tmp_path / "split" / "last.pt")))

    def figures(events: list[Event]) -> list[tuple[float, float, float]]:
        return [(e.train_loss, e.val_loss, e.val_accuracy) for e in events if isinstance(e, EpochEnded)]

    assert figures(resumed) == figures(whole)[1:]


# Checkpoints that travel ------------------------------------------------------------------------------


class RecordingTensor:
    """Stands in for a tensor on a GPU: `.detach().cpu()` is all the checkpoint code may call."""

    moved: list[RecordingTensor] = []

    def detach(self) -> RecordingTensor:
        return self

    def cpu(self) -> str:
        RecordingTensor.moved.append(self)
        return "on cpu"


def test_every_tensor_in_nested_state_is_moved_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "Tensor", RecordingTensor)
    state = {"state": {0: {"step": RecordingTensor(), "exp_avg": RecordingTensor()}},
             "param_groups": [{"params": [0], "lr": 0.1, "betas": (0.9, 0.999)}], "list": [RecordingTensor()]}
    moved = _on_cpu(state)
    assert moved["state"][0] == {"step": "on cpu", "exp_avg": "on cpu"}
    assert moved["list"] == ["on cpu"]
    assert moved["param_groups"] == state["param_groups"]


def test_a_checkpoint_holds_only_cpu_tensors_and_its_device(trained: Any) -> None:
    raw = torch.load(trained.last, map_location=None, weights_only=True)

    def tensors(value: object) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            return [t for item in value.values() for t in tensors(item)]
        if isinstance(value, list | tuple):
            return [t for item in value for t in tensors(item)]
        return []

    found = tensors(raw)
    assert found and all(t.device.type == "cpu" for t in found)
    assert raw["device"] == "cpu" and raw["cuda_rng_state"] is None


def test_resuming_a_gpu_checkpoint_on_a_cpu_says_its_metrics_differ(synthetic_root: Path, tmp_path: Path,
                                                                    make_config: MakeConfig) -> None:
    config = make_config(epochs=1)
    run(config, tmp_path / "run", synthetic_root)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    # As a GPU box writes it: its device, and that GPU's generator state (a CPU state stands in for it).
    checkpoint.raw.update(device="cuda:1", cuda_rng_state=torch.get_rng_state())
    events = run(dataclasses.replace(config, epochs=2), tmp_path / "run", synthetic_root,
                 resume=resume_state(checkpoint))
    started = events[0]
    assert isinstance(started, RunStarted)
    assert "saved on cuda:1" in started.note and "differ from an uninterrupted run" in started.note
    assert isinstance(events[-1], RunFinished) and events[-1].epochs_done == 2


# Device choice ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("free", "chosen"), [([5, 9, 3], 1), ([7, 7, 2], 0), ([1, 4, 4], 1), ([], 0), ([3], 0)])
def test_the_freest_gpu_is_chosen_lowest_index_on_a_tie(free: list[int], chosen: int) -> None:
    assert pick_freest(free) == chosen


def fake_gpu(index: int, free_gib: int, uuid: str) -> Any:
    from mnist_tui.telemetry import GpuSample

    return GpuSample(index, "NVIDIA H100 80GB HBM3", uuid, 3.0, (80 - free_gib) * 2**30, 80 * 2**30, 40, 90.0,
                     700.0)


@pytest.mark.parametrize(("visible", "chosen"), [(None, 2), ("0,1", 1), ("2,0", 0), ("GPU-bbb,GPU-aaa", 0)])
def test_auto_takes_the_visible_gpu_with_the_most_free_memory(monkeypatch: pytest.MonkeyPatch,
                                                              visible: str | None, chosen: int) -> None:
    from mnist_tui import batches, telemetry

    gpus = [fake_gpu(0, 10, "GPU-aaa"), fake_gpu(1, 50, "GPU-bbb"), fake_gpu(2, 70, "GPU-ccc")]
    monkeypatch.setattr(telemetry, "read_gpus", lambda: (gpus, None))
    count = 3 if visible is None else len(visible.split(","))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert batches.resolve_device("auto") == torch.device("cuda", chosen)
    assert batches.resolve_device("cuda") == torch.device("cuda", chosen)
    assert batches.resolve_device("cuda:0") == torch.device("cuda:0")  # as given


def test_without_nvml_auto_takes_the_first_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_tui import batches, telemetry

    monkeypatch.setattr(telemetry, "read_gpus", lambda: ([], "NVML unavailable: no NVIDIA driver found"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert batches.resolve_device("auto") == torch.device("cuda", 0)


def test_out_of_memory_message_says_what_other_processes_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mnist_tui import batches, telemetry
    from mnist_tui.telemetry import GpuProcess

    gpu = dataclasses.replace(fake_gpu(0, 10, "GPU-aaa"), processes=(
        GpuProcess(os.getpid(), "python", 2**30), GpuProcess(4242, "other", 60 * 2**30),
        GpuProcess(4343, "other", 8 * 2**30)))
    monkeypatch.setattr(telemetry, "read_gpus", lambda: ([gpu], None))
    monkeypatch.setattr(batches, "identify_device", lambda device: batches.DeviceIdentity("H100", 0, "GPU-aaa"))
    assert batches.memory_held_by_others(torch.device("cuda", 0)) == (
        "; other processes hold 68.0 GiB of its 80 GiB (2 processes)")
    assert batches.memory_held_by_others(torch.device("cpu")) == ""


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_flags_stay_readable_for_torch_export(precision: str) -> None:
    from mnist_tui.batches import apply_precision

    apply_precision(precision)
    assert torch.backends.cuda.matmul.allow_tf32 == torch.backends.cudnn.allow_tf32 == (precision == "tf32")
    apply_precision("fp32")
