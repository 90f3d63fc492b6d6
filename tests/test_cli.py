"""The `mnist-tui` command: exit codes, one-line errors, JSON output, and the data -> train -> eval path."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO_ROOT, TEST_SIZE, TRAIN_SIZE, Trained

from mnist_tui.__main__ import main
from mnist_tui.runs import RunDir

FAST = ["--batch-size", "32", "--epochs", "2", "--lr", "0.01", "--device", "cpu", "--num-threads", "1"]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], restore_signals: None) -> Cli:
    """Run `mnist-tui ARGS` in this process and capture what it prints."""

    def invoke(*args: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def run_module(*args: str | Path, cwd: Path | None = None) -> Result:
    """Run `python -m mnist_tui ARGS` in a fresh process, as a user would."""
    env = dict(os.environ, MNIST_TUI_NO_DOWNLOAD="1", PYTHONPATH=str(REPO_ROOT), COLUMNS="120")
    completed = subprocess.run([sys.executable, "-m", "mnist_tui", *map(str, args)], capture_output=True, text=True,
                               env=env, cwd=cwd or REPO_ROOT, timeout=120)
    return Result(completed.returncode, completed.stdout, completed.stderr)


def assert_one_line_error(result: Result, code: int = 2) -> str:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("mnist-tui: error: ")
    assert "Traceback" not in result.err
    return lines[0]


def test_train_help_gives_each_models_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 20; cnn: 3; cnn-wide: 3)" in help_text
    assert "(default: none; cnn: onecycle; cnn-wide: onecycle)" in help_text
    assert "best: the wider convnet" in help_text and "(99.6% on MNIST)" in help_text


@pytest.mark.parametrize(("args", "needle"), [
    (["--bogus"], "--bogus"),
    (["--bogus", "runs"], "--bogus (see `mnist-tui --help`)"),
    (["train", "--bogus"], "--bogus (see `mnist-tui train --help`)"),
    (["train", "--batch-size", "0"], "batch_size must be an integer from 1 to 60000, got 0"),
    (["train", "--batch-size", "lots"], "batch_size must be an integer, got 'lots'"),
    (["train", "--model", "vgg"], "model must be one of mlp, cnn, cnn-wide, got 'vgg'"),
    (["train", "--lr", "0", "--epochs", "0"], "epochs must be an integer from 1 to 1000, got 0"),
    (["train", "--config", "missing.toml"], "missing.toml"),
    (["eval"], "checkpoint"),
    (["eval", "x.pt", "--split", "val"], "--split"),
    (["eval", "x.pt", "--mistakes", "many"], "--mistakes"),
    (["data"], "required"),
    (["frobnicate"], "frobnicate"),
])
def test_usage_errors_are_one_line(cli: Cli, runs_dir: Path, args: list[str], needle: str) -> None:
    result = cli(*args, "--runs-dir", runs_dir) if args[0] == "train" else cli(*args)
    line = assert_one_line_error(result)
    assert needle in line
    assert result.out == ""
    assert list(runs_dir.iterdir()) == [], "a refused command must not create a run"


def test_usage_error_from_a_real_process(tmp_path: Path) -> None:
    result = run_module("train", "--batch-size", "0", "--runs-dir", tmp_path / "runs")
    assert assert_one_line_error(result) == "mnist-tui: error: batch_size must be an integer from 1 to 60000, got 0"


def test_bad_config_file_is_a_usage_error(cli: Cli, runs_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("epochs = [\n", encoding="utf-8")
    assert "not valid TOML" in assert_one_line_error(cli("train", "--config", config, "--runs-dir", runs_dir))
    # Values that parse but are wrong are named with their file; a flag's own value is not.
    config.write_text('foo = 1\nbatch_size = "abc"\n', encoding="utf-8")
    line = assert_one_line_error(cli("train", "--config", config, "--lr", "-1", "--runs-dir", runs_dir))
    assert f"{config}: unknown setting 'foo'" in line and f"{config}: batch_size must be" in line
    assert f"{config}: lr" not in line and "lr must be" in line


def test_train_json_lines(cli: Cli, synthetic_root: Path, runs_dir: Path) -> None:
    result = cli("train", *FAST, "--data-dir", synthetic_root, "--runs-dir", runs_dir, "--json")
    assert result.code == 0, result.err
    events = result.json_lines()
    # What the trainer did before the run could start, then the start.
    assert [(e["event"], e.get("stage")) for e in events[:3]] == [
        ("run_preparing", "loading mnist"), ("run_preparing", "building the model on cpu"), ("run_started", None)]
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [1, 2]
    finished = events[-1]
    assert finished["event"] == "run_finished"
    assert finished.keys() >= {"run_dir", "best_val_accuracy", "final_val_accuracy", "epoch_seconds"}
    assert finished["status"] == "completed"
    assert len(finished["epoch_seconds"]) == 2
    assert finished["final_val_accuracy"] > 0.9
    run = RunDir(Path(finished["run_dir"]))
    assert run.path.parent == runs_dir
    assert run.status() == "completed"
    assert [json.loads(line) for line in run.events_path.read_text(encoding="utf-8").splitlines()] == events
    assert (run.path / "best.pt").is_file() and (run.path / "last.pt").is_file()
    assert run.config().batch_size == 32

    listed = cli("runs", "--runs-dir", runs_dir, "--json")
    assert listed.code == 0
    [summary] = json.loads(listed.out)
    assert summary["run_id"] == run.run_id
    assert (summary["status"], summary["epochs_done"], summary["epochs"]) == ("completed", 2, 2)
    assert summary["best_val_accuracy"] == finished["best_val_accuracy"]


def test_train_with_progress_display(cli: Cli, synthetic_root: Path, runs_dir: Path) -> None:
    result = cli("train", *FAST, "--epochs", "1", "--data-dir", synthetic_root, "--runs-dir", runs_dir)
    assert result.code == 0, result.err
    text = " ".join(result.out.split())  # rich wraps to the terminal width
    assert "completed after 1 epoch(s)" in text
    assert "run folder:" in text
    assert "109,386 parameters" in text


def test_config_file_with_flag_overrides(cli: Cli, synthetic_root: Path, runs_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('batch_size = 64\nepochs = 5\nseed = 3\ndevice = "cpu"\nnum_threads = 1\n', encoding="utf-8")
    result = cli("train", "--config", config, "--epochs", "1", "--data-dir", synthetic_root, "--runs-dir", runs_dir,
                 "--json")
    assert result.code == 0, result.err
    saved = RunDir(Path(result.json_lines()[-1]["run_dir"])).config()
    assert (saved.batch_size, saved.epochs, saved.seed) == (64, 1, 3)


def test_data_dir_from_environment(cli: Cli, synthetic_root: Path, runs_dir: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_TUI_DATA", str(synthetic_root))
    monkeypatch.setenv("MNIST_TUI_RUNS", str(runs_dir))
    result = cli("train", *FAST, "--epochs", "1", "--json")
    assert result.code == 0, result.err
    assert Path(result.json_lines()[-1]["run_dir"]).parent == runs_dir


def test_locations_before_the_command_count_too(cli: Cli, synthetic_root: Path, runs_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`mnist-tui --data-dir D train` as `--help` shows it; the environment's folders must not win."""
    monkeypatch.setenv("MNIST_TUI_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MNIST_TUI_RUNS", str(tmp_path / "other-runs"))
    monkeypatch.setenv("COLUMNS", "60")
    result = cli("--data-dir", synthetic_root, "--runs-dir", runs_dir, "--no-download", "train", *FAST,
                 "--epochs", "1", "--json")
    assert result.code == 0, result.err
    run_dir = Path(result.json_lines()[-1]["run_dir"])
    assert run_dir.parent == runs_dir
    assert run_dir.name in cli("--runs-dir", runs_dir, "runs").out, "the whole id, even at 60 columns"
    assert "no runs yet" in cli("--runs-dir", runs_dir, "runs", "--runs-dir", tmp_path / "empty").out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_usage_error_and_leaves_no_run(cli: Cli, synthetic_root: Path,
                                                                        runs_dir: Path) -> None:
    result = cli("train", "--device", "cuda", "--data-dir", synthetic_root, "--runs-dir", runs_dir)
    assert result.code == 2
    assert result.err.strip() == "mnist-tui: error: device cuda asked for, but CUDA is not available on this machine"
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_eval_reads_a_device_as_train_does(cli: Cli, trained: Trained) -> None:
    assert cli("eval", trained.best, "--data-dir", trained.data_root, "--device", " CPU").code == 0
    result = cli("eval", trained.best, "--data-dir", trained.data_root, "--device", "cuda")
    assert result.code == 2
    assert result.err.strip() == "mnist-tui: error: device cuda asked for, but CUDA is not available on this machine"


