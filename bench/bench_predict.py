"""How well `mnist-tui predict` reads digits that come as pictures rather than as MNIST tensors.

Takes a seeded sample of MNIST test digits and classifies each twice with the same checkpoint: as the raw
28x28 tensor, and after saving it as a picture of a digit as a person would make one (dark ink on white,
upscaled 4x with bicubic smoothing, pasted at a random place on a 240x200 page) and reading that back
through `predict`'s path (Pillow, ink detection, MNIST's crop, 20 px box and centre of mass). Prints both
accuracies and how often the two predictions agree.

    python bench/bench_predict.py CHECKPOINT [--data-dir DIR] [--samples N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch
from PIL import Image

from mnist_tui.batches import load_split
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.data import resolve_data_dir
from mnist_tui.evaluation import classify
from mnist_tui.images import load_digit

PAGE = (240, 200)
UPSCALE = 4


def page_of(digit: torch.Tensor, place: random.Random) -> Image.Image:
    """A uint8 28x28 MNIST digit drawn dark on a white page, 4x larger, somewhere off-centre."""
    ink = Image.fromarray((255 - digit).numpy(), "L").resize((28 * UPSCALE, 28 * UPSCALE), Image.Resampling.BICUBIC)
    page = Image.new("L", PAGE, 255)
    page.paste(ink, (place.randint(0, PAGE[0] - ink.width), place.randint(0, PAGE[1] - ink.height)))
    return page


def compare(checkpoint_path: Path, data_root: Path, samples: int, seed: int = 0) -> tuple[float, float, float]:
    """(raw accuracy, picture accuracy, agreement) on `samples` test digits drawn with `seed`."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build_model()
    split = load_split(checkpoint.config.dataset, False, data_root)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:samples]
    images, labels = split.images[chosen], split.labels[chosen]
    raw = classify(model, images.float() / 255, checkpoint.mean, checkpoint.std).argmax(dim=1)
    place = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number, digit in enumerate(images):
            paths.append(Path(folder) / f"{number}.png")
            page_of(digit, place).save(paths[-1])
        read = torch.stack([load_digit(path) for path in paths])
    pictured = classify(model, read, checkpoint.mean, checkpoint.std).argmax(dim=1)
    return (float((raw == labels).float().mean()), float((pictured == labels).float().mean()),
            float((raw == pictured).float().mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    raw, pictured, agree = compare(args.checkpoint, resolve_data_dir(args.data_dir), args.samples)
    print(f"{args.samples} test digits: raw {raw:.2%}, as dark-on-white pictures {pictured:.2%} "
          f"(the two predictions agree on {agree:.2%})")


if __name__ == "__main__":
    main()
