"""End to end: a run started from the dashboard survives its terminal being closed (SIGHUP), and a new
dashboard reattaches to it, steers it, and shows every epoch when it is done."""

from __future__ import annotations

import time
from pathlib import Path

from test_e2e_terminal import Terminal, open_dashboard, own_tmux_server, pytestmark, tmux  # noqa: F401 - same skip

from mnist_tui.config import TrainConfig, save_config
from mnist_tui.runs import RunDir

EPOCHS = 25


def test_closing_the_terminal_leaves_the_run_training_and_a_new_dashboard_reattaches(
        synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> None:
    # Batches of one make the tiny synthetic run last long enough to close the terminal under it.
    save_config(TrainConfig(batch_size=1, epochs=EPOCHS, device="cpu", num_threads=1), tmp_path / "mnist-tui.toml")
    first = open_dashboard(tmp_path, synthetic_root, runs_dir)
    later: list[Terminal] = []
    try:
        first.wait_for(lambda s: "Device: auto →" in s, "the settings pane, idle", seconds=60)
        first.keys("C-o")  # load ./mnist-tui.toml, the file named in the side panel
        first.wait_for(lambda s: "Loaded settings" in s, "the settings file to load")
        first.keys("F5")
        first.wait_for(lambda s: "running" in s and "epoch" in s, "training to start")
        run = RunDir(next(runs_dir.iterdir()))

        tmux("kill-session", "-t", first.name)  # the terminal goes: SIGHUP
        time.sleep(1.0)
        assert run.status() in ("running", "paused"), "the trainer outlives the dashboard's terminal"

        second = open_dashboard(tmp_path, synthetic_root, runs_dir)
        later.append(second)
        second.wait_for(lambda s: "Reattached" in s or run.run_id in s, "the new dashboard to reattach")
        second.wait_for(lambda s: "running" in s, "the live run on the training panel")
        second.keys("p")
        second.wait_for(lambda s: "paused" in s, "pause to work after reattaching")
        assert run.status() == "paused"
        second.keys("p")
        screen = second.wait_for(lambda s: "completed" in s, "the run to finish", seconds=180)
        assert f"{EPOCHS}/{EPOCHS}" in screen, "the panel shows every epoch, replayed and live"
        assert run.status() == "completed"
        assert [e.epoch for e in run.epoch_events()] == list(range(1, EPOCHS + 1))

        # Later, a fresh dashboard lists the finished run and replays all of it.
        second.keys("C-q")
        third = open_dashboard(tmp_path, synthetic_root, runs_dir)
        later.append(third)
        third.wait_for(lambda s: "Device: auto →" in s, "the settings pane, idle", seconds=60)
        third.keys("F6")
        listed_as = run.run_id.split("-", 2)[-1]  # at 80 columns the table leaves out the date: a column has it
        third.wait_for(lambda s: listed_as in s and "completed" in s and f"{EPOCHS}/{EPOCHS}" in s,
                       "the finished run in the runs browser")
        third.keys("Enter")
        third.wait_for(lambda s: "completed" in s and f"{EPOCHS}/{EPOCHS}" in s and "best" in s,
                       "the finished run's history on the training panel")
    finally:
        for terminal in (first, *later):
            terminal.close()
