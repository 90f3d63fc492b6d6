"""Redraw the README's screenshots from real runs, so the numbers in them are ones this machine measured.

Drives the dashboard with Textual's Pilot at 120x40 in a scratch folder: trains the tutorial's MLP for 20
epochs and the `cnn` for its 3, then saves the settings, training, evaluation, mistakes, runs and playground
screens as SVG into docs/. Takes a minute or two on a 2-core CPU.

    python docs/screenshots.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from mnist_tui.data import resolve_data_dir
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.evaluation import EvaluationScreen
from mnist_tui.tui.screens.playground import PlaygroundScreen
from mnist_tui.tui.screens.settings import SettingsScreen

DOCS = Path(__file__).resolve().parent
SIZE = (120, 40)


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {seconds:.0f} s waiting for {what}")
        await pilot.pause(0.2)


async def train_through_dashboard(app: MnistTuiApp, pilot: Pilot[None], model: str) -> None:
    await pilot.press("f2")
    settings = app.screen
    assert isinstance(settings, SettingsScreen)
    settings.query_one("#input-model", Select).value = model
    await pilot.pause()
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.training_screen.state in ("completed", "failed"), f"the {model} run")
    if app.training_screen.state == "failed":
        raise SystemExit(f"the {model} run failed; see its trainer.log under {app.runs_dir.absolute()}")
    await pilot.pause(2.5)  # the last chart replot


async def shoot(app: MnistTuiApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        settings = app.screen
        assert isinstance(settings, SettingsScreen)
        await wait_for(pilot, lambda: settings.torch_answered, "the device probe")
        app.save_screenshot("settings.svg", str(DOCS))

        await train_through_dashboard(app, pilot, "cnn")
        await train_through_dashboard(app, pilot, "mlp")
        app.save_screenshot("training.svg", str(DOCS))

        await pilot.press("e")
        evaluation = app.screen
        assert isinstance(evaluation, EvaluationScreen)
        await wait_for(pilot, lambda: evaluation.result is not None, "the evaluation")
        await pilot.pause(0.5)
        app.save_screenshot("evaluation.svg", str(DOCS))
        # Then what the convnet still gets wrong: its best checkpoint is the list's last row.
        evaluated = evaluation.result
        checkpoints = evaluation.query_one("#checkpoints", DataTable)
        checkpoints.focus()
        checkpoints.move_cursor(row=checkpoints.row_count - 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: evaluation.result not in (None, evaluated), "the second evaluation")
        evaluation.query_one("#eval-results", VerticalScroll).scroll_end(animate=False)
        await pilot.pause(0.5)
        app.save_screenshot("evaluation-mistakes.svg", str(DOCS))

        await pilot.press("f6")
        table = app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "the runs list")
        await pilot.press("space", "down", "space")
        await pilot.pause(2.5)
        app.save_screenshot("runs.svg", str(DOCS))

        await shoot_playground(app, pilot)


async def shoot_playground(app: MnistTuiApp, pilot: Pilot[None]) -> None:
    """The playground with the newest run's best.pt (the MLP) reading the first test digit, a 7, with the
    brush parked beside it."""
    await pilot.press("f7")
    playground = app.screen
    assert isinstance(playground, PlaygroundScreen)
    await wait_for(pilot, lambda: playground.loaded is not None, "the playground's checkpoint")
    await pilot.press("right_square_bracket")
    await wait_for(pilot, lambda: playground.test_index == 0 and playground.probabilities is not None,
                   "the first test digit")
    await pilot.press(*["right"] * 8, "up", "up")
    await pilot.pause(0.5)
    app.save_screenshot("playground.svg", str(DOCS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="dataset root (default: $MNIST_TUI_DATA, else ./datasets)")
    args = parser.parse_args()
    data_root = resolve_data_dir(args.data_dir).absolute()
    with tempfile.TemporaryDirectory() as scratch:
        # Relative folders, as a user who followed the tutorial has them, keep this machine's paths out.
        os.chdir(scratch)
        Path("datasets").symlink_to(data_root)
        app = MnistTuiApp(data_dir=Path("datasets"), runs_dir=Path("runs"), download=False)
        asyncio.run(shoot(app))
    print(f"saved 6 screenshots in {DOCS}")


if __name__ == "__main__":
    main()
