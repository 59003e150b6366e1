"""Fixed-point aggregation: every validator computes the same new model, bit for bit.

    new model = base + from_fixed(rule(to_fixed(delta_1), ..., to_fixed(delta_n)))
    model_hash = blake2b_256(encode_tensors(new model))

Updates are sorted by their hash first and aggregated in int64 with numpy, never
in floats and never in torch, so the result is independent of submission order,
thread count, SIMD width and BLAS. The rules, coordinate by coordinate:

fedavg        sum(num_samples_i * q_i) / sum(num_samples_i), rounded to nearest,
              ties to even, exact for any u32 num_samples (1..2**32 - 1) and up to
              MAX_UPDATES updates (see `weighted_mean_round_half_even`).
trimmed_mean  sort, drop `trim` values from each end, mean of the rest rounded to
              nearest, ties to even. With n <= 2*trim updates the trim shrinks to
              (n - 1) // 2, so a round always aggregates (down to the median).
median        the lower median: sorted[(n - 1) // 2].

Zero updates aggregate to no change (the new model is the base, same hash).
Which updates are aggregated is the caller's decision, and it must be made from
integers every validator shares (the chain accepts updates by the scores the
block reports, never by each validator's own floats), or the sets would differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from consensus.useful_work.errors import AggregationError, UpdateRejected
from consensus.useful_work.fixed_point import divide_round_half_even, unflatten_float, weighted_mean_round_half_even
from consensus.useful_work.tensors import encode_tensors
from consensus.useful_work.updates import apply_update, fixed_point_delta
from runtime.hashing import blake2b_256

RULES = ("fedavg", "trimmed_mean", "median")
MAX_WEIGHT = (1 << 32) - 1  # a u32 num_samples
MAX_UPDATES = (1 << 14) - 1  # bounds the exact int64 sums of every rule
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class AggregationRule:
    """How a task combines a round's accepted updates; `trim` is used by trimmed_mean only."""

    name: str
    trim: int = 0

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise AggregationError(f"unknown aggregation rule {self.name!r}; known: {', '.join(RULES)}",
                                   code="aggregation_unknown_rule")
        if type(self.trim) is not int or self.trim < 0 or (self.name != "trimmed_mean" and self.trim):
            raise AggregationError("trim is a non-negative integer, and only trimmed_mean uses it",
                                   code="aggregation_bad_rule")


@dataclass(frozen=True)
class WeightedUpdate:
    """An accepted update: its blob hash (the sort key), its deltas, and the samples it claims.

    `fixed` may carry `fixed_point_delta(base, delta)` already computed (a verifier that
    aggregates the same updates many times keeps it); it must be exactly that vector."""

    update_hash: bytes
    delta: Mapping[str, torch.Tensor]
    num_samples: int
    fixed: np.ndarray | None = field(default=None, compare=False, repr=False)


def aggregate(base: Mapping[str, torch.Tensor], updates: Sequence[WeightedUpdate], rule: AggregationRule) -> Tensors:
    """The new model: `base` plus the `rule` aggregate of the updates' deltas."""
    try:
        return apply_update(base, aggregate_deltas(base, updates, rule))
    except UpdateRejected as error:
        raise AggregationError(f"the aggregate does not apply to the base model ({error})",
                               code="aggregation_overflow") from None


def aggregate_deltas(base: Mapping[str, torch.Tensor], updates: Sequence[WeightedUpdate],
                     rule: AggregationRule) -> Tensors:
    """The aggregate delta (float32, shaped like `base`)."""
    ordered = sorted(updates, key=lambda update: update.update_hash)
    for first, second in zip(ordered, ordered[1:]):
        if first.update_hash == second.update_hash:
            raise AggregationError(f"update 0x{first.update_hash.hex()} appears twice; aggregate each once",
                                   code="aggregation_duplicate")
    if len(ordered) > MAX_UPDATES:
        raise AggregationError(f"at most {MAX_UPDATES} updates can be aggregated at once",
                               code="aggregation_too_many")
    if not ordered:
        return {name: torch.zeros_like(tensor, dtype=torch.float32) for name, tensor in base.items()}
    rows = []
    for update in ordered:
        if update.fixed is not None:
            rows.append(update.fixed)
            continue
        try:
            rows.append(fixed_point_delta(base, update.delta))
        except UpdateRejected as error:
            raise AggregationError(f"update 0x{update.update_hash.hex()} cannot be aggregated ({error.code}: "
                                   f"{error}); check updates before aggregating", code="aggregation_bad_update"
                                   ) from None
    stacked = np.stack(rows)
    if rule.name == "fedavg":
        combined = _fedavg(stacked, [update.num_samples for update in ordered])
    elif rule.name == "trimmed_mean":
        combined = _trimmed_mean(stacked, rule.trim)
    else:
        combined = _lower_median(stacked)
    return unflatten_float(combined, base)


def compute_model_hash(model: Mapping[str, torch.Tensor]) -> bytes:
    """A model's identity on the chain: blake2b-256 of its canonical tensor blob."""
    return blake2b_256(encode_tensors(model))


def _fedavg(stacked: np.ndarray, weights: list[int]) -> np.ndarray:
    if any(type(weight) is not int or not 1 <= weight <= MAX_WEIGHT for weight in weights):
        raise AggregationError(f"fedavg weights (num_samples) must be integers in 1..{MAX_WEIGHT}",
                               code="aggregation_bad_weight")
    return weighted_mean_round_half_even(stacked, weights)


def _trimmed_mean(stacked: np.ndarray, trim: int) -> np.ndarray:
    count = stacked.shape[0]
    trim = min(trim, (count - 1) // 2)
    kept = np.sort(stacked, axis=0)[trim:count - trim]
    return divide_round_half_even(kept.sum(axis=0, dtype=np.int64), kept.shape[0])


def _lower_median(stacked: np.ndarray) -> np.ndarray:
    return np.sort(stacked, axis=0)[(stacked.shape[0] - 1) // 2]
