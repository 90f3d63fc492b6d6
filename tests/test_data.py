"""Datasets: IDX checks, imports torchvision can read, clear errors for missing data, seeded batching."""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_SIZE, TRAIN_SIZE, idx_bytes, synthetic_digits
from PIL import Image
from torchvision import datasets
from torchvision.transforms import functional as TF

from mnist_tui.batches import (
    DeviceError,
    Split,
    augment,
    batch_order,
    iterate_batches,
    load_split,
    prepare,
    resolve_device,
    steps_per_epoch,
)
from mnist_tui.data import (
    IDX_FILES,
    DatasetError,
    dataset_present,
    download_allowed,
    import_idx_folder,
    raw_folder,
    read_idx,
    resolve_data_dir,
)

IdxFolder = Callable[..., dict[str, Path]]


# read_idx

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_accepts_good_files(tmp_path: Path, idx_folder: IdxFolder, gz: bool) -> None:
    paths = idx_folder(tmp_path, gz=gz)
    images = read_idx(paths["train-images-idx3-ubyte"])
    labels = read_idx(paths["t10k-labels-idx1-ubyte"])
    assert (images.split, images.kind, images.count) == ("train", "images", TRAIN_SIZE)
    assert (labels.split, labels.kind, labels.count) == ("test", "labels", TEST_SIZE)
    expected_images, _ = synthetic_digits(TRAIN_SIZE, 0)
    _, expected_labels = synthetic_digits(TEST_SIZE, 1)
    assert images.data == idx_bytes("images", expected_images)
    assert labels.data == idx_bytes("labels", expected_labels)


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(DatasetError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message, message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_refuses_truncated_file(tmp_path: Path, gz: bool) -> None:
    images, _ = synthetic_digits(10, 0)
    data = idx_bytes("images", images)
    message = refusal(write(tmp_path / "train-images-idx3-ubyte", data[:-100], gz))
    assert "truncated" in message
    assert f"expected {16 + 10 * 784}" in message


def test_read_idx_refuses_truncated_gzip_stream(tmp_path: Path) -> None:
    images, _ = synthetic_digits(10, 0)
    packed = gzip.compress(idx_bytes("images", images))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    assert "cannot read" in refusal(path)


def test_read_idx_refuses_corrupt_gzip_stream(tmp_path: Path) -> None:
    # Bytes flipped inside the deflate stream make zlib raise zlib.error, which is neither OSError nor
    # EOFError: it must still come out as a DatasetError naming the file.
    _, labels = synthetic_digits(1000, 0)
    packed = bytearray(gzip.compress(idx_bytes("labels", labels)))
    rng = random.Random(0)
    for _ in range(5):
        packed[rng.randrange(10, len(packed) - 8)] = rng.randrange(256)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(packed))
    refusal(path)


def test_read_idx_refuses_wrong_magic(tmp_path: Path) -> None:
    _, labels = synthetic_digits(10, 0)
    # A labels file under an images name.
    message = refusal(write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes("labels", labels) + bytes(8)))
    assert "magic number 0x00000801, expected 0x00000803" in message


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_refuses_wrong_dimensions(tmp_path: Path, gz: bool) -> None:
    images = torch.zeros(4, 32, 32, dtype=torch.uint8)
    message = refusal(write(tmp_path / "train-images-idx3-ubyte", idx_bytes("images", images, 32, 32), gz))
    assert "32x32, expected 28x28" in message


def test_read_idx_refuses_labels_above_nine(tmp_path: Path) -> None:
    labels = torch.tensor([0, 1, 12, 3])
    message = refusal(write(tmp_path / "train-labels-idx1-ubyte", idx_bytes("labels", labels)))
    assert "label 12" in message
    assert "0-9" in message


@pytest.mark.parametrize("size", [0, 5, 4096])
def test_read_idx_refuses_foreign_files(tmp_path: Path, size: int) -> None:
    rng = random.Random(size)
    data = bytes(rng.randrange(256) for _ in range(size))
    message = refusal(write(tmp_path / "train-images-idx3-ubyte", data))
    assert "too short" in message or "magic number" in message


