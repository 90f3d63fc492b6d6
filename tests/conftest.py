"""Shared fixtures: tiny synthetic IDX datasets written per test, tmp run folders, the real data root.

The synthetic digits are learnable on purpose: each class is a bright 6x6 block at its own place on a
noisy background, so a few dozen optimizer steps separate them and tests can check that training learns.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_tui.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_SIZE = 512
TEST_SIZE = 128

# Tiny models on a 2-core machine gain nothing from many threads and lose to their start-up.
torch.set_num_threads(1)


class MnistModel(nn.Module):
    """The tutorial's model class (section 5), copied as a user's script defines it, comments aside; the
    tests use it to prove that mnist-tui reads what the tutorial writes."""

    def __init__(self) -> None:
        super().__init__()
        self.lr1 = nn.Linear(784, 128)
        self.lr2 = nn.Linear(128, 64)
        self.lr3 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, start_dim=1)
        x = self.lr1(x)
        x = self.relu(x)
        x = self.lr2(x)
        x = self.relu(x)
        output = self.lr3(x)
        return output


def synthetic_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` uint8 28x28 images and int64 labels; class c is a bright block at a place set by c."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    labels = labels[torch.randperm(count, generator=generator)]
    images = torch.randint(0, 40, (count, 28, 28), generator=generator, dtype=torch.int64)
    jitter = torch.randint(-1, 2, (count, 2), generator=generator)
    for i, label in enumerate(labels.tolist()):
        row = 3 + (label // 5) * 13 + int(jitter[i, 0])
        col = 1 + (label % 5) * 5 + int(jitter[i, 1])
        images[i, max(row, 0):row + 6, max(col, 0):col + 6] = 255
    return images.to(torch.uint8), labels


def idx_bytes(kind: str, data: torch.Tensor, rows: int = 28, cols: int = 28, magic: int | None = None) -> bytes:
    """An IDX file's bytes: images (magic 0x803, count, rows, cols) or labels (magic 0x801, count)."""
    count = int(data.shape[0])
    if kind == "images":
        header = (magic or 0x803).to_bytes(4, "big") + count.to_bytes(4, "big")
        header += rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    else:
        header = (magic or 0x801).to_bytes(4, "big") + count.to_bytes(4, "big")
    return header + data.to(torch.uint8).numpy().tobytes()


def write_idx_folder(folder: Path, gz: bool = False, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE,
                     seed: int = 0) -> dict[str, Path]:
    """Write the four IDX files flat into `folder` (as a download would), gzipped or not; return name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_digits(train_size, seed)
    test_images, test_labels = synthetic_digits(test_size, seed + 1)
    contents = {
        "train-images-idx3-ubyte": idx_bytes("images", train_images),
        "train-labels-idx1-ubyte": idx_bytes("labels", train_labels),
        "t10k-images-idx3-ubyte": idx_bytes("images", test_images),
        "t10k-labels-idx1-ubyte": idx_bytes("labels", test_labels),
    }
    paths = {}
    for name, data in contents.items():
        path = folder / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        paths[name] = path
    return paths


def write_synthetic_dataset(root: Path, dataset_folder: str = "MNIST", **kwargs: int) -> Path:
    """Lay out a synthetic dataset as torchvision reads it: <root>/MNIST/raw/<uncompressed IDX files>."""
    write_idx_folder(root / dataset_folder / "raw", gz=False, **kwargs)
    return root


@dataclass(frozen=True)
class Trained:
    """A run trained once per session on synthetic data, shared by tests that only read it."""

    data_root: Path
    run_dir: Path
    best: Path
    last: Path


def small_config(**changes: object) -> TrainConfig:
    """A config that trains the synthetic data in well under a second per epoch on one CPU thread."""
    values: dict[str, object] = {"batch_size": 32, "epochs": 2, "lr": 0.01, "device": "cpu", "num_threads": 1,
                                 "seed": 0}
    values.update(changes)
    return TrainConfig.from_mapping(values)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nothing in the tests may reach the network, and no test may see the developer's data or runs."""
    monkeypatch.setenv("MNIST_TUI_NO_DOWNLOAD", "1")
    monkeypatch.delenv("MNIST_TUI_RUNS", raising=False)
    monkeypatch.setenv("MNIST_TUI_STATE", str(tmp_path_factory.mktemp("state")))  # not the developer's


@pytest.fixture(autouse=True)
def _torch_threads() -> Iterator[None]:
    """train() sets torch's process-wide thread count from its config; undo that after each test."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    """A data root holding a synthetic MNIST (512 train / 128 test images) in torchvision's layout."""
    return write_synthetic_dataset(tmp_path / "datasets")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def make_config() -> Callable[..., TrainConfig]:
    """A factory for small, fast, deterministic configs; keyword arguments override fields."""
    return small_config


@pytest.fixture
def idx_folder() -> Callable[..., dict[str, Path]]:
    """A factory that writes the four IDX files flat into a folder, gzipped or not."""
    return write_idx_folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """An mlp trained for 2 epochs on synthetic data, with its best.pt and last.pt; read-only for tests."""
    from mnist_tui.engine import train
    from mnist_tui.events import RunFinished

    base = tmp_path_factory.mktemp("trained")
    data_root = write_synthetic_dataset(base / "datasets")
    run_dir = base / "run"
    run_dir.mkdir()
    events = list(train(small_config(), run_dir, data_root, download=False))
    assert isinstance(events[-1], RunFinished), events[-1]
    return Trained(data_root, run_dir, run_dir / "best.pt", run_dir / "last.pt")


@pytest.fixture
def mnist_root() -> Path:
    """The real MNIST data root ($MNIST_TUI_DATA, else ../shared/datasets); skips when it lacks the files."""
    root = Path(os.environ.get("MNIST_TUI_DATA") or REPO_ROOT.parent / "shared" / "datasets")
    raw = root / "MNIST" / "raw"
    missing = [name for name in IDX_NAMES if not (raw / name).is_file()]
    if missing:
        pytest.skip(f"real MNIST not found in {raw} (missing {', '.join(missing)})")
    return root


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """`mnist-tui train` installs SIGINT/SIGTERM handlers; put the test runner's back afterwards."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` need a GPU: skipped, with why, on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run bench/bench_gpu.py on a GPU box)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
