"""Small modal dialogs: choose what quitting does to a run, confirm a deletion, browse to a checkpoint file,
list the keys."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DirectoryTree, Label, Static

from mnist_tui.tui.markup import escape


class ChoiceDialog(ModalScreen[str | None]):
    """A question with a few buttons; Left and Right move between them, Escape cancels. Dismisses with the
    chosen button's id."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                for choice_id, label, variant in self.choices:
                    yield Button(label, id=choice_id, variant=variant)  # type: ignore[arg-type]
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        # Enter on a dialog that just appeared must not delete or stop anything.
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def choose(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


def quit_dialog(question: str, paused: bool) -> ChoiceDialog:
    """Quit with a live run: leave it as it is (running, or paused), or stop it."""
    leave = "Leave it paused" if paused else "Leave it running"
    return ChoiceDialog(question, [("leave", leave, "primary"), ("stop", "Stop the run", "error")])


class CheckpointTree(DirectoryTree):
    """A directory tree showing folders and PyTorch files only."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if p.is_dir() or p.suffix in (".pt", ".pth")]


class OpenCheckpointDialog(ModalScreen[Path | None]):
    """Browse to a checkpoint file with the arrow keys; Enter on a file picks it."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog browse"):
            yield Label(f"Pick a checkpoint (.pt, .pth) under {escape(self.start)}: arrows to move, Enter to open, "
                        "Escape to cancel. Elsewhere: type its path with /", classes="question")
            yield CheckpointTree(self.start)

    @on(DirectoryTree.FileSelected)
    def picked(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))


KeyRow = tuple[str, str]
"""A key as the footer writes it, and what it does."""

MOVING_AROUND = {binding.action for binding in Screen.BINDINGS if isinstance(binding, Binding)}
"""What every Textual screen binds (focus the next or previous widget, copy): listed after the app's keys."""
KEYS_FRAME = 10
"""Columns of the terminal that the keys box does not write in: its border, padding and scrollbar, and a
margin either side."""
Section = tuple[str, dict[str, tuple[list[str], str]]]
"""A section's title, and for each action in it the keys that do it and what it does."""


def keys_that_act(screen: Screen[object]) -> list[tuple[str, list[KeyRow]]]:
    """The keys that act now on `screen`, in sections: the screen's own, then the app's, then those of the
    focused widget and of the containers around it (scrolling), then moving between widgets. A key its
    `check_action` turns off or dims is left out, and so is one with nothing to say what it does."""
    own: Section = ("This screen", {})
    everywhere: Section = ("Everywhere", {})
    moving: Section = ("Moving around", {})
    widgets: dict[str, Section] = {}
    for active in screen.active_bindings.values():
        binding, node = active.binding, active.node
        if not active.enabled or binding.system or not binding.description:
            continue
        if node is screen:
            section = moving if binding.action in MOVING_AROUND else own
        elif node is screen.app:
            section = everywhere
        else:
            title = f"{type(node).__name__} (focused)" if node is screen.focused else "Scrolling"
            section = widgets.setdefault(title, (title, {}))
        keys, _ = section[1].setdefault(binding.action, ([], _described(binding)))
        keys.append(_key_name(screen.app.get_key_display(binding)))
    return [(title, [(" ".join(dict.fromkeys(keys)), what) for keys, what in actions.values()])
            for title, actions in (own, everywhere, *widgets.values(), moving) if actions]


def _described(binding: Binding) -> str:
    """The footer's short name and the tooltip after it ("Evaluate the run's best checkpoint"); Textual's
    own tooltips are whole sentences and stand alone."""
    if not binding.tooltip:
        return binding.description
    return binding.tooltip if binding.tooltip[0].isupper() else f"{binding.description} {binding.tooltip}"


def _key_name(display: str) -> str:
    """Function keys as the tab line writes them: F2, not f2."""
    return display.upper() if display[:1] == "f" and display[1:].isdigit() else display


class KeysScreen(ModalScreen[None]):
    """`?`: the keys that act now on the screen under it (see `keys_that_act`). Drawn over that screen
    rather than beside it, so nothing on it is squeezed; any of `?`, F1 and Escape closes it."""

    BINDINGS = [Binding("escape,question_mark,f1", "dismiss", "Close")]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.sections = keys_that_act(under)

    def compose(self) -> ComposeResult:
        keys_width = max((len(keys) for _, rows in self.sections for keys, _ in rows), default=0)
        # A long description wraps under itself, clear of the keys: the box's border, padding and scrollbar
        # and a margin either side take KEYS_FRAME columns of the terminal.
        what_width = max(20, self.app.size.width - KEYS_FRAME - keys_width - 1)
        indent = " " * (keys_width + 1)
        text = Text()
        for index, (title, rows) in enumerate(self.sections):
            text.append("\n" if index else "")
            text.append(indent).append(title, style="underline").append("\n")
            for keys, what in rows:
                lines = textwrap.wrap(what, what_width) or [""]
                text.append(keys.rjust(keys_width), style="bold").append(f" {lines[0]}\n")
                for line in lines[1:]:
                    text.append(f"{indent}{line}\n")
        text.rstrip()
        with VerticalScroll(classes="dialog keys") as box:
            box.border_title = "Keys · Escape closes"
            yield Static(text)