def test_read_idx_refuses_padded_file(tmp_path: Path) -> None:
    _, labels = synthetic_digits(10, 0)
    message = refusal(write(tmp_path / "train-labels-idx1-ubyte", idx_bytes("labels", labels) + b"\x00"))
    assert "padded" in message


def test_read_idx_refuses_unexpected_name(tmp_path: Path) -> None:
    _, labels = synthetic_digits(10, 0)
    message = refusal(write(tmp_path / "labels.idx", idx_bytes("labels", labels)))
    assert "train-images-idx3-ubyte" in message


def test_read_idx_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in refusal(tmp_path / "train-labels-idx1-ubyte")


# import_idx_folder

@pytest.mark.parametrize("gz", [False, True])
def test_import_lays_out_files_torchvision_loads(tmp_path: Path, idx_folder: IdxFolder, gz: bool) -> None:
    source = tmp_path / "download"
    idx_folder(source, gz=gz)
    root = tmp_path / "datasets"
    target = import_idx_folder(source, "mnist", root)
    assert target == root / "MNIST" / "raw"
    assert sorted(p.name for p in target.iterdir()) == sorted(IDX_FILES)
    assert dataset_present("mnist", root)
    train = datasets.MNIST(str(root), train=True, download=False)
    test = datasets.MNIST(str(root), train=False, download=False)
    expected_train, expected_labels = synthetic_digits(TRAIN_SIZE, 0)
    assert len(train) == TRAIN_SIZE
    assert len(test) == TEST_SIZE
    assert torch.equal(train.data, expected_train)
    assert torch.equal(train.targets, expected_labels)


def test_import_mixed_gz_and_raw_into_other_dataset(tmp_path: Path, idx_folder: IdxFolder) -> None:
    source = tmp_path / "download"
    paths = idx_folder(source, gz=True)
    raw_labels = source / "t10k-labels-idx1-ubyte"
    raw_labels.write_bytes(gzip.decompress(paths["t10k-labels-idx1-ubyte"].read_bytes()))
    paths["t10k-labels-idx1-ubyte"].unlink()
    root = tmp_path / "datasets"
    target = import_idx_folder(source, "fashion-mnist", root)
    assert target == root / "FashionMNIST" / "raw"
    assert len(datasets.FashionMNIST(str(root), train=False, download=False)) == TEST_SIZE


def test_import_replaces_different_files_only_when_asked(tmp_path: Path, idx_folder: IdxFolder) -> None:
    """Say Fashion-MNIST imported with the default --dataset mnist: runs would silently train on other data."""
    root = tmp_path / "datasets"
    idx_folder(tmp_path / "first", train_size=20, test_size=10)
    idx_folder(tmp_path / "second", train_size=30, test_size=10, seed=5)
    import_idx_folder(tmp_path / "first", "mnist", root)
    import_idx_folder(tmp_path / "first", "mnist", root)  # the same files again: nothing to replace
    with pytest.raises(DatasetError, match=r"already holds other mnist files .*--replace"):
        import_idx_folder(tmp_path / "second", "mnist", root)
    assert len(load_split("mnist", True, root)) == 20
    import_idx_folder(tmp_path / "second", "mnist", root, replace=True)
    assert len(load_split("mnist", True, root)) == 30
    assert [p.name for p in raw_folder("mnist", root).iterdir() if p.name.startswith(".")] == []


def bad_label_file(source: Path) -> None:
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes("labels", torch.full((TEST_SIZE,), 11))))


def test_refused_import_writes_nothing(tmp_path: Path, idx_folder: IdxFolder) -> None:
    source = tmp_path / "download"
    idx_folder(source, gz=True)
    bad_label_file(source)
    root = tmp_path / "datasets"
    with pytest.raises(DatasetError, match="label 11"):
        import_idx_folder(source, "mnist", root)
    target = raw_folder("mnist", root)
    assert not target.exists() or list(target.iterdir()) == []


