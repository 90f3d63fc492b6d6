"""The top line of every screen: the screens and their keys, the current one lit, so the way to any
screen shows on all of them (a narrow footer has no room left for the function keys)."""

from __future__ import annotations

from typing import NamedTuple

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Label

from mnist_tui.tui.messages import ShowScreen


class ScreenEntry(NamedTuple):
    """One of the app's screens: its mode name, key, label, and what it is for (the palette says so)."""

    name: str
    key: str
    label: str
    purpose: str


SCREENS = (
    ScreenEntry("settings", "F2", "Settings", "Set up a run"),
    ScreenEntry("training", "F3", "Training", "The live training panel"),
    ScreenEntry("evaluation", "F4", "Evaluation", "Evaluate checkpoints"),
    ScreenEntry("runs", "F6", "Runs", "Browse, compare, resume, clone or delete runs"),
    ScreenEntry("playground", "F7", "Playground", "Draw a digit and watch a checkpoint read it"),
)
"""Every screen, in the order the tab line shows them."""


class ScreenTab(Label):
    """One screen's key and name; a click goes there too."""

    def __init__(self, screen_name: str, text: str, current: bool) -> None:
        super().__init__(text, classes="-current" if current else "")
        self.screen_name = screen_name

    def on_click(self, event: Click) -> None:
        self.post_message(ShowScreen(self.screen_name))


class ScreenTabs(Horizontal):
    """The app name, then a ScreenTab per screen; styled in app.tcss."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        yield Label("mnist-tui", classes="app-name")
        for name, key, label, _purpose in SCREENS:
            yield ScreenTab(name, f"{key} {label}", name == self.current)
