"""Splits as tensors on the training device, batches drawn from them, and device selection.

Training never goes through a DataLoader or PIL: a whole split is one uint8 tensor on the training device,
batches are gathered by a seeded permutation and scaled to floats there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mnist_tui.data import (
    DATASET_SPECS,
    DatasetError,
    dataset_present,
    first_line,
    missing_dataset_message,
    raw_folder,
    read_split,
    require_dataset,
)


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine."""


@dataclass(frozen=True)
class Split:
    """A whole split as tensors: images uint8 (N, 28, 28), labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, indices: torch.Tensor) -> Split:
        return Split(self.images[indices], self.labels[indices])


def load_split(dataset: str, train: bool, root: Path, download: bool = False) -> Split:
    """Read a split, checked as `data import` checks files (see `read_split`), downloading it first
    through torchvision if allowed and missing.

    Raises:
        DatasetError: the files are missing (and may not or could not be downloaded), unreadable, or not
            what they claim to be (the message names the file).
    """
    if not dataset_present(dataset, root):
        from torchvision import datasets

        require_dataset(dataset, root, download)
        tv_class = getattr(datasets, DATASET_SPECS[dataset].folder)
        folder = raw_folder(dataset, root)
        created = [p for p in (root, folder.parent, folder) if not p.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
            tv_class(root=str(root), train=train, download=True)
        except Exception as error:  # torchvision raises many kinds when offline
            for path in reversed(created):  # leave no empty folders behind, but never a file it fetched
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            raise DatasetError(missing_dataset_message(
                dataset, root, f"could not download {dataset} ({first_line(error)})")) from None
    images, labels = read_split(dataset, "train" if train else "test", root)
    # bytearray: a writable copy, which torch.frombuffer wants; the header bytes are skipped.
    pixels = torch.frombuffer(bytearray(images.data), dtype=torch.uint8, offset=16).view(-1, 28, 28)
    targets = torch.frombuffer(bytearray(labels.data), dtype=torch.uint8, offset=8).to(torch.int64)
    return Split(pixels, targets)


def resolve_device(requested: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested} asked for, but CUDA is not available on this machine")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {requested} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device mps asked for, but MPS is not available on this machine")
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    """A human name for the device: the GPU's name and memory, or the CPU thread count."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def prepare(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, 28, 28) to float (B, 1, 28, 28): [0, 1] pixels as ToTensor gives, then standardised."""
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    if mean != 0.0 or std != 1.0:
        x = x.sub_(mean).div_(std)
    return x


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random per-sample affine: shifts up to 2 px and rotations up to 10 degrees, on x's device."""
    batch = x.shape[0]
    angle = (torch.rand(batch, device=x.device, generator=generator) * 2 - 1) * math.radians(10)
    shift = (torch.rand(batch, 2, device=x.device, generator=generator) * 2 - 1) * (2 * 2 / 28)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Pad with the image's background value (pixel 0 after normalisation) rather than zero.
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def batch_order(size: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffled order of an epoch, a pure function of (seed, epoch) so a resumed run sees the same."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(size, generator=generator).to(device)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 1) % (2**63)


def iterate_batches(split: Split, batch_size: int, order: torch.Tensor | None,
                    drop_last: bool, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images uint8, labels) batches of a device-resident split, in `order` if given.

    Each batch gathers its own rows: on a CPU they land in a small buffer that is still in cache when it is
    converted to floats, which makes an MNIST epoch's data handling three times cheaper (14 ms against
    44 ms here) than permuting the whole split first and slicing it.
    """
    size = len(split)
    stop = size - size % batch_size if drop_last else size
    for begin in range(start * batch_size, stop, batch_size):
        if order is None:
            yield split.images[begin:begin + batch_size], split.labels[begin:begin + batch_size]
        else:
            rows = order[begin:begin + batch_size]
            yield split.images.index_select(0, rows), split.labels.index_select(0, rows)


def steps_per_epoch(size: int, batch_size: int) -> int:
    return size // batch_size

