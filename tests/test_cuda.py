"""What only a GPU can show: training on CUDA, the device it picks and names, and checkpoints that leave it.

Every test here is marked `cuda` and skipped without a GPU. This file imports no Textual, so it runs on a
headless GPU box (`bench/bench_gpu.py` runs it there first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT

from mnist_tui import engine
from mnist_tui.batches import resolve_device
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.config import TrainConfig
from mnist_tui.events import EpochEnded, Event, RunFinished, RunStarted

pytestmark = pytest.mark.cuda
MakeConfig = Callable[..., TrainConfig]


def run(config: TrainConfig, run_dir: Path, data_root: Path, **kwargs: object) -> list[Event]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return list(engine.train(config, run_dir, data_root, **kwargs))  # type: ignore[arg-type]


def test_auto_picks_a_gpu_and_names_it(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    assert resolve_device("auto").type == "cuda"
    events = run(make_config(device="auto", epochs=1), tmp_path / "run", synthetic_root)
    started = events[0]
    assert isinstance(started, RunStarted) and started.device.startswith("cuda:")
    assert started.device_index == int(started.device.split(":")[1])
    assert started.device_uuid.startswith(("GPU-", "MIG-"))
    epoch = next(e for e in events if isinstance(e, EpochEnded))
    assert epoch.gpu_memory_peak is not None and 0 < epoch.gpu_memory_peak <= (epoch.gpu_memory_reserved or 0)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_each_model_trains_in_each_precision(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig,
                                             model: str, precision: str) -> None:
    events = run(make_config(device="cuda", model=model, precision=precision), tmp_path / "run", synthetic_root)
    assert isinstance(events[-1], RunFinished), events[-1]
    assert [e for e in events if isinstance(e, EpochEnded)][-1].val_accuracy > 0.5


def test_fp32_is_ieee_on_the_gpu(synthetic_root: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    run(make_config(device="cuda", epochs=1, precision="fp32"), tmp_path / "run", synthetic_root)
    matmul = torch.backends.cuda.matmul
    assert getattr(matmul, "fp32_precision", "ieee") == "ieee" and not matmul.allow_tf32


def test_a_gpu_checkpoint_evaluates_and_resumes_without_cuda(synthetic_root: Path, tmp_path: Path,
                                                             make_config: MakeConfig) -> None:
    config = make_config(device="cuda", model="cnn", epochs=1, ema_decay=0.9)
    run(config, tmp_path / "run", synthetic_root)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint.raw["device"].startswith("cuda") and checkpoint.raw["cuda_rng_state"].device.type == "cpu"
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT)}
    evaluated = subprocess.run(
        [sys.executable, "-m", "mnist_tui", "eval", str(tmp_path / "run" / "last.pt"), "--device", "cpu",
         "--data-dir", str(synthetic_root), "--json"], capture_output=True, text=True, env=hidden, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(checkpoint.metrics["val_accuracy"], abs=0.02)
    script = ("import sys, dataclasses; from pathlib import Path; from mnist_tui import engine; "
              "from mnist_tui.checkpoints import load_checkpoint, resume_state; "
              "c = load_checkpoint(Path(sys.argv[1]) / 'last.pt'); "
              "config = dataclasses.replace(c.config, device='cpu', epochs=2); "
              "events = list(engine.train(config, Path(sys.argv[1]), Path(sys.argv[2]), resume=resume_state(c))); "
              "print(events[0].note); print(type(events[-1]).__name__)")
    resumed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run"), str(synthetic_root)],
                             capture_output=True, text=True, env=hidden, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    note, outcome = resumed.stdout.strip().splitlines()[-2:]
    assert "differ from an uninterrupted run" in note and outcome == "RunFinished"
