"""The dashboard's cost: training throughput with the dashboard attached vs headless, and time to first frame.

Throughput: the same config (the tutorial's MLP) trains with `mnist-tui train` alone and started from the
dashboard (driven by Textual's Pilot, drawing at 120x40), on the same data, alternating, in this one run;
the ratio of median epoch throughputs is printed, and each back-to-back pair's, since a shared 2-core
machine's speed drifts by tens of percent from minute to minute. First frame: `mnist-tui` starts in a real terminal
(tmux) and the time until its settings pane is on screen is measured, next to `import torch` as a yardstick.

    python bench/bench_dashboard.py [--data-dir DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_tui.data import resolve_data_dir
from mnist_tui.tui.app import MnistTuiApp


def epoch_throughputs(run_dir: Path) -> list[float]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [event["samples_per_second"] for event in map(json.loads, lines) if event["event"] == "epoch_end"]


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def headless(data_root: Path, runs: Path, epochs: int) -> list[float]:
    runs.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "mnist_tui", "train", "--epochs", str(epochs), "--json", "--no-download",
                    "--data-dir", str(data_root), "--runs-dir", str(runs)], check=True, stdout=subprocess.DEVNULL)
    return epoch_throughputs(next(runs.iterdir()))


async def attached(data_root: Path, runs: Path, epochs: int) -> list[float]:
    app = MnistTuiApp(data_dir=data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()  # the settings pane's device probe, as a person would wait
        app.screen.query_one("#input-epochs").value = str(epochs)  # type: ignore[attr-defined]
        await pilot.press("f5")
        while app.training_screen.state not in ("completed", "failed", "stopped"):
            await pilot.pause(0.2)
        if app.training_screen.state != "completed":
            raise SystemExit(f"the attached run ended {app.training_screen.state}")
    return epoch_throughputs(next(runs.iterdir()))


def first_frame_seconds(data_root: Path, runs: Path) -> float:
    name = "mnist-tui-bench"
    command = shlex.join([sys.executable, "-m", "mnist_tui", "--data-dir", str(data_root), "--runs-dir", str(runs)])
    started = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command], check=True)
    try:
        while time.perf_counter() - started < 30:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if "mnist-tui · settings" in screen and "Start" in screen:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise SystemExit("the dashboard did not draw within 30 s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def import_torch_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating headless/attached pairs")
    args = parser.parse_args()
    data_root = resolve_data_dir(args.data_dir).absolute()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        alone: list[float] = []
        with_ui: list[float] = []
        pair_ratios = []
        for repeat in range(args.repeats):
            alone_now = headless(data_root, base / f"headless-{repeat}", args.epochs)
            with_ui_now = asyncio.run(attached(data_root, base / f"attached-{repeat}", args.epochs))
            pair_ratios.append(median(with_ui_now) / median(alone_now))
            alone += alone_now
            with_ui += with_ui_now
        print(f"headless      : {median(alone):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in alone)})")
        print(f"dashboard     : {median(with_ui):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in with_ui)})")
        print(f"ratio         : {median(with_ui) / median(alone):10.2f} (attached / headless, medians of all epochs)")
        print(f"pair ratios   : {', '.join(f'{r:.2f}' for r in pair_ratios)} (each pair run back to back; "
              f"median {median(pair_ratios):.2f})")
        if shutil.which("tmux"):
            frame = first_frame_seconds(data_root, base / "frame")
            torch_import = import_torch_seconds()
            print(f"first frame   : {frame:10.2f} s in a real terminal (import torch alone: {torch_import:.2f} s)")
        else:
            print("first frame   : skipped (needs tmux)")


if __name__ == "__main__":
    main()
