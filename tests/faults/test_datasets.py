"""Datasets used where they lie, not through `data import`: load_split checks them the same way, and a
damaged file is named in a one-line error, by train (a failed run) and by eval, never a traceback from
inside the loss."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_SIZE, Trained, idx_bytes, synthetic_digits, write_synthetic_dataset

from mnist_tui.__main__ import main
from mnist_tui.batches import load_split
from mnist_tui.data import DatasetError, raw_folder

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def label_200(raw: Path) -> None:
    data = bytearray((raw / LABELS).read_bytes())
    data[8 + 5] = 200
    (raw / LABELS).write_bytes(bytes(data))


def fewer_labels(raw: Path) -> None:
    _, labels = synthetic_digits(TRAIN_SIZE - 12, 0)
    (raw / LABELS).write_bytes(idx_bytes("labels", labels))


def random_bytes(raw: Path) -> None:
    (raw / IMAGES).write_bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(1),
                                             dtype=torch.uint8).numpy().tobytes())


def gzip_cut_short(raw: Path) -> None:
    (raw / IMAGES).write_bytes(gzip.compress((raw / IMAGES).read_bytes())[:3000])


def not_28x28(raw: Path) -> None:
    images, _ = synthetic_digits(TRAIN_SIZE, 0)
    (raw / IMAGES).write_bytes(idx_bytes("images", images, rows=14, cols=56))


def images_cut_short(raw: Path) -> None:
    (raw / IMAGES).write_bytes((raw / IMAGES).read_bytes()[:-100])


def labels_empty(raw: Path) -> None:
    (raw / LABELS).write_bytes(b"")


DAMAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage, the file named, what the message says of it)
    "a label of 200": (label_200, LABELS, "holds label 200, expected labels 0-9"),
    "fewer labels than images": (fewer_labels, IMAGES, f"holds {TRAIN_SIZE} images but "),
    "random bytes for images": (random_bytes, IMAGES, "magic number"),
    "a gzip cut short": (gzip_cut_short, IMAGES, "cannot read"),
    "14x56 images": (not_28x28, IMAGES, "images are 14x56, expected 28x28"),
    "images cut short": (images_cut_short, IMAGES, "(truncated or padded)"),
    "an empty labels file": (labels_empty, LABELS, "too short for an IDX header"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_load_split_names_the_damaged_file(damage: str, tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "datasets")
    spoil, name, says = DAMAGES[damage]
    spoil(raw_folder("mnist", root))
    with pytest.raises(DatasetError) as caught:
        load_split("mnist", True, root)
    assert f"{raw_folder('mnist', root) / name}" in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize("damage", ["a label of 200", "fewer labels than images", "a gzip cut short"])
def test_train_fails_in_one_line_naming_the_file(damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 restore_signals: None) -> None:
    root = write_synthetic_dataset(tmp_path / "datasets")
    spoil, name, says = DAMAGES[damage]
    spoil(raw_folder("mnist", root))
    code = main(["train", "--data-dir", str(root), "--runs-dir", str(tmp_path / "runs"), "--json", "--epochs", "1",
                 "--batch-size", "32", "--device", "cpu", "--num-threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("mnist-tui: run failed: ") and name in err and says in err


def test_eval_fails_in_one_line_naming_the_file(trained: Trained, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = write_synthetic_dataset(tmp_path / "datasets")
    label_200(raw_folder("mnist", root))
    code = main(["eval", str(trained.best), "--data-dir", str(root), "--split", "train"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "holds label 200" in err and LABELS in err, err


def test_a_whole_dataset_still_loads_as_it_is(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "datasets")
    images, labels = synthetic_digits(TRAIN_SIZE, 0)
    split = load_split("mnist", True, root)
    assert torch.equal(split.images, images) and torch.equal(split.labels, labels)
    assert split.labels.dtype == torch.int64 and split.images.shape == (TRAIN_SIZE, 28, 28)
