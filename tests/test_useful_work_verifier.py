"""The verifier as a specification: an honest report reproduces, every false one names its lie."""

from __future__ import annotations

import pytest

import consensus.useful_work.verifier as verifier_module
from consensus.useful_work import (
    HeldOutSet, ModelVersion, Scores, Submission, UpdateRejected, UsefulWorkError, UsefulWorkVerifier,
    compute_model_hash, encode_tensors,
)
from tests.helpers.useful_work import MLP, SEED, base_model, digits_held_out, rules, submissions, trained_deltas



def accept(candidate: Scores | None, without: dict) -> list[bytes]:
    """The runtime's rule with the loss metric: the aggregate without the update has a higher loss."""
    return sorted(h for h, s in without.items() if s is not None and s.loss_ppm - candidate.loss_ppm >= 1)


def honest_report(verifier: UsefulWorkVerifier, round_submissions: list[Submission], task=None) -> dict:
    """What an honest author puts in its block."""
    task = task or rules()
    measured = verifier.measure_round(task, base_model(MLP), round_submissions, digits_held_out(), SEED)
    without = dict(measured.without) | {h: None for h in measured.rejected}
    accepted = accept(measured.candidate, without) if measured.candidate else []
    outcome = verifier.aggregate_round(task, base_model(MLP), round_submissions, accepted, digits_held_out(), SEED)
    return dict(reported_base=measured.base, reported_candidate=measured.candidate, reported_without=without,
                accepted=accepted, reported_aggregate_hash=outcome.model.model_hash if outcome else None,
                reported_aggregate_score=outcome.scores if outcome else None)


def verify(round_submissions: list[Submission], report: dict, verifier: UsefulWorkVerifier | None = None, task=None):
    return (verifier or UsefulWorkVerifier()).verify_report(task or rules(), base_model(MLP), round_submissions,
                                                            digits_held_out(), SEED, **report)


def shifted(scores: Scores, by: int) -> Scores:
    return Scores(scores.accuracy_ppm + by, scores.loss_ppm)


def test_an_honest_report_verifies_on_another_validator():
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    assert report["accepted"]  # the round is not trivial
    result = verify(round_submissions, report)
    assert result.ok and result.reasons == []


def test_non_iid_updates_that_hurt_alone_still_contribute_to_the_aggregate():
    """Each shard holds two classes: most updates applied alone make the model worse on the balanced
    held-out set, yet the aggregate is worse without them (the reason for leave-one-out)."""
    verifier, round_submissions = UsefulWorkVerifier(), submissions()
    alone = verifier.score_round(rules(), base_model(MLP), round_submissions, digits_held_out(), SEED)
    hurt_alone = {h for h, s in alone.updates.items() if s.loss_ppm > alone.base.loss_ppm}
    assert len(hurt_alone) >= 3
    report = honest_report(verifier, round_submissions)
    assert report["reported_candidate"].loss_ppm < report["reported_base"].loss_ppm
    assert len(hurt_alone & set(report["accepted"])) >= 2


def test_a_score_falsified_by_one_ppm_fails_and_names_the_update():
    """Scores are exact (integer evaluation): there is no tolerance, one ppm off is a mismatch."""
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    victim = sorted(report["reported_without"])[0]
    true = report["reported_without"][victim]
    report["reported_without"] = {**report["reported_without"], victim: shifted(true, 1)}
    result = verify(round_submissions, report)
    assert not result.ok
    assert result.reasons == [f"update 0x{victim.hex()} (the aggregate without it): reported accuracy "
                              f"{true.accuracy_ppm + 1} ppm, measured {true.accuracy_ppm} ppm"]


def test_a_loss_off_by_one_ppm_fails():
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    base = report["reported_base"]
    report["reported_base"] = Scores(base.accuracy_ppm, base.loss_ppm + 1)
    result = verify(round_submissions, report)
    assert not result.ok and len(result.reasons) == 1 and "reported loss" in result.reasons[0]


def test_a_wrong_aggregate_hash_fails_and_names_the_aggregate():
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    report["reported_aggregate_hash"] = b"\x11" * 32
    result = verify(round_submissions, report)
    assert not result.ok and len(result.reasons) == 1
    assert result.reasons[0].startswith("aggregate: reported model hash 0x" + "11" * 32 + ", computed 0x")


