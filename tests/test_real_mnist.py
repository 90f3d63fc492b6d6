"""The tutorial's flow on the real MNIST files, kept to about a minute on two CPU cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import MnistModel
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_tui.__main__ import main
from mnist_tui.batches import load_split
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.config import TrainConfig
from mnist_tui.engine import train
from mnist_tui.evaluation import evaluate
from mnist_tui.events import EpochEnded, RunFinished, RunStarted

pytestmark = pytest.mark.mnist

TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
"""How many of each digit the MNIST test set holds."""



def test_real_splits_load(mnist_root: Path) -> None:
    train_split, test_split = load_split("mnist", True, mnist_root), load_split("mnist", False, mnist_root)
    assert (len(train_split), len(test_split)) == (60000, 10000)
    assert torch.bincount(test_split.labels).tolist() == TEST_CLASS_COUNTS


def test_engine_learns_mnist_in_one_epoch(mnist_root: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, device="cpu", num_threads=1)
    events = list(train(config, tmp_path, mnist_root, download=False))
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted)
    assert (started.train_size, started.val_size, started.steps_per_epoch) == (60000, 10000, 60000 // 256)
    assert isinstance(finished, RunFinished) and finished.status == "completed"
    [epoch] = [e for e in events if isinstance(e, EpochEnded)]
    assert epoch.val_accuracy > 0.9
    assert epoch.train_loss < 0.6

    # Evaluating the saved checkpoint gives the validation numbers of the epoch that produced it.
    result = evaluate(load_checkpoint(tmp_path / "best.pt"), "test", mnist_root, device="cpu")
    assert result.samples == 10000
    assert sum(map(sum, result.confusion_matrix)) == 10000
    assert [sum(row) for row in result.confusion_matrix] == TEST_CLASS_COUNTS
    assert [s.support for s in result.per_class] == TEST_CLASS_COUNTS
    assert result.accuracy == pytest.approx(epoch.val_accuracy, abs=1e-12)
    assert result.loss == pytest.approx(epoch.val_loss, rel=1e-5)
    assert len(result.mistakes) == 10000 - sum(result.confusion_matrix[i][i] for i in range(10))


def test_tutorial_model_evaluates_as_the_tutorial_does(mnist_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Train the tutorial's way: DataLoader over torchvision's MNIST with ToTensor, Adam at 1e-3, batch 256.
    torch.manual_seed(0)
    train_set = datasets.MNIST(root=str(mnist_root), train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root=str(mnist_root), train=False, download=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train_set, batch_size=256, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(0))
    test_loader = DataLoader(test_set, batch_size=256)
    model = MnistModel()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    model.train()
    for step, (x_train, y_train) in enumerate(train_loader):
        if step == 50:
            break
        loss = loss_fn(model(x_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    correct: float = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in test_loader:
            pred = model(x)
            loss_sum += loss_fn(pred, y).item() * len(y)
            correct += torch.sum(pred.argmax(axis=-1) == y).item()
    tutorial_accuracy = correct / len(test_set)  # the tutorial's len(test_loader.dataset)
    assert tutorial_accuracy > 0.8

    path = tmp_path / "mnist_mlp.pth"
    torch.save(model.state_dict(), path)
    code = main(["eval", str(path), "--data-dir", str(mnist_root), "--device", "cpu", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["samples"] == 10000
    assert result["accuracy"] == tutorial_accuracy
    assert result["loss"] == pytest.approx(loss_sum / 10000, rel=1e-5)
    assert [sum(row) for row in result["confusion_matrix"]] == TEST_CLASS_COUNTS


@pytest.mark.slow
def test_the_tutorial_settings_reach_its_accuracy_headless(mnist_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           restore_signals: None) -> None:
    """`mnist-tui train --epochs 20` with every other setting at its default: at least 97.5% on the test set."""
    code = main(["train", "--epochs", "20", "--json", "--data-dir", str(mnist_root), "--runs-dir", str(tmp_path)])
    assert code == 0
    finished = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert finished["event"] == "run_finished" and len(finished["epoch_seconds"]) == 20
    assert finished["best_val_accuracy"] >= 0.975, finished


@pytest.mark.slow
def test_the_cnn_passes_99_3_percent_within_three_epochs(mnist_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         restore_signals: None) -> None:
    code = main(["train", "--model", "cnn", "--json", "--data-dir", str(mnist_root), "--runs-dir", str(tmp_path)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    accuracies = [e["val_accuracy"] for e in lines if e["event"] == "epoch_end"]
    assert len(accuracies) == 3
    assert max(accuracies) >= 0.993, accuracies
