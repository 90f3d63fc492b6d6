"""End to end in a real terminal: tmux runs `mnist-tui` at 80x24 and a person's keystrokes drive it.

Set epochs to 1, start training, watch it finish, evaluate the best checkpoint, and see its accuracy,
confusion matrix and misclassified digits, all with the keyboard, on tiny synthetic data.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Terminal:
    """A tmux session: type keys, read the screen."""

    def __init__(self, name: str) -> None:
        self.name = name

    def keys(self, *keys: str, pause: float = 0.15) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(pause)

    def screen(self) -> str:
        result = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return result.stdout

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def wait_for(self, condition: Callable[[str], bool], what: str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; the screen shows:\n{self.screen()}")


@pytest.fixture
def terminal(synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> Iterator[Terminal]:
    name = f"mnist-tui-e2e-{uuid.uuid4().hex[:8]}"
    command = " ".join(shlex.quote(part) for part in [
        sys.executable, "-m", "mnist_tui", "--data-dir", str(synthetic_root), "--runs-dir", str(runs_dir),
        "--no-download"])
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(tmp_path),
                    command], check=True)
    try:
        yield Terminal(name)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_train_one_epoch_then_evaluate_it_with_the_keyboard(terminal: Terminal, runs_dir: Path) -> None:
    terminal.wait_for(lambda s: "F2 Settings" in s and "Start" in s, "the settings pane", seconds=30)
    # The device line fills in once torch is imported in the background: by then the app is idle.
    terminal.wait_for(lambda s: "Device: auto →" in s, "the device probe", seconds=60)
    terminal.keys("Tab", "Tab", "Tab")  # model -> dataset -> batch size -> epochs
    terminal.keys("End", "BSpace", "BSpace", "1")
    terminal.wait_for(lambda s: "epochs 1 " in s.replace("│", " "), "epochs set to 1")

    terminal.keys("F5")
    screen = terminal.wait_for(lambda s: "completed" in s, "the run to complete")
    assert "training" in screen and "epoch" in screen and "img/s" in screen
    assert "loss" in screen and "accuracy" in screen, "both charts are drawn"
    assert len(list(runs_dir.glob("*/best.pt"))) == 1

    terminal.keys("e")
    screen = terminal.wait_for(lambda s: "misclassified" in s, "the evaluation of the best checkpoint")
    assert "accuracy" in screen and "confusion" in screen and "best.pt" in screen

    terminal.keys("Tab", "End")  # from the list to the results, scrolled down to the gallery
    terminal.wait_for(lambda s: "Misclassified" in s or "No mistakes" in s, "the gallery of mistakes")

    terminal.keys("C-q")
    deadline = time.monotonic() + 10
    while terminal.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not terminal.alive(), "ctrl+q quits when no run is training"
