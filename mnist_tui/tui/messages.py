"""What a screen asks of the app: typed messages, handled with `@on` in `MnistTuiApp`.

Screens never call the app's methods: they post one of these and it bubbles from the screen to the app,
which owns the one trainer, the feed worker and the switching between screens."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from mnist_tui.config import TrainConfig
from mnist_tui.runs import RunDir


class StartRun(Message):
    """Start a trainer for `config` and follow it on the training panel."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config


class AttachRun(Message):
    """Show a run on the training panel: its history, then live if it still trains."""

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run


class ResumeRun(Message):
    """Continue a stopped, failed or crashed run from its last.pt."""

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run


class CloneSettings(Message):
    """Load a run's settings into the settings form, to start a new run from them."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config


class EvaluateCheckpoint(Message):
    """Evaluate a checkpoint on the evaluation screen."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path


class RunDeleted(Message):
    """A run's folder is gone: whatever shows it lets go of it."""

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run


class ShowScreen(Message):
    """Switch to one of the app's screens by name (see `widgets.tabs.SCREENS`)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
