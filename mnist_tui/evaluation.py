"""Evaluation: loss, accuracy, confusion matrix, per-class scores and the misclassified samples."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnist_tui.batches import Split, load_split, prepare, resolve_device
from mnist_tui.checkpoints import Checkpoint
from mnist_tui.data import DATASET_SPECS

EVAL_BATCH_SIZE = 2000


@torch.no_grad()
def _in_eval_batches(model: nn.Module, count: int, batch_size: int,
                     forward: Callable[[slice], torch.Tensor]) -> list[torch.Tensor]:
    """`forward` over `count` samples a batch at a time, the model in eval mode (dropout off, batch norm
    on its running statistics) and put back as it was: a model being trained is evaluated between epochs."""
    was_training = model.training
    model.eval()
    try:
        return [forward(slice(i, i + batch_size)) for i in range(0, count, batch_size)]
    finally:
        model.train(was_training)


def predict(model: nn.Module, split: Split, mean: float, std: float,
            batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits (N, 10) for a device-resident split."""
    return torch.cat(_in_eval_batches(model, len(split), batch_size,
                                      lambda batch: model(prepare(split.images[batch], mean, std))))


def classify(model: nn.Module, digits: torch.Tensor, mean: float, std: float,
             batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Class probabilities (N, classes) for float digits (N, 28, 28) with pixels in [0, 1], on the CPU
    whatever the model's device: what `predict` and the playground show."""
    device = next(model.parameters()).device

    def probabilities(batch: slice) -> torch.Tensor:
        return model(((digits[batch, None] - mean) / std).to(device)).softmax(dim=1).cpu()

    outputs = _in_eval_batches(model, len(digits), batch_size, probabilities)
    return torch.cat(outputs) if outputs else torch.zeros(0, 10)


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Mistake:
    """A misclassified sample: its index in the split, what it is, what the model said, and how sure it was."""

    index: int
    true: int
    predicted: int
    confidence: float


@dataclass(frozen=True)
class EvaluationResult:
    checkpoint: str
    dataset: str
    split: str
    samples: int
    loss: float
    """Mean cross-entropy per sample."""
    accuracy: float
    confusion_matrix: list[list[int]]
    """Rows are true classes, columns predicted."""
    per_class: list[ClassScore]
    mistakes: list[Mistake]
    """Most confident mistakes first."""
    mistake_images: torch.Tensor
    """uint8 (len(mistakes), 28, 28), in the order of `mistakes`."""
    seconds: float
    warning: str = ""
    """Why the numbers mean less than they seem (weights that are NaN), or ""."""

    def to_json(self, mistakes: int | None = None) -> dict[str, object]:
        """Plain JSON (a NaN from a diverged model becomes null), with the first `mistakes` misclassified
        samples, most confident first, or all of them."""
        return {
            "checkpoint": self.checkpoint, "dataset": self.dataset, "split": self.split,
            "samples": self.samples, "loss": finite_or_none(self.loss), "accuracy": self.accuracy,
            "confusion_matrix": self.confusion_matrix,
            "per_class": [vars(score) for score in self.per_class],
            "misclassified": [dict(vars(mistake), confidence=finite_or_none(mistake.confidence))
                              for mistake in self.mistakes[:mistakes]],
            "seconds": self.seconds,
            "warning": self.warning or None,
        }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score(logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]
          ) -> tuple[float, float, list[list[int]], list[ClassScore], list[Mistake]]:
    """Metrics from logits and labels; split out so it is testable on hand-made numbers."""
    loss = float(F.cross_entropy(logits, labels, reduction="mean"))
    probabilities = logits.softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    classes = len(class_names)
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    true_positive = confusion.diagonal().to(torch.float64)
    predicted_count = confusion.sum(dim=0).to(torch.float64)
    support = confusion.sum(dim=1)
    precision = torch.where(predicted_count > 0, true_positive / predicted_count.clamp(min=1), 0.0)
    recall = torch.where(support > 0, true_positive / support.clamp(min=1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    per_class = [ClassScore(class_names[c], float(precision[c]), float(recall[c]), float(f1[c]), int(support[c]))
                 for c in range(classes)]
    wrong = (predicted != labels).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)]
    mistakes = [Mistake(int(i), int(labels[i]), int(predicted[i]), float(confidence[i])) for i in wrong.tolist()]
    accuracy = float((predicted == labels).to(torch.float64).mean())
    return loss, accuracy, confusion.tolist(), per_class, mistakes


def evaluate(checkpoint: Checkpoint, split: str = "test", data_root: Path = Path("datasets"),
             download: bool = False, device: str = "auto", dataset: str | None = None) -> EvaluationResult:
    """Evaluate a loaded checkpoint on a whole split of its dataset (or `dataset` if given).

    Raises:
        DatasetError, DeviceError: the data or device is not available.
    """
    dataset = dataset or checkpoint.config.dataset
    target = resolve_device(device)
    data = load_split(dataset, split == "train", data_root, download)
    started = time.perf_counter()
    model = checkpoint.build_model().to(target)
    logits = predict(model, data.to(target), checkpoint.mean, checkpoint.std).cpu()
    loss, accuracy, confusion, per_class, mistakes = score(logits, data.labels, DATASET_SPECS[dataset].classes)
    images = data.images[[m.index for m in mistakes]] if mistakes else data.images[:0]
    return EvaluationResult(str(checkpoint.path), dataset, split, len(data), loss, accuracy, confusion,
                            per_class, mistakes, images, time.perf_counter() - started,
                            nonfinite_warning(checkpoint.model_state))


def nonfinite_warning(state: dict[str, torch.Tensor]) -> str:
    """A warning if any weight is NaN or infinite: such a model (a diverged run's) still scores, by the argmax
    of NaN logits, an accuracy near chance that reads like a result."""
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if not broken:
        return ""
    listed = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
    return f"its weights hold NaN or infinite values ({listed}): the model diverged, and these scores mean nothing"
