"""Export a checkpoint for serving: ONNX, TorchScript or a torch.export ExportedProgram, then prove the file
computes what the checkpoint does.

Every format takes the same input, so a server needs nothing of mnist-tui: `image`, float32
[N, 1, 28, 28], pixels in [0, 1], white digit on black as MNIST's (the model's normalisation is inside the
graph), and returns `logits` [N, classes]; the batch axis is dynamic.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnist_tui.checkpoints import Checkpoint
from mnist_tui.control import temporary_beside
from mnist_tui.data import DATASET_SPECS, first_line

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
"""Where a file goes beside its checkpoint when no -o is given."""
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
VERIFY_SAMPLES = 1000
TOLERANCE = 1e-4
"""The largest logit difference from the checkpoint an exported file may have."""
EXAMPLE_BATCH = 2
"""The batch traced with: torch.export fixes an axis whose example size is 1."""


class ExportError(RuntimeError):
    """Exporting or verifying failed; the message says why in one line."""


class WithNormalisation(nn.Module):
    """The model behind its own input normalisation, so an exported file takes [0, 1] pixels."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model.eval()
        self.mean = mean
        self.std = std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model((image - self.mean) / self.std)


def missing_onnx_modules() -> list[str]:
    """Which of the `export` extra's modules ONNX export needs are not installed."""
    import importlib.util

    return [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None]


def preprocessing_metadata(checkpoint: Checkpoint) -> dict[str, str]:
    """What an ONNX file says about its input and classes, for whoever serves it."""
    return {
        "preprocessing": json.dumps({
            "input": "image", "dtype": "float32", "shape": ["N", 1, 28, 28], "range": [0.0, 1.0],
            "layout": "white digit on black, longer side 20 px, centred by centre of mass in 28x28 (MNIST's)",
            "normalisation_in_graph": {"mean": checkpoint.mean, "std": checkpoint.std}}),
        "class_names": json.dumps(list(DATASET_SPECS[checkpoint.config.dataset].classes)),
        "output": "logits [N, classes]; softmax gives the probabilities",
        "dataset": checkpoint.config.dataset,
        "model": checkpoint.model_name,
    }


def write(checkpoint: Checkpoint, fmt: str, path: Path) -> None:
    """Write `checkpoint`'s model in `fmt` to `path` (which must not be read while it is written)."""
    wrapped = WithNormalisation(checkpoint.build_model(), checkpoint.mean, checkpoint.std).eval()
    example = torch.rand(EXAMPLE_BATCH, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, and still what many serve
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(wrapped, example), str(path))
        elif fmt == "exported-program":
            program = torch.export.export(wrapped, (example,), dynamic_shapes={"image": {0: batch}})
            torch.export.save(program, str(path))
        else:
            _write_onnx(wrapped, example, batch, checkpoint, path)


def _write_onnx(wrapped: nn.Module, example: torch.Tensor, batch: object, checkpoint: Checkpoint,
                path: Path) -> None:
    import contextlib
    import io

    import onnx

    with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps on stdout
        program = torch.onnx.export(wrapped, (example,), input_names=["image"], output_names=["logits"],
                                    dynamic_shapes={"image": {0: batch}}, dynamo=True, external_data=False)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    model = program.model_proto
    for key, value in preprocessing_metadata(checkpoint).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def runner(fmt: str, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from images to logits that runs the exported file as a server would: onnxruntime for
    ONNX, torch for the others."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: torch.from_numpy(session.run(["logits"], {"image": images.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    return lambda images: module(images)


@dataclass(frozen=True)
class Verification:
    samples: int
    source: str
    """What the images were: the test set, or random pixels where it is not available."""
    largest_difference: float
    checkpoint_accuracy: float | None
    exported_accuracy: float | None


def verify(checkpoint: Checkpoint, fmt: str, path: Path, images: torch.Tensor, labels: torch.Tensor | None,
           source: str) -> Verification:
    """Run the exported file and the checkpoint on `images` (float [N, 1, 28, 28] in [0, 1]) and compare."""
    model = WithNormalisation(checkpoint.build_model(), checkpoint.mean, checkpoint.std).eval()
    run = runner(fmt, path)
    with torch.no_grad():
        expected = model(images)
        got = run(images)
    if got.shape != expected.shape:
        raise ExportError(f"the exported model returned logits of shape {tuple(got.shape)}, expected "
                          f"{tuple(expected.shape)}")
    difference = float((got.float() - expected).abs().max())

    def accuracy(logits: torch.Tensor) -> float | None:
        return None if labels is None else float((logits.argmax(dim=1) == labels).float().mean())

    return Verification(len(images), source, difference, accuracy(expected), accuracy(got))


def export(checkpoint: Checkpoint, fmt: str, target: Path, images: torch.Tensor, labels: torch.Tensor | None,
           source: str) -> Verification:
    """Write, verify, and only then put the file at `target`: a file that fails never replaces one there.

    Raises:
        ExportError: the exporter failed, or the exported file's logits differ by more than TOLERANCE.
    """
    handle, temporary = temporary_beside(target, suffix=".tmp" + SUFFIXES[fmt])  # torch.export wants its .pt2
    os.close(handle)
    written = Path(temporary)
    try:
        try:
            write(checkpoint, fmt, written)
            result = verify(checkpoint, fmt, written, images, labels, source)
        except ExportError:
            raise
        except Exception as error:  # the exporters raise many kinds; say which in one line
            raise ExportError(f"exporting to {fmt} failed ({first_line(error)})") from None
        if not result.largest_difference <= TOLERANCE:
            raise ExportError(f"the exported {fmt} model's logits differ from the checkpoint's by up to "
                              f"{result.largest_difference:.2g} (more than {TOLERANCE:g}); nothing written")
        os.replace(written, target)
        return result
    finally:
        written.unlink(missing_ok=True)
