"""An update's sanity checks: exact, ordered, and each failure named by a stable code."""

from __future__ import annotations

import pytest
import torch

from consensus.useful_work import (
    UpdateLimits, UpdateRejected, apply_update, compute_update, decode_update, encode_tensors,
)
from consensus.useful_work.fixed_point import FIXED_POINT_SCALE
from tests.helpers.useful_work import MLP, base_model, trained_deltas

LIMITS = UpdateLimits(max_update_bytes=1 << 20, max_norm_fixed=50 * FIXED_POINT_SCALE)


def rejection(blob: bytes, limits: UpdateLimits = LIMITS) -> str:
    with pytest.raises(UpdateRejected) as raised:
        decode_update(blob, base_model(MLP).weights, limits)
    return raised.value.code


def one_hot_delta(value: float) -> dict[str, torch.Tensor]:
    delta = {name: torch.zeros_like(tensor) for name, tensor in base_model(MLP).weights.items()}
    delta["output_bias"][0] = value
    return delta


def test_an_honest_update_decodes_to_its_deltas_and_applies_as_base_plus_delta():
    base, delta = base_model(MLP).weights, trained_deltas(MLP)[0]
    decoded = decode_update(encode_tensors(delta), base, LIMITS)
    assert all(torch.equal(decoded[name], delta[name]) for name in delta)
    model = apply_update(base, decoded)
    assert all(torch.equal(model[name], base[name] + delta[name]) for name in base)


def test_compute_update_is_new_minus_base():
    base = base_model(MLP).weights
    new = {name: tensor * 2 for name, tensor in base.items()}
    assert all(torch.equal(compute_update(base, new)[name], base[name]) for name in base)


def test_a_blob_over_the_byte_limit_is_rejected_before_decoding():
    blob = encode_tensors(trained_deltas(MLP)[0])
    assert rejection(blob, UpdateLimits(len(blob) - 1, LIMITS.max_norm_fixed)) == "update_too_large"


def test_a_malformed_blob_is_rejected_and_the_message_names_the_tensor_code():
    with pytest.raises(UpdateRejected) as raised:
        decode_update(b"\x01\x00\x00\x00\x00", base_model(MLP).weights, LIMITS)
    assert raised.value.code == "update_malformed" and "tensor_" in str(raised.value)


def test_missing_or_extra_parameters_are_rejected():
    delta = dict(trained_deltas(MLP)[0])
    del delta["output_bias"]
    assert rejection(encode_tensors(delta)) == "update_names_mismatch"
    extra = {**trained_deltas(MLP)[0], "zzz": torch.zeros(1)}
    assert rejection(encode_tensors(extra)) == "update_malformed"  # more tensors than the base has
    renamed = dict(trained_deltas(MLP)[0])
    renamed["output_biases"] = renamed.pop("output_bias")
    assert rejection(encode_tensors(renamed)) == "update_names_mismatch"


def test_a_parameter_of_another_shape_is_rejected():
    delta = {**trained_deltas(MLP)[0], "output_bias": torch.zeros(2, 5)}
    assert rejection(encode_tensors(delta)) == "update_shape_mismatch"


def test_an_integer_delta_is_rejected():
    delta = {**trained_deltas(MLP)[0], "output_bias": torch.zeros(10, dtype=torch.int32)}
    assert rejection(encode_tensors(delta)) == "update_dtype"


def test_the_norm_bound_is_exact_in_fixed_point():
    at_bound, limits = one_hot_delta(3.0), UpdateLimits(1 << 20, 3 * FIXED_POINT_SCALE)
    decode_update(encode_tensors(at_bound), base_model(MLP).weights, limits)  # exactly at the bound: accepted
    just_over = one_hot_delta(3.0 + 2.0 ** -22)  # one float32 step above 3.0, two fixed-point steps
    assert rejection(encode_tensors(just_over), limits) == "update_norm_exceeded"


def test_a_coordinate_of_128_or_more_is_rejected_whatever_the_bound():
    assert rejection(encode_tensors(one_hot_delta(128.0)), UpdateLimits(1 << 20, 1 << 62)) == "update_norm_exceeded"


def test_a_scaled_up_update_exceeds_a_sane_bound():
    scaled = {name: 100 * tensor for name, tensor in trained_deltas(MLP)[0].items()}
    assert rejection(encode_tensors(scaled)) == "update_norm_exceeded"


def test_limits_must_be_positive_integers():
    with pytest.raises(UpdateRejected):
        UpdateLimits(0, 1)
    with pytest.raises(UpdateRejected):
        UpdateLimits(10, 1.5)
