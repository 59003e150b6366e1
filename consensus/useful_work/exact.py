"""Exact scoring: a model's logits and cross-entropy in integers, the same bits on every CPU.

Float evaluation differs across CPUs (SIMD width, BLAS blocking, FMA): logits move in
their last bits, exact ties break either way, and validators would need a tolerance.
Here every step is integer arithmetic, whose sums do not depend on order, threads or
vector width (int64 addition is associative, even where it wraps), so the scores
are a function of the weights and examples alone.

Numbers (one rounding rule throughout: round half up, ``(v + half) >> bits``):

    weights      q_w = round_half_even(w * 2**24)   (fixed_point.to_fixed), clipped to |q_w| < 2**31
    activations  q_a at 2**16 (inputs: round_half_even(x * 2**16)), clipped to |q_a| < 2**31
    a layer      acc = q_w @ q_a + (q_b << 16)   at 2**40, exact in int64
                 q_out = (acc + 2**23) >> 24     back at 2**16, then clipped
    ReLU, max-pool    exact on integers; convolutions are im2col + an integer matmul

A layer's sum is exact (no int64 wrap) while ``fan_in * max|w| * max|a| < 2**23``: the
digits MLP needs about 2**10. Beyond that the sum wraps modulo 2**64, which is still
the same on every machine: such a model scores garbage, never two different scores.

Accuracy: the predicted class is the lowest index among the largest logits (an exact
tie goes to the lower class), and a sample is correct when that is its label.

Loss: ``lse(z) - z_label``. ``z_max - z_label`` is an exact integer; the log-sum-exp
of ``z - z_max`` (between 0 and ln(classes)) is computed in fixed point at 2**30:
exp as 2**(t) from a 1024-entry table of 2**(i/1024) and a second-order polynomial,
the log from a table of ln(1 + j/1024) and a third-order series. The tables are made
with `decimal` (software arithmetic, correctly rounded), not the platform's libm, so
they are the same everywhere. The error against the true log-sum-exp of the integer
logits is below 1e-8 nats per sample (tested against float64), far below the 1e-6
nats of one ppm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, localcontext

import numpy as np
import torch

from consensus.useful_work.fixed_point import FIXED_POINT_BITS
from consensus.useful_work.models import ModelSpec

ACTIVATION_BITS = 16
WEIGHT_BITS = FIXED_POINT_BITS  # 24
LIMIT = (1 << 31) - 1  # |weights| and |activations| are clipped to this (saturating fixed point)
LSE_BITS = 30  # the fixed point of the log-sum-exp
_ONE = 1 << LSE_BITS
TABLE_BITS = 10
MIN_EXPONENT = -40  # exp(t) for t < -40 nats is below 2**-57: it rounds to 0 at 2**-30


def _tables() -> tuple[np.ndarray, np.ndarray, int, int]:
    with localcontext() as context:
        context.prec = 50
        two, size, one = Decimal(2), 1 << TABLE_BITS, Decimal(_ONE)
        ln2 = two.ln()
        exp2 = [int((two ** (Decimal(i) / size) * one).to_integral_value()) for i in range(size)]
        log = [int(((1 + Decimal(j) / size).ln() * one).to_integral_value()) for j in range(size)]
        log2e = int((one / ln2).to_integral_value())
        return (np.array(exp2, dtype=np.int64), np.array(log, dtype=np.int64), int((ln2 * one).to_integral_value()),
                log2e)


EXP2_TABLE, LOG_TABLE, LN2, LOG2E = _tables()


def quantize_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 weights -> int64 at 2**24, rounded half to even, clipped to |q| <= 2**31 - 1."""
    return {name: _quantize(tensor, WEIGHT_BITS) for name, tensor in weights.items()}


def quantize_features(features: torch.Tensor) -> torch.Tensor:
    """float features -> int64 activations at 2**16, rounded half to even, clipped."""
    return _quantize(features, ACTIVATION_BITS)


