"""Every GPU check in one script, a few minutes on a GPU box; prints one table.

    PYTHONPATH=. python bench/bench_gpu.py [--data-dir DIR] [--import-from DIR_OF_IDX_GZ] [--out FILE]

Rows: the `cuda`-marked tests (tests/test_cuda.py, if pytest is installed); the mlp's and the cnn's
steady epoch time per precision; the `fast` and `best` presets' training time and accuracy against their
targets; a checkpoint saved on the GPU, then evaluated by a process that cannot see CUDA
(`eval --device cpu` with CUDA_VISIBLE_DEVICES=""); and one telemetry sample. It uses only the headless
core (no Textual), so a GPU box needs just torch, torchvision, nvidia-ml-py, psutil and rich.

On a machine without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # as the mnist-tui command numbers GPUs

DEVICE = "cuda"
"""Where the runs train; tests/test_bench_gpu.py runs the script's checks on the CPU to prove the script."""
TARGETS = {"fast": (0.990, 1.0), "best": (0.996, 30.0)}
"""Each preset's accuracy target and its training-time target in seconds on an H100-class GPU."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    parser.add_argument("--import-from", type=Path, help="a folder of MNIST's four IDX files (gzipped or not) to "
                        "`data import` into the data root first")
    parser.add_argument("--out", type=Path, help="also write the table and the raw figures (JSON) beside it")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA device here (torch {torch.__version__}); nothing to measure on a GPU.")
        return 0

    from mnist_tui.data import dataset_present, import_idx_folder, resolve_data_dir

    data_root = resolve_data_dir(str(args.data_dir) if args.data_dir else None)
    if args.import_from is not None and not dataset_present("mnist", data_root):
        import_idx_folder(args.import_from, "mnist", data_root, replace=False)
    if not dataset_present("mnist", data_root):
        print(f"bench_gpu: MNIST is not in {data_root}; give --data-dir, or --import-from a folder of its IDX files")
        return 2

    rows: list[tuple[str, str, str]] = []
    figures: dict[str, object] = {}

    def row(check: str, result: str, detail: str = "") -> None:
        rows.append((check, result, detail))
        print(f"  {check:<34} {result:<30} {detail}", flush=True)

    props = torch.cuda.get_device_properties(0)
    print(f"bench_gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}), {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = Path(scratch)
        cuda_tests(row, figures)
        precision_table(row, figures, data_root, work)
        preset_runs(row, figures, data_root, work)
        telemetry_sample(row, figures)
    table = "\n".join(f"| {c} | {r} | {d} |" for c, r, d in rows)
    print("\n| check | result | detail |\n|---|---|---|\n" + table)
    if args.out is not None:
        args.out.write_text("| check | result | detail |\n|---|---|---|\n" + table + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


Row = Callable[..., None]


def cuda_tests(row: Row, figures: dict[str, object]) -> None:
    """tests/test_cuda.py, the tests that only a GPU runs."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        row("cuda-marked tests", "not run", "pytest is not installed here")
        return
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                str(REPO_ROOT / "tests" / "test_cuda.py")], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=240)
    summary = (completed.stdout.strip().splitlines() or ["no output"])[-1]
    figures["cuda_tests"] = {"returncode": completed.returncode, "summary": summary, "output": completed.stdout[-4000:]}
    row("cuda-marked tests", "pass" if completed.returncode == 0 else "FAIL",
        f"{summary} ({time.perf_counter() - started:.0f} s)")


def train_run(config_values: dict[str, object], data_root: Path, run_dir: Path) -> list[object]:
    from mnist_tui.config import TrainConfig
    from mnist_tui.engine import train

    config = TrainConfig.from_mapping(config_values)
    run_dir.mkdir(parents=True, exist_ok=True)
    return list(train(config, run_dir, data_root))


