"""The runs browser: every run with its status, sorted and filtered at will; overlay their accuracy or loss
curves, open, resume, clone or delete them."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from mnist_tui.config import ConfigError
from mnist_tui.reporting import styled_status
from mnist_tui.runs import ACTIVE_STATUSES, RESUMABLE_STATUSES, RunDir, RunSummary, list_runs
from mnist_tui.runview import format_duration, format_percent
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import AttachRun, CloneSettings, ResumeRun, RunDeleted
from mnist_tui.tui.screens.dialogs import ChoiceDialog
from mnist_tui.tui.widgets.charts import RunMetric, RunsChart
from mnist_tui.tui.widgets.tabs import ScreenTabs

LIVE_REFRESH_SECONDS = 2.0
FULL_IDS_WIDTH = 100
"""Columns from which the table shows whole run ids; below, a generated id without the date and time that
the started column shows beside it (`mlp-3f2a`), so the table fits 80 columns."""
GENERATED_ID = re.compile(r"\d{8}-\d{6}-(?P<rest>.+)")
"""An id as `runs.new_run_id` makes them: the local date and time it was made, the model, a random tag."""


@dataclass(frozen=True)
class Column:
    """A column of the runs table: its heading, the value its rows sort by, and the order a first sort takes."""

    label: str
    value: Callable[[RunSummary], float | str | None]
    """None (shown as `-`) sorts last either way round."""
    descending_first: bool


COLUMNS = (
    Column("run", lambda run: run.run_id, True),  # newest first: generated ids begin with their date
    Column("started", lambda run: run.started, True),
    Column("status", lambda run: run.status, False),
    Column("model", lambda run: None if run.model == "-" else run.model, False),
    Column("dataset", lambda run: None if run.dataset == "-" else run.dataset, False),
    Column("epochs", lambda run: run.epochs_done if run.epochs else None, True),
    Column("best", lambda run: run.best_val_accuracy, True),
    Column("time", lambda run: run.duration, True),
)


def sort_runs(runs: list[RunSummary], column: Column, descending: bool) -> list[RunSummary]:
    """The runs by `column`: numbers as numbers, words regardless of case, those without a value last, and
    ties in the order given (newest first)."""

    def key(run: RunSummary) -> tuple[float, str]:
        value = column.value(run)
        return (0.0, value.casefold()) if isinstance(value, str) else (float(value or 0), "")

    known = [run for run in runs if column.value(run) is not None]
    return sorted(known, key=key, reverse=descending) + [run for run in runs if column.value(run) is None]


def matches(run: RunSummary, text: str) -> bool:
    """Whether each word of `text` is part of the run's id, model, dataset or status, in any case."""
    haystack = " ".join((run.run_id, run.model, run.dataset, run.status)).casefold()
    return all(word in haystack for word in text.casefold().split())


def format_started(timestamp: float | None) -> str:
    """When a run started, local and short: `12-02 07:14`; `-` for a time a damaged log puts out of range."""
    if timestamp is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "-"


def short_run_id(run: RunSummary) -> str:
    """A generated id without its date and time where the started column says when (`mlp-3f2a`); any
    other id as it is."""
    generated = GENERATED_ID.fullmatch(run.run_id)
    return generated["rest"] if generated and run.started is not None else run.run_id


