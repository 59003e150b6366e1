"""Deterministic evaluation: a model's scores on held-out data, as integers.

    accuracy_ppm = correct * 1_000_000 // n
    loss_ppm     = round_half_even(mean cross-entropy * 1e6), capped at MAX_LOSS_PPM

How it is kept reproducible:

* one torch thread and `torch.use_deterministic_algorithms(True)`, inside
  `deterministic_torch()`, which restores the caller's settings afterwards;
* fixed batches of EVALUATION_BATCH_SIZE rows in index order, so the kernels see
  the same matrix shapes every time;
* the loss is summed with `math.fsum` over per-sample losses: the correctly
  rounded sum, so neither order nor vectorisation can change it;
* a sample is correct only if its label's logit is strictly greater than every
  other logit: a tie is wrong, whatever argmax would pick.

On one machine and one torch version the scores are therefore identical run to
run, thread count to thread count, process to process (tested). Across CPUs the
kernels differ (AVX2 vs AVX-512 vs NEON, oneDNN's choice of algorithm), so logits
may differ in their last bits: the loss moves by well under a ppm and, rarely, a
sample whose two best logits are within ~1e-6 of each other flips. Validators
therefore compare scores with a genesis tolerance in ppm: a reported score is
accepted if ``|reported - measured| <= tolerance_ppm``. A tolerance of
``1_000_000 // subset_size + 1`` admits one flipped sample (two samples' worth to
be safe on large subsets), far below any gain worth faking. Aggregates are a
different matter: they are computed in integers (see `aggregate`) and must match
bit for bit.

Evaluation runs in float32 (EVALUATION_DTYPE), like training. float64 would shrink
the cross-CPU drift further, but the tolerance is needed anyway for near-ties, and
torch's float64 convolutions take a slow path: the small CNN evaluated 3x slower.
Changing the dtype changes scores, so it is a consensus parameter.
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
                   labels: torch.Tensor) -> Scores:
    """`evaluate` without its input checks, for callers that checked the weights and examples once."""
    count = labels.shape[0]
    losses: list[float] = []
    correct = 0
    with deterministic_torch(), torch.inference_mode():
        params = {name: tensor.to(EVALUATION_DTYPE) for name, tensor in weights.items()}
        for start in range(0, count, EVALUATION_BATCH_SIZE):
            batch_labels = labels[start:start + EVALUATION_BATCH_SIZE]
            logits = compute_logits(spec, params, features[start:start + EVALUATION_BATCH_SIZE].to(EVALUATION_DTYPE))
            losses.extend(F.cross_entropy(logits, batch_labels, reduction="none").tolist())
            label_logits = logits.gather(1, batch_labels[:, None])
            best_other = logits.scatter(1, batch_labels[:, None], -math.inf).max(dim=1, keepdim=True).values
            correct += int((label_logits > best_other).sum())
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
