"""The dashboard's cost: training throughput with it attached vs alone, key handling, time to first frame.

Throughput: one run (the tutorial's MLP) is started from the dashboard (driven by Textual's Pilot, drawing
at 120x40). Every `--phase` epochs the dashboard alternates between following the run and being frozen:
its event loop blocked, so it uses no CPU at all and the trainer, the same process `mnist-tui train`
runs, trains as if alone. Comparing neighbouring epochs of one trainer process cancels most of this
shared machine's drift, which is tens of percent from minute to minute and more than the effect measured.
The ratio is the median over attached phases of each one's throughput against the frozen phases either
side of it. Unfrozen, the dashboard first catches up on the events it missed and redraws, work that
counts against the attached phase, so the ratio errs low, the more so the shorter the phases (one-epoch
phases read 0.87-0.90 where four-epoch phases read 0.93-1.01).

Keys: one more run, paused and resumed with `p` every few tenths of a second, times how long each key
takes to be handled while training. First frame: `mnist-tui` starts in a real terminal (tmux) and the
time until its settings pane is on screen is measured, next to `import torch` as a yardstick.

    python bench/bench_dashboard.py [--data-dir DIR] [--epochs N] [--phase N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import BinaryIO

from textual.pilot import Pilot
from textual.widgets import Input

from mnist_tui.data import resolve_data_dir
from mnist_tui.events import EpochEnded, RunFailed, parse_line
from mnist_tui.tui.app import MnistTuiApp

POLL = 0.005
"""Seconds between looks at the event log."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class EventLogTail:
    """A run's event log, read incrementally so that looking costs microseconds."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.partial = b""
        self.epoch_ends: list[EpochEnded] = []
        self.failure: str | None = None

    def wait_for_epochs(self, count: int) -> None:
        """Block until `count` epochs have ended, or the run failed."""
        while True:
            *lines, self.partial = (self.partial + self.file.read()).split(b"\n")
            for line in lines:
                if b'"epoch_end"' in line or b'"run_failed"' in line:  # progress lines, the most, left unread
                    event = parse_line(line)
                    if isinstance(event, EpochEnded):
                        self.epoch_ends.append(event)
                    elif isinstance(event, RunFailed):
                        self.failure = event.message
            if len(self.epoch_ends) >= count or self.failure is not None:
                return
            time.sleep(POLL)


@dataclass
class Alternation:
    """Per-epoch throughput and whether the dashboard was attached during that epoch."""

    samples_per_second: list[float] = field(default_factory=list)
    attached: list[bool] = field(default_factory=list)
    cpu: dict[bool, float] = field(default_factory=lambda: {True: 0.0, False: 0.0})
    """This process's CPU seconds while attached and while frozen."""
    wall: dict[bool, float] = field(default_factory=lambda: {True: 0.0, False: 0.0})


async def start_run(app: MnistTuiApp, pilot: Pilot[None], epochs: int) -> None:
    await app.workers.wait_for_complete()  # the settings pane's device probe, as a person would wait
    app.screen.query_one("#input-epochs", Input).value = str(epochs)
    await pilot.press("f5")


