"""Loss and accuracy charts: PlotextPlot subclasses over plain bounded series, downsampled to the canvas."""

from __future__ import annotations

import math
from collections import deque

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

    def set_y_axis(self, values: list[float], labels: int) -> None:
        """Fit the y axis to the (finite) data with room above it for the legend, which plotext draws over the plot's
        top-left rows (where a loss starts, and where a short run sits); ticks only where data can be, so
        an accuracy axis never reads above 100, even for a single point."""
        rows = self.size.height - PLOT_FRAME_ROWS
        if not values or rows < 2:
            return
        # Below a third of the plot, the room is worth more to the data than to a clear legend.
        spare = labels + 1 if rows >= 3 * (labels + 1) else 0
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
        plt.title("loss")
        plt.xlabel("epoch")
        xs, ys = finite_points(*downsample(list(self.train.xs), list(self.train.ys), max(self.size.width - 12, 10)))
        if xs:
            plt.plot(xs, ys, label="train", marker="braille")
        val_epochs, val_loss = finite_points(self.val_epochs, self.val_loss)
        if val_loss:
            plt.plot(val_epochs, val_loss, label="val", marker="dot")
        self.set_y_axis(ys + val_loss, (1 if xs else 0) + (1 if val_loss else 0))


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
        plt.title("accuracy %")
        plt.xlabel("epoch")
        if self.epochs:
            plt.plot(self.epochs, [100 * a for a in self.train], label="train", marker="braille")
            plt.plot(self.epochs, [100 * a for a in self.val], label="val", marker="dot")  # as on the loss chart
        if self.best_epoch:
            best = self.val[self.epochs.index(self.best_epoch)]
            plt.scatter([self.best_epoch], [100 * best], label=f"best {100 * best:.2f}%", marker="x")
        self.set_y_axis([100 * a for a in self.train + self.val], (2 if self.epochs else 0) + bool(self.best_epoch))


class RunsChart(Chart):
    """Validation accuracy per epoch of several runs, overlaid to compare them."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curves: dict[str, list[float]] = {}
        self.shown: list[str] = []

    def show(self, run_ids: list[str]) -> None:
        self.shown = run_ids
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        curves = [(run_id, [100 * a for a in self.curves[run_id]]) for run_id in self.shown if self.curves.get(run_id)]
        # An empty frame explains itself: the runs shown have not finished an epoch.
        plt.title("validation accuracy %" if curves or not self.shown else
                  "validation accuracy %: no finished epoch yet")
        plt.xlabel("epoch")
        for run_id, curve in curves:
            plt.plot(list(range(1, len(curve) + 1)), curve, label=legend_label(run_id), marker="braille")
        self.set_y_axis([a for _, curve in curves for a in curve], len(curves))


def legend_label(run_id: str) -> str:
    """A run's name in a legend: a generated id without its date (`091251-cnn-6276`), else its last 16
    characters."""
    date, _, rest = run_id.partition("-")
    return (rest if len(date) == 8 and date.isdigit() and rest else run_id)[-16:]
