"""Preprocessing of outside images into MNIST's layout, on synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_tui.images import (
    BOX,
    CENTRE,
    SIDE,
    ImageError,
    digit_from_grey,
    image_files,
    ink,
    load_digit,
    load_grey,
    mnist_layout,
)


def bar(height: int = 60, width: int = 40, top: int = 10, left: int = 15, thick: int = 6) -> torch.Tensor:
    """White-on-black: an upright bar with a foot, like a crude 1, somewhere on a larger page."""
    page = torch.zeros(height, width)
    page[top:top + 30, left:left + thick] = 1.0
    page[top + 24:top + 30, left - 4:left + thick + 4] = 1.0
    return page


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    index = torch.arange(SIDE, dtype=torch.float32)
    mass = float(digit.sum())
    return float((digit.sum(1) * index).sum()) / mass, float((digit.sum(0) * index).sum()) / mass


def extent(digit: torch.Tensor) -> tuple[int, int]:
    rows = (digit > 0).any(1).nonzero().flatten()
    cols = (digit > 0).any(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_a_digit_is_scaled_to_20_pixels_keeping_its_aspect_and_centred_by_mass() -> None:
    digit = digit_from_grey(bar())
    assert digit.shape == (SIDE, SIDE)
    height, width = extent(digit)
    assert height == BOX and width == round(14 * BOX / 30)  # 30x14 of ink: the longer side to 20
    row, col = centre_of_mass(digit)
    assert abs(row - CENTRE) <= 0.5 and abs(col - CENTRE) <= 0.5
    assert float(digit.max()) == pytest.approx(1.0)


def test_dark_on_light_is_inverted_to_mnists_white_on_black() -> None:
    light_on_dark = digit_from_grey(bar())
    dark_on_light = digit_from_grey(1.0 - bar())
    assert torch.allclose(light_on_dark, dark_on_light, atol=1e-6)
    assert float(dark_on_light[0, 0]) == 0.0


def test_where_the_digit_is_and_how_big_does_not_matter() -> None:
    small = digit_from_grey(bar(height=60, width=40, top=2, left=5))
    moved = digit_from_grey(bar(height=90, width=120, top=55, left=100))
    big = torch.nn.functional.interpolate(bar()[None, None], scale_factor=4, mode="nearest")[0, 0]
    assert (small - moved).abs().max() < 1e-6
    assert (small - digit_from_grey(big)).abs().mean() < 0.03


def test_paper_grain_and_a_grey_page_are_not_ink() -> None:
    generator = torch.Generator().manual_seed(0)
    page = 0.8 - 0.55 * bar() + 0.03 * torch.randn(60, 40, generator=generator)  # grey paper, grey pencil
    clean = digit_from_grey(bar())
    noisy = digit_from_grey(page.clamp(0, 1))
    assert extent(noisy) == extent(clean)
    assert (noisy - clean).abs().mean() < 0.05


@pytest.mark.parametrize("page", [torch.zeros(30, 30), torch.ones(30, 30), torch.full((30, 30), 0.5),
                                  0.5 + 0.02 * torch.randn(30, 30, generator=torch.Generator().manual_seed(1))])
def test_a_blank_page_is_an_error(page: torch.Tensor) -> None:
    with pytest.raises(ImageError, match=r"page\.png: blank"):
        digit_from_grey(page, where="page.png")


def test_mnist_layout_of_an_mnist_like_digit_changes_little() -> None:
    digit = digit_from_grey(bar())
    again = mnist_layout(ink(digit))
    assert (again - digit).abs().mean() < 0.02
    with pytest.raises(ImageError, match="blank"):
        mnist_layout(torch.zeros(28, 28))


def save(path: Path, array: np.ndarray, mode: str, quality: int = 95) -> Path:
    Image.fromarray(array, mode).save(path, quality=quality)
    return path


def test_files_of_any_mode_load_as_the_same_digit(tmp_path: Path) -> None:
    ink_mask = (bar() > 0).numpy()
    expected = digit_from_grey(bar())
    grey = np.where(ink_mask, 20, 235).astype(np.uint8)
    rgb = np.stack([grey, grey // 2, grey], axis=-1)
    rgba = np.zeros((*grey.shape, 4), dtype=np.uint8)  # black ink on a transparent (black) sheet
    rgba[..., 3] = np.where(ink_mask, 255, 0)
    sixteen = tmp_path / "sixteen.png"  # a 16-bit scan, which Pillow's convert("L") would turn all white
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)
    assert Image.open(sixteen).mode == "I;16"
    files = [sixteen, save(tmp_path / "grey.png", grey, "L"), save(tmp_path / "colour.jpg", rgb, "RGB"),
             save(tmp_path / "colour.bmp", rgb, "RGB"), save(tmp_path / "alpha.png", rgba, "RGBA")]
    for path in files:
        assert (load_digit(path) - expected).abs().mean() < 0.03, path.name


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = (bar() * 255).byte().numpy()
    image = Image.fromarray(np.rot90(upright).copy(), "L")  # stored on its side, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to view it (np.rot90 turned it anticlockwise)
    path = tmp_path / "photo.jpg"
    image.save(path, quality=95, exif=exif.tobytes())
    assert load_grey(path).shape == (60, 40)
    assert (load_digit(path) - digit_from_grey(bar())).abs().mean() < 0.03


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    png = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8), "L").save(png)
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[:2000])
    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        load_digit(tmp_path / "notes.png")
    with pytest.raises(ImageError, match=r"cut\.png: unreadable image"):
        load_digit(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="no such file"):
        load_digit(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="a folder"):
        load_digit(tmp_path)


def test_image_files_lists_images_only(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpeg", "c.bmp", "notes.txt", "d.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["a.jpeg", "b.PNG", "c.bmp", "d.jpg"]
