"""End to end in a real terminal: tmux runs `mnist-tui` at 80x24 and a person's keystrokes drive it.

Set epochs to 1, start training, watch it finish, evaluate the best checkpoint, and see its accuracy,
confusion matrix and misclassified digits, all with the keyboard, on tiny synthetic data. Then what a new
user tripped on: a start that said nothing for seconds, keys with no answer, a quit that said nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mnist_tui
from mnist_tui.config import TrainConfig, save_config
from mnist_tui.runs import RunDir

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

SOCKET = f"mnist-tui-e2e-{os.getpid()}"
"""The tests' own tmux server: it starts with this process's environment, and ending it ends no one else's
sessions (other terminals on this machine use the default server)."""
CODE_ROOT = Path(mnist_tui.__file__).resolve().parents[1]
"""Where the code under test lies: the dashboard in tmux imports it from here, not from wherever the
installed package points."""
EXITED = "[dashboard exited]"
"""What the shell prints once the dashboard has exited, below whatever the dashboard printed."""


def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=check)


@pytest.fixture(autouse=True, scope="module")
def own_tmux_server() -> Iterator[None]:
    yield
    tmux("kill-server", check=False)
    (Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / SOCKET).unlink(missing_ok=True)


class Terminal:
    """A tmux session: type keys, read the screen."""

    def __init__(self, name: str) -> None:
        self.name = name

    def keys(self, *keys: str, pause: float = 0.15) -> None:
        for key in keys:
            tmux("send-keys", "-t", self.name, key)
            time.sleep(pause)

    def screen(self) -> str:
        """The screen as text, a line wrapped by the terminal joined again (a long command it printed)."""
        return tmux("capture-pane", "-p", "-J", "-t", self.name, check=False).stdout

    def alive(self) -> bool:
        return tmux("has-session", "-t", self.name, check=False).returncode == 0

    def close(self) -> None:
        tmux("kill-session", "-t", self.name, check=False)

    def wait_for(self, condition: Callable[[str], bool], what: str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; the screen shows:\n{self.screen()}")


def open_dashboard(cwd: Path, data_root: Path, runs_dir: Path, size: tuple[int, int] = (80, 24),
                   stay: bool = False) -> Terminal:
    """`mnist-tui` in a new terminal of `size`. With `stay`, the terminal outlives the dashboard, so what it
    prints on exit can be read, under the line `EXITED`."""
    # COLUMNS and LINES, if the tmux server was started with them, would hold the dashboard at their size.
    dashboard = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", f"PYTHONPATH={CODE_ROOT}", sys.executable, "-m",
                            "mnist_tui", "--data-dir", str(data_root), "--runs-dir", str(runs_dir), "--no-download"])
    command = f"{dashboard}; echo {shlex.quote(EXITED)}; sleep 600" if stay else dashboard
    terminal = Terminal(f"mnist-tui-e2e-{uuid.uuid4().hex[:8]}")
    tmux("new-session", "-d", "-s", terminal.name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd), command)
    return terminal


@pytest.fixture
def terminal(synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> Iterator[Terminal]:
    terminal = open_dashboard(tmp_path, synthetic_root, runs_dir)
    try:
        yield terminal
    finally:
        terminal.close()


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


def nonblank_lines(screen: str) -> list[str]:
    return [line.strip() for line in screen.splitlines() if line.strip()]


def test_a_run_says_what_it_is_doing_each_key_is_answered_and_quitting_says_how_to_come_back(
        synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> None:
    # Batches of one make the tiny synthetic run last long enough to steer; it is stopped long before the end.
    save_config(TrainConfig(batch_size=1, epochs=200, device="cpu", num_threads=1), tmp_path / "mnist-tui.toml")
    # Wide enough for the command it prints on exit, which names this test's long runs folder.
    first = open_dashboard(tmp_path, synthetic_root, runs_dir, size=(200, 40), stay=True)
    second: Terminal | None = None
    try:
        first.wait_for(lambda s: "Device: auto →" in s, "the settings pane, idle", seconds=60)
        first.keys("C-o")  # load ./mnist-tui.toml, the file named in the side panel
        first.wait_for(lambda s: "Loaded settings" in s, "the settings file to load")

        # 1. The panel says what a starting trainer does, from its first moment (importing torch takes seconds).
        first.keys("F5")
        first.wait_for(lambda s: "starting:" in s, "the panel to say the run is starting", seconds=10)
        first.wait_for(lambda s: "running" in s and "img/s" in s, "training to start")
        run = RunDir(next(runs_dir.iterdir()))

        # 2. Pause is acknowledged, then confirmed; so is resuming.
        first.keys("p")
        first.wait_for(lambda s: "pausing" in s.lower() or "paused" in s, "pause to be acknowledged")
        first.wait_for(lambda s: "paused" in s, "the trainer to pause")
        assert run.status() == "paused"
        first.keys("p")
        first.wait_for(lambda s: "running" in s and run.status() == "running", "the run to go on")

        # 3. Quitting with the run live asks; leaving it running says how to follow it again. Left moves
        # from Cancel, where the dialog opens, to the other buttons.
        first.keys("C-q")
        first.wait_for(lambda s: "Leave it running" in s, "the quit dialog")
        first.keys("Left", "Left", "Enter")
        said = nonblank_lines(first.wait_for(lambda s: EXITED in s, "the dashboard to exit"))
        assert said[-1] == EXITED and "Traceback" not in " ".join(said)
        assert said[:3] == [f"Run {run.run_id} is still training in the background. Follow it with:",
                            shlex.join(["mnist-tui", "attach", run.run_id, "--runs-dir", str(runs_dir)]),
                            EXITED], said
        assert run.status() == "running"

        # A new dashboard follows it again; a second s stops it, acknowledged at once, then confirmed.
        second = open_dashboard(tmp_path, synthetic_root, runs_dir, stay=True)
        second.wait_for(lambda s: run.run_id in s and "running" in s, "the new dashboard to reattach")
        second.keys("s")
        second.wait_for(lambda s: "again to stop" in s, "stop to ask first")
        second.keys("s")
        second.wait_for(lambda s: "stopping" in s.lower() or "stopped" in s, "stop to be acknowledged")
        second.wait_for(lambda s: "stopped" in s, "the trainer to stop", seconds=60)
        assert run.status() == "stopped"

        # With nothing live, quitting asks nothing and prints nothing.
        second.keys("C-q")
        said = nonblank_lines(second.wait_for(lambda s: EXITED in s, "the dashboard to exit", seconds=10))
        assert said == [EXITED]
    finally:
        first.close()
        if second is not None:
            second.close()
