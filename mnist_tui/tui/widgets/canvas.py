"""A 28x28 canvas to draw a digit on, with the keyboard or the mouse.

Drawn as the digit widget draws: upper half blocks, two pixels a cell; and each pixel two columns wide, so
the 56x14 cells look square. Strokes are anti-aliased the way MNIST's are: a round brush whose edge fades
over a pixel, stamped every half pixel along the stroke, never hard 0/1 pixels. Torch-free: the screen
turns the pixels into a tensor in its worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from mnist_tui.tui.widgets.digit import SHADES

SIDE = 28
BRUSH_RADII = (0.7, 1.0, 1.4, 1.9, 2.5)
"""Brush radii in pixels, `-` and `+` step through them; 1.0 draws strokes as wide as MNIST's (about 2-3 px)."""
DEFAULT_BRUSH = 2
CURSOR_COLOURS = {"up": (240, 170, 40), "draw": (60, 200, 90), "erase": (230, 60, 60)}
"""The brush's tint: pen up, drawing, erasing."""
CURSOR_MIX = 0.55


Pixels = list[list[float]]


def blank() -> Pixels:
    return [[0.0] * SIDE for _ in range(SIDE)]


def stamp(pixels: Pixels, row: float, col: float, radius: float, erase: bool = False) -> None:
    """Press a round, soft-edged brush centred at (row, col), in pixel units, into `pixels`: ink only ever
    darkens (or, erasing, lightens) a pixel, so stamps along a stroke overlap without banding."""
    reach = math.ceil(radius + 1)
    for r in range(max(0, int(row) - reach), min(SIDE, int(row) + reach + 1)):
        for c in range(max(0, int(col) - reach), min(SIDE, int(col) + reach + 1)):
            coverage = min(1.0, max(0.0, radius + 0.5 - math.hypot(r - row, c - col)))
            if coverage > 0.0:
                pixels[r][c] = min(pixels[r][c], 1.0 - coverage) if erase else max(pixels[r][c], coverage)


def stroke(pixels: Pixels, start: tuple[float, float], end: tuple[float, float], radius: float,
           erase: bool = False) -> None:
    """A line of stamps every half pixel from `start` to `end`, so a fast drag still draws a solid line."""
    steps = max(1, math.ceil(math.hypot(end[0] - start[0], end[1] - start[1]) * 2))
    for step in range(steps + 1):
        t = step / steps
        stamp(pixels, start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t, radius, erase)


