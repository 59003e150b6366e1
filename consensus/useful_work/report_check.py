"""A validator's check of a block author's report of one round (the verifier's `verify_report`).

The author reports integers: the base's scores, the candidate's (every sound update),
each sound update's aggregate without it, the second pass over the kept updates when
the runtime's rule excludes some, and the new model's hash and scores. A validator
measures the same round itself (`measure_round`, `aggregate_round`: verifier.py) and
compares; every score is an integer evaluation, so a match is exact and each mismatch
is named by update hash or aggregate. `ReportVerification` is the half of
`UsefulWorkVerifier` that compares; the measuring half is in verifier.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from consensus.useful_work.errors import AggregationError
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.round_types import (
    AggregateOutcome, HeldOutSet, ModelVersion, RoundMeasurement, Submission, TaskRules, VerificationResult,
)


class ReportVerification:
    """Compares a reported round with this verifier's own measurement of it (`measure_round` and
    `aggregate_round` are the measuring half's, UsefulWorkVerifier in verifier.py)."""

    def measure_round(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                      held_out: HeldOutSet, subset_seed: bytes, *,
                      previous: ModelVersion | None = None) -> RoundMeasurement:
        raise NotImplementedError

    def aggregate_round(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                        accepted: Collection[bytes], held_out: HeldOutSet, subset_seed: bytes, *,
                        zeroed: bytes | None = None, previous: ModelVersion | None = None) -> AggregateOutcome | None:
        raise NotImplementedError

    def verify_report(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                      held_out: HeldOutSet, subset_seed: bytes, *, previous: ModelVersion | None = None,
                      publish: Callable[[Scores], Scores] | None = None, reported_base: Scores,
                      reported_candidate: Scores | None, reported_without: Mapping[bytes, Scores | None],
                      accepted: Collection[bytes], reported_aggregate_hash: bytes | None,
                      reported_aggregate_score: Scores | None, excluded: Collection[bytes] = (),
                      reported_kept_candidate: Scores | None = None,
                      reported_kept: Mapping[bytes, Scores] | None = None) -> VerificationResult:
        """Whether a block author's report of a round reproduces here; `reasons` name every mismatch.

        reported_base             the base model's scores
        reported_candidate        the aggregate of every sound update, None when no update is sound
        reported_without          update hash -> the aggregate without it, or None where the author
                                  reports the update unusable (missing or malformed); every
                                  submission exactly once
        accepted                  the updates the runtime accepts from the *reported* integers (the
                                  runtime's own rule): the new model must aggregate exactly these
        reported_aggregate_hash   the new model's hash, None when nothing was accepted
        reported_aggregate_score  the new model's scores on this round's subset
        excluded                  the sound updates the runtime's rule leaves out of a second pass (from the
                                  *reported* first pass); when some are, the second pass is measured over
                                  the other sound updates and compared:
        reported_kept_candidate   the kept updates' aggregate (None when no update is kept)
        reported_kept             kept update hash -> the kept updates' aggregate without it
        publish                   what the chain publishes of a measurement (e.g. the loss rounded to a
                                  quantum); the measured scores pass through it before the comparison
        Every score must match exactly (integer evaluation: no tolerance).
        """
        reasons: list[str] = []
        shown = publish or (lambda scores: scores)
        measured = self.measure_round(rules, base, submissions, held_out, subset_seed, previous=previous)
        reasons += _mismatch(f"base model 0x{base.model_hash.hex()}", reported_base, shown(measured.base))
        if (reported_candidate is None) != (measured.candidate is None):
            said = "none" if reported_candidate is None else "a score"
            sound = "no update" if measured.candidate is None else "some update"
            reasons.append(f"candidate: reported {said} but {sound} is sound here")
        elif reported_candidate is not None:
            reasons += _mismatch("candidate (every sound update)", reported_candidate, shown(measured.candidate))
        submitted = {submission.update_hash for submission in submissions}
        for update_hash in sorted(submitted | set(reported_without)):
            name, reported = f"update 0x{update_hash.hex()}", reported_without.get(update_hash)
            if update_hash not in submitted:
                reasons.append(f"{name}: reported but not among the round's submissions")
            elif update_hash not in reported_without:
                reasons.append(f"{name}: missing from the report")
            elif update_hash in measured.rejected:
                if reported is not None:
                    reasons.append(f"{name}: reported sound but it is unusable here ({measured.rejected[update_hash]})")
            elif reported is None:
                reasons.append(f"{name}: reported unusable but it passes every check here")
            else:
                reasons += _mismatch(f"{name} (the aggregate without it)", reported,
                                     shown(measured.without[update_hash]))
        if excluded:
            reasons += self._verify_second_pass(rules, base, submissions, held_out, subset_seed, previous, shown,
                                                measured, set(excluded), reported_kept_candidate, reported_kept or {})
        elif reported_kept_candidate is not None or reported_kept:
            reasons.append("second pass: reported, but no update is excluded by the first")
        unusable = sorted(set(accepted) - set(measured.without))
        reasons += [f"update 0x{update_hash.hex()}: accepted but not a usable submission here"
                    for update_hash in unusable]
        if unusable:
            return VerificationResult(ok=False, reasons=reasons)
        try:
            outcome = self.aggregate_round(rules, base, submissions, accepted, held_out, subset_seed,
                                           previous=previous)
        except AggregationError as error:
            reasons.append(f"aggregate: cannot be computed ({error.code}: {error})")
            return VerificationResult(ok=False, reasons=reasons)
        if outcome is None:
            if reported_aggregate_hash is not None:
                reasons.append("aggregate: reported a new model but no update was accepted")
        elif reported_aggregate_hash != outcome.model.model_hash:
            shown = "none" if reported_aggregate_hash is None else f"0x{bytes(reported_aggregate_hash).hex()}"
            reasons.append(f"aggregate: reported model hash {shown}, computed 0x{outcome.model.model_hash.hex()}")
        elif reported_aggregate_score is None:
            reasons.append("aggregate: the new model's score is missing from the report")
        else:
            reasons += _mismatch(f"aggregate 0x{outcome.model.model_hash.hex()}", reported_aggregate_score,
                                 shown(outcome.scores))
        return VerificationResult(ok=not reasons, reasons=reasons)

    def _verify_second_pass(self, rules: TaskRules, base: ModelVersion, submissions: Sequence[Submission],
                            held_out: HeldOutSet, subset_seed: bytes, previous: ModelVersion | None,
                            shown: Callable[[Scores], Scores], first: RoundMeasurement, excluded: set[bytes],
                            reported_candidate: Scores | None, reported: Mapping[bytes, Scores]) -> list[str]:
        """Every mismatch between the reported second pass and the one measured here over the sound
        updates less `excluded`."""
        kept = [s for s in submissions if s.update_hash in first.without and s.update_hash not in excluded]
        if not kept:
            return [] if reported_candidate is None and not reported else ["second pass: reported, but no update "
                                                                          "is kept here"]
        second = self.measure_round(rules, base, kept, held_out, subset_seed, previous=previous)
        if reported_candidate is None:
            reasons = ["second pass: the kept updates' aggregate is missing from the report"]
        else:
            reasons = _mismatch("second pass: the kept updates' aggregate", reported_candidate,
                                shown(second.candidate))
        for update_hash in sorted(set(second.without) | set(reported)):
            name = f"update 0x{update_hash.hex()} (second pass)"
            if update_hash not in second.without:
                reasons.append(f"{name}: reported but not kept here")
            elif update_hash not in reported:
                reasons.append(f"{name}: kept here but missing from the report")
            else:
                reasons += _mismatch(name, reported[update_hash], shown(second.without[update_hash]))
        return reasons


def _mismatch(name: str, reported: Scores, measured: Scores) -> list[str]:
    return [f"{name}: reported {what} {got} ppm, measured {want} ppm"
            for what, got, want in (("accuracy", reported.accuracy_ppm, measured.accuracy_ppm),
                                    ("loss", reported.loss_ppm, measured.loss_ppm))
            if got != want]
