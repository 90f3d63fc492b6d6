"""`mnist-tui export`: each format round-trips on the CPU with the normalisation inside and a dynamic batch,
ONNX carries its metadata, a mismatch writes nothing, and on real MNIST the exported accuracy is the
checkpoint's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import Trained

from mnist_tui import export as export_module
from mnist_tui.__main__ import main
from mnist_tui.checkpoints import load_checkpoint
from mnist_tui.export import runner
from mnist_tui.models import build_model


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def reference_logits(checkpoint_path: Path, images: torch.Tensor) -> torch.Tensor:
    checkpoint = load_checkpoint(checkpoint_path)
    with torch.no_grad():
        return checkpoint.build_model().eval()((images - checkpoint.mean) / checkpoint.std)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
def test_each_format_round_trips_with_any_batch(capsys: pytest.CaptureFixture[str], trained: Trained,
                                                tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"model-{fmt}"
    code, out, err = cli(capsys, "export", trained.best, "--format", fmt, "-o", target,
                         "--data-dir", trained.data_root)
    assert (code, err) == (0, [])
    wrote, verified = out.splitlines()
    assert wrote.startswith(f"wrote {target} ({fmt}, ") and "output logits [N, 10]" in wrote
    # The synthetic test set has 128 images; the first 1,000 are all of them.
    match = re.fullmatch(r"verified on 128 mnist test images: largest logit difference (\S+); "
                         r"accuracy (\S+)% \(checkpoint\), (\S+)% \(exported\)", verified)
    assert match is not None, verified
    assert float(match[1]) <= 1e-4 and match[2] == match[3]
    run = runner(fmt, target)
    for batch in (1, 3):  # neither was the batch it was traced with
        images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        assert torch.allclose(run(images), reference_logits(trained.best, images), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "no temporary file is left behind"


def test_onnx_names_its_input_and_output_and_carries_the_preprocessing(
        capsys: pytest.CaptureFixture[str], trained: Trained, tmp_path: Path) -> None:
    import onnx

    target = tmp_path / "digits.onnx"
    assert cli(capsys, "export", trained.best, "-o", target, "--data-dir", trained.data_root)[0] == 0
    model = onnx.load(str(target))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata["class_names"]) == [str(d) for d in range(10)]
    preprocessing = json.loads(metadata["preprocessing"])
    assert preprocessing["range"] == [0.0, 1.0] and preprocessing["normalisation_in_graph"] == {"mean": 0.0, "std": 1.0}


def test_the_cnn_exports_with_its_normalisation_inside(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "cnn.pt"
    torch.save(build_model("cnn").state_dict(), weights)  # a bare state_dict: mean 0.1307, std 0.3081 assumed
    checkpoint = load_checkpoint(weights)
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for fmt in ("onnx", "exported-program"):
        target = tmp_path / f"cnn-{fmt}"
        result = export_module.export(checkpoint, fmt, target, images, None, "random images")
        assert result.largest_difference <= 1e-4
        assert torch.allclose(runner(fmt, target)(images), reference_logits(weights, images), atol=1e-4)


def test_a_mismatch_writes_nothing_and_keeps_what_was_there(capsys: pytest.CaptureFixture[str], trained: Trained,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # any difference, even none, is too much
    target = tmp_path / "model.pt2"
    target.write_bytes(b"an older export")
    code, out, err = cli(capsys, "export", trained.best, "--format", "exported-program", "-o", target,
                         "--data-dir", trained.data_root)
    assert (code, out) == (1, "")
    assert len(err) == 1 and "logits differ from the checkpoint's by up to 0" in err[0] and "nothing written" in err[0]
    assert target.read_bytes() == b"an older export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]


def test_without_the_test_set_it_verifies_on_random_images(capsys: pytest.CaptureFixture[str], trained: Trained,
                                                           tmp_path: Path) -> None:
    target = tmp_path / "model.torchscript.pt"
    code, out, _ = cli(capsys, "export", trained.best, "--format", "torchscript", "-o", target,
                       "--data-dir", tmp_path / "no-data", "--no-download")
    assert code == 0
    assert out.splitlines()[1] == ("verified on 1,000 random images (mnist's test set is not in "
                                   f"{tmp_path / 'no-data'}, so no accuracies): largest logit difference 0")


def test_refusals_are_one_line(capsys: pytest.CaptureFixture[str], trained: Trained, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli(capsys, "export", trained.best, "-o", trained.best)[2] == [
        f"mnist-tui: error: {trained.best} is the checkpoint itself; choose another -o"]
    assert cli(capsys, "export", trained.best, "-o", tmp_path / "missing" / "m.onnx")[0] == 2
    monkeypatch.setattr(export_module, "missing_onnx_modules", lambda: ["onnxscript", "onnxruntime"])
    assert cli(capsys, "export", trained.best, "-o", tmp_path / "m.onnx") == (1, "", [
        "mnist-tui: error: --format onnx needs onnxscript, onnxruntime: pip install 'mnist-tui[export]'"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.mnist
def test_exported_accuracy_is_the_checkpoints_on_real_mnist(capsys: pytest.CaptureFixture[str], mnist_root: Path,
                                                            tmp_path: Path) -> None:
    from mnist_tui.config import TrainConfig
    from mnist_tui.engine import train

    list(train(TrainConfig.from_mapping({"epochs": 1, "device": "cpu"}), tmp_path, mnist_root, download=False))
    for fmt in ("onnx", "torchscript"):
        code, out, err = cli(capsys, "export", tmp_path / "best.pt", "--format", fmt, "-o", tmp_path / f"m.{fmt}",
                             "--data-dir", mnist_root)
        assert code == 0, err
        match = re.search(r"1,000 mnist test images: largest logit difference (\S+); "
                          r"accuracy (\S+)% \(checkpoint\), (\S+)% \(exported\)", out)
        assert match is not None, out
        assert float(match[1]) <= 1e-4 and match[2] == match[3] and float(match[2]) > 90
