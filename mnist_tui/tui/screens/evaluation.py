"""The evaluation screen: pick a checkpoint with the keyboard, evaluate it in the background, and see
loss, accuracy, the confusion matrix as a heat map, per-class scores and a gallery of its mistakes, each
section a key away on a short terminal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker

from mnist_tui.reporting import format_confidence, format_score
from mnist_tui.runview import format_loss, format_percent
from mnist_tui.tui.markup import escape
from mnist_tui.tui.paths import expand_path, resolved
from mnist_tui.tui.screens.dialogs import OpenCheckpointDialog
from mnist_tui.tui.widgets.digit import DigitImage
from mnist_tui.tui.widgets.tabs import ScreenTabs

if TYPE_CHECKING:
    from mnist_tui.checkpoints import CheckpointInfo
    from mnist_tui.evaluation import EvaluationResult

CARD_WIDTH = 30
SIDE_BY_SIDE_WIDTH = 100
"""Columns below which the per-class table goes under the confusion matrix instead of beside it."""
SECTIONS = {"summary": ("#eval-summary", "s"), "per class": ("#per-class", "c"), "mistakes": ("#gallery-title", "m")}
"""The parts of a result a key scrolls to (the widget at the top of each, and the key), so that on a short
terminal the per-class table and the digits below the fold are a key away, and said to be there."""
SHOWN_ROWS = 3
"""Rows of a section that must be in view for it to count as shown: a title alone at the bottom does not."""


def local_time(iso: str, today: dt.date | None = None) -> str:
    """A checkpoint's UTC creation time as `ls` shows times: the hour today, the date before (five
    characters, so the list fits 80 columns); the text as it is if it does not parse."""
    try:
        local = dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return local.strftime("%H:%M" if local.date() == (today or dt.date.today()) else "%m-%d")


def confusion_heatmap(matrix: list[list[int]], labels: list[str]) -> Table:
    """The confusion matrix with each cell shaded by its share of the row: green diagonal, red errors."""
    table = Table(title="confusion (rows true, columns predicted)", box=None, padding=(0, 0),
                  title_justify="left", show_header=True, header_style="bold")
    table.add_column("", justify="right")
    for label in labels:
        table.add_column(label[:4], justify="right", min_width=5)
    worst = max((v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j), default=0) or 1
    for i, row in enumerate(matrix):
        cells = []
        for j, value in enumerate(row):
            if i == j:
                share = value / max(sum(row), 1)
                cells.append(Text(f"{value:>5}", style=f"bold black on rgb(0,{int(90 + 130 * share)},60)"))
            elif value:
                heat = 0.25 + 0.75 * value / worst
                cells.append(Text(f"{value:>5}", style=f"white on rgb({int(60 + 170 * heat)},20,30)"))
            else:
                cells.append(Text(f"{'·':>5}", style="dim"))
        table.add_row(labels[i][:6], *cells)
    return table


def class_scores(result: EvaluationResult) -> Table:
    table = Table(title="per class", box=None, padding=(0, 1), title_justify="left", header_style="bold")
    for column in ("class", "prec", "recall", "f1", "n"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for score in result.per_class:
        table.add_row(score.label[:11], format_score(score.precision), format_score(score.recall),
                      format_score(score.f1), str(score.support))
    return table


class EvaluationScreen(Screen[None]):
    """Checkpoints of every run, and the full evaluation of the chosen one."""

    BINDINGS = [
        Binding("r", "refresh", "Refresh", show=False),  # the list is read again whenever the screen is shown
        Binding("o", "browse", "Browse", tooltip="for a .pt or .pth file"),
        Binding("slash", "type_path", "Path", tooltip="of a checkpoint file, typed in"),
        Binding("s", "section('summary')", "Summary", show=False),  # the line under the results says it
        Binding("c", "section('per class')", "Per class", tooltip="precision, recall and F1 of each class"),
        Binding("m", "section('mistakes')", "Mistakes", tooltip="the misclassified digits"),
        Binding("right_square_bracket", "page(1)", "Next page", tooltip="of misclassified digits"),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False),  # the gallery's title says it
        Binding("escape", "leave_path", show=False),
    ]

    def __init__(self, runs_dir: Path, data_dir: Path, download: bool) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.data_dir = data_dir
        self.download = download
        self.paths: list[Path] = []
        self.result: EvaluationResult | None = None
        self.page = 0
        self.first_shown = 0
        """The first digit on the page: a resize that changes how many fit keeps it in view."""
        self.queued: Path | None = None
        self.current: Path | None = None

    def compose(self) -> ComposeResult:
        yield ScreenTabs("evaluation")
        with Horizontal(id="eval-top"):
            yield Label("Checkpoint file:", id="path-label")
            yield Input(placeholder="a path + Enter (Esc: back); or pick below, o: browse", id="checkpoint-path")
        yield DataTable(id="checkpoints", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="eval-progress"):
            yield Static("", id="eval-status")
            yield ProgressBar(id="eval-bar", total=None, show_eta=False, show_percentage=False)
        with VerticalScroll(id="eval-results"):
            yield Static("", id="eval-summary")
            with Horizontal(id="eval-tables"):
                yield Static("", id="confusion")
                yield Static("", id="per-class")
            yield Static("", id="gallery-title")
            yield Horizontal(id="gallery")
        yield Static("", id="eval-fold")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#checkpoints", DataTable)
        table.add_columns("run", "ckpt", "epoch", "model", "dataset", "val acc", "saved")
        self.query_one("#eval-progress").display = False
        self.query_one("#eval-fold").display = False
        self.watch(self.query_one("#eval-results"), "scroll_y", self._scrolled, init=False)
        table.focus()
        if self.queued is not None:
            self.call_after_refresh(self.evaluate, self.queued)
            self.queued = None

    def on_screen_resume(self) -> None:
        self.action_refresh()

    # Checkpoint list --------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._discover()

    @work(thread=True, exclusive=True, group="discover")
    def _discover(self) -> None:
        """Read each checkpoint's header off the UI thread: this imports torch and touches every file."""
        from mnist_tui.checkpoints import CheckpointError, discover_checkpoints, read_checkpoint_info

        found: list[CheckpointInfo | tuple[Path, str]] = []
        for path in discover_checkpoints(self.runs_dir):
            try:
                found.append(read_checkpoint_info(path))
            except CheckpointError as error:
                found.append((path, str(error)))
        self.app.call_from_thread(self._show_checkpoints, found)

    def _show_checkpoints(self, found: list[CheckpointInfo | tuple[Path, str]]) -> None:
        table = self.query_one("#checkpoints", DataTable)
        cursor = table.cursor_row
        table.clear()
        self.paths = []
        for item in found:
            if isinstance(item, tuple):
                path, _ = item
                table.add_row(Text(path.parent.name), Text(path.name), "", "", "", Text("unreadable", style="red"), "")
            else:
                path = item.path
                table.add_row(Text(item.run_id), item.kind, item.position, item.model, item.dataset,
                              format_percent(item.val_accuracy),
                              Text(local_time(item.created)))
            self.paths.append(path)
        if self.result is None and self.current is None:  # nothing evaluated: say what to do
            self.query_one("#eval-summary", Static).update(
                f"No checkpoints in {escape(str(self.runs_dir))} yet: train a run (F2), or open any .pt file "
                "with / or o." if not found else "Pick a checkpoint and press Enter to evaluate it.")
        if not found:
            table.add_row("none yet", "", "", "", "", "", "")
        elif not (self.current is not None and self._select(self.current)) and cursor < len(found):
            table.move_cursor(row=cursor)

    def _select(self, path: Path) -> bool:
        """Put the list's cursor on `path`'s row, if it is listed; whether it is."""
        listed = [resolved(p) for p in self.paths]
        if resolved(path) not in listed:
            return False
        self.query_one("#checkpoints", DataTable).move_cursor(row=listed.index(resolved(path)))
        return True

    @on(DataTable.RowSelected, "#checkpoints")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if event.cursor_row < len(self.paths):
            self.evaluate(self.paths[event.cursor_row])

    @on(Input.Submitted, "#checkpoint-path")
    def path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.evaluate(expand_path(event.value.strip()))

    def action_type_path(self) -> None:
        self.query_one("#checkpoint-path", Input).focus()

    def action_leave_path(self) -> None:
        """Escape in the path field goes back to the list."""
        self.query_one("#checkpoints", DataTable).focus()

    def action_browse(self) -> None:
        def picked(path: Path | None) -> None:
            if path is not None:
                self.query_one("#checkpoint-path", Input).value = str(path)
                self.evaluate(path)

        # The folder mnist-tui was started in holds the runs, and the tutorial's models/ folder, as a rule.
        cwd = Path.cwd()
        outside = self.runs_dir.is_dir() and not resolved(self.runs_dir).is_relative_to(resolved(cwd))
        start = self.runs_dir if outside else cwd
        self.app.push_screen(OpenCheckpointDialog(start), picked)

    # Evaluation -------------------------------------------------------------------------------------

    def evaluate(self, path: Path) -> None:
        """Evaluate `path` in the background; before the screen is first shown, once it is. A file that
        cannot be evaluated is refused in a toast and in place of the last result, which was another file's
        (a mistyped path is refused at once, and what is on screen stays)."""
        if not self.query("#eval-status"):
            self.queued = path
            return
        if not path.is_file():
            from mnist_tui.checkpoints import CheckpointError, load_checkpoint

            try:
                load_checkpoint(path)  # refuses at once, with the folder's checkpoints if it is one
            except CheckpointError as error:
                self.notify(escape(error), title="Cannot evaluate", severity="error", timeout=8)
                return
        self.current = path
        self._select(path)
        typed = self.query_one("#checkpoint-path", Input)
        if typed.value.strip() and expand_path(typed.value.strip()) != path:
            typed.value = ""  # it named another file: the summary below names this one
        self._clear_results()
        self.query_one("#eval-status", Static).update(f"Evaluating {escape(path.name)} on the test set…")
        self.query_one("#eval-progress").display = True
        self._evaluate(path)

    def _clear_results(self) -> None:
        """Blank the last result, so it is never read as the one being worked out or refused."""
        self.result = None
        for widget_id in ("#eval-summary", "#confusion", "#per-class", "#gallery-title"):
            self.query_one(widget_id, Static).update("")
        self.query_one("#gallery").remove_children()
        self.query_one("#eval-results").scroll_home(animate=False)
        self.refresh_bindings()
        self._show_fold()

    @work(thread=True, exclusive=True, group="evaluate")
    def _evaluate(self, path: Path) -> None:
        from mnist_tui.batches import DeviceError
        from mnist_tui.checkpoints import CheckpointError, load_checkpoint
        from mnist_tui.data import DatasetError
        from mnist_tui.evaluation import evaluate

        try:
            checkpoint = load_checkpoint(path)
            # On the CPU: a CUDA context would hold hundreds of MB of a GPU for as long as the dashboard
            # runs, for a job of well under a second (10k images through an MNIST model).
            result = evaluate(checkpoint, "test", self.data_dir, self.download, device="cpu")
        except (CheckpointError, DatasetError, DeviceError) as error:
            message = str(error)
        except Exception as error:  # out of memory, a torch error: say so, keep the dashboard up
            message = f"{path}: evaluation failed ({type(error).__name__}: {error})"
        else:
            if not get_current_worker().is_cancelled:  # a newer evaluation replaced this one
                self.app.call_from_thread(self._show_result, result, checkpoint.bare_state_dict)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_error, message)

    def _show_error(self, message: str) -> None:
        """Say why, in a toast and where the result would be. The last result stays cleared (it was when
        this evaluation began): it was another file's, and under this message it read as this one's."""
        self.query_one("#eval-progress").display = False
        self.notify(escape(message), title="Cannot evaluate", severity="error", timeout=8)
        self.query_one("#eval-summary", Static).update(Text(message, style="bold red"))

    def _show_result(self, result: EvaluationResult, bare_state_dict: bool = False) -> None:
        from mnist_tui.checkpoints import BARE_STATE_DICT_NOTE
        from mnist_tui.data import DATASET_SPECS

        self.query_one("#eval-progress").display = False
        self.result, self.page, self.first_shown = result, 0, 0
        labels = list(DATASET_SPECS[result.dataset].classes)
        path = Path(result.checkpoint)
        runs_dir = resolved(self.runs_dir)  # the trainer names its checkpoints by absolute path
        shown = resolved(path).relative_to(runs_dir) if resolved(path).is_relative_to(runs_dir) else path
        note = f" · [yellow]{BARE_STATE_DICT_NOTE}[/]" if bare_state_dict else ""
        note += f"\n[bold yellow]warning: {escape(result.warning)}[/]" if result.warning else ""
        self.query_one("#eval-summary", Static).update(
            f"[b]{escape(str(shown))}[/b]  {result.dataset} "
            f"{result.split} ({result.samples:,} images, {result.seconds:.2f}s){note}\n"
            f"accuracy [b]{format_percent(result.accuracy)}[/b]   loss {format_loss(result.loss)}   "
            f"{len(result.mistakes):,} misclassified" + (" (m shows them)" if result.mistakes else ""))
        self.query_one("#confusion", Static).update(confusion_heatmap(result.confusion_matrix, labels))
        self.query_one("#per-class", Static).update(class_scores(result))
        self.show_gallery()
        self.refresh_bindings()

    def cards_per_page(self) -> int:
        return max(1, (self.query_one("#eval-results").size.width - 2) // CARD_WIDTH)

    def show_gallery(self) -> None:
        from mnist_tui.data import DATASET_SPECS

        result = self.result
        gallery = self.query_one("#gallery")
        gallery.remove_children()
        if result is None:
            return
        title = self.query_one("#gallery-title", Static)
        if not result.mistakes:
            title.update("No mistakes on this split.")
            return
        per_page = self.cards_per_page()
        pages = (len(result.mistakes) + per_page - 1) // per_page
        self.page = max(0, min(self.first_shown // per_page, pages - 1))
        self.first_shown = self.page * per_page
        title.update(f"[b]Misclassified[/b] (most confident first) · page {self.page + 1}/{pages} · \\[ and ] to page")
        labels = DATASET_SPECS[result.dataset].classes
        cards = []
        for offset in range(self.page * per_page, min((self.page + 1) * per_page, len(result.mistakes))):
            mistake = result.mistakes[offset]
            pixels = result.mistake_images[offset].tolist()
            caption = (f"#{mistake.index} true [b]{labels[mistake.true]}[/b] → "
                       f"[red]{labels[mistake.predicted]}[/] {format_confidence(mistake.confidence)}")
            # Caption first: on a short terminal the digit's lower rows go below the fold, not what it was taken for.
            cards.append(Vertical(Label(caption, classes="caption"), DigitImage(pixels), classes="card"))
        gallery.mount_all(cards)
        self.call_after_refresh(self._show_fold)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The keys that move about a result only while there is one; paging only through mistakes."""
        if action == "section":
            return self.result is not None
        if action == "page":
            return self.result is not None and bool(self.result.mistakes)
        return True

    def action_section(self, name: str) -> None:
        """Scroll the results so that section `name` (see SECTIONS) is at the top."""
        results = self.query_one("#eval-results", VerticalScroll)
        if name == "summary":
            results.scroll_home(animate=False)
        else:
            results.scroll_to_widget(self.query_one(SECTIONS[name][0]), top=True, animate=False)

    def _scrolled(self) -> None:
        self.call_after_refresh(self._show_fold)  # once the sections are where the scroll put them

    def _show_fold(self) -> None:
        """Under the results, name the sections scrolled out of view and their keys (at 80x24 the per-class
        table and the digits are below the fold); nothing while all are in view."""
        fold = self.query_one("#eval-fold", Static)
        results = self.query_one("#eval-results", VerticalScroll)
        top, bottom = results.scroll_y, results.scroll_y + results.scrollable_content_region.height
        out_of_view = []
        if self.result is not None:
            for name, (selector, key) in SECTIONS.items():
                start = self._offset_in(results, self.query_one(selector))
                if start < top:
                    out_of_view.append(f"{key} {name} ↑")
                elif start > bottom - SHOWN_ROWS:
                    out_of_view.append(f"{key} {name} ↓")
        fold.update("out of view: " + " · ".join(out_of_view))
        fold.display = bool(out_of_view)

    @staticmethod
    def _offset_in(container: Widget, widget: Widget) -> int:
        """How far down `container`'s scrolled content `widget` begins, whatever the scroll."""
        offset = 0
        node: DOMNode | None = widget
        while node is not None and node is not container:
            if isinstance(node, Widget):
                offset += node.virtual_region.y
            node = node.parent
        return offset

    def action_page(self, delta: int) -> None:
        """Page the misclassified digits; while they are scrolled out of sight (below the tables on a short
        terminal), the first press brings them into view instead."""
        if self.result is None or not self.result.mistakes:
            return
        results, title = self.query_one("#eval-results"), self.query_one("#gallery-title")
        if not results.region.contains_region(title.region):
            results.scroll_to_widget(title, top=True)
            return
        self.first_shown = max(0, self.page + delta) * self.cards_per_page()
        self.show_gallery()

    def on_resize(self, event: events.Resize) -> None:
        # The confusion matrix and the per-class table side by side need about 100 columns; below, stack them.
        self.query_one("#eval-tables").set_class(event.size.width < SIDE_BY_SIDE_WIDTH, "-stacked")
        if self.result is not None:
            self.call_after_refresh(self.show_gallery)
        self.call_after_refresh(self._show_fold)
