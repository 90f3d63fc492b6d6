"""The model registry: the mlp is the tutorial's model, parameter for parameter."""

from __future__ import annotations

import pytest
import torch
from conftest import MnistModel

from mnist_tui.config import DATASETS, MODELS
from mnist_tui.data import DATASET_SPECS
from mnist_tui.models import MODEL_SPECS, build_model, match_state_dict, parameter_count


def test_mlp_has_the_tutorials_parameters() -> None:
    model = build_model("mlp")
    assert list(model.state_dict()) == ["lr1.weight", "lr1.bias", "lr2.weight", "lr2.bias", "lr3.weight", "lr3.bias"]
    assert parameter_count(model) == 109_386
    assert parameter_count(MnistModel()) == 109_386


def test_tutorial_state_dict_loads_and_predicts_the_same() -> None:
    torch.manual_seed(1)
    tutorial = MnistModel().eval()
    model = build_model("mlp").eval()
    model.load_state_dict(tutorial.state_dict())
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), tutorial(x))
    assert match_state_dict(tutorial.state_dict()) == "mlp"


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_forward_gives_ten_logits(name: str) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_cnn_takes_a_single_image_in_eval_mode() -> None:
    # Batch norm needs more than one value per channel in training mode; eval mode must take a single image.
    model = build_model("cnn").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_match_state_dict_recognises_each_model(name: str) -> None:
    assert match_state_dict(build_model(name).state_dict()) == name


def test_match_state_dict_refuses_lookalikes() -> None:
    state = build_model("mlp").state_dict()
    renamed = {k.replace("lr1", "fc1"): v for k, v in state.items()}
    assert match_state_dict(renamed) is None
    reshaped = dict(state, **{"lr3.weight": torch.zeros(5, 64)})
    assert match_state_dict(reshaped) is None
    missing = {k: v for k, v in state.items() if k != "lr3.bias"}
    assert match_state_dict(missing) is None
    not_tensors = {k: v.tolist() for k, v in state.items()}
    assert match_state_dict(not_tensors) is None
    assert match_state_dict({}) is None


def test_model_specs_carry_preprocessing() -> None:
    assert (MODEL_SPECS["mlp"].mean, MODEL_SPECS["mlp"].std) == (0.0, 1.0)
    assert MODEL_SPECS["cnn"].std > 0


def test_the_configs_choices_are_the_registries_keys() -> None:
    # config.py names them without importing torch; the registries are the truth.
    assert (tuple(MODEL_SPECS), tuple(DATASET_SPECS)) == (MODELS, DATASETS)
