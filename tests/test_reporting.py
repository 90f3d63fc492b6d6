"""The headless reporter and the CLI's tables, rendered into a console the test reads back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from conftest import small_config
from rich.console import Console

from mnist_tui.checkpoints import Checkpoint
from mnist_tui.evaluation import score
from mnist_tui.events import RunFailed, RunFinished
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