def test_refused_import_keeps_existing_dataset(tmp_path: Path, idx_folder: IdxFolder) -> None:
    root = tmp_path / "datasets"
    idx_folder(tmp_path / "good", gz=True)
    import_idx_folder(tmp_path / "good", "mnist", root)
    before = {p.name: p.read_bytes() for p in raw_folder("mnist", root).iterdir()}
    idx_folder(tmp_path / "bad", gz=True, seed=3)
    bad_label_file(tmp_path / "bad")
    with pytest.raises(DatasetError):
        import_idx_folder(tmp_path / "bad", "mnist", root)
    assert {p.name: p.read_bytes() for p in raw_folder("mnist", root).iterdir()} == before


def test_import_refuses_count_mismatch(tmp_path: Path, idx_folder: IdxFolder) -> None:
    source = tmp_path / "download"
    idx_folder(source)
    _, labels = synthetic_digits(TRAIN_SIZE - 1, 0)
    (source / "train-labels-idx1-ubyte").write_bytes(idx_bytes("labels", labels))
    root = tmp_path / "datasets"
    with pytest.raises(DatasetError, match=f"{TRAIN_SIZE} images but .* {TRAIN_SIZE - 1} labels"):
        import_idx_folder(source, "mnist", root)
    assert not raw_folder("mnist", root).exists() or list(raw_folder("mnist", root).iterdir()) == []


def test_import_refuses_an_empty_split(tmp_path: Path, idx_folder: IdxFolder) -> None:
    idx_folder(tmp_path / "download", train_size=0)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: holds no images"):
        import_idx_folder(tmp_path / "download", "mnist", tmp_path / "datasets")


def test_import_refuses_missing_file(tmp_path: Path, idx_folder: IdxFolder) -> None:
    source = tmp_path / "download"
    idx_folder(source)
    (source / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetError, match="missing t10k-images-idx3-ubyte"):
        import_idx_folder(source, "mnist", tmp_path / "datasets")


def test_import_refuses_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        import_idx_folder(tmp_path / "nowhere", "mnist", tmp_path / "datasets")
    (tmp_path / "a-file").touch()
    with pytest.raises(DatasetError, match="a-file: not a folder"):
        import_idx_folder(tmp_path / "a-file", "mnist", tmp_path / "datasets")


# load_split

def test_load_split_reads_synthetic_root(synthetic_root: Path) -> None:
    train = load_split("mnist", True, synthetic_root)
    test = load_split("mnist", False, synthetic_root)
    assert (len(train), len(test)) == (TRAIN_SIZE, TEST_SIZE)
    assert train.images.dtype == torch.uint8
    assert train.images.shape == (TRAIN_SIZE, 28, 28)
    assert train.labels.dtype == torch.int64
    assert torch.equal(train.labels, synthetic_digits(TRAIN_SIZE, 0)[1])


def test_load_split_missing_without_download(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    with pytest.raises(DatasetError) as caught:
        load_split("mnist", True, root, download=False)
    message = str(caught.value)
    assert str((root / "MNIST" / "raw").absolute()) in message
    for name in IDX_FILES:
        assert name in message
    assert "mnist-tui data import" in message
    assert "\n" not in message
    assert not root.exists(), "a refused load must not create folders"


def test_a_failed_download_leaves_no_empty_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: datasets.FashionMNIST) -> None:  # what torchvision does without a network
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(datasets.FashionMNIST, "download", offline)
    root = tmp_path / "datasets"
    root.mkdir()
    (root / "MNIST").mkdir()  # someone else's: kept
    with pytest.raises(DatasetError, match="could not download fashion-mnist"):
        load_split("fashion-mnist", True, root, download=True)
    assert [p.name for p in root.iterdir()] == ["MNIST"]


