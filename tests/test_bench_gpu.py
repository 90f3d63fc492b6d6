"""bench/bench_gpu.py is run once on a GPU box with no chance to debug it there: its checks run here on the
CPU, on synthetic data, so a mistake in the script shows before the GPU time is spent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "bench_gpu.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_in_one_line_and_exits_0() -> None:
    completed = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                               env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().startswith("bench_gpu: no CUDA device here")
    assert len(completed.stdout.strip().splitlines()) == 1


def test_its_checks_run_and_fill_the_table(synthetic_root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench()
    monkeypatch.setattr(bench, "DEVICE", "cpu")
    monkeypatch.setattr(bench, "TARGETS", {"fast": (0.5, 600.0), "best": (0.5, 600.0)})
    rows: list[tuple[str, str, str]] = []
    figures: dict[str, object] = {}

    def row(check: str, result: str, detail: str = "") -> None:
        rows.append((check, result, detail))

    bench.precision_table(row, figures, synthetic_root, tmp_path)
    bench.preset_runs(row, figures, synthetic_root, tmp_path)
    bench.telemetry_sample(row, figures)
    checks = {check: (result, detail) for check, result, detail in rows}
    for model in ("mlp", "cnn"):
        for precision in ("fp32", "tf32", "bf16"):
            result, detail = checks[f"{model} {precision} epoch"]
            assert result.endswith(" s") and "img/s" in detail
    assert "meets" in checks["preset fast"][1] and "meets" in checks["preset best"][1]
    assert checks["GPU checkpoint on a CPU"][0] == "pass", checks["GPU checkpoint on a CPU"]
    assert "telemetry" in checks or any(check.startswith("telemetry GPU") for check in checks)
