"""The architecture registry: specs as integers, deterministic models, strict weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from consensus.useful_work import ModelError, ModelSpec, build_model, load_state, state_of
from consensus.useful_work.models import _max_pool_2x2, compute_logits, parameter_count, parameter_shapes
from tests.helpers.useful_work import CNN, LOGISTIC, MLP


@pytest.mark.parametrize("spec", [LOGISTIC, MLP, CNN], ids=lambda spec: spec.architecture)
def test_the_same_seed_builds_the_same_model_and_leaves_the_global_rng_alone(spec):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, second = state_of(build_model(spec, 7)), state_of(build_model(spec, 7))
    assert torch.equal(torch.rand(1), expected_next)
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = state_of(build_model(spec, 8))
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_parameter_names_and_shapes_follow_the_spec():
    assert parameter_shapes(MLP) == {"hidden_bias": (32,), "hidden_weight": (32, 64),
                                     "output_bias": (10,), "output_weight": (10, 32)}
    assert parameter_shapes(LOGISTIC) == {"linear_bias": (2,), "linear_weight": (2, 30)}
    assert parameter_shapes(CNN)["output_weight"] == (10, 8 * 2 * 2)
    assert parameter_count(MLP) == 32 * 64 + 32 + 10 * 32 + 10
    assert {name: tuple(t.shape) for name, t in state_of(build_model(CNN, 0)).items()} == parameter_shapes(CNN)


@pytest.mark.parametrize("spec", [LOGISTIC, MLP, CNN], ids=lambda spec: spec.architecture)
def test_the_chain_form_of_a_spec_round_trips(spec):
    assert ModelSpec.from_params(spec.architecture, spec.params) == spec


@pytest.mark.parametrize("make, code", [
    (lambda: ModelSpec("transformer", 64, 10), "model_unknown_architecture"),
    (lambda: ModelSpec("mlp", 64, 10), "model_bad_spec"),                        # hidden missing
    (lambda: ModelSpec("logistic_regression", 64, 10, hidden=5), "model_bad_spec"),  # unused must be 0
    (lambda: ModelSpec("small_cnn", 60, 10, channels=4), "model_bad_spec"),      # not a square image
    (lambda: ModelSpec("small_cnn", 36, 10, channels=4), "model_bad_spec"),      # side 6 not divisible by 4
    (lambda: ModelSpec("mlp", 64, 1, hidden=8), "model_bad_spec"),               # one class
    (lambda: ModelSpec("mlp", 64, 10, hidden=1 << 20), "model_bad_spec"),        # absurdly large
    (lambda: ModelSpec("mlp", 64.0, 10, hidden=8), "model_bad_spec"),            # not an integer
    (lambda: ModelSpec.from_params("mlp", (64, 10)), "model_bad_spec"),
])
def test_bad_specs_are_refused_with_a_code(make, code):
    with pytest.raises(ModelError) as raised:
        make()
    assert raised.value.code == code


def test_loading_weights_of_another_shape_or_name_is_refused():
    model = build_model(MLP, 0)
    weights = state_of(model)
    with pytest.raises(ModelError) as raised:
        load_state(model, {**weights, "hidden_bias": torch.zeros(33)})
    assert raised.value.code == "model_shape_mismatch" and "hidden_bias" in str(raised.value)
    with pytest.raises(ModelError) as raised:
        load_state(model, {**weights, "extra": torch.zeros(1)})
    assert raised.value.code == "model_names_mismatch" and "extra" in str(raised.value)
    with pytest.raises(ModelError) as raised:
        load_state(model, {**weights, "hidden_bias": torch.zeros(32, dtype=torch.float64)})
    assert raised.value.code == "model_dtype"


def test_loaded_weights_are_the_models_weights():
    source, target = build_model(MLP, 1), build_model(MLP, 2)
    load_state(target, state_of(source))
    x = torch.rand(5, 64)
    assert torch.equal(target(x), source(x))


@pytest.mark.parametrize("spec", [LOGISTIC, MLP, CNN], ids=lambda spec: spec.architecture)
def test_the_trainable_module_and_the_pure_forward_are_one_function(spec):
    model = build_model(spec, 3)
    x = torch.rand(9, spec.input_dim)
    assert torch.equal(model(x), compute_logits(spec, state_of(model), x))
    assert model(x).shape == (9, spec.classes)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.sampled_from([2, 4, 8]), st.integers(0, 2 ** 31))
def test_the_fast_2x2_max_pool_equals_torchs_max_pool2d(batch, channels, side, seed):
    image = torch.randn(batch, channels, side, side, generator=torch.Generator().manual_seed(seed))
    image[0, 0, 0, :] = 1.0  # ties within a window
    assert torch.equal(_max_pool_2x2(image), F.max_pool2d(image, 2))
