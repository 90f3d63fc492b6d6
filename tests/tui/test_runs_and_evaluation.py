"""The Runs screen (start times, sorting, the filter, accuracy and loss overlays) and the Evaluation screen
(a failed evaluation, the sections below the fold, numbers formatted as `mnist-tui eval` prints them)."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import dead_pid, small_config
from fake_events import run_events
from rich.console import Console
from test_tui_app import wait_for
from test_tui_snapshots import SIZES, SnapCompare, fake_result
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from mnist_tui.checkpoints import Checkpoint
from mnist_tui.evaluation import ClassScore, EvaluationResult, Mistake
from mnist_tui.events import EpochEnded, RunStarted
from mnist_tui.reporting import format_confidence, print_evaluation
from mnist_tui.runs import RunDir, RunSummary, summarize
from mnist_tui.tui.app import MnistTuiApp
from mnist_tui.tui.screens.runs import COLUMNS, RunsScreen, format_started, matches, short_run_id, sort_runs
from mnist_tui.tui.widgets.charts import RunsChart

STARTED = dt.datetime(2026, 12, 1, 7, 14).timestamp()


def write_run(runs: Path, run_id: str, *, started: float = STARTED, epochs: int = 2, model: str = "mlp",
              dataset: str = "mnist", accuracy_shift: float = 0.0, status: str = "completed") -> RunDir:
    """A finished run whose log is a fake trainer's, started at `started`."""
    run = RunDir(runs / run_id)
    run.path.mkdir(parents=True)
    (run.path / "config.json").write_text(json.dumps(small_config(epochs=epochs, model=model,
                                                                  dataset=dataset).to_dict()))
    for event in run_events(str(run.path), epochs=epochs):
        if isinstance(event, RunStarted):
            event = replace(event, time=started)
        elif isinstance(event, EpochEnded):
            event = replace(event, val_accuracy=event.val_accuracy + accuracy_shift)
        run.append_event(event)
    run.set_status(status, pid=dead_pid())
    return run


def summary(run_id: str, *, status: str = "completed", model: str = "mlp", dataset: str = "mnist",
            best_val_accuracy: float | None = 0.9, duration: float | None = 10.0,
            started: float | None = None) -> RunSummary:
    return RunSummary(run_id, Path(run_id), status, model, dataset, 2, 2, best_val_accuracy, duration,
                      started=started)


# The core: what a run's summary holds for the Runs screen ------------------------------------------------

def test_a_summary_holds_when_the_run_started_and_its_losses_per_epoch(tmp_path: Path) -> None:
    run = write_run(tmp_path, "20261201-071400-mlp-aaaa")
    resumed = RunStarted("demo", str(run.path), small_config().to_dict(), "cpu", "CPU", 1, 1, 1, "test", 1, 1,
                         STARTED + 3600)
    run.append_event(resumed)  # a later session: the run still started when it first did
    read = summarize(run)
    assert read.started == STARTED
    assert read.train_losses == [0.5, 0.25] and read.val_losses == [0.25, 0.125]
    assert json.loads(json.dumps(read.to_json()))["started"] == STARTED

    never = RunDir(tmp_path / "never")  # made, never trained: no time to show
    never.path.mkdir()
    (never.path / "config.json").write_text(json.dumps(small_config().to_dict()))
    assert summarize(never).started is None and summarize(never).val_losses == []


# Sorting, filtering, short ids ----------------------------------------------------------------------------

def test_runs_sort_numbers_as_numbers_with_the_unknown_last_either_way() -> None:
    runs = [summary("a", best_val_accuracy=0.9), summary("b", best_val_accuracy=None),
            summary("c", best_val_accuracy=0.95), summary("d", best_val_accuracy=0.1)]
    best = next(column for column in COLUMNS if column.label == "best")
    assert [r.run_id for r in sort_runs(runs, best, descending=True)] == ["c", "a", "d", "b"]
    assert [r.run_id for r in sort_runs(runs, best, descending=False)] == ["d", "a", "c", "b"]

    timed = [summary("x", duration=9.0), summary("y", duration=100.0), summary("z", duration=None)]
    time_column = next(column for column in COLUMNS if column.label == "time")
    assert [r.run_id for r in sort_runs(timed, time_column, descending=True)] == ["y", "x", "z"]  # 100 > 9

    models = [summary("1", model="mlp"), summary("2", model="CNN"), summary("3", model="-", status="unreadable")]
    model_column = next(column for column in COLUMNS if column.label == "model")
    assert [r.run_id for r in sort_runs(models, model_column, descending=False)] == ["2", "1", "3"]
    assert [r.run_id for r in sort_runs(models, model_column, descending=True)] == ["1", "2", "3"]


