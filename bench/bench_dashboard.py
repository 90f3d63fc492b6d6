"""The dashboard's cost: training throughput with the dashboard attached vs headless, and time to first frame.

Throughput: the same config (the tutorial's MLP) trains with `mnist-tui train` alone and started from the
dashboard (driven by Textual's Pilot, drawing at 120x40), on the same data, alternating, in this one run;
the ratio of median epoch throughputs is printed, and each back-to-back pair's, since a shared 2-core
machine's speed drifts by tens of percent from minute to minute. Then one more run from the dashboard,
paused and resumed by key every two seconds, times how long a key takes to be handled while training.
First frame: `mnist-tui` starts in a real terminal (tmux) and the time until its settings pane is on
screen is measured, next to `import torch` as a yardstick.

    python bench/bench_dashboard.py [--data-dir DIR] [--epochs N] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
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


async def attached(data_root: Path, runs: Path, epochs: int, cpu_shares: list[float],
                   key_latencies: list[float] | None = None) -> list[float]:
    """Train from the dashboard, recording its CPU use. With `key_latencies`, also pause and resume the
    run every two seconds (`p`, `p`), timing how long each key takes to be handled."""
    app = MnistTuiApp(data_dir=data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()  # the settings pane's device probe, as a person would wait
        app.screen.query_one("#input-epochs").value = str(epochs)  # type: ignore[attr-defined]
        await pilot.press("f5")
        cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        next_press = time.perf_counter() + 2.0
        while app.training_screen.state not in ("completed", "failed", "stopped"):
            if (key_latencies is not None and app.training_screen.state in ("running", "paused")
                    and time.perf_counter() >= next_press):
                started = time.perf_counter()
                await pilot.press("p")
                key_latencies.append(time.perf_counter() - started)
                next_press = time.perf_counter() + (0.3 if app.training_screen.state == "running" else 2.0)
            await pilot.pause(0.1)
        cpu_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall_before
        cpu_shares.append((cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / wall)
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
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="alternating headless/attached pairs")
    args = parser.parse_args()
    data_root = resolve_data_dir(args.data_dir).absolute()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        alone: list[float] = []
        with_ui: list[float] = []
        pair_ratios = []
        key_latencies: list[float] = []
        cpu_shares: list[float] = []
        for repeat in range(args.repeats):
            alone_now = headless(data_root, base / f"headless-{repeat}", args.epochs)
            with_ui_now = asyncio.run(attached(data_root, base / f"attached-{repeat}", args.epochs, cpu_shares))
            pair_ratios.append(median(with_ui_now) / median(alone_now))
            alone += alone_now
            with_ui += with_ui_now
        print(f"headless      : {median(alone):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in alone)})")
        print(f"dashboard     : {median(with_ui):10,.0f} samples/s (epochs: {', '.join(f'{v:,.0f}' for v in with_ui)})")
        print(f"ratio         : {median(with_ui) / median(alone):10.2f} (attached / headless, medians of all epochs)")
        print(f"pair ratios   : {', '.join(f'{r:.2f}' for r in pair_ratios)} (each pair run back to back; "
              f"median {median(pair_ratios):.2f})")
        asyncio.run(attached(data_root, base / "keys", args.epochs, [], key_latencies))
        if key_latencies:
            print(f"key handling  : {1000 * median(key_latencies):10.0f} ms median, "
                  f"{1000 * max(key_latencies):.0f} ms worst, over {len(key_latencies)} presses while training")
        print(f"dashboard CPU : {100 * median(cpu_shares):10.0f}% of one core while following a run")
        if shutil.which("tmux"):
            frame = first_frame_seconds(data_root, base / "frame")
            torch_import = import_torch_seconds()
            print(f"first frame   : {frame:10.2f} s in a real terminal (import torch alone: {torch_import:.2f} s)")
        else:
            print("first frame   : skipped (needs tmux)")


if __name__ == "__main__":
    main()
