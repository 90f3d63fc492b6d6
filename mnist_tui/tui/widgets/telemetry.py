"""The training panel's device strip: one line of what the run's GPU (or CPU) is doing, with sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from mnist_tui.reporting import short_gpu_name
from mnist_tui.runview import format_memory
from mnist_tui.telemetry import CpuSample, GpuSample

BARS = "▁▂▃▄▅▆▇█"


class ScaledSparkline(Sparkline):
    """Textual's Sparkline on a fixed 0..1 scale. Its own stretches the data's range to the full height,
    which draws a GPU steady at 97% as a flat floor and one wavering between 96% and 98% as wild swings.
    The newest values are at the right; fewer values than columns leave the left empty."""

    def render(self) -> Text:
        width = self.size.width
        data = [min(max(value, 0.0), 1.0) for value in self.data or []]
        if width <= 0 or not data:
            return Text(" " * max(width, 0))
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        columns = min(width, len(data))
        text = Text(" " * (width - columns))
        for column in range(columns):  # each column the highest of its share of the data
            share = data[column * len(data) // columns:(column + 1) * len(data) // columns]
            value = max(share)
            text.append(BARS[round(value * (len(BARS) - 1))], Style(color=low.blend(high, value).rich_color))
        return text


class DeviceStrip(Horizontal):
    """What the run's device is doing, on one line: its name, utilisation and memory, each with a sparkline
    of the last minutes, then temperature and power. The screen hides it while no run is live."""

    def compose(self) -> ComposeResult:
        yield Static("", id="strip-device")
        yield Static("", id="strip-load")
        yield ScaledSparkline([], id="strip-load-spark")
        yield Static("", id="strip-memory")
        yield ScaledSparkline([], id="strip-memory-spark")
        yield Static("", id="strip-rest")

    def show_gpu(self, gpu: GpuSample, history: Sequence[GpuSample]) -> None:
        """The run's GPU now, and its readings over the last minutes (oldest first)."""
        name = short_gpu_name(gpu.name)
        self._show(f"[b]GPU {gpu.index}[/b] {escape(name[:20])}",
                   "util " + ("-" if gpu.utilization is None else f"{gpu.utilization:.0f}%"),
                   [(g.utilization or 0.0) / 100 for g in history],
                   f"mem {format_memory(gpu.memory_used)}/{format_memory(gpu.memory_total)}",
                   [g.memory_used / g.memory_total if g.memory_total else 0.0 for g in history],
                   " · ".join(part for part in (
                       None if gpu.temperature is None else f"{gpu.temperature}°C",
                       None if gpu.power_draw is None else f"{gpu.power_draw:.0f}"
                       + ("" if gpu.power_limit is None else f"/{gpu.power_limit:.0f}") + " W") if part))

    def show_cpu(self, device: str, cpu: CpuSample, history: Sequence[CpuSample]) -> None:
        """A run off the GPU: the trainer's CPU (percent of one core) with a sparkline against every core,
        its resident memory, and the whole machine's CPU."""
        trainer = "-" if cpu.process_cpu is None else f"{cpu.process_cpu:.0f}%"
        self._show(f"[b]{escape(device.upper())}[/b]", f"trainer {trainer}",
                   [(c.process_cpu or 0.0) / (100 * c.cores) for c in history],
                   f"rss {format_memory(cpu.process_rss)}", None,
                   f"machine {cpu.utilization:.0f}% of {cpu.cores} cores")

    def show_message(self, text: str) -> None:
        """No figures to show, and why (escaped here)."""
        self._show(escape(text), "", None, "", None, "")

    def _show(self, device: str, load: str, load_series: list[float] | None, memory: str,
              memory_series: list[float] | None, rest: str) -> None:
        for widget_id, text in (("#strip-device", device), ("#strip-load", load), ("#strip-memory", memory),
                                ("#strip-rest", rest)):
            static = self.query_one(widget_id, Static)
            static.update(text)
            static.display = bool(text)
        for widget_id, series in (("#strip-load-spark", load_series), ("#strip-memory-spark", memory_series)):
            spark = self.query_one(widget_id, ScaledSparkline)
            spark.display = series is not None
            spark.data = series or []