def test_an_aggregate_over_other_updates_than_the_accepted_ones_fails():
    round_submissions = submissions()
    verifier = UsefulWorkVerifier()
    report = honest_report(verifier, round_submissions)
    fewer = report["accepted"][1:]
    other = verifier.aggregate_round(rules(), base_model(MLP), round_submissions, fewer, digits_held_out(), SEED)
    report["reported_aggregate_hash"] = other.model.model_hash
    assert not verify(round_submissions, report).ok


def test_a_falsified_base_candidate_or_new_model_score_fails():
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    lowered = {**report, "reported_base": shifted(report["reported_base"], -50_000)}
    assert verify(round_submissions, lowered).reasons[0].startswith(f"base model 0x{base_model(MLP).model_hash.hex()}")
    candidate = {**report, "reported_candidate": Scores(report["reported_candidate"].accuracy_ppm, 1)}
    assert verify(round_submissions, candidate).reasons[0].startswith("candidate (every sound update): reported loss 1")
    inflated = {**report, "reported_aggregate_score": shifted(report["reported_aggregate_score"], 50_000)}
    assert verify(round_submissions, inflated).reasons[0].startswith("aggregate 0x")


def test_unusable_updates_must_be_reported_unusable_and_usable_ones_scored():
    good = submissions()
    malformed = Submission.of(b"not a tensor blob", 10)
    scaled = Submission.of(encode_tensors({n: 1000 * t for n, t in trained_deltas(MLP)[0].items()}), 10)
    missing = Submission(b"\x22" * 32, None, 10)
    round_submissions = good + [malformed, scaled, missing]
    verifier = UsefulWorkVerifier()
    measured = verifier.measure_round(rules(), base_model(MLP), round_submissions, digits_held_out(), SEED)
    assert measured.rejected == {malformed.update_hash: "update_malformed", scaled.update_hash: "update_norm_exceeded",
                                 missing.update_hash: "update_missing"}
    report = honest_report(verifier, round_submissions)
    assert verify(round_submissions, report).ok

    framed = {**report, "reported_without": {**report["reported_without"], good[0].update_hash: None}}
    assert verify(round_submissions, framed).reasons == [
        f"update 0x{good[0].update_hash.hex()}: reported unusable but it passes every check here"]
    excused = {**report, "reported_without": {**report["reported_without"], scaled.update_hash: Scores(900_000, 5)}}
    assert verify(round_submissions, excused).reasons == [
        f"update 0x{scaled.update_hash.hex()}: reported sound but it is unusable here (update_norm_exceeded)"]
    smuggled = {**report, "accepted": report["accepted"] + [scaled.update_hash]}
    assert f"update 0x{scaled.update_hash.hex()}: accepted but not a usable submission here" in \
        verify(round_submissions, smuggled).reasons


def test_a_blob_that_arrives_late_is_scored_then():
    verifier, good = UsefulWorkVerifier(), submissions()[0]
    late = Submission(good.update_hash, None, good.num_samples)
    first = verifier.measure_round(rules(), base_model(MLP), [late], digits_held_out(), SEED)
    assert first.rejected == {good.update_hash: "update_missing"} and first.candidate is None
    second = verifier.measure_round(rules(), base_model(MLP), [good], digits_held_out(), SEED)
    assert set(second.without) == {good.update_hash} and second.rejected == {}
    assert second.without[good.update_hash] == second.base  # alone, it is measured against the base


def test_a_report_must_cover_exactly_the_rounds_submissions():
    round_submissions = submissions()
    report = honest_report(UsefulWorkVerifier(), round_submissions)
    dropped = sorted(report["reported_without"])[0]
    partial = {**report, "reported_without": {h: s for h, s in report["reported_without"].items() if h != dropped}}
    assert f"update 0x{dropped.hex()}: missing from the report" in verify(round_submissions, partial).reasons
    invented = {**report, "reported_without": {**report["reported_without"], b"\x33" * 32: Scores(500_000, 1)}}
    assert f"update 0x{'33' * 32}: reported but not among the round's submissions" in \
        verify(round_submissions, invented).reasons


