"""Checkpoints: atomic saves, and loads that never run code and explain every refusal in one line."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import pickle
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import MnistModel, Trained, small_config
from torch import nn

from mnist_tui.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    discover_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    resume_state,
    save_checkpoint,
)
from mnist_tui.config import TrainConfig
from mnist_tui.control import write_json_atomic
from mnist_tui.models import build_model


def refusal(path: Path) -> str:
    """The one-line CheckpointError message load_checkpoint gives for `path`."""
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message
    return message


# saving

def test_save_leaves_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, {"a": torch.arange(3)})
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))



def test_saved_files_get_the_permissions_a_plain_open_gives(tmp_path: Path) -> None:
    """Not mkstemp's 0600: teammates on a shared GPU box read each other's checkpoints and runs."""
    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "best.pt", {"a": torch.arange(3)})
        write_json_atomic(tmp_path / "status.json", {"status": "running"})
    finally:
        os.umask(umask)
    assert [(tmp_path / name).stat().st_mode & 0o777 for name in ("best.pt", "status.json")] == [0o644, 0o644]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             error: BaseException) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"version": torch.tensor(1)})
    before = path.read_bytes()

    def half_save(obj: Any, stream: Any, *args: Any, **kwargs: Any) -> None:
        stream.write(b"PK\x03\x04 half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(type(error)):
        save_checkpoint(path, {"version": torch.tensor(2)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
    assert int(torch.load(path, weights_only=True)["version"]) == 1


def test_a_failed_json_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "status.json"
    write_json_atomic(path, {"status": "running"})

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(OSError):
        write_json_atomic(path, {"status": "stopped"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


# loading what should load

def test_load_engine_checkpoint(trained: Trained) -> None:
    checkpoint = load_checkpoint(trained.best)
    assert checkpoint.model_name == "mlp"
    assert checkpoint.config == small_config()
    assert not checkpoint.bare_state_dict
    assert (checkpoint.mean, checkpoint.std) == (0.0, 1.0)
    assert 1 <= checkpoint.epoch <= 2
    assert 0.0 <= checkpoint.metrics["val_accuracy"] <= 1.0
    assert checkpoint.raw["format"] == FORMAT
    assert "optimizer_state" in checkpoint.raw
    model = checkpoint.build_model()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint.model_state[name])


def test_load_tutorial_state_dict(tmp_path: Path) -> None:
    tutorial = MnistModel()
    path = tmp_path / "mnist_mlp.pth"
    torch.save(tutorial.state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.bare_state_dict
    assert checkpoint.model_name == "mlp"
    assert (checkpoint.mean, checkpoint.std) == (0.0, 1.0)
    assert checkpoint.config == TrainConfig(model="mlp")
    model = checkpoint.build_model().eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), tutorial.eval()(x))


def test_read_checkpoint_info_and_discovery(trained: Trained, tmp_path: Path) -> None:
    info = read_checkpoint_info(trained.best)
    assert (info.kind, info.model, info.dataset, info.run_id) == ("best", "mlp", "mnist", trained.run_dir.name)
    assert info.val_accuracy == load_checkpoint(trained.best).metrics["val_accuracy"]
    assert info.created
    assert (info.step, info.position) == (0, str(info.epoch))
    assert set(discover_checkpoints(trained.run_dir.parent)) >= {trained.best, trained.last}
    assert discover_checkpoints(tmp_path / "nowhere") == []

    # A stop's mid-epoch save is placed as the training log places it: in the next epoch, at its step.
    stopped = tmp_path / "last.pt"
    save_checkpoint(stopped, dict(torch.load(trained.last, weights_only=True), epoch=0, step=66))
    stopped_info = read_checkpoint_info(stopped)
    assert stopped_info.position == "1, step 66"
    assert stopped_info.val_accuracy is None  # never validated: its metrics are an earlier epoch's


# refusing what should not

def test_whole_pickled_model_from_a_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tutorial's own `torch.save(model, ...)`, run in a notebook or script: the class lives in __main__.
    class_in_main = type("MnistModel", (MnistModel,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "MnistModel", class_in_main, raising=False)
    path = tmp_path / "mnist_mlp.pth"
    torch.save(class_in_main(), path)
    message = refusal(path)
    assert "state_dict" in message
    assert "torch.save(model)" in message


def test_whole_pickled_model_from_a_module(tmp_path: Path) -> None:
    # The same mistake made from a script whose model class lives in a module of its own (here, this test
    # module): the user needs the same advice, not a warning that the file may be malicious.
    path = tmp_path / "model.pt"
    torch.save(MnistModel(), path)
    message = refusal(path)
    assert "state_dict" in message


class SystemPayload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


class OpenPayload:
    """Unpickling this creates a file through builtins.open."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


