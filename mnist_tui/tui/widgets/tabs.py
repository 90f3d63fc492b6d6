"""The top line of every screen: the screens and their keys, the current one lit, so the way to any
screen shows on all of them (a narrow footer has no room left for the function keys)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Label

SCREENS = (("settings", "F2", "Settings"), ("training", "F3", "Training"), ("evaluation", "F4", "Evaluation"),
           ("runs", "F6", "Runs"), ("playground", "F7", "Playground"))


class ScreenTab(Label):
    """One screen's key and name; a click goes there too."""

    def __init__(self, screen_name: str, text: str, current: bool) -> None:
        super().__init__(text, classes="-current" if current else "")
        self.screen_name = screen_name

    async def on_click(self, event: Click) -> None:
        await self.app.run_action(f"show('{self.screen_name}')")


class ScreenTabs(Horizontal):
    """The app name, then a ScreenTab per screen; styled in app.tcss."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        yield Label("mnist-tui", classes="app-name")
        for name, key, label in SCREENS:
            yield ScreenTab(name, f"{key} {label}", name == self.current)
