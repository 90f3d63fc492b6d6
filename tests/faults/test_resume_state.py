"""A run's last.pt that cannot continue the run (bare weights, no optimizer state) is refused in one line by
`train --resume` and by Resume (u) on the Runs screen, not by a KeyError in the trainer's log."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from damage import finished_run
from textual.content import Content
from textual.widgets import DataTable

from mnist_tui.__main__ import main
from mnist_tui.models import build_model
from mnist_tui.tui.app import MnistTuiApp

SIZE = (120, 30)


def weights_only(path: Path) -> None:
    torch.save(build_model("mlp").state_dict(), path)


def no_optimizer_state(path: Path, trained_last: Path) -> None:
    payload = torch.load(trained_last, weights_only=True)
    del payload["optimizer_state"]
    torch.save(payload, path)


@pytest.mark.parametrize("kind", ["weights only", "no optimizer state"])
def test_train_resume_refuses_a_last_pt_it_cannot_go_on_from(kind: str, tmp_path: Path, trained: object,
                                                            capsys: pytest.CaptureFixture[str],
                                                            restore_signals: None) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    if kind == "weights only":
        weights_only(run.path / "last.pt")
        said = "weights only (a bare state_dict), without the optimizer state a resume needs"
    else:
        no_optimizer_state(run.path / "last.pt", trained.last)  # type: ignore[attr-defined]
        said = "it has no optimizer state, which a resume needs"
    assert main(["train", "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot resume {run.run_id}: " in err and said in err, err


async def test_resume_on_the_runs_screen_says_why_not(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "runs", "stopped")
    weights_only(run.path / "last.pt")
    app = MnistTuiApp(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", download=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        table = app.screen.query_one(DataTable)
        for _ in range(100):
            if table.row_count == 1:
                break
            await pilot.pause(0.05)
        await pilot.press("u")
        await pilot.pause(0.5)
        toasts = [(n.title, Content.from_markup(n.message).plain) for n in app._notifications]
        assert any(title == f"Cannot resume {run.run_id}" and "weights only" in message
                   for title, message in toasts), toasts
        assert app.session is None  # no trainer was started
        assert app.is_running
