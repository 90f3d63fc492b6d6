"""Loss and accuracy charts: PlotextPlot subclasses over plain bounded series, downsampled to the canvas."""

from __future__ import annotations

import math
from typing import Literal

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from mnist_tui.runview import Point, RunView, Trail

SMOOTHING = 0.8
"""How much of the curve so far each progress report keeps: a report covers a tenth of a second's batches."""
TICK_SPACING = 5
"""Columns per x tick label at least (`0.25` and a space)."""


def downsample(xs: list[float], ys: list[float], width: int) -> tuple[list[float], list[float]]:
    """Average consecutive points into about `width` buckets, so a chart never draws more than it can show."""
    if width <= 0 or len(xs) <= width:
        return xs, ys
    size = len(xs) / width
    out_x, out_y = [], []
    for bucket in range(width):
        start, stop = int(bucket * size), max(int((bucket + 1) * size), int(bucket * size) + 1)
        out_x.append(sum(xs[start:stop]) / (stop - start))
        out_y.append(sum(ys[start:stop]) / (stop - start))
    return out_x, out_y


PLOT_FRAME_ROWS = 5
"""Rows of a chart that are not plot area: title, top and bottom frame, x ticks, x label."""
LEGEND_MARKS = {"braille": "⢕", "dot": "•", "x": "x"}
"""How plotext draws each marker in a legend, for a legend written into the title."""