def precision_table(row: Row, figures: dict[str, object], data_root: Path, work: Path) -> None:
    """Steady epoch time (the second epoch: the first pays for cuDNN's autotuning and the allocator's warm-up)."""
    from mnist_tui.events import EpochEnded, RunFailed

    for model in ("mlp", "cnn"):
        for precision in ("fp32", "tf32", "bf16"):
            events = train_run({"model": model, "epochs": 2, "precision": precision, "device": DEVICE},
                               data_root, work / f"{model}-{precision}")
            epochs = [e for e in events if isinstance(e, EpochEnded)]
            if len(epochs) < 2:
                failed = next((e.message for e in events if isinstance(e, RunFailed)), "no epochs")
                row(f"{model} {precision} epoch", "FAIL", failed)
                continue
            steady = epochs[1]
            figures[f"{model}_{precision}"] = dataclasses.asdict(steady)
            row(f"{model} {precision} epoch", f"{steady.epoch_seconds:.2f} s",
                f"{steady.samples_per_second:,.0f} img/s, val {steady.val_accuracy:.2%}, peak "
                f"{(steady.gpu_memory_peak or 0) / 2**20:.0f} MiB")


def preset_runs(row: Row, figures: dict[str, object], data_root: Path, work: Path) -> None:
    """`fast` and `best` as `train --preset` runs them, then the portable checkpoint of `fast`."""
    from mnist_tui.config import PRESETS
    from mnist_tui.events import EpochEnded, RunFailed

    for name, (target, seconds_target) in TARGETS.items():
        values = {**PRESETS[name].values, "device": DEVICE}
        started = time.perf_counter()
        events = train_run(values, data_root, work / name)
        wall = time.perf_counter() - started
        epochs = [e for e in events if isinstance(e, EpochEnded)]
        if not epochs:
            row(f"preset {name}", "FAIL", next((e.message for e in events if isinstance(e, RunFailed)), "no epochs"))
            continue
        training = sum(e.epoch_seconds for e in epochs)
        final = epochs[-1].val_accuracy
        reached = next((sum(x.epoch_seconds for x in epochs[:i + 1]) for i, e in enumerate(epochs)
                        if e.val_accuracy >= target), None)
        figures[f"preset_{name}"] = {"training_seconds": training, "wall_seconds": wall, "final": final,
                                     "per_epoch": [dataclasses.asdict(e) for e in epochs]}
        verdict = "meets" if final >= target and training <= seconds_target else "misses"
        row(f"preset {name}", f"{final:.2%} in {training:.1f} s",
            f"{verdict} {target:.1%} within {seconds_target:.0f} s; first at {target:.1%}: "
            f"{'-' if reached is None else f'{reached:.1f} s'}; {len(epochs)} epochs, {wall:.1f} s with loading")
    checkpoint = work / "fast" / "last.pt"
    if not checkpoint.is_file():
        row("GPU checkpoint on a CPU", "not run", "the fast preset saved no checkpoint")
        return
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-m", "mnist_tui", "eval", str(checkpoint), "--device", "cpu",
                                "--data-dir", str(data_root), "--json"], capture_output=True, text=True,
                               env=hidden, timeout=240)
    if completed.returncode != 0:
        row("GPU checkpoint on a CPU", "FAIL", (completed.stderr.strip().splitlines() or ["no output"])[-1])
        return
    cpu_accuracy = json.loads(completed.stdout)["accuracy"]
    gpu_accuracy = figures["preset_fast"]["final"]  # type: ignore[index]
    figures["checkpoint_on_cpu"] = {"cpu": cpu_accuracy, "gpu": gpu_accuracy}
    row("GPU checkpoint on a CPU", "pass" if abs(cpu_accuracy - gpu_accuracy) < 0.002 else "DIFFERS",
        f"eval --device cpu without CUDA: {cpu_accuracy:.2%} (on the GPU: {gpu_accuracy:.2%})")


def telemetry_sample(row: Row, figures: dict[str, object]) -> None:
    from mnist_tui.telemetry import sample, to_json

    snapshot = sample(os.getpid())
    figures["telemetry"] = to_json(snapshot)
    if snapshot.nvml_error:
        row("telemetry", "NVML unavailable", snapshot.nvml_error)
        return
    for gpu in snapshot.gpus:
        row(f"telemetry GPU {gpu.index}", f"{gpu.utilization}% util",
            f"{gpu.name}, {gpu.memory_used / 2**30:.1f}/{gpu.memory_total / 2**30:.0f} GiB, {gpu.temperature} C, "
            f"{gpu.power_draw} W of {gpu.power_limit} W, {len(gpu.processes)} processes")


if __name__ == "__main__":
    sys.exit(main())
