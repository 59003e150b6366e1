"""Fixed-point numbers: where float updates become integers every machine agrees on.

A float32 value ``v`` becomes the int64 ``q = round_half_even(v * 2**24)``. Every
step is exact IEEE arithmetic with one rounding (float32 -> float64 is exact,
multiplying by a power of two is exact, ``np.rint`` rounds half to even), so the
same float32 bits give the same integer on every machine. Back again,
``float32(q / 2**24)``: the division by a power of two is exact in float64 for
``|q| < 2**53`` and the one cast to float32 rounds half to even.

Resolution is 2**-24 (about 6e-8); a coordinate of an update must satisfy
``|q| < 2**31`` (``|v| < 128``), which keeps every square below 2**62 and lets
every sum of the aggregation rules be computed exactly in int64.
Coordinates smaller than 2**-25 become 0: an update is a change in weights, and
changes below the resolution do not survive aggregation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

FIXED_POINT_BITS = 24
FIXED_POINT_SCALE = 1 << FIXED_POINT_BITS
MAX_FIXED_MAGNITUDE = 1 << 31  # exclusive bound of |q| for one coordinate
INT64_LIMIT = 1 << 63


def to_fixed(values: np.ndarray) -> np.ndarray:
    """float32 array -> int64 fixed point (round half to even). NaN/inf must be refused before."""
    scaled = np.rint(values.astype(np.float64) * FIXED_POINT_SCALE)
    # np.rint of a float64 below 2**53 is an exact integer, so this cast is exact;
    # larger values are clipped and then fail the magnitude check of the caller.
    return np.clip(scaled, -(2.0 ** 62), 2.0 ** 62).astype(np.int64)


def from_fixed(values: np.ndarray) -> np.ndarray:
    """int64 fixed point (|q| < 2**53) -> float32, deterministically."""
    return (values.astype(np.float64) / FIXED_POINT_SCALE).astype(np.float32)


def flatten_float(tensors: Mapping[str, torch.Tensor]) -> np.ndarray:
    """All float32 tensors in name order as one float32 vector."""
    parts = [tensors[name].detach().cpu().numpy().reshape(-1) for name in sorted(tensors)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)



def unflatten_float(vector: np.ndarray, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split an int64 fixed-point vector back into float32 tensors shaped like `like` (name order)."""
    result, offset = {}, 0
    for name in sorted(like):
        shape, count = like[name].shape, like[name].numel()
        result[name] = torch.from_numpy(from_fixed(vector[offset:offset + count])).reshape(shape)
        offset += count
    return result


def max_magnitude(vector: np.ndarray) -> int:
    return int(np.abs(vector).max()) if vector.size else 0


def squared_norm(vector: np.ndarray) -> int:
    """The exact sum of squares of an int64 vector whose entries satisfy |q| < 2**31.

    Each square is below 2**62; splitting it into its high and low 32 bits keeps
    both column sums below 2**63 for up to 2**31 entries, and integer sums do not
    depend on order, threads or SIMD width.
    """
    if vector.size >= 1 << 31:
        raise ValueError("squared_norm handles at most 2**31 entries")
    squares = vector.astype(np.int64) ** 2
    high, low = squares >> 32, squares & 0xFFFFFFFF
    return (int(high.sum(dtype=np.int64)) << 32) + int(low.sum(dtype=np.int64))


def divide_round_half_even(numerators: np.ndarray, denominator: int) -> np.ndarray:
    """numerators / denominator rounded to the nearest integer, ties to even (int64, exact)."""
    if not 0 < denominator < 1 << 62:
        raise ValueError("the denominator must be in 1..2**62 - 1")
    quotient, remainder = np.divmod(numerators, np.int64(denominator))  # floor division, 0 <= r < d
    return _round_half_even(quotient, remainder, denominator)


def _round_half_even(quotient: np.ndarray, remainder: np.ndarray, denominator: int) -> np.ndarray:
    """Round quotient + remainder / denominator (0 <= remainder < denominator) to nearest, ties to even."""
    twice = remainder * 2
    round_up = (twice > denominator) | ((twice == denominator) & (quotient % 2 == 1))
    return quotient + round_up.astype(np.int64)


def weighted_mean_round_half_even(rows: np.ndarray, weights: list[int]) -> np.ndarray:
    """sum_i(weights[i] * rows[i]) / sum(weights), column-wise, rounded to nearest, ties to even; exact.

    Holds for entries |q| < 2**31, weights in 1..2**32 - 1 and fewer than 2**14 rows
    (the caller checks), although the weighted sums themselves reach 2**77: see
    `weighted_sums` and `divide_weighted_sums`.
    """
    return divide_weighted_sums(*weighted_sums(rows, weights), sum(weights))


def weighted_sums(rows, weights: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The exact sum_i(weights[i] * rows[i]) as (S_high, S_low): S = 2**16 * S_high + S_low.

    Each entry is split as q = high * 2**16 + low (0 <= low < 2**16), so |S_high| < 2**61 and
    0 <= S_low < 2**62 for |q| < 2**31, weights below 2**32 and fewer than 2**14 rows. Sums of
    integers: the order of the rows cannot change them, and one row's term can be taken out again
    exactly (leave-one-out in O(P) per update)."""
    high_sum = low_sum = None
    for row, weight in zip(rows, weights):
        high, low = (row >> 16) * np.int64(weight), (row & 0xFFFF) * np.int64(weight)
        if high_sum is None:
            high_sum, low_sum = high, low
        else:
            high_sum += high
            low_sum += low
    return high_sum, low_sum


def divide_weighted_sums(high_sum: np.ndarray, low_sum: np.ndarray, total: int) -> np.ndarray:
    """(2**16 * S_high + S_low) / total rounded to nearest, ties to even, in int64: with
    S_high = a * W + b (0 <= b < W < 2**46):  S = 2**16 * a * W + T  where
    T = 2**16 * b + S_low < 2**63, and T = c * W + r gives the quotient
    2**16 * a + c and the remainder r (0 <= r < W)."""
    a, b = np.divmod(high_sum, np.int64(total))
    c, remainder = np.divmod(b * (1 << 16) + low_sum, np.int64(total))
    return _round_half_even(a * (1 << 16) + c, remainder, total)


def norm_to_fixed(norm: float) -> int:
    """A task creator's L2 bound in fixed point (off-chain tooling; the chain stores the integer)."""
    return int(round(norm * FIXED_POINT_SCALE))
