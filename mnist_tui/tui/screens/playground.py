"""The playground: draw a digit and watch a checkpoint read it, live; or load test digits and edit them.

The canvas goes through `predict`'s own preprocessing (mnist_tui.images: crop to the ink, 20 px, centre of
mass), so a digit drawn anywhere at any size is read as MNIST's were. Inference runs on the CPU in this
process, in one worker thread that always takes the newest picture: a drag of many strokes costs one
prediction at a time, never a queue of stale ones. torch is imported there, never before the first frame.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Digits, Footer, OptionList, Static
from textual.widgets.option_list import Option

from mnist_tui.tui.screens.dialogs import OpenCheckpointDialog
from mnist_tui.tui.widgets.canvas import DrawingCanvas, Pixels
from mnist_tui.tui.widgets.tabs import ScreenTabs

if TYPE_CHECKING:
    from torch import nn

    from mnist_tui.batches import Split

EIGHTHS = " ▏▎▍▌▋▊▉█"
BROWSE = "browse"
"""The option that opens the file dialog, after the runs' checkpoints."""


@dataclass(frozen=True)
class Loaded:
    """A checkpoint ready to predict with (its model is an nn.Module, on the CPU, in eval mode)."""

    path: Path
    model: nn.Module
    mean: float
    std: float
    dataset: str
    classes: tuple[str, ...]


