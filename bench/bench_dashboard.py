"""The dashboard's cost: training throughput with the dashboard attached vs headless, and time to first frame.

Throughput: the same config (the tutorial's MLP) trains once with `mnist-tui train` alone and once started
from the dashboard (driven by Textual's Pilot, drawing at 120x40), on the same data, in this one run; the
ratio of their median epoch throughputs is printed. First frame: `mnist-tui` starts in a real terminal
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
    subprocess.run([sys.executable, "-m", "mnist_tui", "train", "--epochs", str(epochs), "--json", "--no-download",
                    "--data-dir", str(data_root), "--runs-dir", str(runs)], check=True, stdout=subprocess.DEVNULL)
    return epoch_throughputs(next(runs.iterdir()))


async def attached(data_root: Path, runs: Path, epochs: int) -> list[float]:
    app = MnistTuiApp(data_dir=data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
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
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data_root = resolve_data_dir(args.data_dir).absolute()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        alone = headless(data_root, base / "headless", args.epochs)
        with_ui = asyncio.run(attached(data_root, base / "attached", args.epochs))
        print(f"headless      : {median(alone):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in alone)})")
        print(f"dashboard     : {median(with_ui):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in with_ui)})")
        print(f"ratio         : {median(with_ui) / median(alone):10.2f} (attached / headless)")
        if shutil.which("tmux"):
            frame = first_frame_seconds(data_root, base / "frame")
            torch_import = import_torch_seconds()
            print(f"first frame   : {frame:10.2f} s in a real terminal (import torch alone: {torch_import:.2f} s)")
        else:
            print("first frame   : skipped (needs tmux)")


if __name__ == "__main__":
    main()