class EvalPayload:
    """Unpickling this evaluates Python source; torch names the global without its module (`eval`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("payload", [SystemPayload, OpenPayload, EvalPayload])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model_state": payload(marker)}, path)
    message = refusal(path)
    assert "runs code" in message and "may be malicious" in message and "torch.save(model)" not in message
    assert not marker.exists()


def test_numpy_values_get_advice_not_a_warning(tmp_path: Path) -> None:
    """Tutorial code often saves `np.float64` accuracies next to the weights: no attack, just a re-save."""
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "with-numpy.pt"
    torch.save({"model_state": MnistModel().state_dict(), "accuracy": numpy.float64(0.98)}, path)
    message = refusal(path)
    assert "numpy values" in message and "malicious" not in message


def test_malicious_plain_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(OpenPayload(marker)))  # pickle.dump as a user would
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one line of refusal, without torch's warning about the format
        refusal(path)
    assert not marker.exists()


def test_malicious_payload_is_live(tmp_path: Path) -> None:
    # Proves the payloads above would run if loaded unsafely, so their refusal means something.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(OpenPayload(marker), path)
    torch.load(path, weights_only=False).close()
    assert marker.exists()


def test_truncated_checkpoint(trained: Trained, tmp_path: Path) -> None:
    data = trained.best.read_bytes()
    for fraction in (0.1, 0.5, 0.99):
        path = tmp_path / f"cut{fraction}.pt"
        path.write_bytes(data[: int(len(data) * fraction)])
        message = refusal(path)
        assert "truncated or corrupt" in message or "not a readable" in message
        assert not message.endswith(" is)"), "never cut mid-sentence"


@pytest.mark.parametrize("layout", ["training script", "DistributedDataParallel"])
def test_weights_inside_other_scripts_checkpoints_load(tmp_path: Path, layout: str) -> None:
    tutorial = MnistModel()
    if layout == "training script":  # as PyTorch's own tutorials save a checkpoint
        saved: object = {"epoch": 3, "model_state_dict": tutorial.state_dict(), "loss": torch.tensor(0.1),
                         "optimizer_state_dict": torch.optim.Adam(tutorial.parameters()).state_dict()}
    else:
        saved = {f"module.{name}": tensor for name, tensor in tutorial.state_dict().items()}
    path = tmp_path / "checkpoint.pt"
    torch.save(saved, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.bare_state_dict and checkpoint.model_name == "mlp"
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(checkpoint.build_model().eval()(x), tutorial.eval()(x))


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(2048)))
    refusal(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.touch()
    refusal(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert "no such file" in refusal(tmp_path / "absent.pt")
    assert "not a regular file" in refusal(Path(os.devnull))
    assert refusal(tmp_path) == f"{tmp_path}: a folder, not a checkpoint file"
    (tmp_path / "best.pt").touch()
    assert refusal(tmp_path) == f"{tmp_path}: a folder, not a checkpoint file; its checkpoints: {tmp_path / 'best.pt'}"


@pytest.mark.parametrize("content", [
    [torch.zeros(3)],
    {"weights": 1, "bias": "two"},
    {},
    torch.zeros(784, 128),
    {"format": "something-else", "model_state": {}},
], ids=["list", "dict-of-non-tensors", "empty-dict", "tensor", "other-format"])
def test_foreign_torch_files(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    assert "not an mnist-tui checkpoint" in refusal(path)


def test_state_dict_of_unknown_architecture(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(nn.Sequential(nn.Linear(784, 10)).state_dict(), path)
    message = refusal(path)
    assert "not of a known model" in message
    assert "mlp" in message


def valid_payload(trained: Trained) -> dict[str, Any]:
    return dict(torch.load(trained.best, weights_only=True))


def test_newer_format_is_refused(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save(dict(valid_payload(trained), format_version=FORMAT_VERSION + 1), path)
    assert "newer mnist-tui" in refusal(path)


def test_weights_that_do_not_fit_the_named_model(trained: Trained, tmp_path: Path) -> None:
    payload = valid_payload(trained)
    payload["config"] = dict(payload["config"], model="cnn")
    path = tmp_path / "mismatch.pt"
    torch.save(payload, path)
    assert "do not fit the 'cnn' model" in refusal(path)


@pytest.mark.parametrize("change", [
    {"config": None},
    {"config": {"epochs": 0}},
    {"preprocessing": None},
    {"model_state": None},
    {"model_state": {"lr1.weight": torch.zeros(1)}},
    {"model_state": 5},
    {"config": [1, 2]},
    {"format_version": "1"},
], ids=["config-none", "config-invalid", "preprocessing-none", "state-none", "state-partial", "state-int",
        "config-list", "version-text"])
def test_damaged_checkpoint(trained: Trained, tmp_path: Path, change: dict[str, Any]) -> None:
    payload = valid_payload(trained)
    payload.update(change)
    path = tmp_path / "damaged.pt"
    torch.save(payload, path)
    refusal(path)


def test_bare_cnn_state_dict_loads(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(build_model("cnn").state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_name == "cnn"
    assert checkpoint.bare_state_dict


# what a resume reads

def resume_refusal(path: Path) -> str:
    """The one-line CheckpointError message resume_state gives for the checkpoint at `path`."""
    with pytest.raises(CheckpointError) as caught:
        resume_state(load_checkpoint(path))
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message
    return message


def test_resume_state_holds_where_the_run_left_off(trained: Trained) -> None:
    state = resume_state(load_checkpoint(trained.last))
    saved = torch.load(trained.last, weights_only=True)
    assert (state.epoch, state.step, state.config) == (2, 0, small_config())
    assert [h["epoch"] for h in state.history] == [1, 2]
    assert state.elapsed == saved["elapsed"] and state.saved_on == "cpu"
    assert set(state.optimizer_state) == {"state", "param_groups"} and state.scheduler_state is None
    assert state.training_model_state is None and state.averaged_steps == 0
    assert state.rng_state is not None and torch.equal(state.rng_state, saved["rng_state"])
    assert state.cuda_rng_state is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = 3  # type: ignore[misc]


def test_resume_state_of_a_checkpoint_from_before_elapsed_was_kept(trained: Trained, tmp_path: Path) -> None:
    payload = torch.load(trained.last, weights_only=True)
    del payload["elapsed"]
    torch.save(payload, tmp_path / "last.pt")
    state = resume_state(load_checkpoint(tmp_path / "last.pt"))
    assert state.elapsed == sum(h["epoch_seconds"] for h in payload["history"]) > 0


def test_bare_weights_cannot_be_resumed(tmp_path: Path) -> None:
    torch.save(build_model("mlp").state_dict(), tmp_path / "last.pt")
    assert "weights only (a bare state_dict), without the optimizer state" in resume_refusal(tmp_path / "last.pt")


DELETE = object()
"""Stands for a key taken out of the checkpoint."""


@pytest.mark.parametrize(("change", "said"), [
    ({"optimizer_state": DELETE}, "it has no optimizer state, which a resume needs"),
    ({"optimizer_state": None}, "it has no optimizer state, which a resume needs"),
    ({"optimizer_state": [1, 2]}, "optimizer_state is list, not a dict"),
    ({"optimizer_state": {"state": {}}}, "param_groups is NoneType, not a list"),
    ({"optimizer_state": {"state": {0: {"exp_avg": "lots"}}, "param_groups": []}}, "not tensors and numbers"),
    ({"optimizer_state": {"state": {}, "param_groups": [{"lr": 0.1}]}}, "group without its parameters"),
    ({"scheduler_state": 3}, "scheduler_state is int, not a dict"),
    ({"step": "5"}, "step is '5', not a count"),
    ({"step": -1}, "step is -1, not a count"),
    ({"averaged_steps": 1.5}, "averaged_steps is 1.5, not a count"),
    ({"history": "long"}, "history is str, not a list"),
    ({"history": [7]}, "a history record is int, not a dict"),
    ({"history": [{"epoch": 1, "epoch_seconds": 1.0}]}, "a history record has no val_accuracy"),
    ({"history": [{"epoch": "one", "val_accuracy": 0.9, "epoch_seconds": 1.0}]}, "epoch is 'one', not a count"),
    ({"progress": {"loss_sum": "x"}}, "loss_sum is str, not a number"),
    ({"progress": [1.0]}, "progress is list, not a dict"),
    ({"elapsed": True}, "elapsed is bool, not a number"),
    ({"device": 0}, "device is int, not a string"),
    ({"device": "quantum:0"}, "quantum"),
    ({"rng_state": [1, 2]}, "rng_state is list, not a tensor"),
    ({"rng_state": DELETE, "step": 3}, "step is 3 of an epoch, without the rng_state that epoch was shuffled by"),
    ({"rng_state": torch.zeros(3)}, "ByteTensor"),
    ({"rng_state": torch.zeros(10, dtype=torch.uint8)}, "size"),
    ({"cuda_rng_state": [torch.zeros(3)]}, "cuda_rng_state is not a GPU generator's state"),
    ({"training_model_state": {"w": torch.zeros(1)}}, "training_model_state does not fit the 'mlp' model"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_a_last_pt_with_a_part_missing_or_of_the_wrong_type_is_refused(trained: Trained, tmp_path: Path,
                                                                        change: dict[str, Any], said: str) -> None:
    payload = torch.load(trained.last, weights_only=True)
    for key, value in change.items():
        if value is DELETE:
            del payload[key]
        else:
            payload[key] = value
    torch.save(payload, tmp_path / "last.pt")
    load_checkpoint(tmp_path / "last.pt")  # it still evaluates: only a resume needs these
    message = resume_refusal(tmp_path / "last.pt")
    assert said in message, message


def test_a_resume_keeps_to_the_settings_whose_state_it_holds(trained: Trained) -> None:
    state = resume_state(load_checkpoint(trained.last))
    state.check_settings(small_config(epochs=5, device="cpu"))  # more epochs, say, are fine
    for change, said in (({"model": "cnn"}, "saved with model mlp, and the run trains with model cnn"),
                         ({"optimizer": "sgd"}, "optimizer adam, and the run trains with optimizer sgd"),
                         ({"scheduler": "cosine"}, "scheduler none, and the run trains with scheduler cosine")):
        with pytest.raises(CheckpointError, match=said):
            state.check_settings(small_config(**change))
