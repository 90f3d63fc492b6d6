"""Evaluation: exact metrics on hand-made numbers, and a whole split evaluated from a checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TEST_SIZE, TRAIN_SIZE, Trained

from mnist_tui.batches import load_split, prepare
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.data import DatasetError
from mnist_tui.evaluation import evaluate, predict, score

NAMES = ("a", "b", "c", "d")


def hand_made() -> tuple[torch.Tensor, torch.Tensor]:
    """Six samples of classes a-c (d never occurs): predictions a b b b a c, two of them wrong."""
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.tensor([
        [3.0, 0.0, 0.0, 0.0],  # a -> a
        [1.0, 2.0, 0.0, 0.0],  # a -> b, unsure
        [0.0, 4.0, 0.0, 0.0],  # b -> b
        [0.0, 1.0, 0.0, 0.0],  # b -> b
        [5.0, 0.0, 0.0, 0.0],  # c -> a, sure
        [0.0, 0.0, 2.0, 0.0],  # c -> c
    ])
    return logits, labels


def test_score_confusion_matrix_and_accuracy() -> None:
    logits, labels = hand_made()
    loss, accuracy, confusion, _, _ = score(logits, labels, NAMES)
    assert confusion == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert accuracy == pytest.approx(4 / 6)
    expected_loss = float(-torch.log_softmax(logits, dim=1)[torch.arange(6), labels].mean())
    assert loss == pytest.approx(expected_loss)


def test_score_per_class() -> None:
    logits, labels = hand_made()
    per_class = score(logits, labels, NAMES)[3]
    assert [s.label for s in per_class] == list(NAMES)
    assert [s.support for s in per_class] == [2, 2, 2, 0]
    assert [s.precision for s in per_class] == pytest.approx([1 / 2, 2 / 3, 1.0, 0.0])
    assert [s.recall for s in per_class] == pytest.approx([1 / 2, 1.0, 1 / 2, 0.0])
    assert [s.f1 for s in per_class] == pytest.approx([1 / 2, 4 / 5, 2 / 3, 0.0])
    for s in per_class:
        assert not math.isnan(s.precision + s.recall + s.f1)


def test_score_mistakes_most_confident_first() -> None:
    logits, labels = hand_made()
    mistakes = score(logits, labels, NAMES)[4]
    assert [(m.index, m.true, m.predicted) for m in mistakes] == [(4, 2, 0), (1, 0, 1)]
    assert mistakes[0].confidence == pytest.approx(float(torch.softmax(logits[4], 0)[0]))
    assert mistakes[1].confidence == pytest.approx(float(torch.softmax(logits[1], 0)[1]))
    assert mistakes[0].confidence > mistakes[1].confidence


def test_score_all_right() -> None:
    labels = torch.arange(10)
    logits = torch.eye(10) * 10
    loss, accuracy, confusion, per_class, mistakes = score(logits, labels, tuple(str(i) for i in range(10)))
    assert accuracy == 1.0
    assert mistakes == []
    assert confusion == torch.eye(10, dtype=torch.int64).tolist()
    assert all(s.f1 == 1.0 for s in per_class)
    assert loss < 0.01


def test_predict_restores_training_mode(trained: Trained) -> None:
    model = load_checkpoint(trained.best).build_model().train()
    split = load_split("mnist", False, trained.data_root)
    logits = predict(model, split, 0.0, 1.0, batch_size=50)
    assert logits.shape == (TEST_SIZE, 10)
    assert model.training
    assert not logits.requires_grad


def test_evaluate_checkpoint_on_synthetic_test_split(trained: Trained) -> None:
    checkpoint = load_checkpoint(trained.best)
    result = evaluate(checkpoint, "test", trained.data_root, download=False, device="cpu")
    assert (result.dataset, result.split, result.samples) == ("mnist", "test", TEST_SIZE)
    assert result.checkpoint == str(trained.best)
    confusion = torch.tensor(result.confusion_matrix)
    assert confusion.shape == (10, 10)
    assert int(confusion.sum()) == TEST_SIZE
    assert result.accuracy == pytest.approx(float(confusion.trace()) / TEST_SIZE)
    assert result.accuracy > 0.9  # the synthetic classes are easy; two epochs learn them
    test = load_split("mnist", False, trained.data_root)
    assert [s.support for s in result.per_class] == torch.bincount(test.labels, minlength=10).tolist()
    assert len(result.mistakes) == TEST_SIZE - int(confusion.trace())
    assert result.mistake_images.shape == (len(result.mistakes), 28, 28)
    for mistake, image in zip(result.mistakes, result.mistake_images, strict=True):
        assert torch.equal(image, test.images[mistake.index])
        assert mistake.true == int(test.labels[mistake.index])
    # The same numbers as running the model by hand.
    model = checkpoint.build_model().eval()
    with torch.no_grad():
        manual = model(prepare(test.images, checkpoint.mean, checkpoint.std)).argmax(1)
    assert result.accuracy == pytest.approx(float((manual == test.labels).double().mean()))
    assert result.loss >= 0


def test_evaluate_train_split_and_json(trained: Trained) -> None:
    result = evaluate(load_checkpoint(trained.last), "train", trained.data_root, device="cpu")
    assert result.samples == TRAIN_SIZE
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) >= {"accuracy", "loss", "confusion_matrix", "per_class", "misclassified", "samples"}
    assert data["per_class"][0].keys() == {"label", "precision", "recall", "f1", "support"}


def test_evaluate_missing_dataset(trained: Trained, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(trained.best)
    with pytest.raises(DatasetError, match="mnist-tui data import"):
        evaluate(checkpoint, "test", tmp_path, download=False, device="cpu")
    with pytest.raises(DatasetError, match="kmnist"):
        evaluate(checkpoint, "test", trained.data_root, download=False, device="cpu", dataset="kmnist")
