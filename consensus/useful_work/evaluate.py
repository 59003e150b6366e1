"""Deterministic evaluation: a model's scores on held-out data, as integers every CPU agrees on.

    accuracy_ppm = correct * 1_000_000 // n
    loss_ppm     = round_half_even(mean cross-entropy * 1e6), capped at MAX_LOSS_PPM

Scores are computed in integer fixed point (`exact`): weights at 2**24, activations
at 2**16, int64 matmuls, round half up after each layer, saturation at 2**31; the
predicted class is the lowest index among the largest logits; the loss is a
fixed-point log-sum-exp with tables made by `decimal`. Integer sums do not depend on
order, threads, batch size or SIMD width, so the scores are bit-exact on any CPU and
validators compare them exactly: there is no tolerance.

How they differ from the float32 forward pass that trainers optimise
(`compute_float_scores`, kept for the bench and the agreement test): the logits
differ by the quantization, about 2**-17 * (1 + sum |w| |x|) per layer, ~1e-4 for the
digits MLP. Accuracy changes only where float32's two best logits are that close, and
the loss by a fraction of a ppm. Measured on MLP, CNN and logistic-regression models
after 0, 1 and 5 epochs: the same accuracy and a loss within 1 ppm; the test's stated
bound is one sample of accuracy and 100 ppm of loss.

Evaluation runs in batches of EVALUATION_BATCH_SIZE rows only to bound memory: the
batch size cannot change a score.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F

from consensus.useful_work.errors import EvaluationError
from consensus.useful_work.exact import (
    LSE_BITS, compute_integer_logits, count_correct, quantize_features, quantize_weights, sum_cross_entropy,
)
from consensus.useful_work.models import ModelSpec, check_weights, compute_logits
from consensus.useful_work.tensors import is_finite

PPM = 1_000_000
EVALUATION_DTYPE = torch.float32
EVALUATION_BATCH_SIZE = 512
MAX_LOSS_PPM = 10 ** 12  # a diverged model scores this instead of an unbounded (or NaN) loss


class Scores(NamedTuple):
    """A model's scores on a held-out subset, in parts per million."""

    accuracy_ppm: int
    loss_ppm: int


_settings_lock = threading.Lock()
_settings_users = 0
_saved_deterministic: tuple[bool, bool] | None = None


@contextmanager
def deterministic_torch(threads: int = 1) -> Iterator[None]:
    """Run torch with `threads` intra-op threads and deterministic algorithms; restore both after.

    The thread count belongs to the calling thread (OpenMP keeps one per thread), so each
    caller saves and restores its own. The deterministic-algorithms flag is process-wide and
    several threads may train or evaluate at once (the demo's trainers): the first to enter
    saves it, the last to leave restores it; per-thread saving would interleave and leave it on.
    """
    global _settings_users, _saved_deterministic
    previous_threads = torch.get_num_threads()
    if previous_threads != threads:
        torch.set_num_threads(threads)
    with _settings_lock:
        if _settings_users == 0:
            _saved_deterministic = (torch.are_deterministic_algorithms_enabled(),
                                    torch.is_deterministic_algorithms_warn_only_enabled())
        _settings_users += 1
        _set_deterministic_algorithms(True, warn_only=False)
    try:
        yield
    finally:
        with _settings_lock:
            _settings_users -= 1
            if _settings_users == 0:
                _set_deterministic_algorithms(_saved_deterministic[0], warn_only=_saved_deterministic[1])
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


def _set_deterministic_algorithms(mode: bool, *, warn_only: bool) -> None:
    # torch.use_deterministic_algorithms also sets a flag of torch._inductor, and importing
    # torch._inductor (and torch._dynamo) costs seconds per process. Nothing here is compiled,
    # so only ATen's flag matters: set it directly where this torch has the setter.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def evaluate(spec: ModelSpec, weights: Mapping[str, torch.Tensor], features: torch.Tensor,
             labels: torch.Tensor) -> Scores:
    """The scores of the model `weights` of `spec` on (features [n, input_dim], labels [n])."""
    check_weights(spec, weights)
    check_examples(spec, features, labels)
    return compute_scores(spec, weights, features, labels)