def test_the_filter_matches_every_word_in_the_id_model_dataset_or_status() -> None:
    run = summary("20261201-071400-cnn-ab12", model="cnn", dataset="fashion-mnist", status="stopped")
    assert matches(run, "") and matches(run, "AB12") and matches(run, "fashion stop")
    assert not matches(run, "mlp") and not matches(run, "fashion completed")


def test_a_generated_id_is_shortened_only_where_the_start_time_says_when() -> None:
    assert short_run_id(summary("20261201-071400-cnn-ab12", started=STARTED)) == "cnn-ab12"
    assert short_run_id(summary("20261201-071400-cnn-ab12", started=None)) == "20261201-071400-cnn-ab12"
    assert short_run_id(summary("my-experiment", started=STARTED)) == "my-experiment"


# The Runs screen -------------------------------------------------------------------------------------------

def column(table: DataTable[object], label: str) -> list[str]:
    index = [str(c.label).split()[0] for c in table.ordered_columns].index(label)
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


async def test_runs_show_when_they_started_and_sort_by_any_column(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20261130-091500-mlp-aaaa", started=STARTED - 86400, accuracy_shift=0.01)
    write_run(runs, "20261201-071400-cnn-bbbb", model="cnn", accuracy_shift=0.03, epochs=1)
    write_run(runs, "20261201-081400-mlp-cccc", started=STARTED + 3600, status="stopped")
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        await screen.loaded()
        await pilot.pause()
        local = dt.datetime.fromtimestamp(STARTED)
        assert column(table, "started")[1] == local.strftime("%m-%d %H:%M")
        assert column(table, "run") == ["20261201-081400-mlp-cccc", "20261201-071400-cnn-bbbb",
                                        "20261130-091500-mlp-aaaa"]  # newest first, as the heading says
        assert str(table.ordered_columns[0].label) == "run ▼"

        await pilot.press("s")  # by the next column, started: newest first
        assert column(table, "run")[0] == "20261201-081400-mlp-cccc"
        await pilot.press("s", "s", "s", "s", "s")  # status, model, dataset, epochs, then best: best first
        assert str(table.ordered_columns[6].label) == "best ▼"
        assert column(table, "best") == ["95.59%", "95.31%", "94.31%"]
        await pilot.press("S")  # the other way round
        assert column(table, "best") == ["94.31%", "95.31%", "95.59%"]
        # A click on a heading sorts by it, and on the sorted one reverses it; the cursor stays on its run.
        table.move_cursor(row=0)
        await pilot.pause()
        cursor_run = screen.selected()
        assert cursor_run is not None
        await pilot.click(DataTable, offset=(30, 0))  # the started heading
        await pilot.pause()
        assert screen.sort_column.label == "started" and screen.descending
        assert screen.selected() == cursor_run
        await pilot.click(DataTable, offset=(30, 0))
        await pilot.pause()
        assert not screen.descending and column(table, "run")[0] == "20261130-091500-mlp-aaaa"

        # At 80 columns a generated id loses the date and time the started column shows: the table fits.
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert column(table, "run") == ["mlp-aaaa", "cnn-bbbb", "mlp-cccc"]
        assert table.virtual_size.width <= 80


async def test_the_filter_narrows_the_runs_as_it_is_typed_and_escape_clears_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20261130-091500-mlp-aaaa")
    write_run(runs, "20261201-071400-cnn-bbbb", model="cnn", dataset="fashion-mnist")
    write_run(runs, "20261201-081400-mlp-cccc", status="stopped")
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs, download=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        await screen.loaded()
        field = screen.query_one("#runs-filter", Input)
        assert not field.is_on_screen
        await pilot.press("slash")
        assert field.has_focus and field.is_on_screen
        await pilot.press("m", "l", "p")
        assert table.row_count == 2
        await pilot.press("space", "s", "t", "o", "p")  # words: an mlp run that is stopped
        assert [r.run_id for r in screen.rows] == ["20261201-081400-mlp-cccc"]
        await pilot.press("enter")  # to the list, the filter kept
        assert table.has_focus and table.row_count == 1 and field.is_on_screen
        await pilot.press("u")  # acts on the run the filter left
        await pilot.pause()
        assert any("saved no checkpoint" in n.message for n in app._notifications)

        await pilot.press("slash", "x", "y", "z")
        assert table.row_count == 0
        assert "No run matches" in str(screen.query_one("#runs-detail", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 3 and table.has_focus and not field.is_on_screen and field.value == ""


def text_of(part: Static) -> str:
    """What a Static shows, as plain text, whether it holds markup or a Rich table."""
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(part.content)
    return buffer.getvalue()


def chart_text(chart: RunsChart) -> str:
    return chart.render().plain  # type: ignore[union-attr]


def plot_rows(chart: RunsChart) -> str:
    """The chart without its title and legend lines: what is drawn for the data."""
    return "\n".join(line for line in chart_text(chart).splitlines()[1:] if "-mlp-" not in line and "-cnn-" not in line)


async def test_marked_runs_overlay_their_accuracy_or_loss_and_compare_toggles_the_overlay(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20261130-091500-mlp-aaaa")
    write_run(runs, "20261201-071400-cnn-bbbb", model="cnn", epochs=1)  # one epoch: one point per curve
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs, download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        chart = screen.query_one(RunsChart)
        await screen.loaded()
        await pilot.pause()
        assert chart.shown == ["20261201-071400-cnn-bbbb"]
        # The one-epoch run is a mark the size of a character, not a single braille dot.
        assert "•" in plot_rows(chart)

        await pilot.press("space", "down", "space")
        assert chart.shown == ["20261130-091500-mlp-aaaa", "20261201-071400-cnn-bbbb"]
        assert chart.metric == "accuracy" and "validation accuracy" in chart_text(chart)
        assert [b.binding.description for b in screen.active_bindings.values() if b.binding.key == "l"] == ["Loss"]

        await pilot.press("l")
        assert chart.metric == "loss" and chart.shown == ["20261130-091500-mlp-aaaa", "20261201-071400-cnn-bbbb"]
        text = chart_text(chart)
        assert "loss per epoch  x train  • val" in text and "x" in plot_rows(chart)
        assert [b.binding.description for b in screen.active_bindings.values() if b.binding.key == "l"] == [
            "Accuracy"]

        await screen.run_action("compare")  # back to the cursor row's run alone, the marks kept
        assert chart.shown == ["20261130-091500-mlp-aaaa"] and len(screen.marked) == 2
        await screen.run_action("compare")
        assert len(chart.shown) == 2
        await pilot.press("l")
        assert chart.metric == "accuracy"

        await pilot.press("space", "up", "space")  # nothing marked: compare says how to mark
        await screen.run_action("compare")
        await pilot.pause()
        assert any("Mark runs with space" in n.message for n in app._notifications)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen_with_two_runs_compared_by_loss(snap_compare: SnapCompare, size: tuple[int, int], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative runs folder keeps the machine's folders out of the picture
    runs = Path("runs")
    write_run(runs, "20261130-091500-mlp-aaaa", started=STARTED - 86400, accuracy_shift=0.01)
    write_run(runs, "20261201-071400-cnn-bbbb", model="cnn", dataset="fashion-mnist", epochs=1)
    write_run(runs, "20261201-081400-mlp-cccc", started=STARTED + 3600, status="stopped")

    async def compare(pilot: Pilot[None]) -> None:
        await pilot.press("f6")
        screen = pilot.app.screen
        assert isinstance(screen, RunsScreen)
        await screen.loaded()
        await pilot.press("down", "space", "down", "space", "l")
        await pilot.pause()

    app = MnistTuiApp(data_dir=Path("snapshot-data"), runs_dir=runs, download=False)
    assert snap_compare(app, terminal_size=size, run_before=compare)


# The Evaluation screen --------------------------------------------------------------------------------------

async def test_a_failed_evaluation_clears_the_last_result(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        screen = app.evaluation_screen
        screen._show_result(fake_result())
        await pilot.pause()
        assert "0.955" in text_of(screen.query_one("#per-class", Static))
        screen.evaluate(broken)
        await wait_for(pilot, lambda: "not a readable" in str(screen.query_one("#eval-summary", Static).render()))
        summary = str(screen.query_one("#eval-summary", Static).render())
        assert "demo/best.pt" not in summary and "96.10%" not in summary
        assert screen.result is None
        for part in ("#confusion", "#per-class", "#gallery-title"):
            assert not text_of(screen.query_one(part, Static)).strip()
        assert not screen.query_one("#gallery").children


async def test_the_sections_below_the_fold_are_named_and_a_key_away(tmp_path: Path) -> None:
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        screen = app.evaluation_screen
        await pilot.pause()
        keys = {binding.binding.key for binding in screen.active_bindings.values()}
        assert not {"c", "m", "right_square_bracket"} & keys  # nothing to move about yet
        fold = screen.query_one("#eval-fold", Static)
        assert not fold.display

        screen._show_result(fake_result())
        await pilot.pause()
        await pilot.pause()
        assert {"c", "m", "right_square_bracket"} <= {b.binding.key for b in screen.active_bindings.values()}
        assert fold.display and str(fold.render()) == "out of view: c per class ↓ · m mistakes ↓"

        results, per_class = screen.query_one("#eval-results"), screen.query_one("#per-class")
        await pilot.press("c")
        await pilot.pause()
        assert results.region.contains_region(per_class.region)
        assert "s summary ↑" in str(fold.render()) and "c per class" not in str(fold.render())
        await pilot.press("m")
        await pilot.pause()
        assert results.region.contains_region(screen.query_one("#gallery-title").region)
        await pilot.press("s")
        await pilot.pause()
        assert results.scroll_y == 0 and "c per class ↓" in str(fold.render())

        # At 120x40 it all fits: no line about what is out of view.
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.pause()
        assert not fold.display


def odd_result() -> EvaluationResult:
    """A result whose numbers round differently at different precisions: a mistake 99.96% sure."""
    result = fake_result()
    per_class = [ClassScore(str(c), 0.95556, 0.99999, 0.97777, 100) for c in range(10)]
    mistakes = [Mistake(7, 1, 2, 0.9996), *result.mistakes[1:]]
    return replace(result, per_class=per_class, mistakes=mistakes, loss=0.123456, accuracy=0.96106)


def test_a_confidence_never_rounds_up_to_certainty() -> None:
    assert format_confidence(0.9996) == "99.9%"
    assert format_confidence(0.995) == "99.5%"
    assert format_confidence(1.0) == "100.0%"
    assert format_confidence(0.5) == "50.0%"


async def test_the_screen_and_eval_print_the_same_numbers_the_same_way(tmp_path: Path) -> None:
    result = odd_result()
    output = io.StringIO()
    checkpoint = Checkpoint(Path("x.pt"), "mlp", {}, small_config(), 0.0, 1.0)
    print_evaluation(result, checkpoint, 3, Console(file=output, width=120, color_system=None))
    printed = output.getvalue()
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f4")
        screen = app.evaluation_screen
        screen._show_result(result)
        await pilot.pause()
        shown = " ".join(text_of(screen.query_one(part, Static)) for part in ("#eval-summary", "#per-class"))
        shown += " ".join(text_of(label) for label in screen.query(".caption").results(Label))
    for number in ("99.9%", "96.11%", "0.1235", "0.956", "1.000", "0.978"):
        assert number in printed and number in shown, number
    assert "100%" not in shown and "100.0%" not in printed


def test_a_start_time_a_damaged_log_puts_out_of_range_reads_as_unknown() -> None:
    assert format_started(dt.datetime(2026, 12, 2, 7, 14).timestamp()) == "12-02 07:14"
    assert [format_started(t) for t in (None, 1e20, -1e20, float("nan"))] == ["-", "-", "-", "-"]
