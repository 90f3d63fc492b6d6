"""Images from outside turned into digits as MNIST's were made, for `predict` and the playground alike.

MNIST's digits are white ink on black, size-normalised so the longer side of the ink fits 20 pixels (keeping
the aspect ratio, with anti-aliasing), then placed in a 28x28 field so the ink's centre of mass is at the
centre. A model trained on them reads other digits well only after the same treatment: a photo of a digit
drawn in the corner of a page, dark on light, means nothing to it as it is.

Everything here but `load_grey` is a pure function on float tensors of pixels in [0, 1], so it can be
tested on synthetic images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
"""What `predict` picks from a folder; a file named directly is tried whatever its name."""
SIDE = 28
BOX = 20
"""The longer side of the ink in an MNIST digit."""
CENTRE = 14.0
"""Where MNIST's test digits have their centre of mass, row and column (pixel indices; measured: 13.99, 14.01)."""
MAX_SIDE = 1024
"""Larger images are reduced first: a phone photo's 12 megapixels add time, not information, at 20 px."""
MIN_CONTRAST = 0.15
"""Ink must differ from the paper by this much of the full grey range, or the image counts as blank."""
NOISE_SIGMAS = 4.0
"""Paper grain below the background's level plus this many of its standard deviations is not ink."""
MIN_FLOOR = 0.08
"""Always at least this much above the paper: JPEG ringing and sensor noise on clean paper are not ink."""
MIN_INK_SHARE = 0.0005
"""Ink covering less of the image than this (a twentieth of a percent, in full-ink pixels) is a speck, not a
digit: an MNIST digit's ink covers about 13% of its field, a thin pen's digit on a photo 0.3% or more."""


class ImageError(ValueError):
    """An image cannot be read or holds no digit; the message says which, in one line."""


def load_grey(path: Path) -> torch.Tensor:
    """A PNG, JPEG or BMP (any size, mode, alpha, EXIF orientation) as grey float pixels (H, W) in [0, 1].

    A transparent background is laid on paper that contrasts with the opaque pixels, so a dark digit on a
    transparent sheet reads as dark on light, and a light one as light on dark.

    Raises:
        ImageError: missing, unreadable or not an image.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (PNG, JPEG or BMP)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"{path}: unreadable image ({type(error).__name__}: {error})") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{path}: an empty image ({image.width}x{image.height})")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit or float greys, which convert("L") clips to white
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or float(values.max(initial=0.0)) > 255 else 255.0
        return torch.from_numpy(np.clip(values / top, 0.0, 1.0))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    rgba = image.convert("RGBA") if has_alpha else None
    grey = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)
    if rgba is None:
        return grey
    alpha = torch.from_numpy(np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0)
    return over_background(grey, alpha)


def over_background(grey: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Lay a transparent image on white if what is opaque in it is dark, else on black."""
    weight = float(alpha.sum())
    if weight == 0.0:
        return torch.zeros_like(grey)
    opaque_level = float((grey * alpha).sum()) / weight
    paper = 1.0 if opaque_level < 0.5 else 0.0
    return grey * alpha + paper * (1.0 - alpha)


def border(pixels: torch.Tensor) -> torch.Tensor:
    """The outer ring of pixels, a twentieth of each side deep (at least one): the paper, as a rule."""
    height, width = pixels.shape
    dy, dx = max(1, height // 20), max(1, width // 20)
    mask = torch.ones_like(pixels, dtype=torch.bool)
    mask[dy:height - dy, dx:width - dx] = False
    return pixels[mask]


def ink(grey: torch.Tensor, *, where: str = "image") -> torch.Tensor:
    """Grey pixels (H, W) in [0, 1] as ink in [0, 1] on a zero background, whichever way round they were.

    The border's median is the paper: light paper means dark ink, which is inverted. The paper's level and
    grain (median absolute deviation) set a floor below which nothing is ink, and the ink is stretched so
    its darkest stroke is 1, as in MNIST.

    Raises:
        ImageError: no ink stands out from the paper (`where` names the image in the message).
    """
    if grey.ndim != 2 or grey.numel() == 0:
        raise ImageError(f"{where}: expected a non-empty 2-D image, got shape {tuple(grey.shape)}")
    pixels = grey.to(torch.float32).clamp(0.0, 1.0)
    paper = border(pixels)
    if float(paper.median()) > 0.5:
        pixels, paper = 1.0 - pixels, 1.0 - paper
    level = float(paper.median())
    grain = 1.4826 * float((paper - level).abs().median())  # the MAD as a standard deviation
    floor = level + max(NOISE_SIGMAS * grain, MIN_FLOOR)
    peak = float(pixels.max())
    if peak - level < MIN_CONTRAST or peak <= floor:
        raise ImageError(f"{where}: blank (no ink stands out from the background)")
    stretched = ((pixels - floor) / (peak - floor)).clamp_(0.0, 1.0)
    if float(stretched.sum()) < MIN_INK_SHARE * stretched.numel():
        raise ImageError(f"{where}: blank (only a speck of ink)")
    return stretched


def mnist_layout(ink_pixels: torch.Tensor, *, where: str = "image") -> torch.Tensor:
    """Ink (H, W) in [0, 1] laid out as an MNIST digit: cropped to the ink, the longer side scaled to 20
    pixels keeping the aspect ratio (anti-aliased), placed in 28x28 with its centre of mass at the centre.

    Raises:
        ImageError: no ink at all (`where` names the image in the message).
    """
    rows = (ink_pixels > 0).any(dim=1).nonzero().flatten()
    cols = (ink_pixels > 0).any(dim=0).nonzero().flatten()
    if rows.numel() == 0:
        raise ImageError(f"{where}: blank (no ink)")
    crop = ink_pixels[int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    box = F.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    box = box.clamp_(0.0, 1.0)
    box = box / float(box.max())  # a thin stroke scaled down is faint; MNIST's strokes peak at full ink
    mass = float(box.sum())
    centre_row = float((box.sum(dim=1) * torch.arange(size[0])).sum()) / mass
    centre_col = float((box.sum(dim=0) * torch.arange(size[1])).sum()) / mass
    top = min(max(round(CENTRE - centre_row), 0), SIDE - size[0])
    left = min(max(round(CENTRE - centre_col), 0), SIDE - size[1])
    digit = torch.zeros(SIDE, SIDE)
    digit[top:top + size[0], left:left + size[1]] = box
    return digit


def digit_from_grey(grey: torch.Tensor, *, where: str = "image") -> torch.Tensor:
    """Any grey image (H, W) in [0, 1] as an MNIST digit, 28x28 in [0, 1], white on black."""
    return mnist_layout(ink(grey, where=where), where=where)


def load_digit(path: Path) -> torch.Tensor:
    """An image file as an MNIST digit, 28x28 float in [0, 1]; ImageError if unreadable or blank."""
    return digit_from_grey(load_grey(path), where=str(path))


def image_files(folder: Path) -> list[Path]:
    """The PNG, JPEG and BMP files directly in a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
