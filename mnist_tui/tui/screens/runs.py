"""The runs browser: every run with its status; overlay validation curves, open, resume, clone or delete."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from mnist_tui.config import ConfigError
from mnist_tui.reporting import format_duration, format_percent, styled_status
from mnist_tui.runs import ACTIVE_STATUSES, RESUMABLE_STATUSES, RunDir, RunSummary, list_runs
from mnist_tui.tui.markup import escape
from mnist_tui.tui.messages import AttachRun, CloneSettings, ResumeRun, RunDeleted
from mnist_tui.tui.screens.dialogs import ChoiceDialog
from mnist_tui.tui.widgets.charts import RunsChart
from mnist_tui.tui.widgets.tabs import ScreenTabs

LIVE_REFRESH_SECONDS = 2.0


class RunsScreen(Screen[None]):
    """All runs in the runs folder, newest first; the cursor row's curve is drawn, or the marked ones'."""

    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="runs to overlay their validation curves"),
        Binding("u", "resume", "Resume", tooltip="a stopped, failed or crashed run from its last.pt"),
        Binding("c", "clone", "Clone", tooltip="its settings into Settings for a new run"),
        Binding("d", "delete", "Delete", tooltip="the run and its checkpoints (asks first)"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, runs_dir: Path) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.summaries: list[RunSummary] = []
        self.marked: set[str] = set()
        self.folder_modified = 0
        """The runs folder's modification time when last looked at: a new run folder changes it."""
        self.reading: Worker[None] | None = None
        """The newest reading of the runs folder, which replaces any older one still under way."""

    def compose(self) -> ComposeResult:
        yield ScreenTabs("runs")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-detail")
        yield RunsChart(id="runs-chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("run", "status", "model", "dataset", "epochs", "best", "time")
        self.set_interval(LIVE_REFRESH_SECONDS, self._refresh_while_training)

    def on_screen_resume(self) -> None:
        self.action_refresh()

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
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        selected = self.selected()
        ids = [s.run_id for s in summaries]
        if selected is not None and selected.run_id in ids:  # a new run above it must not move the cursor
            cursor = ids.index(selected.run_id)
        table.clear()
        self.summaries = summaries
        self.query_one(RunsChart).curves = {s.run_id: s.val_accuracies for s in summaries}
        for s in summaries:
            table.add_row(self._run_cell(s.run_id), styled_status(s.status), Text(s.model), Text(s.dataset),
                          f"{s.epochs_done}/{s.epochs}", format_percent(s.best_val_accuracy),
                          format_duration(s.duration))
        if not summaries:
            self.query_one("#runs-detail", Static).update(
                f"No runs in {escape(self.runs_dir)} yet. Set one up on Settings (F2).")
        table.move_cursor(row=min(cursor, max(len(summaries) - 1, 0)))
        self._redraw_chart()

    def selected(self) -> RunSummary | None:
        row = self.query_one(DataTable).cursor_row
        return self.summaries[row] if 0 <= row < len(self.summaries) else None

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
        shown = sorted(self.marked) or ([current.run_id] if current else [])
        self.query_one(RunsChart).show(shown)

    def action_mark(self) -> None:
        run = self.selected()
        if run is None:
            return
        self.marked ^= {run.run_id}
        table = self.query_one(DataTable)
        table.update_cell_at(Coordinate(table.cursor_row, 0), self._run_cell(run.run_id))
        self._redraw_chart()

    def _run_cell(self, run_id: str) -> Text:
        """A marked run's id is lit rather than given a column of its own: 80 columns hold the table."""
        return Text(run_id, style="bold reverse" if run_id in self.marked else "")

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
