"""The playground (F7): drawing with the keyboard and the mouse, test digits, and bars that show the
checkpoint's probabilities for what is on the canvas."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import Trained, small_config
from textual.pilot import Pilot
from textual.widgets import Static

from mnist_tui.batches import load_split
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.evaluation import classify, predict
from mnist_tui.images import digit_from_grey
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.playground import PlaygroundScreen, bar, probability_bars
from mnist_tui.tui.widgets.canvas import SIDE, DrawingCanvas, blank, stamp, stroke

RUN_ID = "20260101-000000-mlp-aaaa"


@pytest.fixture
def runs(trained: Trained, tmp_path: Path) -> Path:
    """A runs folder whose one run has the trained checkpoint as its best.pt."""
    run = tmp_path / "runs" / RUN_ID
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(small_config().to_dict()), encoding="utf-8")
    shutil.copy(trained.best, run / "best.pt")
    return tmp_path / "runs"


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    pytest.fail("condition not met in time")


def expected_probabilities(checkpoint_path: Path, pixels: list[list[float]]) -> list[float]:
    """What the bars must show: the checkpoint's probabilities for the canvas, through predict's path."""
    checkpoint = load_checkpoint(checkpoint_path)
    digit = digit_from_grey(torch.tensor(pixels))
    return classify(checkpoint.build_model(), digit[None], checkpoint.mean, checkpoint.std)[0].tolist()


async def open_playground(pilot: Pilot[None]) -> PlaygroundScreen:
    await pilot.press("f7")
    screen = pilot.app.screen
    assert isinstance(screen, PlaygroundScreen)
    await wait_for(pilot, lambda: screen.loaded is not None)
    return screen


async def test_a_keyboard_stroke_is_drawn_soft_edged_and_the_bars_show_its_probabilities(
        trained: Trained, runs: Path) -> None:
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_playground(pilot)
        assert screen.loaded is not None and screen.loaded.path == runs / RUN_ID / "best.pt"  # the default
        canvas = screen.query_one(DrawingCanvas)
        assert app.focused is canvas
        assert "Draw a digit" in str(screen.query_one("#play-verdict", Static).render())

        await pilot.press("up", "up", "up", "up", "space", *["down"] * 10, "space", "right", "right")
        assert canvas.cursor == (20, 16) and not canvas.pen_down
        column = [canvas.pixels[row][14] for row in range(SIDE)]
        assert all(value == 1.0 for value in column[10:21])  # the stroke's core, start to end
        # Brush 3 has radius 1.4: a pixel 1 away from the stroke's line is 90% covered, 2 away untouched.
        assert column[9] == column[21] == pytest.approx(0.9) and column[8] == column[22] == 0.0
        assert canvas.pixels[15][13] == canvas.pixels[15][15] == pytest.approx(0.9)
        assert canvas.pixels[15][16] == 0.0
        assert canvas.pixels[20][16] == 0.0, "moving with the pen up draws nothing"

        await wait_for(pilot, lambda: screen.probabilities is not None)
        await app.workers.wait_for_complete()
        await pilot.pause()
        expected = expected_probabilities(trained.best, canvas.pixels)
        assert screen.probabilities == pytest.approx(expected, abs=1e-6)
        assert str(screen.query_one("#play-bars", Static).render()).splitlines()[0].endswith(f"{expected[0]:>5.0%}")

        # The eraser takes ink away; c clears, and the bars say there is nothing to read.
        await pilot.press("left", "left", "x", "space", "up", "up", "up", "space")
        assert canvas.pixels[17][14] == 0.0 and canvas.pixels[12][14] == 1.0
        await pilot.press("c")
        assert canvas.pixels == blank()
        await wait_for(pilot, lambda: screen.probabilities is None)
        assert "Draw a digit" in str(screen.query_one("#play-verdict", Static).render())


async def test_the_mouse_draws_while_its_button_is_held(trained: Trained, runs: Path) -> None:
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs, download=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_playground(pilot)
        canvas = screen.query_one(DrawingCanvas)
        await pilot.mouse_down(DrawingCanvas, offset=(10, 3))  # cell (10, 3): pixel column 5, rows 6 and 7
        await pilot.hover(DrawingCanvas, offset=(40, 3))
        await pilot.mouse_up(DrawingCanvas, offset=(40, 3))
        await pilot.hover(DrawingCanvas, offset=(40, 12))  # released: no more ink
        row = canvas.pixels[6]
        assert all(value > 0.9 for value in row[5:21]), row
        assert all(canvas.pixels[r][20] == 0.0 for r in range(10, SIDE))
        await wait_for(pilot, lambda: screen.probabilities is not None)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.probabilities == pytest.approx(expected_probabilities(trained.best, canvas.pixels), abs=1e-6)


async def test_test_digits_come_with_their_label_and_step_through_the_set(trained: Trained, runs: Path) -> None:
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs, download=False)
    split = load_split("mnist", False, trained.data_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_playground(pilot)
        canvas = screen.query_one(DrawingCanvas)
        status = screen.query_one("#play-status", Static)
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.test_index is not None)
        index = screen.test_index
        assert index is not None
        assert canvas.pixels == (split.images[index].float() / 255).tolist()
        assert f"test #{index} true {int(split.labels[index])}" in str(status.render())
        await wait_for(pilot, lambda: screen.probabilities is not None)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.probabilities == pytest.approx(expected_probabilities(trained.best, canvas.pixels), abs=1e-6)

        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.test_index == (index + 1) % len(split))
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: screen.test_index == (index - 1) % len(split))
        await pilot.press("space")  # an edit is marked as one
        await wait_for(pilot, lambda: "(edited)" in str(status.render()))

        checkpoint = load_checkpoint(trained.best)
        logits = predict(checkpoint.build_model(), split, checkpoint.mean, checkpoint.std)
        wrong = (logits.argmax(dim=1) != split.labels).nonzero().flatten().tolist()
        await pilot.press("m")
        if wrong:
            await wait_for(pilot, lambda: screen.test_index in wrong)
        else:
            await wait_for(pilot, lambda: any("every test digit right" in n.message for n in app._notifications))


def test_strokes_are_continuous_and_anti_aliased() -> None:
    pixels = blank()
    stroke(pixels, (5.0, 2.0), (5.0, 25.0), radius=1.0)
    assert all(pixels[5][col] == 1.0 for col in range(2, 26))
    assert {round(pixels[4][col], 2) for col in range(3, 25)} == {0.5}  # the edge, half covered
    stamp(pixels, 5.0, 10.0, radius=1.9, erase=True)
    assert pixels[5][10] == 0.0 and pixels[5][6] == 1.0


def test_bars_fill_in_eighths() -> None:
    assert bar(0.5, 4) == "██  " and bar(1 / 32, 4) == "▏   " and bar(0.0, 3) == "   "
    lines = probability_bars([0.05] * 9 + [0.55], tuple(map(str, range(10))), 20).plain.splitlines()
    assert len(lines) == 10 and lines[9].startswith("9 ") and lines[9].endswith(" 55%")
