"""Small modal dialogs: choose what quitting does to a run, confirm a deletion, browse to a checkpoint file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Label

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
