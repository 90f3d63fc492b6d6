"""Datasets: which ones exist, where they live, whether they are there, and importing IDX folders.

Torch-free, so the dashboard can show a dataset's status without paying for importing torch; the tensors
live in batches.py.
"""

from __future__ import annotations

import errno
import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

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
    from_env = os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower()
    return not no_download_flag and from_env not in ("1", "true", "yes", "on")


def raw_folder(dataset: str, root: Path) -> Path:
    return root / DATASET_SPECS[dataset].folder / "raw"


def dataset_present(dataset: str, root: Path) -> bool:
    folder = raw_folder(dataset, root)
    return all((folder / name).is_file() for name in IDX_FILES)


def first_line(error: Exception) -> str:
    """An exception as one short line, `Type: first line of its message`, for one-line error messages; a
    long line ends at the last whole sentence that fits (torch's run on for hundreds of characters)."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ""
    if len(line) > 200:
        end = line.rfind(". ", 0, 200)
        line = line[:end + 1] if end > 0 else line[:max(line.rfind(" ", 0, 199), 100)] + "…"
    return f"{type(error).__name__}: {line}".rstrip(": ")


def not_a_file(path: Path) -> str:
    """Why `path`, which is not a regular file one can read, is not: `Path.exists` says False for a symlink
    loop and for a broken link alike, and "no such file" would send a person looking for a file that is
    there."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symlink loop (it links back to itself)"
        if os.path.islink(path):
            return f"a broken symlink (to {os.readlink(path)})"
        return "no such file" if isinstance(error, FileNotFoundError) else f"cannot read it ({error.strerror})"
    return "a folder, not a file" if path.is_dir() else "not a regular file"


def require_dataset(dataset: str, root: Path, download: bool) -> None:
    """Raises DatasetError, saying how to import it, if `dataset` is missing and may not be downloaded."""
    if not download and not dataset_present(dataset, root):
        raise DatasetError(missing_dataset_message(dataset, root, "dataset not found and downloads are off"))


def missing_dataset_message(dataset: str, root: Path, reason: str) -> str:
    folder = raw_folder(dataset, root).absolute()
    return (f"{reason}: {dataset} needs {', '.join(IDX_FILES)} in {folder}. "
            f"Copy them there (gzipped or not) with `mnist-tui data import DIR --dataset {dataset} "
            f"--data-dir {root}`, or point --data-dir / ${DATA_DIR_ENV} at a folder that has them.")


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
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
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


def check_pair(images: IdxFile, labels: IdxFile) -> None:
    """Raises DatasetError unless a split's images and labels are as many, and more than none."""
    if images.count != labels.count:
        raise DatasetError(f"{images.path} holds {images.count} images but {labels.path} "
                           f"holds {labels.count} labels")
    if images.count == 0:
        raise DatasetError(f"{images.path}: holds no images")


def read_split(dataset: str, split: str, root: Path) -> tuple[IdxFile, IdxFile]:
    """A split's images and labels from the data root, checked as `data import` checks them (headers,
    28x28, labels 0-9, lengths, counts that match): a dataset put there by hand or by a download is no more
    trusted than one imported.

    Raises:
        DatasetError: naming the file and what is wrong with it.
    """
    folder = raw_folder(dataset, root)
    images, labels = (read_idx(folder / name) for name, (s, _) in IDX_FILES.items() if s == split)
    check_pair(images, labels)
    return images, labels


def import_idx_folder(source: Path, dataset: str, root: Path, replace: bool = False) -> Path:
    """Check the four IDX files in `source` and lay them out where torchvision reads them.

    Every file is checked before anything is written, and files are written to a temporary folder, synced
    and renamed into place one by one, so a refused or interrupted import leaves no file half-written.
    Different files already in place are replaced only with `replace`: runs trained on them would silently
    change data.

    Returns:
        The folder the files now live in.
    """
    if not source.is_dir():
        raise DatasetError(f"{source}: {'not a folder' if source.exists() else 'no such folder'}")
    found: dict[str, IdxFile] = {}
    for name in IDX_FILES:
        candidates = [source / name, source / f"{name}.gz"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DatasetError(f"{source}: missing {name} (or {name}.gz)")
        found[name] = read_idx(path)
    for split in ("train", "test"):
        check_pair(*(next(f for f in found.values() if f.split == split and f.kind == k)
                     for k in ("images", "labels")))
    target = raw_folder(dataset, root)
    differing = [name for name, idx in found.items() if (target / name).is_file()
                 and (target / name).read_bytes() != idx.data]
    if differing and not replace:
        raise DatasetError(f"{target} already holds other {dataset} files ({', '.join(differing)}); "
                           "check --dataset, or add --replace to overwrite them")
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

