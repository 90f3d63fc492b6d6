"""How runs end when what they leave is damaged: one rule for a run whose last line was cut short, the
exit code of an aborted run, and a NaN model that must not pass for a result."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, Trained, write_synthetic_dataset
from damage import cut_last_line, finished_run
from textual.widgets import RichLog, Static

from mnist_tui.__main__ import main
from mnist_tui.config import TrainConfig
from mnist_tui.events import Event, RunFinished, RunStarted
from mnist_tui.runs import RunDir, list_runs
from mnist_tui.session import TrainingSession
from mnist_tui.tui.app import MnistTuiApp

SIZE = (120, 30)


@pytest.mark.parametrize("status", ["stopped", "completed"])
async def test_a_cut_short_run_finished_is_what_status_json_says_everywhere(status: str, runs_dir: Path,
                                                                            tmp_path: Path) -> None:
    run = finished_run(runs_dir, status)
    cut_last_line(run)  # run_finished, cut short by a crash or a full disk after status.json was written
    [summary] = list_runs(runs_dir)
    assert (summary.status, summary.skipped_lines) == (status, 1)
    session = TrainingSession.attach(run)
    events = [event async for event in session.events()]
    assert events[-1] == RunFinished(status, str(run.path), 2, 2, 0.9431, 0.9431, [0.4, 0.4], summary.duration or 0)
    assert session.skipped_lines == 1
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=runs_dir, download=False, refresh_seconds=0.05,
                      attach=run)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.training_screen
        for _ in range(200):  # the whole log drained, on a loaded machine too
            if screen.state not in ("starting", "running"):
                break
            await pilot.pause(0.05)
        assert screen.state == status
        log = "\n".join(line.text for line in screen.query_one(RichLog).lines)
        assert f"{status} after 2 epoch(s)" in log and "1 unreadable line skipped" in log and "failed" not in log


async def test_a_trainer_that_died_without_a_word_is_still_a_failure(runs_dir: Path) -> None:
    run = finished_run(runs_dir, "running")
    cut_last_line(run)
    run.set_status("running", pid=0)  # its process is gone: crashed
    session = TrainingSession.attach(run)
    events = [event async for event in session.events()]
    assert "without finishing" in getattr(events[-1], "message", "")


def test_an_aborted_run_exits_1_and_is_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], restore_signals: None) -> None:
    from mnist_tui import engine

    def interrupted_twice(config: TrainConfig, run_dir: Path, *args: object, **kwargs: object) -> Iterator[Event]:
        """A run in which Ctrl+C is pressed twice: the first asks for a stop, the second aborts."""
        yield RunStarted(run_dir.name, str(run_dir), config.to_dict(), "cpu", "CPU", 1, 512, 128, "test", 16)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        yield from ()

    monkeypatch.setattr(engine, "train", interrupted_twice)
    data = write_synthetic_dataset(tmp_path / "datasets")
    code = main(["train", "--json", "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and err == "mnist-tui: run failed: trainer crashed: interrupted\n"
    [run] = [RunDir(path) for path in (tmp_path / "runs").iterdir()]
    assert run.status() == "failed"
    assert "an aborted one" in (REPO_ROOT / "mnist_tui" / "__main__.py").read_text()
    assert "aborts the run (no save, status `failed`) and exits with 1" in (REPO_ROOT / "README.md").read_text()


def diverged(trained: Trained, tmp_path: Path) -> Path:
    state = torch.load(trained.best, weights_only=True)["model_state"]
    state["lr3.bias"][0] = float("nan")
    torch.save(state, tmp_path / "diverged.pt")
    return tmp_path / "diverged.pt"


def test_eval_warns_of_nan_weights(trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = diverged(trained, tmp_path)
    warning = ("its weights hold NaN or infinite values (lr3.bias): the model diverged, and these scores mean "
               "nothing")
    assert main(["eval", str(path), "--data-dir", str(trained.data_root), "--mistakes", "0"]) == 0
    assert f"warning: {warning}" in capsys.readouterr().out
    assert main(["eval", str(path), "--data-dir", str(trained.data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warning"] == warning
    assert main(["eval", str(trained.best), "--data-dir", str(trained.data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warning"] is None


async def test_the_evaluation_screen_warns_of_nan_weights(trained: Trained, tmp_path: Path) -> None:
    path = diverged(trained, tmp_path)
    app = MnistTuiApp(data_dir=trained.data_root, runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        app.evaluation_screen.evaluate(path)
        summary = app.screen.query_one("#eval-summary", Static)
        for _ in range(600):
            if "accuracy" in str(summary.render()):
                break
            await pilot.pause(0.05)
        assert "warning: its weights hold NaN or infinite values (lr3.bias)" in str(summary.render())
