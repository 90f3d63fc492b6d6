"""Damaged run folders, opened by the CLI and by the dashboard: neither may die of one, the CLI answers in
one line with its documented exit code, and what can be read of a run is still shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from damage import DAMAGES, OUT_OF_RANGE, WRONG_TYPES, finished_run, insert_lines
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static

from mnist_tui.__main__ import main
from mnist_tui.events import EpochEnded, EventError, RunFinished, parse_line
from mnist_tui.runs import list_runs
from mnist_tui.session import TrainingSession
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.training import TrainingScreen

SIZE = (100, 30)


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("damage", DAMAGES)
def test_the_cli_lists_and_refuses_a_damaged_run_in_one_line(damage: str, runs_dir: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             restore_signals: None) -> None:
    run = finished_run(runs_dir)
    DAMAGES[damage](run)
    code, out, err = cli(capsys, "runs", "--runs-dir", runs_dir)
    assert code == 0 and run.run_id in out and "Traceback" not in out + err
    code, out, _ = cli(capsys, "runs", "--runs-dir", runs_dir, "--json")
    assert code == 0 and [entry["run_id"] for entry in json.loads(out)] == [run.run_id]
    # A completed run, or one whose status cannot be read, is not resumed: one line, exit code 2.
    code, out, err = cli(capsys, "train", "--resume", run.run_id, "--runs-dir", runs_dir)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mnist-tui: error: "), err


@pytest.mark.parametrize("damage", DAMAGES)
async def test_the_dashboard_starts_lists_and_opens_a_damaged_run(damage: str, runs_dir: Path,
                                                                  tmp_path: Path) -> None:
    run = finished_run(runs_dir)
    DAMAGES[damage](run)
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs_dir, download=False, refresh_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert app.is_running
        if isinstance(app.screen, TrainingScreen):  # opened (an unreadable run says why and stays)
            await wait_for(pilot, lambda: app.training_screen.state in ("completed", "failed", "crashed"))
    assert app.return_code in (None, 0)


def test_an_event_is_checked_when_it_is_parsed() -> None:
    for line in (*WRONG_TYPES, *OUT_OF_RANGE):
        with pytest.raises(EventError):
            parse_line(line)
    nan_loss = json.loads(WRONG_TYPES[0])
    nan_loss.update(val_accuracy=0.5, val_loss=float("nan"))  # a diverged model's loss is still an event
    assert isinstance(parse_line(json.dumps(nan_loss)), EpochEnded)


def test_bad_lines_are_skipped_and_counted_by_runs(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run(runs_dir)
    insert_lines(run, list(WRONG_TYPES))
    [summary] = list_runs(runs_dir)
    assert (summary.status, summary.epochs_done, summary.best_val_accuracy) == ("completed", 2, 0.9431)
    assert summary.skipped_lines == 2 and summary.skipped_note == "2 unreadable lines skipped"
    code, out, _ = cli(capsys, "runs", "--runs-dir", runs_dir)
    assert code == 0 and f"{run.run_id}: 2 unreadable lines skipped in " in out


async def test_bad_lines_are_skipped_and_counted_by_attach(runs_dir: Path, tmp_path: Path) -> None:
    run = finished_run(runs_dir)
    whole = run.read_events()
    insert_lines(run, list(WRONG_TYPES))
    session = TrainingSession.attach(run)
    events = [event async for event in session.events()]
    assert events == whole and session.skipped_lines == 2
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs_dir, download=False, refresh_seconds=0.05,
                      attach=run)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.training_screen
        await wait_for(pilot, lambda: screen.state == "completed")
        await pilot.pause(0.2)
        log = "\n".join(line.text for line in screen.query_one(RichLog).lines)
        assert "2 unreadable lines skipped in events.jsonl" in log
        assert "completed after 2 epoch(s)" in log  # the rest of the run is all there


def test_a_line_cut_short_by_a_dead_trainer_counts_once_it_is_gone(runs_dir: Path) -> None:
    run = finished_run(runs_dir)
    data = run.events_path.read_bytes()
    run.events_path.write_bytes(data + b'{"event":"run_fail')
    run.set_status("running")  # its trainer (this process) is alive: the line may still be being written
    assert run.read_log(progress=False).skipped == 0 and list_runs(runs_dir)[0].skipped_lines == 0
    run.set_status("completed", pid=0)
    assert list_runs(runs_dir)[0].skipped_lines == 1
    run.append_event(RunFinished("stopped", str(run.path), 2, 2, 0.9, 0.9))  # a resumed trainer ends the line
    log = run.read_log()
    assert log.skipped == 1 and log.events[-1] == RunFinished("stopped", str(run.path), 2, 2, 0.9, 0.9)


async def test_the_runs_screen_says_how_many_lines_were_skipped(runs_dir: Path, tmp_path: Path) -> None:
    run = finished_run(runs_dir)
    insert_lines(run, list(WRONG_TYPES))
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs_dir, download=False, refresh_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        detail = app.screen.query_one("#runs-detail", Static)
        await wait_for(pilot, lambda: "2 unreadable lines skipped" in str(detail.render()))


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    pytest.fail("condition not met in time")