def compute_scores(spec: ModelSpec, weights: Mapping[str, torch.Tensor], features: torch.Tensor,
                   labels: torch.Tensor, *, batch_size: int = EVALUATION_BATCH_SIZE) -> Scores:
    """`evaluate` without its input checks, for callers that checked the weights and examples once.

    Exact: integer arithmetic only (see `exact`); `batch_size` bounds memory and nothing else."""
    count = labels.shape[0]
    quantized = quantize_weights(weights)
    x = quantize_features(features)
    correct, loss = 0, 0
    with deterministic_torch(), torch.inference_mode():
        for start in range(0, count, batch_size):
            logits = compute_integer_logits(spec, quantized, x[start:start + batch_size]).numpy()
            batch_labels = labels[start:start + batch_size].numpy()
            correct += count_correct(logits, batch_labels)
            loss += sum_cross_entropy(logits, batch_labels)
    # mean loss in ppm = loss / 2**30 / count * 1e6, rounded half to even, in integers
    numerator, denominator = loss * PPM, count << LSE_BITS
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return Scores(accuracy_ppm=correct * PPM // count, loss_ppm=min(quotient, MAX_LOSS_PPM))


def compute_float_scores(spec: ModelSpec, weights: Mapping[str, torch.Tensor], features: torch.Tensor,
                         labels: torch.Tensor) -> Scores:
    """The same scores from the float32 forward pass (argmax ties to the lowest class), for comparison:
    not exact across CPUs, never used for consensus."""
    count = labels.shape[0]
    losses: list[float] = []
    correct = 0
    with deterministic_torch(), torch.inference_mode():
        params = {name: tensor.to(EVALUATION_DTYPE) for name, tensor in weights.items()}
        for start in range(0, count, EVALUATION_BATCH_SIZE):
            batch_labels = labels[start:start + EVALUATION_BATCH_SIZE]
            logits = compute_logits(spec, params, features[start:start + EVALUATION_BATCH_SIZE].to(EVALUATION_DTYPE))
            losses.extend(F.cross_entropy(logits.double(), batch_labels, reduction="none").tolist())
            correct += count_correct(logits.numpy(), batch_labels.numpy())
    mean_loss = math.fsum(losses) / count
    loss_ppm = round(mean_loss * PPM) if math.isfinite(mean_loss) else MAX_LOSS_PPM
    return Scores(accuracy_ppm=correct * PPM // count, loss_ppm=min(loss_ppm, MAX_LOSS_PPM))


def check_examples(spec: ModelSpec, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise `EvaluationError` unless (features, labels) are examples a model of `spec` can score."""
    if not (isinstance(features, torch.Tensor) and features.dim() == 2 and features.shape[1] == spec.input_dim
            and features.dtype in (torch.float32, torch.float64)):
        raise EvaluationError(f"features must be a float tensor [n, {spec.input_dim}], got "
                              f"{getattr(features, 'dtype', type(features).__name__)} "
                              f"{tuple(getattr(features, 'shape', ()))}", code="evaluation_bad_features")
    if not (isinstance(labels, torch.Tensor) and labels.dim() == 1 and labels.dtype == torch.int64
            and labels.shape[0] == features.shape[0] and labels.shape[0] > 0):
        raise EvaluationError(f"labels must be a non-empty int64 tensor [{features.shape[0]}]",
                              code="evaluation_bad_labels")
    if int(labels.min()) < 0 or int(labels.max()) >= spec.classes:
        raise EvaluationError(f"labels must lie in 0..{spec.classes - 1}", code="evaluation_bad_labels")
    if not is_finite(features):
        raise EvaluationError("features hold NaN or infinity", code="evaluation_bad_features")
