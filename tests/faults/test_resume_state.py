"""A run's last.pt that cannot continue the run (bare weights, no optimizer state, a part of the wrong type,
another run's) is refused in one line by `train --resume` and by Resume (u) on the Runs screen, not by a
KeyError in the trainer's log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import Trained, small_config
from damage import finished_run
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import DataTable

from mnist_tui.__main__ import main
from mnist_tui.models import build_model
from mnist_tui.tui.app import MnistTuiApp

SIZE = (120, 30)


def weights_only(path: Path) -> None:
    torch.save(build_model("mlp").state_dict(), path)


def edited(trained_last: Path, path: Path, **changes: object) -> None:
    """The trained run's last.pt with `changes` made to it (None takes a key out), written to `path`."""
    payload = torch.load(trained_last, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    torch.save(payload, path)


LAST_PTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "weights only": (lambda last, path: weights_only(path),
                     "weights only (a bare state_dict), without the optimizer state a resume needs"),
    "no optimizer state": (lambda last, path: edited(last, path, optimizer_state=None),
                           "it has no optimizer state, which a resume needs"),
    "optimizer state of the wrong type": (lambda last, path: edited(last, path, optimizer_state="adam"),
                                          "damaged mnist-tui checkpoint (TypeError: optimizer_state is str"),
    "history of the wrong type": (lambda last, path: edited(last, path, history={"epoch": 1}),
                                  "damaged mnist-tui checkpoint (TypeError: history is dict, not a list)"),
    "step of the wrong type": (lambda last, path: edited(last, path, step=2.5),
                               "damaged mnist-tui checkpoint (ValueError: step is 2.5, not a count)"),
    "a generator state torch refuses": (lambda last, path: edited(last, path, rng_state=torch.zeros(4)),
                                        "damaged mnist-tui checkpoint (TypeError: RNG state must be a torch"),
    "another run's, with another optimizer": (
        lambda last, path: edited(last, path, config={**small_config(epochs=2).to_dict(), "optimizer": "sgd"}),
        "it was saved with optimizer sgd, and the run trains with optimizer adam"),
}
"""last.pt files a run cannot go on from, each with what the refusal says."""


@pytest.mark.parametrize("kind", LAST_PTS)
def test_train_resume_refuses_a_last_pt_it_cannot_go_on_from(kind: str, tmp_path: Path, trained: Trained,
                                                            capsys: pytest.CaptureFixture[str],
                                                            restore_signals: None) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    damage, said = LAST_PTS[kind]
    damage(trained.last, run.path / "last.pt")
    assert main(["train", "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot resume {run.run_id}: {run.path / 'last.pt'}: " in err and said in err, err
    assert run.status() == "stopped", "a refused resume leaves the run as it was"


async def press_resume(pilot: Pilot[None]) -> None:
    """Resume (u) on the Runs screen's one run, once it is listed."""
    await pilot.press("f6")
    table = pilot.app.screen.query_one(DataTable)
    for _ in range(100):
        if table.row_count == 1:
            break
        await pilot.pause(0.05)
    await pilot.press("u")


@pytest.mark.parametrize("kind", ["weights only", "step of the wrong type", "another run's, with another optimizer"])
async def test_resume_on_the_runs_screen_says_why_not(kind: str, tmp_path: Path, trained: Trained) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    damage, said = LAST_PTS[kind]
    damage(trained.last, run.path / "last.pt")
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await press_resume(pilot)
        for _ in range(200):  # last.pt is read off the UI thread
            toasts = [(n.title, Content.from_markup(n.message).plain) for n in app._notifications]
            if any(title.startswith("Cannot resume") for title, _ in toasts):
                break
            await pilot.pause(0.05)
        assert any(title == f"Cannot resume {run.run_id}" and said in message
                   for title, message in toasts), toasts
        assert app.session is None  # no trainer was started
        assert app.is_running


async def test_resume_on_the_runs_screen_follows_a_run_whose_last_pt_is_fit(tmp_path: Path, trained: Trained) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    edited(trained.last, run.path / "last.pt", config=run.config().to_dict())
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await press_resume(pilot)
        for _ in range(200):  # last.pt is read off the UI thread, then a trainer is started
            if app.session is not None:
                break
            await pilot.pause(0.05)
        assert app.session is not None and app.session.run.path == run.path
        await pilot.pause()
        assert app.screen is app.training_screen
        assert not any(n.title.startswith("Cannot resume") for n in app._notifications)
