"""Updates: what a trainer submits, and the sanity checks every validator applies.

An update is a tensor blob of deltas, ``new - base`` for every parameter of the
task's model (same names, same shapes, float32). Before an update is scored or
aggregated it must pass, in this order (the first failure is the reason):

    update_too_large      the blob exceeds the task's byte limit
    update_malformed      the blob is not a valid tensor blob (the message carries the tensor code)
    update_names_mismatch the parameter names differ from the base model's
    update_shape_mismatch a parameter's shape differs from the base model's
    update_dtype          a delta is not float32
    update_norm_exceeded  a coordinate reaches 128.0, or the L2 norm in fixed point
                          exceeds the task's bound

All checks are exact: the norm is computed on the fixed-point integers (see
`fixed_point`), so whether an update is accepted never depends on float rounding,
and every validator accepts the same set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from consensus.useful_work.errors import TensorFormatError, UpdateRejected
from consensus.useful_work.fixed_point import (
    FIXED_POINT_SCALE, MAX_FIXED_MAGNITUDE, flatten_float, max_magnitude, squared_norm, to_fixed,
)
from consensus.useful_work.tensors import count_elements, decode_tensors, is_finite

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class UpdateLimits:
    """A task's bounds on one update: blob size in bytes, L2 norm in fixed point (2**24 = 1.0)."""

    max_update_bytes: int
    max_norm_fixed: int

    def __post_init__(self) -> None:
        for name in ("max_update_bytes", "max_norm_fixed"):
            if type(getattr(self, name)) is not int or getattr(self, name) <= 0:
                raise UpdateRejected(f"UpdateLimits.{name} must be a positive integer", code="update_limits")


def compute_update(base: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor]) -> Tensors:
    """The delta a trainer submits: ``new - base`` per parameter, float32."""
    check_layout(base, new, "new model")
    return {name: (new[name].detach().to(torch.float32) - base[name].to(torch.float32)).contiguous()
            for name in sorted(base)}


def decode_update(blob: bytes, base: Mapping[str, torch.Tensor], limits: UpdateLimits) -> Tensors:
    """The checked deltas of `blob` against `base`, or `UpdateRejected` naming the first failed check."""
    if len(blob) > limits.max_update_bytes:
        raise UpdateRejected(f"update of {len(blob)} bytes exceeds the task's limit of {limits.max_update_bytes}",
                             code="update_too_large")
    try:
        delta = decode_tensors(blob, max_bytes=limits.max_update_bytes, max_tensors=len(base),
                               max_elements=count_elements(base))
    except TensorFormatError as error:
        raise UpdateRejected(f"update is not a valid tensor blob ({error.code}: {error})",
                             code="update_malformed") from None
    check_update(base, delta, limits)
    return delta


def check_update(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], limits: UpdateLimits) -> None:
    """Raise `UpdateRejected` unless `delta` fits `base` and stays within the norm bound."""
    norm_squared = squared_norm(fixed_point_delta(base, delta))
    if norm_squared > limits.max_norm_fixed ** 2:
        raise UpdateRejected(f"update L2 norm is {(norm_squared ** 0.5) / FIXED_POINT_SCALE:.6g}, the task allows "
                             f"{limits.max_norm_fixed / FIXED_POINT_SCALE:.6g}; scale the step down or clip it",
                             code="update_norm_exceeded")


def fixed_point_delta(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> np.ndarray:
    """`delta` as one int64 fixed-point vector in name order, once its layout, dtype and range are checked."""
    check_layout(base, delta, "update")
    for name in sorted(delta):
        if delta[name].dtype != torch.float32:
            raise UpdateRejected(f"update delta {name!r} is {delta[name].dtype}; deltas are float32",
                                 code="update_dtype")
    values = flatten_float(delta)
    if not np.isfinite(values).all():
        raise UpdateRejected("an update delta holds NaN or infinity", code="update_not_finite")
    fixed = to_fixed(values)
    if max_magnitude(fixed) >= MAX_FIXED_MAGNITUDE:
        raise UpdateRejected("an update coordinate reaches 128.0 in magnitude, beyond any sane step",
                             code="update_norm_exceeded")
    return fixed


def apply_update(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> Tensors:
    """``base + delta`` per parameter in float32 (an element-wise IEEE add: the same on every machine)."""
    check_layout(base, delta, "update")
    model = {name: (base[name] + delta[name]).contiguous() for name in sorted(base)}
    if not all(is_finite(tensor) for tensor in model.values()):
        raise UpdateRejected("applying the update overflows a weight to infinity", code="update_not_finite")
    return model


def check_layout(base: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise `UpdateRejected` unless `other` has exactly the parameter names and shapes of `base`."""
    if set(base) != set(other):
        missing, extra = sorted(set(base) - set(other)), sorted(set(other) - set(base))
        raise UpdateRejected(f"{what} parameters differ from the base model: missing {missing}, "
                             f"unexpected {extra}", code="update_names_mismatch")
    for name in sorted(base):
        if tuple(other[name].shape) != tuple(base[name].shape):
            raise UpdateRejected(f"{what} parameter {name!r} has shape {tuple(other[name].shape)}, the base "
                                 f"model has {tuple(base[name].shape)}", code="update_shape_mismatch")