def test_eval_json(cli: Cli, trained: Trained) -> None:
    result = cli("eval", trained.best, "--data-dir", trained.data_root, "--device", "cpu", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data.keys() >= {"accuracy", "loss", "confusion_matrix", "per_class"}
    assert data["samples"] == TEST_SIZE
    assert sum(map(sum, data["confusion_matrix"])) == TEST_SIZE
    assert data["accuracy"] == sum(data["confusion_matrix"][i][i] for i in range(10)) / TEST_SIZE
    assert [c["label"] for c in data["per_class"]] == [str(d) for d in range(10)]
    assert len(data["misclassified"]) == TEST_SIZE - sum(data["confusion_matrix"][i][i] for i in range(10))
    first = cli("eval", trained.best, "--data-dir", trained.data_root, "--device", "cpu", "--json", "--mistakes", "2")
    assert json.loads(first.out)["misclassified"] == data["misclassified"][:2]


def test_eval_json_of_a_diverged_model_is_valid_json(cli: Cli, trained: Trained, tmp_path: Path) -> None:
    state = torch.load(trained.best, weights_only=True)["model_state"]
    state["lr3.bias"][0] = float("nan")
    torch.save(state, tmp_path / "diverged.pt")
    result = cli("eval", tmp_path / "diverged.pt", "--data-dir", trained.data_root, "--device", "cpu", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert data["loss"] is None


def test_eval_train_split_as_tables(cli: Cli, trained: Trained) -> None:
    result = cli("eval", trained.last, "--split", "train", "--data-dir", trained.data_root, "--device", "cpu")
    assert result.code == 0, result.err
    text = " ".join(result.out.split())  # rich wraps to the terminal width
    assert f"({TRAIN_SIZE:,} images)" in text
    assert "confusion matrix" in text
    assert "per-class scores" in text


def test_eval_of_a_corrupt_file(tmp_path: Path, synthetic_root: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    line = assert_one_line_error(run_module("eval", path, "--data-dir", synthetic_root))
    assert str(path) in line


class OpenPayload:
    """Unpickling this would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_eval_of_a_malicious_file(cli: Cli, tmp_path: Path, synthetic_root: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save(OpenPayload(marker), path)
    line = assert_one_line_error(cli("eval", path, "--data-dir", synthetic_root))
    assert "refused" in line
    assert not marker.exists()


def test_eval_without_data(cli: Cli, trained: Trained, tmp_path: Path) -> None:
    result = cli("eval", trained.best, "--data-dir", tmp_path / "no-data", "--device", "cpu")
    assert result.code == 1
    assert "mnist-tui data import" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_runs_empty(cli: Cli, runs_dir: Path) -> None:
    assert json.loads(cli("runs", "--runs-dir", runs_dir, "--json").out) == []
    assert "no runs yet" in cli("runs", "--runs-dir", runs_dir).out


def test_data_import_then_train(cli: Cli, idx_folder: Callable[..., dict[str, Path]], tmp_path: Path,
                                runs_dir: Path) -> None:
    source = tmp_path / "downloads"
    idx_folder(source, gz=True)
    data_root = tmp_path / "datasets"
    result = cli("data", "import", source, "--data-dir", data_root)
    assert result.code == 0, result.err
    assert str(data_root / "MNIST" / "raw") in result.out
    trained = cli("train", *FAST, "--epochs", "1", "--data-dir", data_root, "--runs-dir", runs_dir, "--json")
    assert trained.code == 0, trained.err
    finished = trained.json_lines()[-1]
    assert finished["event"] == "run_finished" and finished["status"] == "completed"
    started = next(e for e in trained.json_lines() if e["event"] == "run_started")
    assert (started["train_size"], started["val_size"]) == (TRAIN_SIZE, TEST_SIZE)


def test_data_import_refuses_a_bad_folder(cli: Cli, idx_folder: Callable[..., dict[str, Path]],
                                          tmp_path: Path) -> None:
    source = tmp_path / "downloads"
    paths = idx_folder(source, gz=True)
    labels = paths["train-labels-idx1-ubyte"]
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-10]))
    line = assert_one_line_error(cli("data", "import", source, "--data-dir", tmp_path / "datasets"))
    assert str(labels) in line
    assert not (tmp_path / "datasets" / "MNIST" / "raw").exists()


@pytest.mark.parametrize("output", [["--json"], []], ids=["json", "tables"])
def test_a_reader_that_goes_away_does_not_stop_the_run(synthetic_root: Path, tmp_path: Path,
                                                       output: list[str]) -> None:
    """`mnist-tui train | head -2`: the pipe closes, the run goes on to the end."""
    env = dict(os.environ, MNIST_TUI_NO_DOWNLOAD="1", PYTHONPATH=str(REPO_ROOT))
    trainer = subprocess.Popen(
        [sys.executable, "-m", "mnist_tui", "train", *FAST, "--batch-size", "2", *output, "--data-dir",
         str(synthetic_root), "--runs-dir", str(tmp_path / "runs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT)
    assert trainer.stdout is not None and trainer.stderr is not None
    assert trainer.stdout.readline().strip()
    trainer.stdout.close()
    assert trainer.wait(timeout=120) == 0
    assert "Traceback" not in trainer.stderr.read().decode()
    [run] = (tmp_path / "runs").iterdir()
    assert RunDir(run).status() == "completed"


@pytest.mark.parametrize("output", [[], ["--json"]])
def test_missing_dataset_without_download(tmp_path: Path, output: list[str]) -> None:
    # Refused before a run folder exists, as the dashboard's Start refuses: no failed run left per attempt.
    result = run_module("train", "--epochs", "1", "--device", "cpu", "--no-download",
                        "--data-dir", tmp_path / "no-data", "--runs-dir", tmp_path / "runs", *output)
    message = assert_one_line_error(result)
    assert message.startswith("mnist-tui: error: dataset not found and downloads are off")
    assert "mnist-tui data import" in message
    assert str((tmp_path / "no-data" / "MNIST" / "raw").absolute()) in message
    assert result.out == ""
    assert not (tmp_path / "runs").exists()