def finite_points(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """The points with a finite y: plotext fails on an infinite one, and a validation loss can overflow."""
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def smoothed(values: list[float], smoothing: float = SMOOTHING) -> list[float]:
    """Exponentially smoothed values, begun afresh after one that is not finite."""
    out: list[float] = []
    last = math.nan
    for value in values:
        last = value if not math.isfinite(last) else smoothing * last + (1 - smoothing) * value
        out.append(last)
    return out


def unzip(points: Trail[Point]) -> tuple[list[float], list[float]]:
    return [x for x, _ in points], [y for _, y in points]


class Chart(PlotextPlot):
    """A chart that redraws its series from plain lists whenever it is resized or asked to.

    plotext builds a plot in pure Python, tens of milliseconds each time; PlotextPlot builds on every
    render, and a dialog opening or a progress bar moving re-renders the screen. So the built plot is kept
    until the data, the size or the theme changes, and only `replot` pays for a new one.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._version = 0
        self.stale = False
        """Set when the data changed after the last replot."""
        self._rendered: tuple[tuple[object, ...], RenderResult] | None = None

    def on_resize(self) -> None:
        self.replot()

    def draw(self) -> None:
        """Set the plot's data on `self.plt` (after it was cleared)."""
        raise NotImplementedError

    def legend_fits(self, entries: int) -> bool:
        """Whether the plot has the rows to keep a legend of `entries` lines clear of the data: plotext draws
        it over the plot's top-left rows. Below a third of the plot, the room is worth more to the data."""
        return self.size.height - PLOT_FRAME_ROWS >= 3 * (entries + 1)

    def title_and_labels(self, title: str, series: list[tuple[str, str]]) -> list[str | None]:
        """Set the title and return the labels for `series` ((name, marker) pairs): plotext's own legend
        where it fits, else none and the legend written into the title (`loss  ⢕ train  • val`), so it
        never hides the data of a short chart, as at 80x24."""
        if self.legend_fits(len(series)):
            self.plt.title(title)
            return [name for name, _ in series]
        room = self.size.width - 2  # plotext drops a longer title altogether
        marked = [(LEGEND_MARKS[marker], name) for name, marker in series]
        # Spaced out; closer together; then without the last entries (the best mark first), as room allows.
        candidates = ["  ".join([title, *(f"{mark} {name}" for mark, name in marked)])]
        candidates += [" ".join([title, *(f"{mark}{name}" for mark, name in marked[:kept])])
                       for kept in range(len(marked), -1, -1)]
        self.plt.title(next((c for c in candidates if len(c) <= room), title[:room]))
        return [None] * len(series)

    def set_epoch_axis(self, xs: list[float]) -> None:
        """Ticks at whole epochs, at most six (plotext would tick 1.25, 1.50, ...); plotext's own while
        fewer than two whole epochs lie within the data (a loss chart's first epochs), or one epoch in all."""
        if not xs:
            return
        low, high = min(xs), max(xs)
        step = next(m * 10**e for e in range(7) for m in (1, 2, 5) if (high - low) / (m * 10**e) < 6)
        ticks = [float(t) for t in range(math.ceil(low), math.floor(high) + 1) if t % step == 0]
        if len(ticks) >= 2 or low == high:
            self.plt.xticks(ticks, [str(int(t)) for t in ticks])

    def set_training_axis(self, xs: list[float]) -> None:
        """x from the start of the first epoch the data touches to the end of the last, so a curve grows
        across its chart; ticks at whole epochs from two epochs on, else at tenths to halves (`0`, `0.25`,
        …, `1`), as many as the width has room for, six at most. Always some: plotext's own would be
        `0.0250 0.0312 …` in the first epoch, and none for an empty chart or a single point, which then
        ends a row lower than its neighbour."""
        low = math.floor(min(xs)) if xs else 0
        high = max(math.ceil(max(xs)) if xs else 1, low + 1)
        room = max(2, min(6, (self.size.width - 8) // TICK_SPACING))
        span = high - low
        steps = (0.1, 0.2, 0.25, 0.5, 1.0) if span == 1 else [m * 10.0**e for e in range(7) for m in (1, 2, 5)]
        step = next(s for s in steps if math.floor(span / s + 1e-9) + 1 <= room)
        count = math.floor(span / step + 1e-9)
        first = math.ceil(low / step - 1e-9)
        ticks = [round((first + n) * step, 6) for n in range(count + 1) if (first + n) * step <= high + 1e-9]
        if not xs:  # plotext draws no axes without data: an invisible point gives them
            self.plt.scatter([(low + high) / 2], [0.0], marker=" ")
            self.plt.yticks([], [])
        self.plt.xlim(low, high)
        self.plt.xticks(ticks, [f"{tick:g}" for tick in ticks])

    def set_y_axis(self, values: list[float], labels: int) -> None:
        """Fit the y axis to the (finite) data with room above it for a legend of `labels` lines where one
        fits (see legend_fits; elsewhere the legend is in the title); ticks only where data can be, so an
        accuracy axis never reads above 100, even for a single point."""
        rows = self.size.height - PLOT_FRAME_ROWS
        if not values or rows < 2:
            return
        spare = labels + 1 if labels and self.legend_fits(labels) else 0
        low, high = min(values), max(values)
        if high > low:
            count = max(2, min(6, rows // 3))
            ticks = [low + (high - low) * i / (count - 1) for i in range(count)]
            decimals = max(0, 2 - math.floor(math.log10(high - low)))
        else:  # one value: three significant digits, not as many as the padding around it would take
            ticks = [low]
            decimals = max(0, 2 - math.floor(math.log10(abs(low)))) if low else 2
            low, high = low - max(abs(low) * 0.01, 0.01), high + max(abs(high) * 0.01, 0.01)
        self.plt.ylim(low, high + (high - low) * spare / (rows - spare))
        self.plt.yticks(ticks, [f"{tick:.{decimals}f}" for tick in ticks])

    def replot(self) -> None:
        self.plt.clear_data()
        self.draw()
        self.stale = False
        self._version += 1
        self.refresh()

    def render(self) -> RenderResult:
        key = (self._version, self.size, self.app.theme, self.theme)
        if self._rendered is None or self._rendered[0] != key:
            self._rendered = (key, super().render())
        return self._rendered[1]


class LossChart(Chart):
    """Training loss per progress report (smoothed) and validation loss per epoch, x in epochs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = RunView()

    def show(self, view: RunView) -> None:
        """Draw `view`'s series at the next replot; stale only if they changed (a view's series are new
        objects only when they do)."""
        if view.loss_points is not self.view.loss_points or view.epoch_ends is not self.view.epoch_ends:
            self.stale = True
        self.view = view

    def draw(self) -> None:
        plt = self.plt
        plt.xlabel("epoch")
        xs, ys = unzip(self.view.loss_points)
        xs, ys = finite_points(*downsample(xs, smoothed(ys), max(self.size.width - 12, 10)))
        ends = self.view.epoch_ends
        val_epochs, val_loss = finite_points([float(e.epoch) for e in ends], [e.val_loss for e in ends])
        series = [("train", "braille")] * bool(xs) + [("val", "dot")] * bool(val_loss)
        labels = iter(self.title_and_labels("loss", series))
        if xs:
            plt.plot(xs, ys, label=next(labels), marker="braille")
        if val_loss:
            plt.plot(val_epochs, val_loss, label=next(labels), marker="dot")
        self.set_y_axis(ys + val_loss, len(series))
        self.set_training_axis(xs + val_epochs)


class AccuracyChart(Chart):
    """Training accuracy per progress report (smoothed, as the loss is) and validation accuracy per epoch,
    with the best validation epoch marked."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = RunView()

    def show(self, view: RunView) -> None:
        """As LossChart.show."""
        if (view.accuracy_points is not self.view.accuracy_points or view.epoch_ends is not self.view.epoch_ends
                or view.best is not self.view.best):
            self.stale = True
        self.view = view

    def draw(self) -> None:
        plt = self.plt
        plt.xlabel("epoch")
        xs, ys = unzip(self.view.accuracy_points)
        xs, train = downsample(xs, [100 * a for a in smoothed(ys)], max(self.size.width - 12, 10))
        ends = self.view.epoch_ends
        epochs, val = [float(e.epoch) for e in ends], [100 * e.val_accuracy for e in ends]
        best = self.view.best
        series = [("train", "braille")] * bool(xs) + [("val", "dot")] * bool(epochs)
        if best is not None:
            series.append((f"best {100 * best.val_accuracy:.2f}%", "x"))
        labels = iter(self.title_and_labels("accuracy %", series))
        if xs:
            plt.plot(xs, train, label=next(labels), marker="braille")
        if epochs:
            plt.plot(epochs, val, label=next(labels), marker="dot")  # as on the loss chart
        if best is not None:
            plt.scatter([float(best.epoch)], [100 * best.val_accuracy], label=next(labels), marker="x")
        self.set_y_axis(train + val, len(series))
        self.set_training_axis(xs + epochs)


RunMetric = Literal["accuracy", "loss"]
"""What the runs chart compares: validation accuracy, or training and validation loss."""
RUN_COLORS: list[tuple[int, int, int]] = [(0, 130, 200), (60, 180, 75), (230, 25, 75), (255, 225, 25),
                                          (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]
"""One colour per run shown, kept by its place in the list whichever metric is drawn (the start of
textual-plotext's sequence, chosen to read on light and dark themes)."""


class RunsChart(Chart):
    """Per-epoch curves of several runs overlaid to compare them: validation accuracy, or training and
    validation loss. Each epoch is marked as well as joined, so a one-epoch run is a mark, not a speck."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curves: dict[str, list[float]] = {}
        """Validation accuracy of each epoch, by run id."""
        self.losses: dict[str, tuple[list[float], list[float]]] = {}
        """Training and validation loss of each epoch, by run id."""
        self.shown: list[str] = []
        self.metric: RunMetric = "accuracy"

    def show(self, run_ids: list[str], metric: RunMetric = "accuracy") -> None:
        self.shown, self.metric = run_ids, metric
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.xlabel("epoch")
        if self.metric == "loss":
            name, key, marks = "loss per epoch", "  x train  • val", ["x", "dot"]
            series = [(run_id, list(self.losses[run_id])) for run_id in self.shown
                      if self.losses.get(run_id, ([], []))[1]]
        else:
            name, key, marks = "validation accuracy %", "", ["dot"]
            series = [(run_id, [[100 * a for a in self.curves[run_id]]]) for run_id in self.shown
                      if self.curves.get(run_id)]
        # An empty frame explains itself: the runs shown have not finished an epoch.
        plt.title(name + key if series or not self.shown else f"{name}: no finished epoch yet")
        values: list[float] = []
        for run_id, curves in series:
            color = RUN_COLORS[self.shown.index(run_id) % len(RUN_COLORS)]
            for number, (curve, mark) in enumerate(zip(curves, marks, strict=True)):
                epochs, points = finite_points([float(e) for e in range(1, len(curve) + 1)], curve)
                if len(points) > 1:
                    plt.plot(epochs, points, marker="braille", color=color)
                # The run is named once in the legend, by its last series (the validation one).
                plt.scatter(epochs, points, marker=mark, color=color,
                            label=legend_label(run_id) if number == len(marks) - 1 else None)
                values += points
        self.set_y_axis(values, len(series))
        self.set_epoch_axis([float(len(curves[-1])) for _, curves in series] + [1.0] * bool(series))


def legend_label(run_id: str) -> str:
    """A run's name in a legend: a generated id without its date (`091251-cnn-6276`), else its last 16
    characters."""
    date, _, rest = run_id.partition("-")
    return (rest if len(date) == 8 and date.isdigit() and rest else run_id)[-16:]