def bar(share: float, width: int) -> str:
    """A horizontal bar `width` cells long, filled to `share` in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    return ("█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")).ljust(width)


def probability_bars(probabilities: list[float], classes: tuple[str, ...], width: int) -> Text:
    """A line per class: its name, a bar and the percentage; the top class bold."""
    top = max(range(len(probabilities)), key=probabilities.__getitem__)
    label_width = max(len(name[:6]) for name in classes)
    bar_width = max(4, width - label_width - 6)
    text = Text()
    for index, (name, share) in enumerate(zip(classes, probabilities, strict=True)):
        style = "bold" if index == top else ""
        text.append(f"{name[:6]:>{label_width}} ", style=style)
        text.append(bar(share, bar_width), style="bold green" if index == top else "")
        text.append(f"{share:>5.0%}" + ("\n" if index < len(classes) - 1 else ""), style=style)
    return text


class PlaygroundScreen(Screen[None]):
    """A canvas, the checkpoint's probabilities beside it, and the checkpoints to choose from below."""

    BINDINGS = [
        Binding("t", "test_digit", "Test digit", tooltip="a random test-set digit, with its true label"),
        Binding("left_square_bracket", "step(-1)", "Prev", tooltip="test digit"),
        Binding("right_square_bracket", "step(1)", "Next", tooltip="test digit"),
        Binding("m", "mistake", "Mistake", tooltip="the next test digit the checkpoint gets wrong"),
        Binding("o", "browse", "Open", tooltip="any .pt or .pth checkpoint"),
    ]

    def __init__(self, runs_dir: Path, data_dir: Path, download: bool) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.data_dir = data_dir
        self.download = download
        self.loaded: Loaded | None = None
        self.opening: Path | None = None
        self.paths: list[Path] = []
        self.test_index: int | None = None
        self.test_pixels: Pixels | None = None
        self.probabilities: list[float] | None = None
        self._test: tuple[str, Split] | None = None
        self._mistakes: tuple[Path, list[int]] | None = None
        self._lock = threading.Lock()
        self._pending: Pixels | None = None
        self._predicting = False

    def compose(self) -> ComposeResult:
        yield ScreenTabs("playground")
        with Horizontal(id="play-top"):
            yield DrawingCanvas(id="canvas")
            with Vertical(id="play-side"):
                yield Digits("", id="play-class")
                yield Static("", id="play-verdict")
                yield Static("", id="play-bars")
        yield Static("", id="play-status")
        yield OptionList(id="play-checkpoints")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#play-checkpoints", OptionList).border_title = "checkpoint"
        canvas = self.query_one(DrawingCanvas)
        for attribute in ("pen_down", "erasing", "brush"):
            self.watch(canvas, attribute, self.show_status, init=False)
        self.show_status()

    def on_screen_resume(self) -> None:
        self._discover()  # the first showing too: a run may have finished a checkpoint since the last

    @property
    def canvas(self) -> DrawingCanvas:
        return self.query_one(DrawingCanvas)

    # Checkpoints ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="discover")
    def _discover(self) -> None:
        """List the runs' checkpoints off the UI thread (reading them imports torch)."""
        from mnist_tui.checkpoints import CheckpointError, discover_checkpoints, read_checkpoint_info
        from mnist_tui.runs import latest_best

        rows: list[tuple[Path, str]] = []
        for path in discover_checkpoints(self.runs_dir):
            try:
                info = read_checkpoint_info(path)
            except CheckpointError:
                continue  # F4 lists what cannot be read, and says why
            accuracy = "" if info.val_accuracy is None else f" {info.val_accuracy:.2%}"
            rows.append((path, f"{info.run_id} {info.kind} · {info.model} · epoch {info.position}{accuracy}"))
        self.app.call_from_thread(self._show_checkpoints, rows, latest_best(self.runs_dir))

    def _show_checkpoints(self, rows: list[tuple[Path, str]], default: Path | None) -> None:
        options = self.query_one("#play-checkpoints", OptionList)
        options.clear_options()
        self.paths = [path for path, _ in rows]
        options.add_options([Option(escape(label)) for _, label in rows])
        options.add_option(Option("Open any .pt / .pth file… (o)", id=BROWSE))
        chosen = self.loaded.path if self.loaded is not None else self.opening or default
        if chosen in self.paths:
            options.highlighted = self.paths.index(chosen)
        if self.loaded is None and self.opening is None and default is not None:
            self.load(default)
        elif self.loaded is None and self.opening is None:
            self.show_status()

    @on(OptionList.OptionSelected, "#play-checkpoints")
    def checkpoint_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == BROWSE:
            self.action_browse()
        elif event.option_index < len(self.paths):
            self.load(self.paths[event.option_index])

    def action_browse(self) -> None:
        def picked(path: Path | None) -> None:
            if path is not None:
                self.load(path)

        cwd = Path.cwd()
        outside = self.runs_dir.is_dir() and not self.runs_dir.resolve().is_relative_to(cwd.resolve())
        self.app.push_screen(OpenCheckpointDialog(self.runs_dir if outside else cwd), picked)

    def load(self, path: Path) -> None:
        """Load a checkpoint in the background; the canvas is read again with it."""
        self.opening = path
        self.show_status()
        self._load(path)

    @work(thread=True, exclusive=True, group="load")
    def _load(self, path: Path) -> None:
        from mnist_tui.checkpoints import CheckpointError, load_checkpoint
        from mnist_tui.data import DATASET_SPECS

        try:
            checkpoint = load_checkpoint(path)
            model = checkpoint.build_model().eval()
        except CheckpointError as error:
            self.app.call_from_thread(self._load_failed, path, str(error))
            return
        except Exception as error:  # a torch error building it: say so, keep the dashboard up
            self.app.call_from_thread(self._load_failed, path, f"{path}: {type(error).__name__}: {error}")
            return
        loaded = Loaded(path, model, checkpoint.mean, checkpoint.std, checkpoint.config.dataset,
                        DATASET_SPECS[checkpoint.config.dataset].classes)
        self.app.call_from_thread(self._loaded, loaded)

    def _load_failed(self, path: Path, message: str) -> None:
        if self.opening == path:
            self.opening = None
        self.notify(escape(message), title="Cannot load", severity="error", timeout=8)
        self.show_status()

    def _loaded(self, loaded: Loaded) -> None:
        if self.opening != loaded.path:
            return  # another checkpoint was chosen meanwhile
        self.loaded, self.opening = loaded, None
        if self._test is not None and self._test[0] != loaded.dataset:
            self._test, self.test_index, self.test_pixels = None, None, None
        self.show_status()
        self.request_prediction()

    # Prediction -------------------------------------------------------------------------------------

    @on(DrawingCanvas.Changed)
    def canvas_changed(self) -> None:
        self.show_status()
        self.request_prediction()

    def request_prediction(self) -> None:
        """Have the worker read the canvas as it is now; a worker already busy picks it up next."""
        with self._lock:
            self._pending = [row[:] for row in self.canvas.pixels]
            if self._predicting:
                return
            self._predicting = True
        self._predict()

    @work(thread=True, group="predict")
    def _predict(self) -> None:
        import torch

        from mnist_tui.evaluation import classify
        from mnist_tui.images import ImageError, digit_from_grey

        while True:
            with self._lock:
                pixels, self._pending = self._pending, None
                if pixels is None or self.loaded is None:
                    self._predicting = False
                    return
                loaded = self.loaded
            try:
                digit = digit_from_grey(torch.tensor(pixels), where="canvas")
            except ImageError:
                self.app.call_from_thread(self.show_probabilities, None)
                continue
            probabilities = classify(loaded.model, digit[None], loaded.mean, loaded.std)[0].tolist()
            self.app.call_from_thread(self.show_probabilities, probabilities)

    def show_probabilities(self, probabilities: list[float] | None) -> None:
        """Draw the bars and the top class; None: the canvas is blank."""
        self.probabilities = probabilities
        digits, verdict = self.query_one("#play-class", Digits), self.query_one("#play-verdict", Static)
        bars = self.query_one("#play-bars", Static)
        if probabilities is None or self.loaded is None:
            digits.update("")
            verdict.update("Draw a digit\nor press t" if self.loaded is not None else "")
            bars.update("")
            return
        classes = self.loaded.classes
        top = max(range(len(probabilities)), key=probabilities.__getitem__)
        digits.update(classes[top] if classes[top].isdigit() else "")
        verdict.update(Text.assemble((classes[top], "bold"), f"  {probabilities[top]:.1%}"))
        bars.update(probability_bars(probabilities, classes, bars.size.width or 22))

    # Test digits ------------------------------------------------------------------------------------

    def action_test_digit(self) -> None:
        self._show_test(None, 0)

    def action_step(self, delta: int) -> None:
        self._show_test(self.test_index, delta)

    def action_mistake(self) -> None:
        if self.loaded is None:
            self.notify("Choose a checkpoint first: its mistakes are what m steps through.", severity="warning")
            return
        self._show_test(self.test_index, 1, mistakes=True)

    @work(thread=True, exclusive=True, group="test")
    def _show_test(self, index: int | None, delta: int, mistakes: bool = False) -> None:
        """A test digit: a random one (no index, no delta), the next or previous one, or the next the
        loaded checkpoint gets wrong."""
        from mnist_tui.batches import DeviceError, load_split
        from mnist_tui.data import DatasetError

        loaded = self.loaded
        dataset = loaded.dataset if loaded is not None else "mnist"
        try:
            if self._test is None or self._test[0] != dataset:
                self._test = (dataset, load_split(dataset, False, self.data_dir, self.download))
            split = self._test[1]
            if mistakes and loaded is not None:
                wrong = self._wrong(loaded, split)
                if not wrong:
                    self.app.call_from_thread(self.notify, "This checkpoint gets every test digit right.")
                    return
                start = -1 if index is None else index
                index = next((i for i in wrong if i > start), wrong[0])
            elif index is None:  # t: a random digit; ] or [ with none shown: the first or the last
                index = random.randrange(len(split)) if delta == 0 else 0 if delta > 0 else len(split) - 1
            else:
                index = (index + delta) % len(split)
        except (DatasetError, DeviceError) as error:
            self.app.call_from_thread(self.notify, escape(str(error)), title="No test set", severity="error",
                                      timeout=8)
            return
        pixels = (split.images[index].float() / 255).tolist()
        self.app.call_from_thread(self._put_test_digit, index, pixels)

    def _wrong(self, loaded: Loaded, split: Split) -> list[int]:
        """The test digits the checkpoint misclassifies, as eval scores them (on the raw digits), once."""
        from mnist_tui.evaluation import predict

        if self._mistakes is None or self._mistakes[0] != loaded.path:
            logits = predict(loaded.model, split, loaded.mean, loaded.std)
            wrong = (logits.argmax(dim=1) != split.labels).nonzero().flatten().tolist()
            self._mistakes = (loaded.path, wrong)
        return self._mistakes[1]

    def _put_test_digit(self, index: int, pixels: Pixels) -> None:
        self.test_index, self.test_pixels = index, pixels
        self.canvas.set_pixels(pixels)

    # Status -----------------------------------------------------------------------------------------

    def show_status(self) -> None:
        """One line: the checkpoint, the test digit shown (and whether it was edited), the brush."""
        canvas = self.canvas
        parts: list[str] = []
        if self.opening is not None:
            parts.append(f"loading {escape(self.opening.name)}…")
        elif self.loaded is not None:
            path = self.loaded.path
            parts.append(escape(f"{path.parent.name}/{path.name}" if path.stem in ("best", "last") else path.name))
        else:
            parts.append("no checkpoint: train a run (F2) or o to open one")
        if self.test_index is not None and self._test is not None:
            label = self._test[1].labels[self.test_index]
            name = (self.loaded.classes if self.loaded is not None else tuple(map(str, range(10))))[int(label)]
            edited = " (edited)" if canvas.pixels != self.test_pixels else ""
            parts.append(f"test #{self.test_index} true [b]{escape(name)}[/b]{edited}")
        mode = "erasing" if canvas.erasing else "drawing" if canvas.pen_down else "pen up"
        parts.append(f"{mode}, brush {canvas.brush + 1}")
        self.query_one("#play-status", Static).update(" · ".join(parts))
