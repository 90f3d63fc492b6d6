"""A 28x28 grey image drawn in 28x14 terminal cells: each cell is an upper half block whose foreground is
the top pixel and background the bottom one. Without colour, cells fall back to shade characters."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

SHADES = " ░▒▓█"


def grey(value: int) -> str:
    return f"rgb({value},{value},{value})"


def render_rows(pixels: Sequence[Sequence[int]], colour: bool) -> list[Strip]:
    """Rows of cells for a 28x28 image of 0-255 values."""
    strips = []
    for top, bottom in zip(pixels[0::2], pixels[1::2], strict=True):
        if colour:
            segments = [Segment("▀", Style(color=grey(t), bgcolor=grey(b))) for t, b in zip(top, bottom, strict=True)]
        else:
            # A style, even an empty one: Textual's monochrome filter (NO_COLOR) fails on a segment without.
            segments = [Segment(SHADES[min((t + b) * len(SHADES) // 512, len(SHADES) - 1)], Style())
                        for t, b in zip(top, bottom, strict=True)]
        strips.append(Strip(segments))
    return strips


class DigitImage(Widget):
    """One image, 28 cells wide and 14 high."""

    DEFAULT_CSS = """
    DigitImage { width: 28; height: 14; }
    """

    def __init__(self, pixels: Sequence[Sequence[int]], *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.pixels = pixels
        self._strips: list[Strip] | None = None

    def render_line(self, y: int) -> Strip:
        if self._strips is None:
            self._strips = render_rows(self.pixels, colour=not self.app.no_color)
        return self._strips[y] if y < len(self._strips) else Strip.blank(self.size.width)