def _quantize(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    values = np.nan_to_num(tensor.detach().cpu().numpy().astype(np.float64), nan=0.0, posinf=LIMIT, neginf=-LIMIT)
    scaled = np.rint(values * float(1 << bits))  # the product is exact; one rounding, half to even
    return torch.from_numpy(np.clip(scaled, -LIMIT, LIMIT).astype(np.int64))


def compute_integer_logits(spec: ModelSpec, weights: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The forward pass in integers: quantized weights (int64 at 2**24), x int64 [n, input_dim] at 2**16
    -> logits int64 [n, classes] at 2**16."""
    if spec.architecture == "logistic_regression":
        return _linear(x, weights["linear_weight"], weights["linear_bias"])
    if spec.architecture == "mlp":
        hidden = _linear(x, weights["hidden_weight"], weights["hidden_bias"]).clamp_(min=0)
        return _linear(hidden, weights["output_weight"], weights["output_bias"])
    side = math.isqrt(spec.input_dim)
    image = x.reshape(-1, 1, side, side)
    image = _max_pool_2x2(_conv3x3(image, weights["conv1_weight"], weights["conv1_bias"]).clamp_(min=0))
    image = _max_pool_2x2(_conv3x3(image, weights["conv2_weight"], weights["conv2_bias"]).clamp_(min=0))
    return _linear(image.flatten(1), weights["output_weight"], weights["output_bias"])


def _rescale(accumulator: torch.Tensor) -> torch.Tensor:
    """From 2**40 back to 2**16: round half up, then saturate."""
    return ((accumulator + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS).clamp_(-LIMIT, LIMIT)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _rescale(x @ weight.T + (bias << ACTIVATION_BITS))


def _conv3x3(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution with zero padding 1, as im2col and one integer matmul (torch's im2col
    has no int64 kernel). Columns are ordered (input channel, row, column) like the weight."""
    batch, channels, height, width = image.shape
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
    columns = torch.stack([padded[:, :, row:row + height, column:column + width]
                           for row in range(3) for column in range(3)], dim=2)
    columns = columns.reshape(batch, channels * 9, height * width)
    out = weight.reshape(weight.shape[0], -1) @ columns + (bias << ACTIVATION_BITS)[:, None]
    return _rescale(out).reshape(batch, weight.shape[0], height, width)


def _max_pool_2x2(image: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.maximum(image[..., 0::2, 0::2], image[..., 1::2, 0::2]),
                         torch.maximum(image[..., 0::2, 1::2], image[..., 1::2, 1::2]))


def count_correct(logits: np.ndarray, labels: np.ndarray) -> int:
    """Samples whose label is the lowest index among the largest logits (np.argmax takes the first)."""
    return int((np.argmax(logits, axis=1) == labels).sum())


def sum_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> int:
    """The exact sum over samples of the fixed-point cross-entropy, at 2**30 (a Python int).

    logits int64 [n, classes] at 2**16 (|z| < 2**31), labels int64 [n]."""
    z_max = logits.max(axis=1)
    margin = z_max - logits[np.arange(labels.shape[0]), labels]  # >= 0, < 2**32, exact
    per_sample = log_sum_exp(logits - z_max[:, None]) + (margin << (LSE_BITS - ACTIVATION_BITS))
    return sum(per_sample.tolist())  # Python ints: the sum cannot wrap


def log_sum_exp(shifted: np.ndarray) -> np.ndarray:
    """ln(sum_j exp(d_j)) at 2**30 for each row of d <= 0 at 2**16 (each row holds a 0)."""
    d = np.maximum(shifted, MIN_EXPONENT << ACTIVATION_BITS)
    t = (d * LOG2E) >> ACTIVATION_BITS  # d * log2(e) at 2**30 (|d * LOG2E| < 2**53)
    whole, fraction = t >> LSE_BITS, t & (_ONE - 1)  # t = whole + fraction, whole <= 0
    exps = _exp2_fraction(fraction) >> np.minimum(-whole, 62)  # 2**t at 2**30 (0 when tiny)
    total = exps.sum(axis=1)  # in [2**30, classes * 2**31): the largest term is exactly 2**30
    return _log(total)


def _exp2_fraction(fraction: np.ndarray) -> np.ndarray:
    """2**f at 2**30 for f in [0, 1) at 2**30: table of 2**(i/1024) times e**(r ln 2) ~ 1 + x + x**2/2."""
    index, rest = fraction >> (LSE_BITS - TABLE_BITS), fraction & ((1 << (LSE_BITS - TABLE_BITS)) - 1)
    x = (rest * LN2) >> LSE_BITS  # < 2**20 * ln 2
    polynomial = _ONE + x + ((x * x) >> (LSE_BITS + 1))
    return (EXP2_TABLE[index] * polynomial + (1 << (LSE_BITS - 1))) >> LSE_BITS


def _log(total: np.ndarray) -> np.ndarray:
    """ln(total / 2**30) at 2**30 for total >= 2**30, < 2**53."""
    exponent = np.frexp(total.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 total), exact below 2**53
    k = exponent - LSE_BITS  # >= 0
    mantissa = total >> k  # in [2**30, 2**31): total / 2**k, floored
    index = (mantissa - _ONE) >> (LSE_BITS - TABLE_BITS)
    base = _ONE + (index << (LSE_BITS - TABLE_BITS))
    epsilon = ((mantissa - base) << LSE_BITS) // base  # mantissa / base - 1 at 2**30, in [0, 2**-10)
    square = epsilon * epsilon
    series = epsilon - (square >> (LSE_BITS + 1)) + ((square >> LSE_BITS) * epsilon) // (3 * _ONE)
    return k * LN2 + LOG_TABLE[index] + series