@lru_cache(maxsize=4096)
def cell_style(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Style:
    return Style(color=f"rgb{top}", bgcolor=f"rgb{bottom}")


def pixel_colour(value: float, tint: tuple[int, int, int] | None) -> tuple[int, int, int]:
    level = round(max(0.0, min(1.0, value)) * 255)
    if tint is None:
        return (level, level, level)
    return tuple(round(level * (1 - CURSOR_MIX) + t * CURSOR_MIX) for t in tint)  # type: ignore[return-value]


class DrawingCanvas(Widget, can_focus=True):
    """The canvas: arrows move the brush, space puts the pen down or lifts it, x toggles the eraser,
    + and - change the brush size, c clears; the mouse draws while a button is held."""

    DEFAULT_CSS = """
    DrawingCanvas { width: 56; height: 14; }
    """

    BINDINGS = [
        Binding("up", "move(-1, 0)", "Move", show=False),
        Binding("down", "move(1, 0)", "Move", show=False),
        Binding("left", "move(0, -1)", "Move", show=False),
        Binding("right", "move(0, 1)", "Move", show=False),
        Binding("space", "toggle_pen", "Pen", tooltip="down to draw as the brush moves, or up"),
        Binding("x", "toggle_eraser", "Eraser"),
        Binding("plus,equals_sign", "brush(1)", "Brush+", key_display="+"),
        Binding("minus", "brush(-1)", "Brush-", key_display="-"),
        Binding("c", "clear", "Clear"),
    ]

    @dataclass
    class Changed(Message):
        """The pixels changed; high-rate during a drag, so only the latest one matters."""

        canvas: DrawingCanvas

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, DrawingCanvas.Changed) and message.canvas is self.canvas

    cursor: reactive[tuple[int, int]] = reactive((SIDE // 2, SIDE // 2))
    pen_down: reactive[bool] = reactive(False)
    erasing: reactive[bool] = reactive(False)
    brush: reactive[int] = reactive(DEFAULT_BRUSH)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pixels: Pixels = blank()
        self._dragging: tuple[float, float] | None = None
        self._focused = False
        self._refocus = False

    # A screen installed before it is first shown hides its widgets once, and a hidden widget's focus moves
    # on to the next one: the canvas takes it back when it is shown again.

    def on_focus(self) -> None:
        self._focused = True

    def on_blur(self) -> None:
        self._focused = False

    def on_hide(self) -> None:
        self._refocus = self._focused  # the Blur that hiding causes comes after this

    def on_show(self) -> None:
        if self._refocus:
            self._refocus = False
            self.focus()

    # Drawing ----------------------------------------------------------------------------------------

    @property
    def radius(self) -> float:
        return BRUSH_RADII[self.brush]

    def set_pixels(self, values: Sequence[Sequence[float]]) -> None:
        """Replace the picture (a test digit, say) with 28 rows of 28 values in [0, 1]."""
        self.pixels = [[max(0.0, min(1.0, float(v))) for v in row] for row in values]
        self._changed()

    def _changed(self) -> None:
        self.refresh()
        self.post_message(self.Changed(self))

    def _draw(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        stroke(self.pixels, start, end, self.radius, self.erasing)
        self._changed()

    def action_move(self, rows: int, cols: int) -> None:
        row, col = self.cursor
        moved = (min(SIDE - 1, max(0, row + rows)), min(SIDE - 1, max(0, col + cols)))
        if self.pen_down:
            self._draw((float(row), float(col)), (float(moved[0]), float(moved[1])))
        self.cursor = moved

    def action_toggle_pen(self) -> None:
        self.pen_down = not self.pen_down
        if self.pen_down:
            point = (float(self.cursor[0]), float(self.cursor[1]))
            self._draw(point, point)

    def action_toggle_eraser(self) -> None:
        self.erasing = not self.erasing

    def action_brush(self, delta: int) -> None:
        self.brush = min(len(BRUSH_RADII) - 1, max(0, self.brush + delta))

    def action_clear(self) -> None:
        self.pixels = blank()
        self._changed()

    # Mouse: a cell is two pixel columns wide and two pixel rows high; a press lands between its rows.

    @staticmethod
    def _point(event: events.MouseEvent) -> tuple[float, float]:
        return (min(SIDE - 0.5, max(0.0, event.y * 2 + 0.5)), min(SIDE - 1.0, max(0.0, event.x / 2)))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self.focus()
        self.capture_mouse()
        point = self._point(event)
        self._dragging = point
        self.cursor = (int(point[0]), int(point[1]))
        self._draw(point, point)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._dragging is None:
            return
        point = self._point(event)
        self._draw(self._dragging, point)
        self._dragging = point
        self.cursor = (int(point[0]), int(point[1]))

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._dragging = None
        self.capture_mouse(False)

    # Rendering --------------------------------------------------------------------------------------

    def watch_cursor(self) -> None:
        self.refresh()

    def watch_pen_down(self) -> None:
        self.refresh()

    def watch_erasing(self) -> None:
        self.refresh()

    def watch_brush(self) -> None:
        self.refresh()

    @property
    def mode(self) -> str:
        return "erase" if self.erasing else "draw" if self.pen_down else "up"

    def _under_brush(self, row: int, col: int) -> bool:
        return math.hypot(row - self.cursor[0], col - self.cursor[1]) <= max(self.radius, 0.5)

    def render_line(self, y: int) -> Strip:
        if y >= SIDE // 2:
            return Strip.blank(self.size.width)
        top, bottom = self.pixels[2 * y], self.pixels[2 * y + 1]
        if self.app.no_color:
            return self._render_shades(y, top, bottom)
        tint = CURSOR_COLOURS[self.mode]
        segments = []
        for col in range(SIDE):
            upper = pixel_colour(top[col], tint if self._under_brush(2 * y, col) else None)
            lower = pixel_colour(bottom[col], tint if self._under_brush(2 * y + 1, col) else None)
            segments.append(Segment("▀▀", cell_style(upper, lower)))
        return Strip(segments, SIDE * 2)

    def _render_shades(self, y: int, top: list[float], bottom: list[float]) -> Strip:
        """Without colour: a shade character per cell for its two pixels, and the brush as a bracket pair
        (a letter for the eraser) on the cell of its centre."""
        segments = []
        for col in range(SIDE):
            if self.cursor[1] == col and self.cursor[0] // 2 == y:
                text = {"up": "[]", "draw": "<>", "erase": "xx"}[self.mode]
            else:
                shade = SHADES[min(int((top[col] + bottom[col]) / 2 * len(SHADES)), len(SHADES) - 1)]
                text = shade * 2
            segments.append(Segment(text, Style()))
        return Strip(segments, SIDE * 2)
