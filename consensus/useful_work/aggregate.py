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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from consensus.useful_work.errors import AggregationError, UpdateRejected
from consensus.useful_work.fixed_point import (
    divide_round_half_even, divide_weighted_sums, flatten_float, to_fixed, unflatten_float,
    weighted_mean_round_half_even, weighted_sums,
)
from consensus.useful_work.tensors import encode_tensors
from consensus.useful_work.updates import apply_update, fixed_point_delta
from runtime.hashing import blake2b_256

RULES = ("fedavg", "trimmed_mean", "median")
MAX_WEIGHT = (1 << 32) - 1  # a u32 num_samples
MAX_UPDATES = (1 << 14) - 1  # bounds the exact int64 sums of every rule
PPM = 1_000_000
MAX_STEP = (1 << 31) - 1  # a previous step is clipped to |q| <= this (128.0) before momentum scales it
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ServerOptimizer:
    """FedAvgM (Hsu et al. 2019) in fixed point: v <- momentum * v + aggregate; model <- model + lr * v.

    The state v is never stored: lr * v of the last step is the difference between the
    task's current model and the one it replaced, both on chain (by hash), so every validator
    derives it. The step is therefore  lr * aggregate + momentum * (base - previous), each
    product rounded half to even in integers (`server_step`). lr = 1, momentum = 0 is plain
    FedAvg and leaves the aggregate's bytes untouched."""

    lr_ppm: int = PPM
    momentum_ppm: int = 0

    def __post_init__(self) -> None:
        if type(self.lr_ppm) is not int or not 0 < self.lr_ppm <= 10 * PPM \
                or type(self.momentum_ppm) is not int or not 0 <= self.momentum_ppm < PPM:
            raise AggregationError("the server learning rate must be in (0, 10] and the momentum in [0, 1)",
                                   code="aggregation_bad_server_optimizer")

    @property
    def is_plain(self) -> bool:
        return self.lr_ppm == PPM and self.momentum_ppm == 0


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


def aggregate(base: Mapping[str, torch.Tensor], updates: Sequence[WeightedUpdate], rule: AggregationRule,
              server: ServerOptimizer = ServerOptimizer(), previous: np.ndarray | None = None) -> Tensors:
    """The new model: `base` plus the server step of the `rule` aggregate of the updates' deltas
    (`previous`: the last step, base - the model before it, in fixed point; None for none)."""
    return apply_step(base, server_step(aggregate_fixed(base, updates, rule), server, previous))


def apply_step(base: Mapping[str, torch.Tensor], step: np.ndarray) -> Tensors:
    """`base` plus a fixed-point step (float32 adds, the same on every machine)."""
    try:
        return apply_update(base, unflatten_float(step, base))
    except UpdateRejected as error:
        raise AggregationError(f"the aggregate does not apply to the base model ({error})",
                               code="aggregation_overflow") from None


def aggregate_deltas(base: Mapping[str, torch.Tensor], updates: Sequence[WeightedUpdate],
                     rule: AggregationRule) -> Tensors:
    """The aggregate delta (float32, shaped like `base`)."""
    return unflatten_float(aggregate_fixed(base, updates, rule), base)


def aggregate_fixed(base: Mapping[str, torch.Tensor], updates: Sequence[WeightedUpdate],
                    rule: AggregationRule) -> np.ndarray:
    """The aggregate delta as one int64 fixed-point vector in name order."""
    ordered = sorted(updates, key=lambda update: update.update_hash)
    for first, second in zip(ordered, ordered[1:]):
        if first.update_hash == second.update_hash:
            raise AggregationError(f"update 0x{first.update_hash.hex()} appears twice; aggregate each once",
                                   code="aggregation_duplicate")
    if len(ordered) > MAX_UPDATES:
        raise AggregationError(f"at most {MAX_UPDATES} updates can be aggregated at once",
                               code="aggregation_too_many")
    if not ordered:
        return np.zeros(sum(tensor.numel() for tensor in base.values()), dtype=np.int64)
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
    return combined


def fedavg_without_each(rows: Iterable[np.ndarray], weights: list[int]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(the fedavg of every row, then lazily, per row in order, the fedavg with that row zeroed and its
    weight kept), in O(rows x P); `rows` is iterated twice (it may recompute rows rather than hold them):
    the exact weighted sums are computed once and each row's term
    is taken out of them. The bytes equal `aggregate_fixed` with the row's delta zeroed (a zero
    row adds nothing to either sum), which a property test holds."""
    _check_weights(weights)
    high, low = weighted_sums(rows, weights)
    total = sum(weights)

    def each() -> Iterator[np.ndarray]:
        for row, weight in zip(rows, weights):
            yield divide_weighted_sums(high - (row >> 16) * np.int64(weight), low - (row & 0xFFFF) * np.int64(weight),
                                       total)

    return divide_weighted_sums(high, low, total), each()


def server_step(combined: np.ndarray, server: ServerOptimizer, previous: np.ndarray | None) -> np.ndarray:
    """lr * combined + momentum * previous, each product rounded half to even (exact int64:
    |combined| < 2**31 and lr < 2**24; previous is clipped to |q| <= 2**31 - 1)."""
    if server.is_plain:
        return combined
    step = divide_round_half_even(combined * np.int64(server.lr_ppm), PPM)
    if server.momentum_ppm and previous is not None:
        step = step + divide_round_half_even(np.clip(previous, -MAX_STEP, MAX_STEP) * np.int64(server.momentum_ppm),
                                             PPM)
    return step


def previous_step(current: Mapping[str, torch.Tensor], previous: Mapping[str, torch.Tensor]) -> np.ndarray:
    """The last server step, current - previous, in fixed point: float64 differences of float32
    weights (one IEEE rounding, the same everywhere), then rounded half to even at 2**-24."""
    difference = flatten_float(current).astype(np.float64) - flatten_float(previous).astype(np.float64)
    return to_fixed(np.clip(difference, -128.0, 128.0))


def compute_model_hash(model: Mapping[str, torch.Tensor]) -> bytes:
    """A model's identity on the chain: blake2b-256 of its canonical tensor blob."""
    return blake2b_256(encode_tensors(model))


def _fedavg(stacked: np.ndarray, weights: list[int]) -> np.ndarray:
    _check_weights(weights)
    return weighted_mean_round_half_even(stacked, weights)


def _check_weights(weights: list[int]) -> None:
    if any(type(weight) is not int or not 1 <= weight <= MAX_WEIGHT for weight in weights):
        raise AggregationError(f"fedavg weights (num_samples) must be integers in 1..{MAX_WEIGHT}",
                               code="aggregation_bad_weight")


def _trimmed_mean(stacked: np.ndarray, trim: int) -> np.ndarray:
    count = stacked.shape[0]
    trim = min(trim, (count - 1) // 2)
    kept = np.sort(stacked, axis=0)[trim:count - trim]
    return divide_round_half_even(kept.sum(axis=0, dtype=np.int64), kept.shape[0])


def _lower_median(stacked: np.ndarray) -> np.ndarray:
    return np.sort(stacked, axis=0)[(stacked.shape[0] - 1) // 2]