async def alternate(data_root: Path, runs: Path, epochs: int, phase: int) -> Alternation:
    """Train from the dashboard, attaching and freezing it every `phase` epochs (frozen first).

    Either way the same function watches the event log for the epoch's end: attached, it runs in a worker
    thread and the dashboard's event loop is free; frozen, it runs on the event loop and blocks it.
    """
    result = Alternation()
    app = MnistTuiApp(data_dir=data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(app, pilot, epochs)
        while not list(runs.glob("*/events.jsonl")):
            await asyncio.sleep(POLL)
        with next(runs.glob("*/events.jsonl")).open("rb") as file:
            log = EventLogTail(file)
            for epoch in range(epochs):
                attached = (epoch // phase) % 2 == 1
                cpu_before, wall_before = cpu_seconds(), time.perf_counter()
                if attached:
                    await asyncio.to_thread(log.wait_for_epochs, epoch + 1)
                else:
                    log.wait_for_epochs(epoch + 1)  # blocks the event loop: the dashboard does nothing at all
                if log.failure is not None:
                    raise SystemExit(f"the run failed: {log.failure}")
                result.attached.append(attached)
                result.cpu[attached] += cpu_seconds() - cpu_before
                result.wall[attached] += time.perf_counter() - wall_before
        result.samples_per_second = [event.samples_per_second for event in log.epoch_ends]
        await finish(app, pilot)
    return result


async def finish(app: MnistTuiApp, pilot: Pilot[None]) -> None:
    """Wait for the dashboard's run to end; one that did not complete makes its numbers meaningless."""
    while app.training_screen.state not in ("completed", "failed", "stopped"):
        await pilot.pause(0.1)
    if app.training_screen.state != "completed":
        raise SystemExit(f"the dashboard's run ended {app.training_screen.state}, not completed")


def phase_ratios(result: Alternation, phase: int) -> list[float]:
    """Each attached phase's mean throughput over that of the frozen phases before and after it; the
    first pair of phases (the trainer and the dashboard warming up) is left out."""
    phases = [result.samples_per_second[i:i + phase] for i in range(0, len(result.samples_per_second), phase)]
    ratios = []
    for index in range(3, len(phases) - 1, 2):
        around = phases[index - 1] + phases[index + 1]
        ratios.append((sum(phases[index]) / len(phases[index])) / (sum(around) / len(around)))
    return ratios


async def key_latencies(data_root: Path, runs: Path, epochs: int) -> list[tuple[float, float]]:
    """Train from the dashboard, pausing and resuming it by turns with `p`: for each key pressed while it
    trains, the seconds until its action runs and until the dashboard has redrawn after it (drawn
    headless: Pilot's app writes to no terminal). Keys come from a thread at random intervals, as a
    terminal's input thread sends them, so they land at any moment of the dashboard's work, redraws
    included."""
    app = MnistTuiApp(data_dir=data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run(app, pilot, epochs)
        screen = app.training_screen
        toggle_pause = screen.action_toggle_pause
        sent_at: list[float] = []
        handled_at: list[tuple[float, bool]] = []
        """When each key's action ran, and whether the run was still training then."""
        shown_at: list[float] = []

        def timed_toggle_pause(shown_as: str = "") -> None:
            handled_at.append((time.perf_counter(), screen.active))
            toggle_pause(shown_as)
            screen.call_after_refresh(lambda: shown_at.append(time.perf_counter()))

        def press_keys() -> None:
            while not done.wait(random.uniform(0.2, 0.6)):
                if screen.active:
                    sent_at.append(time.perf_counter())
                    app.simulate_key("p")

        screen.action_toggle_pause = timed_toggle_pause  # type: ignore[method-assign]
        done = threading.Event()
        presser = threading.Thread(target=press_keys)
        presser.start()
        try:
            await finish(app, pilot)
        finally:
            done.set()
            presser.join()
        await pilot.pause(0.2)  # the last key, if one was on its way
    if not 0 <= len(sent_at) - len(handled_at) <= 1 or len(shown_at) != len(handled_at):
        raise SystemExit("a key press went missing, so presses and actions cannot be paired")
    return [(handled - sent, shown - sent)
            for sent, (handled, training), shown in zip(sent_at, handled_at, shown_at, strict=False) if training]


def first_frame_seconds(data_root: Path, runs: Path) -> float:
    name = "mnist-tui-bench"
    command = shlex.join([sys.executable, "-m", "mnist_tui", "--data-dir", str(data_root), "--runs-dir", str(runs)])
    started = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command], check=True)
    try:
        while time.perf_counter() - started < 30:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if "F2 Settings" in screen and "Start training" in screen:  # the settings pane, drawn
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
    parser.add_argument("--epochs", type=int, default=80, help="epochs of the alternating run")
    parser.add_argument("--phase", type=int, default=4, help="epochs per attached or frozen phase")
    args = parser.parse_args()
    if args.epochs < 5 * args.phase:
        parser.error("--epochs must be at least 5 times --phase: each attached phase is compared with frozen "
                     "ones on both sides, after a first pair left out for warming up")
    data_root = resolve_data_dir(args.data_dir).absolute()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        result = asyncio.run(alternate(data_root, base / "alternating", args.epochs, args.phase))
        skip = 2 * args.phase
        attached = [v for v, a in zip(result.samples_per_second[skip:], result.attached[skip:], strict=True) if a]
        alone = [v for v, a in zip(result.samples_per_second[skip:], result.attached[skip:], strict=True) if not a]
        ratios = phase_ratios(result, args.phase)
        print(f"alone         : {median(alone):10,.0f} samples/s (median of {len(alone)} epochs, dashboard frozen)")
        print(f"attached      : {median(attached):10,.0f} samples/s (median of {len(attached)} epochs)")
        print(f"ratio         : {median(ratios):10.2f} attached / alone (median of {len(ratios)} phases: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}); medians of all epochs: "
              f"{median(attached) / median(alone):.2f}")
        share = result.cpu[True] / result.wall[True] - result.cpu[False] / result.wall[False]
        print(f"dashboard CPU : {100 * share:10.0f}% of one core while following the run")
        latencies = asyncio.run(key_latencies(data_root, base / "keys", 20))
        if latencies:
            handled, shown = [h for h, _ in latencies], [s for _, s in latencies]
            print(f"key handling  : {1000 * median(handled):10.1f} ms median to the action, "
                  f"{1000 * median(shown):.1f} ms to the redraw after it; worst {1000 * max(handled):.1f} and "
                  f"{1000 * max(shown):.1f} ms, over {len(latencies)} presses while training")
        if shutil.which("tmux"):
            frame = first_frame_seconds(data_root, base / "frame")
            torch_import = import_torch_seconds()
            print(f"first frame   : {frame:10.2f} s in a real terminal (import torch alone: {torch_import:.2f} s)")
        else:
            print("first frame   : skipped (needs tmux)")


if __name__ == "__main__":
    main()
