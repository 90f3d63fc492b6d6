"""Markup in every drawn path and message: paths, run ids, statuses and errors come from outside, and are
shown as they are, by the dashboard and by the headless reporter, never read as Rich or Textual markup."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Trained, dead_pid, small_config, write_synthetic_dataset
from damage import finished_run
from rich.console import Console
from rich.text import Text
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static

from mnist_tui.__main__ import main
from mnist_tui.events import RunFailed, RunFinished, RunStarted
from mnist_tui.reporting import ConsoleReporter, print_runs
from mnist_tui.runs import list_runs
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.markup import escape

HOSTILE = ("x[/zz]y", "data[v2]", "[$accent]z", "[b]bold", "[@click=app.quit]q", "[/]")
"""Names that are markup to Rich or Textual: a closing tag with no opening one (a MarkupError), a tag that
would vanish, a Textual variable, an action link."""
ERROR = "[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"
SIZE = (120, 30)


def drawn(widget: Static) -> str:
    return str(widget.render())


def cell(table: DataTable[object], row: int, column: int) -> str:
    """A cell's text as the table draws it: a string cell is Rich markup."""
    value = table.get_cell_at(Coordinate(row, column))
    return Text.from_markup(value).plain if isinstance(value, str) else str(value)


def toasts(app: MnistTuiApp) -> list[str]:
    """The notifications' text as drawn: a message is Textual markup."""
    from textual.content import Content

    return [Content.from_markup(n.message).plain for n in app._notifications]


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    pytest.fail("condition not met in time")


@pytest.mark.parametrize("name", HOSTILE)
def test_escape_shows_text_as_it_is(name: str) -> None:
    from textual.content import Content

    assert Text.from_markup(escape(name)).plain == name
    assert Content.from_markup(escape(name)).plain == name


@pytest.mark.parametrize("name", HOSTILE)
async def test_the_dashboard_starts_on_a_data_folder_named_as_markup(name: str, tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / name)
    app = MnistTuiApp(data_dir=data, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        status = app.screen.query_one("#dataset-status", Static)
        await wait_for(pilot, lambda: "present" in drawn(status))
        assert f"{data}/MNIST/raw" in drawn(status)
    assert app.return_code in (None, 0)


async def test_runs_and_errors_named_as_markup_are_drawn_as_they_are(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs[v2]"
    runs_dir.mkdir()
    run = finished_run(runs_dir, "failed", name="zz-x[b]y[$accent]")
    lines = run.events_path.read_text().splitlines()[:-1]  # its end: a failure with torch's bracketed words
    run.events_path.write_text("\n".join(lines) + "\n")
    run.append_event(RunFailed(ERROR, str(run.path), 2))
    odd = finished_run(runs_dir)
    (odd.path / "status.json").write_text('{"status": "[/oops]", "pid": 0}')
    app = MnistTuiApp(data_dir=tmp_path / "data[v2]", runs_dir=runs_dir, download=False, refresh_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        assert {cell(table, row, 0) for row in range(2)} == {run.run_id, odd.run_id}
        assert "[/oops]" in {cell(table, row, 2) for row in range(2)}  # the status column
        detail = app.screen.query_one("#runs-detail", Static)
        table.move_cursor(row=[cell(table, r, 0) for r in range(2)].index(run.run_id))
        await wait_for(pilot, lambda: ERROR in drawn(detail) and str(run.path) in drawn(detail))
        await pilot.press("enter")
        screen = app.training_screen
        await wait_for(pilot, lambda: screen.state == "failed")
        await pilot.pause(0.2)
        log = "\n".join(line.text for line in screen.query_one(RichLog).lines)
        assert f"failed: {ERROR}" in log
        assert run.run_id in drawn(screen.query_one("#run-title", Static))
        await pilot.press("f4")  # the checkpoint list names runs by their folders
        await pilot.pause(0.5)
    assert app.return_code in (None, 0)


async def test_the_evaluation_screen_names_a_hostile_checkpoint_as_it_is(trained: Trained, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    folder = runs_dir / "r[b]un[$accent]"
    folder.mkdir(parents=True)
    shutil.copy(trained.best, folder / "best.pt")
    (folder / "last.pt").write_bytes(b"[red]not a checkpoint[/red]")
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=runs_dir, download=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.screen.query_one("#checkpoints", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2 and cell(table, 0, 0) != "none yet")
        assert {cell(table, row, 0) for row in range(2)} == {folder.name}
        app.evaluation_screen.evaluate(folder / "last.pt")
        await wait_for(pilot, lambda: any("not a readable PyTorch file" in toast for toast in toasts(app)))
        assert any(str(folder / "last.pt") in toast for toast in toasts(app))
        app.evaluation_screen.evaluate(folder / "best.pt")
        summary = app.screen.query_one("#eval-summary", Static)
        await wait_for(pilot, lambda: "accuracy" in drawn(summary), 60)
        assert str(Path(folder.name) / "best.pt") in drawn(summary)


def test_the_headless_reporter_prints_outside_text_as_it_is(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, soft_wrap=True)
    config = small_config(epochs=1)
    reporter = ConsoleReporter(config, console)
    reporter.show(RunStarted("x[/zz]y", "runs[v2]/x[/zz]y", config.to_dict(), "cpu", "[red]GPU[/red] [$accent]",
                             1, 512, 128, "test", 16))
    reporter.show(RunFinished("completed", "runs[v2]/x[/zz]y", 1, 1, 0.5, 0.5, [1.0], 1.0))
    text = out.getvalue()
    assert "run x[/zz]y:" in text and "[red]GPU[/red] [$accent]" in text and "run folder: runs[v2]/x[/zz]y" in text


def test_runs_and_eval_print_outside_text_as_it_is(trained: Trained, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    runs_dir = tmp_path / "runs"
    hostile = finished_run(runs_dir, "failed", name="x[b]y[$accent]")
    hostile.append_event(RunFailed(ERROR, str(hostile.path)))
    (hostile.path / "status.json").write_text(f'{{"status": "[/oops]", "pid": {dead_pid()}}}')
    out = io.StringIO()
    print_runs(list_runs(runs_dir), Console(file=out, width=200, soft_wrap=True))
    listed = out.getvalue()
    assert "x[b]y[$accent]" in listed and "[/oops]" in listed and f"x[b]y[$accent]: {ERROR}" in listed
    checkpoint = tmp_path / "m[" / "b]odel[v2].pt"  # a path holding `[/b]`
    checkpoint.parent.mkdir()
    shutil.copy(trained.best, checkpoint)
    assert main(["eval", str(checkpoint), "--data-dir", str(trained.data_root), "--mistakes", "0"]) == 0
    assert f"{checkpoint}:" in capsys.readouterr().out