def test_load_split_unreadable_files_give_dataset_error(synthetic_root: Path) -> None:
    # Present but broken: a DatasetError naming the file, as `data import` would refuse it.
    (raw_folder("mnist", synthetic_root) / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: too short for an IDX header"):
        load_split("mnist", True, synthetic_root)


# batching

def test_batch_order_is_a_seeded_permutation() -> None:
    cpu = torch.device("cpu")
    first = batch_order(100, seed=3, epoch=2, device=cpu)
    assert torch.equal(first, batch_order(100, seed=3, epoch=2, device=cpu))
    assert torch.equal(first.sort().values, torch.arange(100))
    assert not torch.equal(first, batch_order(100, seed=3, epoch=1, device=cpu))
    assert not torch.equal(first, batch_order(100, seed=4, epoch=2, device=cpu))


def numbered_split(size: int) -> Split:
    return Split(torch.arange(size).view(size, 1, 1).expand(size, 28, 28).to(torch.uint8).clone(), torch.arange(size))


def test_iterate_batches_drop_last() -> None:
    split = numbered_split(10)
    kept = [labels.tolist() for _, labels in iterate_batches(split, 3, None, drop_last=True)]
    assert kept == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    everything = [labels.tolist() for _, labels in iterate_batches(split, 3, None, drop_last=False)]
    assert everything == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert steps_per_epoch(10, 3) == 3


def test_iterate_batches_follows_order_and_start() -> None:
    split = numbered_split(8)
    order = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])
    batches = list(iterate_batches(split, 2, order, drop_last=True, start=1))
    assert [labels.tolist() for _, labels in batches] == [[5, 4], [3, 2], [1, 0]]
    images, labels = batches[0]
    assert images.shape == (2, 28, 28)
    assert images[:, 0, 0].tolist() == labels.tolist()


def test_prepare_matches_to_tensor() -> None:
    # The mlp is the tutorial's, trained on ToTensor() pixels; prepare() claims to give exactly those.
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    expected = TF.to_tensor(Image.fromarray(pixels[0], mode="L"))
    got = prepare(torch.from_numpy(pixels), 0.0, 1.0)
    assert got.shape == (1, 1, 16, 16)
    assert got.dtype == torch.float32
    assert torch.equal(got[0], expected)


def test_prepare_standardises() -> None:
    images = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    out = prepare(images, 0.5, 0.25)
    assert torch.allclose(out, torch.full((2, 1, 28, 28), 2.0))


def test_augment_keeps_shape_and_is_seeded() -> None:
    images, _ = synthetic_digits(16, 0)
    x = prepare(images, 0.1307, 0.3081)
    first = augment(x, torch.Generator().manual_seed(5))
    again = augment(x, torch.Generator().manual_seed(5))
    other = augment(x, torch.Generator().manual_seed(6))
    assert first.shape == x.shape
    assert first.dtype == x.dtype
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, x)
    # The background stays the background: shifted-in pixels take the image's minimum, not zero.
    assert torch.all(first >= x.amin(dim=(1, 2, 3), keepdim=True) - 1e-5)


# locations and devices

def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_TUI_DATA", raising=False)
    assert resolve_data_dir() == Path("datasets")
    monkeypatch.setenv("MNIST_TUI_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.setenv("MNIST_TUI_DATA", "~/data")
    assert resolve_data_dir() == Path.home() / "data"


def test_download_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not download_allowed()  # conftest turns downloads off for every test
    monkeypatch.delenv("MNIST_TUI_NO_DOWNLOAD")
    assert download_allowed()
    assert not download_allowed(no_download_flag=True)
    for value in ("TRUE", " on", "Yes"):
        monkeypatch.setenv("MNIST_TUI_NO_DOWNLOAD", value)
        assert not download_allowed()
    monkeypatch.setenv("MNIST_TUI_NO_DOWNLOAD", "0")
    assert download_allowed()


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(DeviceError, match="GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
