"""Snapshots of each screen at 80x24 and 120x40, with fixed data so they only change when the UI does.

Update them after an intended change with `python -m pytest tests/tui --snapshot-update`, and look at
the report before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fake_events import run_events
from textual.pilot import Pilot
from textual.widgets import Input

from mnist_tui.evaluation import ClassScore, EvaluationResult, Mistake
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.settings import SettingsScreen

SIZES = [(80, 24), (120, 40)]
SnapCompare = Callable[..., bool]
"""pytest-textual-snapshot's `snap_compare` fixture."""
# Relative paths keep machine-specific folders out of the pictures; neither exists.
DATA_DIR = Path("snapshot-data")
RUNS_DIR = Path("snapshot-runs")


@pytest.fixture(autouse=True)
def fixed_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings pane names the machine's device and lists its GPUs; pin them so the picture is the same
    everywhere."""
    import mnist_tui.batches
    import mnist_tui.telemetry

    monkeypatch.setattr(mnist_tui.batches, "resolve_device", lambda requested: torch.device("cpu"))
    monkeypatch.setattr(mnist_tui.batches, "describe_device", lambda device: "CPU (2 threads)")
    monkeypatch.setattr(mnist_tui.telemetry, "read_gpus", lambda: ([], "NVML unavailable: pinned for snapshots."))


def make_app() -> MnistTuiApp:
    return MnistTuiApp(data_dir=DATA_DIR, runs_dir=RUNS_DIR, download=False, refresh_seconds=0.05)


async def device_probed(pilot: Pilot[None]) -> None:
    """Until the settings pane's device line is torch's (pinned above), not its first guess."""
    screen = pilot.app.screen
    assert isinstance(screen, SettingsScreen)
    while not screen.torch_answered:
        await pilot.pause(0.05)
    await pilot.app.workers.wait_for_complete()


def fake_result() -> EvaluationResult:
    """A hand-made evaluation of 1,000 images with a few mistakes drawn as simple strokes."""
    confusion = [[96 if i == j else (2 if (i + j) % 7 == 0 and i != j else 0) for j in range(10)] for i in range(10)]
    per_class = [ClassScore(str(c), 0.95 + c / 500, 0.96 - c / 400, 0.955, 100) for c in range(10)]
    mistakes = [Mistake(100 + k, k % 10, (k + 3) % 10, 0.99 - k / 50) for k in range(9)]
    images = torch.zeros(len(mistakes), 28, 28, dtype=torch.uint8)
    for k in range(len(mistakes)):
        images[k, 4:24, 12 + k % 4:15 + k % 4] = 255
        images[k, 4:7, 8:20] = 200
    return EvaluationResult("snapshot-runs/demo/best.pt", "mnist", "test", 1000, 0.1234, 0.961, confusion,
                            per_class, mistakes, images, 0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_settings_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def settle(pilot: Pilot[None]) -> None:
        await device_probed(pilot)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_settings_screen_with_an_invalid_value(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def invalid(pilot: Pilot[None]) -> None:
        await device_probed(pilot)
        lr = pilot.app.screen.query_one("#input-lr", Input)
        lr.cursor_blink = False  # a blinking cursor is drawn or not by the time the picture is taken
        lr.focus()
        lr.value = "-1"
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=invalid)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_training_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def feed(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, MnistTuiApp)
        await app.workers.wait_for_complete()
        await pilot.press("f3")
        app.training_screen.receive(*run_events(steps=40))
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=size, run_before=feed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_evaluation_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def show(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, MnistTuiApp)
        await pilot.press("f4")
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.evaluation_screen._show_result(fake_result())
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=size, run_before=show)
