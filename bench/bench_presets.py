"""Presets against each other in one run: training time and MNIST test accuracy, and time ratios to `cnn`.

    python bench/bench_presets.py [--data-dir DIR] [--device cpu] [PRESET ...]   (default: fast cnn fast)

Each preset trains through the engine as `mnist-tui train --preset NAME` would, one after another in one
process, so the ratios compare runs under the same load on a machine whose speed drifts. A preset named
twice is timed twice (fast before and after cnn, by default), and its ratio uses the mean of its runs.
Training time is the sum of the epochs' seconds (validation included, data loading not).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=["fast", "cnn", "fast"])
    parser.add_argument("--data-dir", help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from mnist_tui.config import PRESETS, TrainConfig
    from mnist_tui.data import resolve_data_dir
    from mnist_tui.engine import train
    from mnist_tui.events import EpochEnded, RunFailed, RunStarted

    data_root = resolve_data_dir(args.data_dir)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-presets-") as scratch:
        for number, name in enumerate(args.presets):
            config = TrainConfig.from_mapping({"device": args.device}, base=PRESETS[name].config())
            run_dir = Path(scratch) / f"{number}-{name}"
            run_dir.mkdir()
            epochs: list[EpochEnded] = []
            threads = 0
            for event in train(config, run_dir, data_root):
                if isinstance(event, RunStarted):
                    threads = event.threads
                elif isinstance(event, EpochEnded):
                    epochs.append(event)
                elif isinstance(event, RunFailed):
                    print(f"{name}: failed: {event.message}")
                    return 1
            seconds = sum(e.epoch_seconds for e in epochs)
            times.setdefault(name, []).append(seconds)
            accuracies = ", ".join(f"{e.val_accuracy:.2%}" for e in epochs)
            print(f"{name:>8}: {seconds:7.1f} s training over {len(epochs)} epoch(s), {threads} threads; "
                  f"test accuracy by epoch {accuracies}", flush=True)
    if "cnn" in times:
        baseline = statistics.mean(times["cnn"])
        for name, runs in times.items():
            if name != "cnn":
                print(f"{name:>8} / cnn: {statistics.mean(runs) / baseline:.0%} of the cnn preset's training time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
