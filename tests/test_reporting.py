"""The headless reporter and the CLI's tables, rendered into a console the test reads back."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, small_config
from rich.console import Console

sys.path.insert(0, str(REPO_ROOT / "tests" / "tui"))
from fake_events import run_events

from mnist_tui.checkpoints import Checkpoint
from mnist_tui.evaluation import score
from mnist_tui.events import RunFailed, RunFinished, RunPaused, RunResumed
from mnist_tui.reporting import ConsoleReporter, print_evaluation, print_runs
from mnist_tui.runs import RunSummary


def recording_console(width: int = 80) -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, width=width, soft_wrap=True, color_system=None), output


def test_a_run_that_fails_before_it_starts_prints_nothing_to_stdout() -> None:
    console, output = recording_console()
    reporter = ConsoleReporter(small_config(), console)
    reporter.show(RunFailed("dataset not found and downloads are off", "runs/x"))
    reporter.close()  # the CLI closes it again on its way out
    assert output.getvalue() == ""  # the reason goes to stderr; stdout gets no stray blank lines


def test_a_run_stopped_in_its_first_epoch_is_not_summarised_as_epoch_zero() -> None:
    console, output = recording_console()
    ConsoleReporter(small_config(), console).show(RunFinished("stopped", "runs/x", 0, 0, None, None, [], 1.2))
    first = output.getvalue().splitlines()[0]
    assert first == "stopped in 0:00:01, before its first epoch ended; last.pt keeps where it got to"


def test_the_reporter_tells_a_run_as_the_panel_does_with_its_epochs_in_a_table() -> None:
    console, output = recording_console(120)
    reporter = ConsoleReporter(small_config(epochs=2), console)
    events = run_events()
    for event in [*events[:6], RunPaused(1, 5), RunResumed(1, 5), *events[6:]]:
        reporter.show(event)
    lines = output.getvalue().splitlines()
    assert lines[:4] == ["run demo: mlp (109,386 parameters) on mnist, cpu CPU (2 threads)",
                         "started: batch 256, adam lr 0.001, fp32, 60,000 train / 10,000 test",
                         "paused at epoch 1, step 5", "resumed"]
    assert lines[4].split() == ["epoch", "train", "loss", "train", "acc", "val", "loss", "val", "acc", "lr", "time",
                                "samples/s"]
    # The panel's figures (runview.EpochFigures), in columns; its checkpoint lines would split the table.
    assert [line.split() for line in lines[5:7]] == [
        ["1/2", "0.5000", "90.00%", "0.2500", "92.59%", "*", "0.001", "1.2s", "50,000"],
        ["2/2", "0.2500", "95.00%", "0.1250", "94.31%", "*", "0.001", "1.2s", "50,000"]]
    assert lines[7:] == ["", "completed after 2 epoch(s) in 0:00:02 (wall clock); best val accuracy 94.31% (epoch 2), "
                         "final 94.31%", "run folder: runs/demo"]  # "": the bars' going


def test_a_long_line_to_a_pipe_is_never_broken(capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = "/srv/shared/experiments/" + "a-long-folder-name/" * 4 + "runs/20261127-133241-cnn-e7b0"
    ConsoleReporter(small_config()).show(RunFinished("completed", run_dir, 2, 2, 0.9437, 0.9437, [1.0, 1.0], 2.5))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("final 94.37%") and lines[1] == f"run folder: {run_dir}"


def test_fashion_mnist_confusion_matrix_fits_80_columns() -> None:
    from mnist_tui.data import DATASET_SPECS
    from mnist_tui.evaluation import EvaluationResult

    classes = DATASET_SPECS["fashion-mnist"].classes
    labels = torch.arange(200) % 10
    logits = torch.nn.functional.one_hot((labels + (torch.arange(200) % 7 == 0)) % 10, 10).float()
    loss, accuracy, confusion, per_class, mistakes = score(logits, labels, classes)
    result = EvaluationResult("x.pt", "fashion-mnist", "test", 200, loss, accuracy, confusion, per_class, mistakes,
                              torch.zeros(len(mistakes), 28, 28, dtype=torch.uint8), 0.1)
    checkpoint = Checkpoint(Path("x.pt"), "mlp", {}, small_config(dataset="fashion-mnist"), 0.0, 1.0)
    console, output = recording_console()
    print_evaluation(result, checkpoint, 0, console)
    lines = output.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith(" 9 Ankle boot ") for line in lines)
    assert not any(line.lstrip().startswith("boot") for line in lines)


def test_runs_says_under_its_table_why_a_run_failed() -> None:
    failed = RunSummary("20261127-133241-cnn-e7b0", Path("runs/x"), "failed", "cnn", "mnist", 1, 3, 0.98, 12.0,
                        "loss became nan at epoch 2, step 3; the last good checkpoint is kept. Try a lower learning "
                        "rate.")
    console, output = recording_console()
    print_runs([failed], console)
    assert output.getvalue().splitlines()[-1] == f"{failed.run_id}: {failed.message}"
