"""`mnist-tui predict`: output shapes, the default checkpoint, one line per failure, and on real MNIST that
digits read from pictures are classified about as well as the raw tensors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Trained, small_config
from PIL import Image

from mnist_tui.__main__ import main
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.evaluation import classify
from mnist_tui.images import load_digit


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and stderr's lines of `mnist-tui ARGS` run in this process."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def draw(path: Path, size: tuple[int, int] = (90, 70), corner: tuple[int, int] = (20, 10)) -> Path:
    """A dark bar on white paper, saved as whatever the suffix says."""
    page = Image.new("RGB", size, (250, 250, 245))
    page.paste((10, 10, 40), (corner[0], corner[1], corner[0] + 8, corner[1] + 40))
    page.save(path)
    return path


def test_json_is_one_object_per_image_with_the_models_probabilities(
        capsys: pytest.CaptureFixture[str], trained: Trained, tmp_path: Path) -> None:
    pictures = [draw(tmp_path / "a.png"), draw(tmp_path / "b.jpg", (300, 200), (200, 100))]
    code, out, err = cli(capsys, "predict", *pictures, "--checkpoint", trained.best, "--json")
    assert code == 0 and err == []
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line.keys() for line in lines] == [{"path", "prediction", "probabilities"}] * 2
    checkpoint = load_checkpoint(trained.best)
    for line, picture in zip(lines, pictures, strict=True):
        expected = classify(checkpoint.build_model(), load_digit(picture)[None], checkpoint.mean, checkpoint.std)[0]
        assert line["path"] == str(picture)
        assert line["probabilities"] == pytest.approx(expected.tolist(), abs=1e-6)
        assert line["prediction"] == int(expected.argmax())
        assert sum(line["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_text_names_the_top_class_and_the_runner_up_and_the_default_is_the_newest_best(
        capsys: pytest.CaptureFixture[str], trained: Trained, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for run_id, with_best in (("20260101-000000-mlp-aaaa", True), ("20260102-000000-mlp-bbbb", True),
                              ("20260103-000000-mlp-cccc", False)):  # the newest is still in its first epoch
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "config.json").write_text(json.dumps(small_config().to_dict()), encoding="utf-8")
        if with_best:
            shutil.copy(trained.best, runs / run_id / "best.pt")
    (runs / "20260101-000000-mlp-aaaa" / "best.pt").write_bytes(b"damaged: must not be the one used")
    picture = draw(tmp_path / "one.bmp")
    code, out, err = cli(capsys, "predict", picture, "--runs-dir", runs)
    assert code == 0, err
    probabilities = json.loads(cli(capsys, "predict", picture, "--runs-dir", runs, "--json")[1])["probabilities"]
    top, second = sorted(range(10), key=probabilities.__getitem__, reverse=True)[:2]
    assert out == f"{picture}: {top} ({probabilities[top]:.1%}), then {second} ({probabilities[second]:.1%})\n"


def test_each_failure_is_one_line_and_the_rest_are_still_predicted(
        capsys: pytest.CaptureFixture[str], trained: Trained, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    draw(folder / "good.png")
    Image.new("L", (40, 40), 255).save(folder / "blank.png")
    (folder / "broken.jpg").write_text("not a jpeg")
    (folder / "notes.txt").write_text("not looked at")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli(capsys, "predict", folder, empty, tmp_path / "missing.png", "--checkpoint", trained.best)
    assert code == 2
    assert out.startswith(f"{folder / 'good.png'}: ") and len(out.splitlines()) == 1
    assert err == [f"mnist-tui: error: {empty}: no images in this folder (.bmp, .jpeg, .jpg, .png)",
                   f"mnist-tui: error: {folder / 'blank.png'}: blank (no ink stands out from the background)",
                   f"mnist-tui: error: {folder / 'broken.jpg'}: not an image Pillow can read (PNG, JPEG or BMP)",
                   f"mnist-tui: error: {tmp_path / 'missing.png'}: no such file"]


def test_no_checkpoint_to_use_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    picture = draw(tmp_path / "a.png")
    code, out, err = cli(capsys, "predict", picture, "--runs-dir", tmp_path / "runs")
    assert (code, out) == (2, "")
    assert err == [f"mnist-tui: error: no run in {tmp_path / 'runs'} has a best.pt yet; train one, or pass "
                   "--checkpoint FILE"]
    code, _, err = cli(capsys, "predict", picture, "--checkpoint", picture)
    assert code == 2 and len(err) == 1 and "not a readable PyTorch file" in err[0]


@pytest.mark.mnist
def test_digits_read_from_pictures_score_as_the_raw_digits(mnist_root: Path, tmp_path: Path) -> None:
    """300 test digits as dark-on-white pictures, 4x larger, off-centre on a page (bench/bench_predict.py),
    against the same digits as tensors, with an mlp trained one epoch on real MNIST."""
    from mnist_tui.config import TrainConfig
    from mnist_tui.engine import train

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from bench_predict import compare

    config = TrainConfig.from_mapping({"epochs": 1, "device": "cpu", "seed": 0})
    list(train(config, tmp_path, mnist_root, download=False))
    raw, pictured, agree = compare(tmp_path / "best.pt", mnist_root, samples=300)
    assert raw > 0.9
    assert pictured >= raw - 0.02
    assert agree >= 0.95