class RunsScreen(Screen[None]):
    """All runs in the runs folder, newest first or sorted by any column, narrowed by a filter; the cursor
    row's curves are drawn, or the marked runs' overlaid."""

    # The footer holds what 80 columns allow; `?` and the palette list the rest.
    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="runs to overlay their curves"),
        Binding("l", "chart('loss')", "Loss", tooltip="chart training and validation loss"),
        Binding("l", "chart('accuracy')", "Accuracy", tooltip="chart validation accuracy"),
        Binding("s", "sort", "Sort", tooltip="by the next column (or click a heading)"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("slash", "filter", "Filter", tooltip="the runs by id, model, dataset or status"),
        Binding("u", "resume", "Resume", tooltip="a stopped, failed or crashed run from its last.pt"),
        Binding("c", "clone", "Clone", show=False),
        Binding("v", "compare", "Compare", show=False),
        Binding("d", "delete", "Delete", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, runs_dir: Path) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.summaries: list[RunSummary] = []
        """Every run, as last read."""
        self.rows: list[RunSummary] = []
        """The runs in the table, in its order: those the filter lets through, sorted."""
        self.marked: set[str] = set()
        self.comparing = True
        """Whether the chart overlays the marked runs (when any are) rather than the cursor row's alone."""
        self.metric: RunMetric = "accuracy"
        self.sort_column = COLUMNS[0]
        self.descending = True
        self.folder_modified = 0
        """The runs folder's modification time when last looked at: a new run folder changes it."""
        self.reading: Worker[None] | None = None
        """The newest reading of the runs folder, which replaces any older one still under way."""

    def compose(self) -> ComposeResult:
        yield ScreenTabs("runs")
        with Horizontal(id="runs-filter-row"):
            yield Label("Filter:", id="runs-filter-label")
            yield Input(placeholder="words of the id, model, dataset or status (Enter: to the list, Esc: clear)",
                        id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-detail")
        yield RunsChart(id="runs-chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.set_interval(LIVE_REFRESH_SECONDS, self._refresh_while_training)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`l` says which chart it switches to: the one not shown."""
        if action == "chart":
            return parameters[0] != self.metric
        return True

    def _refresh_while_training(self) -> None:
        """While this screen is shown, keep a training run's row moving and catch it ending, and pick up
        runs started elsewhere (`mnist-tui train` in another terminal) or deleted."""
        if not self.is_current:
            return
        if any(s.status in ACTIVE_STATUSES for s in self.summaries) or self._folder_changed():
            self.reading = self._load()

    def _folder_changed(self) -> bool:
        try:
            modified = self.runs_dir.stat().st_mtime_ns
        except OSError:
            modified = 0
        changed, self.folder_modified = modified != self.folder_modified, modified
        return changed

    def action_refresh(self) -> None:
        self.reading = self._load()

    async def loaded(self) -> None:
        """Until the table shows the runs folder as the newest reading found it: a palette action on a screen
        just opened acts on its rows."""
        while self.reading is not None and not self.reading.is_finished:
            with contextlib.suppress(WorkerCancelled, WorkerFailed):  # a newer reading took its place
                await self.reading.wait()

    @work(thread=True, exclusive=True, group="runs")
    def _load(self) -> None:
        self.app.call_from_thread(self._show, list_runs(self.runs_dir))

    def _show(self, summaries: list[RunSummary]) -> None:
        self.summaries = summaries
        chart = self.query_one(RunsChart)
        chart.curves = {s.run_id: s.val_accuracies for s in summaries}
        chart.losses = {s.run_id: (s.train_losses, s.val_losses) for s in summaries}
        self._fill_table()

    def _fill_table(self) -> None:
        """Put the runs the filter lets through in the table, sorted, the cursor staying on its run."""
        table = self.query_one(DataTable)
        selected, cursor = self.selected(), table.cursor_row
        typed = self.query_one("#runs-filter", Input).value
        self.rows = sort_runs([s for s in self.summaries if matches(s, typed)], self.sort_column, self.descending)
        ids = [s.run_id for s in self.rows]
        if selected is not None and selected.run_id in ids:  # a new run above it must not move the cursor
            cursor = ids.index(selected.run_id)
        table.clear(columns=True)
        arrow = " ▼" if self.descending else " ▲"
        for column in COLUMNS:
            table.add_column(column.label + arrow if column is self.sort_column else column.label, key=column.label)
        for s in self.rows:
            table.add_row(self._run_cell(s), format_started(s.started), styled_status(s.status), Text(s.model),
                          Text(s.dataset), f"{s.epochs_done}/{s.epochs}", format_percent(s.best_val_accuracy),
                          format_duration(s.duration), key=s.run_id)
        detail = self.query_one("#runs-detail", Static)
        if not self.summaries:
            detail.update(f"No runs in {escape(self.runs_dir)} yet. Set one up on Settings (F2).")
        elif not self.rows:
            detail.update(f"No run matches {escape(repr(typed))}: Esc clears the filter.")
        table.move_cursor(row=min(cursor, max(len(self.rows) - 1, 0)))
        self.highlighted()

    def on_resize(self, event: events.Resize) -> None:
        if self.summaries:  # whole ids, or short ones, as the width allows
            self._fill_table()

    def selected(self) -> RunSummary | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def readable(self) -> RunSummary | None:
        """The cursor row's run, if its files can be read; otherwise say why and return None."""
        run = self.selected()
        if run is not None and run.status == "unreadable":
            self.notify(f"Cannot read this run's files: {escape(run.message)}", severity="error")
            return None
        return run

    @on(DataTable.RowHighlighted)
    def highlighted(self) -> None:
        run = self.selected()
        if run is not None:
            note = f" · [red]{escape(run.message)}[/]" if run.message else ""
            skipped = f" · [yellow]{run.skipped_note}[/]" if run.skipped_lines else ""
            self.query_one("#runs-detail", Static).update(f"{escape(str(run.path))}{note}{skipped}")
        self._redraw_chart()

    def _redraw_chart(self) -> None:
        current = self.selected()
        marked = sorted(self.marked)
        shown = marked if marked and self.comparing else [current.run_id] if current else []
        self.query_one(RunsChart).show(shown, self.metric)

    def action_mark(self) -> None:
        """Mark or unmark the cursor row's run; marking one shows the marked runs overlaid."""
        run = self.selected()
        if run is None:
            return
        self.marked ^= {run.run_id}
        self.comparing = self.comparing or run.run_id in self.marked
        table = self.query_one(DataTable)
        table.update_cell_at(Coordinate(table.cursor_row, 0), self._run_cell(run))
        self._redraw_chart()

    def action_compare(self) -> None:
        """Overlay the marked runs' curves, or go back to the cursor row's alone: a way to look at another
        run without losing the marks."""
        if not self.marked:
            self.notify("Mark runs with space to compare them: their curves share the chart.", severity="warning")
            return
        self.comparing = not self.comparing
        self._redraw_chart()

    def action_chart(self, metric: RunMetric) -> None:
        """Chart validation accuracy, or training and validation loss."""
        self.metric = metric
        self.refresh_bindings()
        self._redraw_chart()

    def action_sort(self) -> None:
        """Sort by the next column, in the order most often wanted first (best first, newest first, A to Z)."""
        self._sort_by(COLUMNS[(COLUMNS.index(self.sort_column) + 1) % len(COLUMNS)])

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self._fill_table()

    @on(DataTable.HeaderSelected)
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a heading sorts by its column; on the sorted one, the other way round."""
        column = COLUMNS[event.column_index]
        if column is self.sort_column:
            self.action_reverse_sort()
        else:
            self._sort_by(column)

    def _sort_by(self, column: Column) -> None:
        self.sort_column, self.descending = column, column.descending_first
        self._fill_table()

    def action_filter(self) -> None:
        self.query_one("#runs-filter-row").add_class("-open")
        self.query_one("#runs-filter", Input).focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self) -> None:
        self._fill_table()

    @on(Input.Submitted, "#runs-filter")
    def filter_submitted(self) -> None:
        """Enter keeps the filter and goes to the list, to act on the runs it left."""
        self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        row = self.query_one("#runs-filter-row")
        if not row.has_class("-open"):
            return
        self.query_one("#runs-filter", Input).value = ""
        row.remove_class("-open")
        self.query_one(DataTable).focus()
        self._fill_table()

    def _run_cell(self, run: RunSummary) -> Text:
        """A marked run's id is lit rather than given a column of its own: 80 columns hold the table."""
        run_id = run.run_id if self.size.width >= FULL_IDS_WIDTH else short_run_id(run)
        return Text(run_id, style="bold reverse" if run.run_id in self.marked else "")

    @on(DataTable.RowSelected)
    def action_open(self) -> None:
        """Enter: show the run on the training panel, live if it is training, else its whole history."""
        run = self.readable()
        if run is not None:
            self.post_message(AttachRun(RunDir(run.path)))

    def action_resume(self) -> None:
        run = self.readable()
        if run is None:
            return
        if run.status not in RESUMABLE_STATUSES:
            self.notify(f"Only a stopped, failed or crashed run can be resumed; this one is {escape(run.status)}.",
                        severity="warning")
        elif not os.path.lexists(run.path / "last.pt"):  # a broken one: the trainer says what is wrong
            self.notify("This run saved no checkpoint before it ended, so it cannot be resumed.", severity="warning")
        else:
            self.post_message(ResumeRun(RunDir(run.path)))

    def action_clone(self) -> None:
        run = self.readable()
        if run is None:
            return
        try:
            config = RunDir(run.path).config()
        except ConfigError as error:  # deleted or damaged since the list was read
            self.notify(f"Cannot read the settings of {escape(run.run_id)}: {escape(error)}", severity="error")
            return
        self.post_message(CloneSettings(config))
        self.notify(f"Settings of {escape(run.run_id)} loaded: adjust them and press F5.")

    def action_delete(self) -> None:
        run = self.selected()
        if run is None:
            return
        if run.status in ACTIVE_STATUSES:
            self.notify("This run is still training: stop it first.", severity="warning")
            return

        def answered(answer: str | None) -> None:
            if answer != "delete":
                return
            if RunDir(run.path).status() in ACTIVE_STATUSES:
                self.notify("This run started training again: stop it first.", severity="warning")
                return
            try:
                shutil.rmtree(run.path)
            except OSError as error:
                self.notify(f"Cannot delete {escape(run.path)}: {escape(error)}", severity="error")
            else:
                self.marked.discard(run.run_id)
                self.post_message(RunDeleted(RunDir(run.path)))
                self.notify(f"Deleted {escape(run.run_id)}.")
            self.action_refresh()

        question = f"Delete run {escape(run.run_id)} and its checkpoints? This cannot be undone."
        self.app.push_screen(ChoiceDialog(question, [("delete", "Delete", "error")]), answered)
