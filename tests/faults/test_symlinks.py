"""Symlink loops and broken links where a checkpoint should be: named for what they are, by the CLI and by
the evaluation screen, which must not die of one (Path.resolve raises on a loop)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import Trained
from damage import finished_run, symlink_loop
from textual.content import Content
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from mnist_tui.__main__ import main
from mnist_tui.checkpoints import CheckpointError, load_checkpoint
from mnist_tui.tui.app import MnistTuiApp

SIZE = (120, 30)


def test_load_checkpoint_names_a_loop_and_a_broken_link(tmp_path: Path) -> None:
    loop, broken = tmp_path / "last.pt", tmp_path / "best.pt"
    symlink_loop(loop)
    broken.symlink_to("gone.pt")
    with pytest.raises(CheckpointError, match=re.escape("last.pt: a symlink loop")):
        load_checkpoint(loop)
    with pytest.raises(CheckpointError, match=re.escape("best.pt: a broken symlink (to gone.pt)")):
        load_checkpoint(broken)
    with pytest.raises(CheckpointError, match=re.escape("nothing.pt: no such file")):
        load_checkpoint(tmp_path / "nothing.pt")


def test_the_cli_names_a_loop_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          restore_signals: None) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    symlink_loop(run.path / "last.pt")
    assert main(["eval", str(run.path / "last.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.pt: a symlink loop" in err
    assert main(["train", "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot resume {run.run_id}: " in err and "a symlink loop" in err, err


async def test_the_evaluation_screen_lists_refuses_and_goes_on(trained: Trained, tmp_path: Path) -> None:
    run = finished_run(tmp_path / "runs")
    shutil.copy(trained.best, run.path / "best.pt")
    symlink_loop(run.path / "last.pt")
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.screen.query_one("#checkpoints", DataTable)
        for _ in range(200):
            if table.row_count == 2 and str(table.get_cell_at(Coordinate(0, 1))) in ("best.pt", "last.pt"):
                break
            await pilot.pause(0.05)
        screen = app.evaluation_screen
        screen.evaluate(run.path / "best.pt")
        summary = screen.query_one("#eval-summary", Static)
        for _ in range(600):
            if "accuracy" in str(summary.render()):
                break
            await pilot.pause(0.05)
        assert "accuracy" in str(summary.render())
        screen.action_refresh()  # puts the cursor back on the evaluated file: every listed path is looked up
        await pilot.pause(0.5)
        screen.evaluate(run.path / "last.pt")
        await pilot.pause(0.2)
        toasts = [Content.from_markup(n.message).plain for n in app._notifications]
        assert any("last.pt: a symlink loop" in toast for toast in toasts), toasts
        assert app.is_running and "accuracy" in str(summary.render())
    assert app.return_code in (None, 0)
