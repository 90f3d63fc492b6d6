"""Datasets: where they live, fetching them with torchvision, importing IDX folders, device-resident batches.

Training never goes through a DataLoader or PIL: a whole split is one uint8 tensor on the training device,
batches are gathered by a seeded permutation and scaled to floats there.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DATA_DIR_ENV = "MNIST_TUI_DATA"
NO_DOWNLOAD_ENV = "MNIST_TUI_NO_DOWNLOAD"
DEFAULT_DATA_DIR = Path("datasets")
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
IDX_FILES = {
    "train-images-idx3-ubyte": ("train", "images"),
    "train-labels-idx1-ubyte": ("train", "labels"),
    "t10k-images-idx3-ubyte": ("test", "images"),
    "t10k-labels-idx1-ubyte": ("test", "labels"),
}


class DatasetError(RuntimeError):
    """A dataset is missing, cannot be fetched, or a file is not what it claims to be."""


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str
    """The torchvision class name, which is also its folder under the data root."""
    classes: tuple[str, ...]


DATASET_SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "MNIST", tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetSpec("fashion-mnist", "FashionMNIST", (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "kmnist": DatasetSpec("kmnist", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
}


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """`--data-dir`, else $MNIST_TUI_DATA, else ./datasets (the tutorial's folder)."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env).expanduser() if from_env else DEFAULT_DATA_DIR


def download_allowed(no_download_flag: bool = False) -> bool:
    return not no_download_flag and os.environ.get(NO_DOWNLOAD_ENV, "") not in ("1", "true", "yes")


def raw_folder(dataset: str, root: Path) -> Path:
    return root / DATASET_SPECS[dataset].folder / "raw"


def dataset_present(dataset: str, root: Path) -> bool:
    folder = raw_folder(dataset, root)
    return all((folder / name).is_file() for name in IDX_FILES)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def missing_dataset_message(dataset: str, root: Path, reason: str) -> str:
    folder = raw_folder(dataset, root).absolute()
    return (f"{reason}: {dataset} needs {', '.join(IDX_FILES)} in {folder}. "
            f"Copy them there (gzipped or not) with `mnist-tui data import DIR --dataset {dataset} "
            f"--data-dir {root}`, or point --data-dir / ${DATA_DIR_ENV} at a folder that has them.")


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
    """Read a split through torchvision, downloading it first if allowed and missing.

    Raises:
        DatasetError: the files are missing (and may not or could not be downloaded) or unreadable.
    """
    from torchvision import datasets

    spec = DATASET_SPECS[dataset]
    tv_class = getattr(datasets, spec.folder)
    if not dataset_present(dataset, root):
        if not download:
            raise DatasetError(missing_dataset_message(dataset, root, "dataset not found and downloads are off"))
        try:
            root.mkdir(parents=True, exist_ok=True)
            tv_class(root=str(root), train=train, download=True)
        except Exception as error:  # torchvision raises many kinds when offline
            raise DatasetError(missing_dataset_message(
                dataset, root, f"could not download {dataset} ({_first_line(error)})")) from None
    try:
        loaded = tv_class(root=str(root), train=train, download=False)
    except Exception as error:
        raise DatasetError(f"cannot read {dataset} from {raw_folder(dataset, root)}: {_first_line(error)}") from None
    return Split(loaded.data.contiguous(), loaded.targets.to(torch.int64))


@dataclass(frozen=True)
class IdxFile:
    path: Path
    split: str
    kind: str
    count: int
    data: bytes


def read_idx(path: Path) -> IdxFile:
    """Read and check one IDX file (gzipped or not): magic number, counts, 28x28, labels 0-9, length.

    Raises:
        DatasetError: naming the file and what is wrong with it.
    """
    base = path.name.removesuffix(".gz")
    if base not in IDX_FILES:
        raise DatasetError(f"{path}: not one of the expected IDX file names ({', '.join(IDX_FILES)})")
    split, kind = IDX_FILES[base]
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None
    header = 16 if kind == "images" else 8
    if len(data) < header:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[0:4], "big")
    count = int.from_bytes(data[4:8], "big")
    expected_magic = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    if magic != expected_magic:
        raise DatasetError(f"{path}: magic number {magic:#010x}, expected {expected_magic:#010x} for {kind}")
    item_size = 1
    if kind == "images":
        rows, cols = int.from_bytes(data[8:12], "big"), int.from_bytes(data[12:16], "big")
        if (rows, cols) != (28, 28):
            raise DatasetError(f"{path}: images are {rows}x{cols}, expected 28x28")
        item_size = 28 * 28
    expected_length = header + count * item_size
    if len(data) != expected_length:
        raise DatasetError(f"{path}: {len(data)} bytes, expected {expected_length} for {count} {kind} "
                           "(truncated or padded)")
    if kind == "labels" and count and max(data[header:]) > 9:
        raise DatasetError(f"{path}: holds label {max(data[header:])}, expected labels 0-9")
    return IdxFile(path, split, kind, count, data)


def import_idx_folder(source: Path, dataset: str, root: Path) -> Path:
    """Check the four IDX files in `source` and lay them out where torchvision reads them.

    Every file is checked before anything is written, and files are written to a temporary folder and
    renamed into place, so a refused or interrupted import leaves nothing half-written.

    Returns:
        The folder the files now live in.
    """
    if not source.is_dir():
        raise DatasetError(f"{source}: no such folder")
    found: dict[str, IdxFile] = {}
    for name in IDX_FILES:
        candidates = [source / name, source / f"{name}.gz"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DatasetError(f"{source}: missing {name} (or {name}.gz)")
        found[name] = read_idx(path)
    for split in ("train", "test"):
        images, labels = (next(f for f in found.values() if f.split == split and f.kind == k)
                          for k in ("images", "labels"))
        if images.count != labels.count:
            raise DatasetError(f"{images.path} holds {images.count} images but {labels.path} "
                               f"holds {labels.count} labels")
    target = raw_folder(dataset, root)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".import-") as staging:
        for name, idx in found.items():
            with open(Path(staging) / name, "wb") as handle:
                handle.write(idx.data)
                handle.flush()
                os.fsync(handle.fileno())
        for name in found:
            os.replace(Path(staging) / name, target / name)
    return target


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
    x = images.unsqueeze(1).to(torch.float32).mul_(1.0 / 255.0)
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
    """Yield (images uint8, labels) batches of a device-resident split, in `order` if given."""
    size = len(split)
    stop = size - size % batch_size if drop_last else size
    for begin in range(start * batch_size, stop, batch_size):
        if order is None:
            yield split.images[begin:begin + batch_size], split.labels[begin:begin + batch_size]
        else:
            index = order[begin:begin + batch_size]
            yield split.images[index], split.labels[index]


def steps_per_epoch(size: int, batch_size: int) -> int:
    return size // batch_size

