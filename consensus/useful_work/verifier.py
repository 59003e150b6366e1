"""The verifier: what a block author measures and every other validator re-measures.

For one round of one task the inputs are plain data: the task's `TaskRules`, the
base `ModelVersion`, the round's `Submission`s (update hash, blob or None, claimed
samples), the decrypted `HeldOutSet` and the round's subset seed (the bytes the
chain fixed when the commit window closed). The metric the chain sees is
`Scores.accuracy_ppm`; the loss is measured too, for logs and trainers.

An author, for each round due in its block:

    measured = verifier.measure_round(rules, base, submissions, held_out, seed)
        -> the base's scores, the candidate (aggregate of every sound update), for each
           sound update the aggregate without it, and each unusable update's reason code
    excluded = <the runtime's rule: sound updates whose contribution is negative>; if any:
    kept = verifier.measure_round(rules, base, <the other sound updates>, held_out, seed)
        -> the second pass: the kept updates' aggregate and each kept update's aggregate without it
    accepted = <the runtime's acceptance rule over the deciding pass's integers (leave-one-out contributions)>
    outcome = verifier.aggregate_round(rules, base, submissions, accepted, held_out, seed)
        -> the new model (weights + hash) and its scores, or None if nothing was accepted

and puts the integers in its block. Every other validator, before it prevotes:

    verifier.verify_report(rules, base, submissions, held_out, seed, reported_base=...,
                           reported_candidate=..., reported_without=...,
                           accepted=<the runtime's rule over the *reported* integers>,
                           reported_aggregate_hash=..., reported_aggregate_score=...)
        -> VerificationResult(ok, reasons)

Scores (accuracy and loss) must match exactly: they are computed in integers (see
`evaluate` and `exact`), the same bits on every CPU. The aggregate is computed in
integers over the accepted set, which the reported integers fix exactly, so its
hash must match bit for bit too. Each reason names the update (by hash) or the
aggregate that did not match. `score_round` scores each update applied alone to
the base (for trainers' own feedback and the benchmark).

Work is never done twice: scores and rejections are cached by (rules, base model
hash, update hash, held-out digest, subset seed), decoded updates by (limits, base
hash, update hash), aggregates by (rules, base hash, accepted updates). So an
author that verifies its own report, or a validator that sees a block again on
another fork, only pays for the comparison. A verifier is not thread-safe; give
each worker its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Hashable, NamedTuple

import numpy as np
import torch

from consensus.useful_work.aggregate import (
    MAX_WEIGHT, WeightedUpdate, aggregate, apply_step, compute_model_hash,
    fedavg_without_each, previous_step, server_step,
)
from consensus.useful_work.data import held_out_subset
from consensus.useful_work.errors import UpdateRejected, UsefulWorkError
from consensus.useful_work.evaluate import (
    EVALUATION_DTYPE, Scores, check_examples, compute_scores, deterministic_torch, evaluate,
)
from consensus.useful_work.models import parameter_count
from consensus.useful_work.report_check import ReportVerification
from consensus.useful_work.updates import apply_update, decode_update, fixed_point_delta
from consensus.useful_work.round_types import (  # noqa: F401  (re-exported: the verifier's public types)
    AggregateOutcome, HeldOutSet, ModelVersion, RoundMeasurement, RoundScores, Submission, TaskRules,
    VerificationResult,
)
from runtime.hashing import blake2b_256

Tensors = dict[str, torch.Tensor]


class UsefulWorkVerifier(ReportVerification):
    """Measures rounds (score_round, measure_round, aggregate_round) and checks an author's report of
    one (verify_report, from report_check.py)."""

    def __init__(self, *, cache_size: int = 4096, delta_cache_size: int = 256,
                 aggregate_cache_size: int = 64) -> None:
        self._scores = _LruCache(cache_size)
        self._deltas = _LruCache(delta_cache_size)
        self._aggregates = _LruCache(aggregate_cache_size)
        self._subsets = _LruCache(16)

    def score_model(self, rules: TaskRules, model: ModelVersion, held_out: HeldOutSet, subset_seed: bytes) -> Scores:
        """The scores of `model` itself on the round's held-out subset."""
        key = (rules, model.model_hash, None, held_out.digest, subset_seed)
        cached = self._scores.get(key)
        if cached is None:
            cached = evaluate(rules.spec, model.weights, *self._subset(rules, held_out, subset_seed))
            self._scores.put(key, cached)
        return cached

    def score_update(self, rules: TaskRules, base: ModelVersion, update_blob: bytes, held_out: HeldOutSet,
                     subset_seed: bytes) -> Scores:
        """The scores of base + update on the subset; `UpdateRejected` if the update fails a sanity check."""
        return self._score_update(rules, base, Submission.of(update_blob, 1), held_out, subset_seed)

    def score_round(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                    held_out: HeldOutSet, subset_seed: bytes) -> RoundScores:
        """The base's scores, every usable update's scores, and why each other update is unusable."""
        updates: dict[bytes, Scores] = {}
        rejected: dict[bytes, str] = {}
        with deterministic_torch():
            base_scores = self.score_model(rules, base, held_out, subset_seed)
            for submission in sorted(submissions, key=lambda s: s.update_hash):
                if submission.update_hash in updates or submission.update_hash in rejected:
                    raise UsefulWorkError(f"update 0x{submission.update_hash.hex()} is submitted twice; the "
                                          f"chain must refuse a second reveal", code="submission_duplicate")
                if type(submission.num_samples) is not int or not 1 <= submission.num_samples <= MAX_WEIGHT:
                    rejected[submission.update_hash] = "update_bad_num_samples"  # fedavg weighs by it
                    continue
                if submission.update_blob is None:
                    rejected[submission.update_hash] = "update_missing"  # not cached: the blob may still come
                    continue
                try:
                    updates[submission.update_hash] = self._score_update(rules, base, submission, held_out,
                                                                         subset_seed)
                except UpdateRejected as error:
                    rejected[submission.update_hash] = error.code
        return RoundScores(base_scores, updates, rejected)

    def aggregate_round(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                        accepted: Collection[bytes], held_out: HeldOutSet, subset_seed: bytes, *,
                        zeroed: bytes | None = None, previous: ModelVersion | None = None) -> AggregateOutcome | None:
        """The new model from the `accepted` updates (by hash) and its scores; None if none was accepted.

        With `zeroed`, that accepted update takes part with a zero delta (its weight kept):
        the aggregate "without" it, as leave-one-out measures it. `previous` is the model the
        base replaced (the server optimizer's momentum is base - previous; None: no momentum).
        Raises `UpdateRejected` if an accepted update is unusable and `AggregationError`
        if the updates cannot be aggregated.
        """
        if not accepted:
            return None
        by_hash = {submission.update_hash: submission for submission in submissions}
        unknown = sorted(set(accepted) - set(by_hash))
        if unknown:
            raise UsefulWorkError(f"accepted update 0x{unknown[0].hex()} is not among the round's submissions",
                                  code="aggregation_unknown_update")
        chosen = sorted((by_hash[update_hash] for update_hash in set(accepted)), key=lambda s: s.update_hash)
        # fedavg's exact weighted mean does not change when every weight is divided by their gcd: reduced,
        # equal weights share one cache entry (leave-one-out measures with weight 1 each)
        divisor = math.gcd(*(s.num_samples for s in chosen)) or 1
        chosen = [Submission(s.update_hash, s.update_blob, s.num_samples // divisor) for s in chosen]
        key = (rules, base.model_hash, tuple((s.update_hash, s.num_samples) for s in chosen), zeroed,
               _hash_of(previous, rules))
        model = self._aggregates.get(key)
        if model is None:
            updates = []
            for s in chosen:
                if s.update_hash == zeroed:
                    zeros = _zeros(base.weights)
                    updates.append(WeightedUpdate(s.update_hash, zeros, s.num_samples,
                                                  np.zeros(parameter_count(rules.spec), dtype=np.int64)))
                else:
                    updates.append(WeightedUpdate(s.update_hash, self._delta(rules, base, s), s.num_samples,
                                                  self._fixed(rules, base, s)))
            weights = aggregate(base.weights, updates, rules.aggregation, rules.server,
                                self._previous_step(rules, base, previous))
            model = ModelVersion(weights, compute_model_hash(weights))
            self._aggregates.put(key, model)
        return AggregateOutcome(model, self.score_model(rules, model, held_out, subset_seed))

    def measure_round(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                      held_out: HeldOutSet, subset_seed: bytes, *,
                      previous: ModelVersion | None = None) -> RoundMeasurement:
        """The leave-one-out measurements of a round (what the chain's acceptance rule reads).

        base       the base model's scores
        candidate  the aggregate of every sound update, each weighing the same whatever samples it
                   declares (None when no update is sound)
        without    per sound update, the same aggregate with that update's delta zeroed and its
                   weight kept (the base when it is alone). Keeping the weight matters: dropping
                   an update would also rescale the others' step, so a random update would
                   look useful merely by damping an overshooting step.
        rejected   per unusable update, its reason code

        fedavg's aggregates without each update come from the exact weighted sums minus that
        update's term (O(n P), `fedavg_without_each`); the robust rules recompute each one.
        """
        sound: list[Submission] = []
        rejected: dict[bytes, str] = {}
        with deterministic_torch():
            base_scores = self.score_model(rules, base, held_out, subset_seed)
            for submission in _checked_order(submissions):
                if type(submission.num_samples) is not int or not 1 <= submission.num_samples <= MAX_WEIGHT:
                    rejected[submission.update_hash] = "update_bad_num_samples"  # fedavg weighs by it
                    continue
                try:
                    self._delta(rules, base, submission)
                except UpdateRejected as error:
                    rejected[submission.update_hash] = error.code
                    continue
                # leave-one-out weighs every sound update the same: a declared sample count must never
                # raise a contribution (the new model's weights are the caller's, in aggregate_round)
                sound.append(Submission(submission.update_hash, submission.update_blob, 1))
            everything = [s.update_hash for s in sound]
            if rules.aggregation.name == "fedavg" and len(sound) > 1:
                candidate, without = self._fedavg_round(rules, base, sound, held_out, subset_seed, previous)
            else:
                candidate = self.aggregate_round(rules, base, sound, everything, held_out, subset_seed,
                                                 previous=previous)
                without = {}
                for submission in sound:
                    if len(sound) == 1:
                        without[submission.update_hash] = base_scores
                        continue
                    outcome = self.aggregate_round(rules, base, sound, everything, held_out, subset_seed,
                                                   zeroed=submission.update_hash, previous=previous)
                    without[submission.update_hash] = outcome.scores
        return RoundMeasurement(base_scores, None if candidate is None else candidate.scores, without, rejected)

    def _fedavg_round(self, rules: TaskRules, base: ModelVersion, sound: Sequence[Submission], held_out: HeldOutSet,
                      subset_seed: bytes,
                      previous: ModelVersion | None) -> tuple[AggregateOutcome, dict[bytes, Scores]]:
        """The candidate and every leave-one-out score of a fedavg round from one pass of exact sums."""
        chosen = sorted(sound, key=lambda s: s.update_hash)
        step = self._previous_step(rules, base, previous)
        rows = _FixedRows(lambda s: fixed_point_delta(base.weights, self._delta(rules, base, s)), chosen)
        combined, without_each = fedavg_without_each(rows, [s.num_samples for s in chosen])
        key = (rules, base.model_hash, tuple((s.update_hash, s.num_samples) for s in chosen), None,
               _hash_of(previous, rules))
        candidate = self._aggregates.get(key)
        if candidate is None:
            weights = apply_step(base.weights, server_step(combined, rules.server, step))
            candidate = ModelVersion(weights, compute_model_hash(weights))
            self._aggregates.put(key, candidate)
        without = {}
        for submission, row in zip(chosen, without_each):
            weights = apply_step(base.weights, server_step(row, rules.server, step))
            without[submission.update_hash] = self.score_model(
                rules, ModelVersion(weights, compute_model_hash(weights)), held_out, subset_seed)
        return AggregateOutcome(candidate, self.score_model(rules, candidate, held_out, subset_seed)), without

    def _previous_step(self, rules: TaskRules, base: ModelVersion, previous: ModelVersion | None) -> np.ndarray | None:
        if previous is None or rules.server.momentum_ppm == 0:
            return None
        key = ("step", base.model_hash, previous.model_hash)
        step = self._deltas.get(key)
        if step is None:
            step = previous_step(base.weights, previous.weights)
            self._deltas.put(key, step)
        return step

    def _score_update(self, rules: TaskRules, base: ModelVersion, submission: Submission, held_out: HeldOutSet,
                      subset_seed: bytes) -> Scores:
        key = (rules, base.model_hash, submission.update_hash, held_out.digest, subset_seed)
        cached = self._scores.get(key)
        if isinstance(cached, _Rejection):
            raise UpdateRejected(cached.message, code=cached.code)
        if cached is not None:
            return cached
        try:
            model = apply_update(base.weights, self._delta(rules, base, submission))
        except UpdateRejected as error:
            # the code and message only: a raised exception holds its traceback's frames and their tensors
            self._scores.put(key, _Rejection(error.code, error.message))
            raise
        # the layout of base + delta is the base's (checked when the ModelVersion was made), and the
        # subset was checked when it was drawn: skip evaluate's per-call checks
        scores = compute_scores(rules.spec, model, *self._subset(rules, held_out, subset_seed))
        self._scores.put(key, scores)
        return scores

    def _delta(self, rules: TaskRules, base: ModelVersion, submission: Submission) -> Tensors:
        if submission.update_blob is None:
            raise UpdateRejected(f"update 0x{submission.update_hash.hex()} could not be fetched from the blob "
                                 f"store", code="update_missing")
        key = (rules.update_limits, base.model_hash, submission.update_hash)
        delta = self._deltas.get(key)
        if delta is None:
            if blake2b_256(submission.update_blob) != submission.update_hash:
                raise UsefulWorkError(f"the blob given for update 0x{submission.update_hash.hex()} has another "
                                      f"hash; fetch blobs by their hash", code="submission_hash_mismatch")
            delta = decode_update(submission.update_blob, base.weights, rules.update_limits)
            self._deltas.put(key, delta)
        return delta

    def _fixed(self, rules: TaskRules, base: ModelVersion, submission: Submission) -> np.ndarray:
        """The update's fixed-point vector, computed once per (limits, base, update)."""
        key = ("fixed", rules.update_limits, base.model_hash, submission.update_hash)
        fixed = self._deltas.get(key)
        if fixed is None:
            fixed = fixed_point_delta(base.weights, self._delta(rules, base, submission))
            self._deltas.put(key, fixed)
        return fixed

    def _subset(self, rules: TaskRules, held_out: HeldOutSet, subset_seed: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        key = (held_out.digest, subset_seed, rules.held_out_subset_size, rules.spec)
        cached = self._subsets.get(key)
        if cached is None:
            check_examples(rules.spec, held_out.features, held_out.labels)
            index = held_out_subset(held_out.labels.shape[0], subset_seed, rules.held_out_subset_size)
            cached = (held_out.features[index].to(EVALUATION_DTYPE).contiguous(), held_out.labels[index].contiguous())
            self._subsets.put(key, cached)
        return cached


def _hash_of(previous: ModelVersion | None, rules: TaskRules) -> bytes | None:
    """The momentum's part of an aggregate's cache key: none without momentum."""
    return None if previous is None or rules.server.momentum_ppm == 0 else previous.model_hash


def _zeros(weights: Mapping[str, torch.Tensor]) -> Tensors:
    return {name: torch.zeros_like(tensor, dtype=torch.float32) for name, tensor in weights.items()}


def _checked_order(submissions: Sequence[Submission]) -> list[Submission]:
    ordered = sorted(submissions, key=lambda s: s.update_hash)
    for first, second in zip(ordered, ordered[1:]):
        if first.update_hash == second.update_hash:
            raise UsefulWorkError(f"update 0x{first.update_hash.hex()} is submitted twice; the chain must refuse "
                                  f"a second reveal", code="submission_duplicate")
    return ordered


class _FixedRows:
    """The updates' fixed-point rows, recomputed (O(P) each) on every pass instead of held: a round
    of 256 updates of 1M parameters would otherwise keep 2 GiB of int64 rows alive."""

    def __init__(self, make: Callable[[Submission], np.ndarray], submissions: Sequence[Submission]) -> None:
        self._make, self._submissions = make, submissions

    def __len__(self) -> int:
        return len(self._submissions)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._make(submission) for submission in self._submissions)


class _Rejection(NamedTuple):
    code: str
    message: str


class _LruCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: object) -> None:
        if self._capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
