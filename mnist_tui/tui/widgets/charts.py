"""Loss and accuracy charts: PlotextPlot subclasses over plain bounded series, downsampled to the canvas."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from textual.app import RenderResult
from textual_plotext import PlotextPlot

MAX_POINTS = 4000
"""Per-step points kept in memory; older ones are thinned, never the epoch points."""


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


class SmoothedSeries:
    """A per-step series with exponential smoothing, bounded by halving its resolution when full."""

    def __init__(self, smoothing: float = 0.8, limit: int = MAX_POINTS) -> None:
        self.smoothing = smoothing
        self.limit = limit
        self.xs: deque[float] = deque()
        self.ys: deque[float] = deque()
        self._last: float | None = None

    def add(self, x: float, y: float) -> None:
        self._last = y if self._last is None else self.smoothing * self._last + (1 - self.smoothing) * y
        self.xs.append(x)
        self.ys.append(self._last)
        if len(self.xs) > self.limit:
            self.xs = deque(list(self.xs)[::2])
            self.ys = deque(list(self.ys)[::2])

    def clear(self) -> None:
        self.xs.clear()
        self.ys.clear()
        self._last = None

    def cut_after(self, x: float) -> None:
        """Drop the points beyond `x`: a run resumed from an earlier checkpoint trains them again."""
        while self.xs and self.xs[-1] > x:
            self.xs.pop()
            self.ys.pop()
        self._last = self.ys[-1] if self.ys else None


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
    """Training loss per step (smoothed) and validation loss per epoch, x in epochs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.train = SmoothedSeries()
        self.val_epochs: list[float] = []
        self.val_loss: list[float] = []

    def clear(self) -> None:
        self.train.clear()
        self.val_epochs.clear()
        self.val_loss.clear()
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.xlabel("epoch")
        xs, ys = finite_points(*downsample(list(self.train.xs), list(self.train.ys), max(self.size.width - 12, 10)))
        val_epochs, val_loss = finite_points(self.val_epochs, self.val_loss)
        series = [("train", "braille")] * bool(xs) + [("val", "dot")] * bool(val_loss)
        labels = iter(self.title_and_labels("loss", series))
        if xs:
            plt.plot(xs, ys, label=next(labels), marker="braille")
        if val_loss:
            plt.plot(val_epochs, val_loss, label=next(labels), marker="dot")
        self.set_y_axis(ys + val_loss, len(series))
        self.set_epoch_axis(xs + val_epochs)


class AccuracyChart(Chart):
    """Training and validation accuracy per epoch, with the best validation epoch marked."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.epochs: list[float] = []
        self.train: list[float] = []
        self.val: list[float] = []
        self.best_epoch = 0

    def clear(self) -> None:
        self.epochs.clear()
        self.train.clear()
        self.val.clear()
        self.best_epoch = 0
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.xlabel("epoch")
        best = self.val[self.epochs.index(self.best_epoch)] if self.best_epoch else 0.0
        series = ([("train", "braille"), ("val", "dot")] * bool(self.epochs)
                  + [(f"best {100 * best:.2f}%", "x")] * bool(self.best_epoch))
        labels = iter(self.title_and_labels("accuracy %", series))
        if self.epochs:
            plt.plot(self.epochs, [100 * a for a in self.train], label=next(labels), marker="braille")
            plt.plot(self.epochs, [100 * a for a in self.val], label=next(labels), marker="dot")  # as on the loss chart
        if self.best_epoch:
            plt.scatter([self.best_epoch], [100 * best], label=next(labels), marker="x")
        self.set_y_axis([100 * a for a in self.train + self.val], len(series))
        self.set_epoch_axis(self.epochs)


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