def test_a_round_with_nothing_accepted_has_no_new_model():
    round_submissions = submissions()
    report = {**honest_report(UsefulWorkVerifier(), round_submissions), "accepted": [],
              "reported_aggregate_hash": None, "reported_aggregate_score": None}
    assert verify(round_submissions, report).ok
    report["reported_aggregate_hash"] = b"\x44" * 32
    assert verify(round_submissions, report).reasons == ["aggregate: reported a new model but no update was accepted"]


def test_no_work_is_done_twice(monkeypatch):
    calls = []
    for name in ("evaluate", "compute_scores"):
        real = getattr(verifier_module, name)
        monkeypatch.setattr(verifier_module, name, lambda *args, real=real: calls.append(1) or real(*args))
    verifier, round_submissions = UsefulWorkVerifier(), submissions()
    report = honest_report(verifier, round_submissions)
    evaluations = len(calls)
    # base, the candidate, one aggregate without each update, and the new model unless it is one of those:
    # leave-one-out weighs updates the same and the new model by their samples, so only equal counts coincide
    equal_counts = len({s.num_samples for s in round_submissions}) == 1
    extra = 0 if len(report["accepted"]) == len(round_submissions) and equal_counts else 1
    assert evaluations == len(round_submissions) + 2 + extra
    assert verify(round_submissions, report, verifier).ok  # the author verifying its own report
    assert len(calls) == evaluations
    verifier.measure_round(rules(), base_model(MLP), round_submissions, digits_held_out(), b"another seed")
    assert len(calls) == evaluations + len(round_submissions) + 2  # a new subset is new work (aggregates are kept)


def test_scores_do_not_depend_on_the_cache_or_the_submission_order():
    round_submissions = submissions()
    cached = UsefulWorkVerifier().score_round(rules(), base_model(MLP), round_submissions, digits_held_out(), SEED)
    uncached = UsefulWorkVerifier(cache_size=0, delta_cache_size=0).score_round(
        rules(), base_model(MLP), round_submissions[::-1], digits_held_out(), SEED)
    assert cached == uncached


def test_score_update_rejects_a_bad_update_with_its_code_every_time():
    verifier = UsefulWorkVerifier()
    for _ in range(2):  # the second answer comes from the cache
        with pytest.raises(UpdateRejected) as raised:
            verifier.score_update(rules(), base_model(MLP), b"junk", digits_held_out(), SEED)
        assert raised.value.code == "update_malformed"


def test_a_model_version_from_a_blob_has_the_blobs_hash_which_is_the_model_hash():
    blob = encode_tensors(base_model(MLP).weights)
    version = ModelVersion.from_blob(MLP, blob)
    assert version.model_hash == base_model(MLP).model_hash == compute_model_hash(version.weights)


def test_inputs_the_chain_must_never_send_are_refused():
    round_submissions = submissions()
    with pytest.raises(UsefulWorkError) as raised:
        UsefulWorkVerifier().score_round(rules(), base_model(MLP), round_submissions + round_submissions[:1],
                                         digits_held_out(), SEED)
    assert raised.value.code == "submission_duplicate"
    with pytest.raises(UsefulWorkError) as raised:
        UsefulWorkVerifier().score_round(rules(), base_model(MLP), [Submission(b"\x00" * 32, b"some blob", 1)],
                                         digits_held_out(), SEED)
    assert raised.value.code == "submission_hash_mismatch"
    zero = Submission.of(round_submissions[0].update_blob, 0)
    scores = UsefulWorkVerifier().score_round(rules(), base_model(MLP), [zero], digits_held_out(), SEED)
    assert scores.rejected == {zero.update_hash: "update_bad_num_samples"}


def test_the_held_out_digest_separates_tasks_in_the_cache():
    verifier, held_out = UsefulWorkVerifier(), digits_held_out()
    shifted = HeldOutSet.from_tensors(held_out.features, (held_out.labels + 1) % 10)
    first = verifier.score_model(rules(), base_model(MLP), held_out, SEED)
    assert verifier.score_model(rules(), base_model(MLP), shifted, SEED) != first
