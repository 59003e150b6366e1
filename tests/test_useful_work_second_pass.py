"""Two leave-one-out passes, as a specification: an update whose first contribution is negative (a
poisoned update inside the norm bound) is excluded, and the others are measured again without it, so
the honest updates' contributions are exactly what they are in the same round without the poisoned
update. The author's report carries both passes; the runtime checks that the second pass scores exactly
the kept updates; another validator reproduces it and names a tampered second-pass score."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from consensus.useful_work import encode_tensors
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.rounds import RoundInputs, RoundWork, task_rules
from consensus.useful_work.verifier import Submission
from runtime.hashing import blake2b_256
from runtime.pallets import training
from runtime.pallets.training import ModelSpec, SealedKey, Score, Task, TaskConfig, UpdateScore
from runtime.pallets.training_rewards import check_report
from runtime.pallets.training_storage import BadReport
from storage.blobs import BlobStore
from storage.database import Database
from tests.helpers.useful_work import MLP, SEED, base_model, digits_held_out, digits_shards, trained_deltas

HONEST = 4


def config(**changes) -> TaskConfig:
    values = dict(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=base_model(MLP).model_hash,
                  metric=training.METRIC_LOSS, held_out=b"\0" * 32, held_out_size=1, held_out_subset=200,
                  sealed_keys=(SealedKey(b"\0" * 32, b"k"),), reward_per_round=10**12, rounds=2, commit_blocks=2,
                  reveal_blocks=2, min_improvement_ppm=1, min_relative_ppm=0, max_update_bytes=1 << 20,
                  max_update_norm=norm_to_fixed(50.0), bond=10**11, aggregation=0, trim=0)
    values.update(changes)
    return TaskConfig(**values)


def honest_submissions() -> list[Submission]:
    return [Submission.of(encode_tensors(delta), len(y))
            for delta, (_, y) in list(zip(trained_deltas(MLP), digits_shards()))[:HONEST]]


def poisoned() -> Submission:
    """Three times the honest updates' mean, sign-flipped: well inside the task's norm bound."""
    deltas = trained_deltas(MLP)[:HONEST]
    poison = {name: (-3.0 / HONEST * sum(d[name] for d in deltas)).to(torch.float32) for name in deltas[0]}
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in poison.values())))
    assert norm < 50.0
    return Submission.of(encode_tensors(poison), 100)


def inputs_of(submissions: list[Submission], task_config: TaskConfig | None = None) -> RoundInputs:
    task_config = task_config or config()
    base = base_model(MLP)
    task = Task(b"\1" * 32, task_config, 0, 10, base.model_hash, None, 10**13, training.STATUS_ACTIVE)
    return RoundInputs(0, task, task_rules(task), base, submissions, digits_held_out(), SEED)


@pytest.fixture
def work(tmp_path):
    db = Database(tmp_path / "blobs")
    yield RoundWork(BlobStore(db), None)
    db.close()


def test_a_poisoned_update_leaves_the_honest_contributions_as_in_the_round_without_it(work):
    honest = honest_submissions()
    poison = poisoned()
    clean = work.measure(inputs_of(honest))
    attacked = work.measure(inputs_of(honest + [poison]))
    metric = training.METRIC_LOSS
    assert training.excluded_updates(config(), clean.candidate, clean.scores) == []
    assert clean.kept_candidate is None and all(s.kept is None for s in clean.scores)
    # the poisoned update is excluded by the first pass, and the second pass is the clean round
    assert training.excluded_updates(config(), attacked.candidate, attacked.scores) == [poison.update_hash]
    assert attacked.kept_candidate == clean.candidate
    first = training.contributions(metric, attacked.candidate, attacked.scores)
    without_poison = training.round_contributions(config(), clean)
    with_poison = training.round_contributions(config(), attacked)
    assert set(with_poison) == {s.update_hash for s in honest}
    for submission in honest:  # exactly equal, where the first pass alone was off
        assert with_poison[submission.update_hash] == without_poison[submission.update_hash]
    assert any(first[s.update_hash] != without_poison[s.update_hash] for s in honest)
    # the poisoned update earns nothing, the honest ones are accepted as without it, the model is the same
    assert training.round_accepted(config(), attacked) == training.round_accepted(config(), clean)
    assert poison.update_hash not in training.round_accepted(config(), attacked)
    assert attacked.new_model == clean.new_model


def test_another_validator_reproduces_the_second_pass_and_names_a_tampered_score(work, tmp_path):
    inputs = inputs_of(honest_submissions() + [poisoned()])
    report = work.measure(inputs)
    assert report.kept_candidate is not None
    db = Database(tmp_path / "other")
    try:
        other = RoundWork(BlobStore(db), None)
        assert other.check(inputs, report) == []
        kept = next(s for s in report.scores if s.kept is not None)
        tampered = dataclasses.replace(report, scores=tuple(
            dataclasses.replace(s, kept=Score(s.kept.accuracy_ppm, s.kept.loss_ppm + 100)) if s is kept else s
            for s in report.scores))
        problems = other.check(inputs, tampered)
        assert any("second pass" in problem and kept.update.hex() in problem for problem in problems), problems
        candidate = dataclasses.replace(report, kept_candidate=Score(report.kept_candidate.accuracy_ppm,
                                                                     report.kept_candidate.loss_ppm + 100))
        assert any("kept updates' aggregate" in problem for problem in other.check(inputs, candidate))
    finally:
        db.close()


# --- the runtime's consistency checks (integers only) -------------------------------------------------

BASE = Score(800_000, 1_000_000)
H = [blake2b_256(bytes([i])) for i in range(3)]


def report_of(scores, candidate=Score(850_000, 900_000), kept_candidate=None):
    return training.RoundReport(0, 0, SEED, BASE, candidate, tuple(scores), H[0], Score(860_000, 880_000),
                                kept_candidate)


def task_of() -> Task:
    return Task(b"\1" * 32, config(), 0, 10, H[0], None, 10**13, training.STATUS_ACTIVE)


def test_the_runtime_requires_the_second_pass_exactly_for_the_kept_updates():
    ok = training.UPDATE_OK
    # update 2's first contribution is negative (the round is better without it): 0 and 1 are kept
    first = [UpdateScore(H[0], ok, Score(0, 950_000)), UpdateScore(H[1], ok, Score(0, 920_000)),
             UpdateScore(H[2], ok, Score(0, 850_000))]
    second = [dataclasses.replace(first[0], kept=Score(0, 900_000)), dataclasses.replace(first[1], kept=Score(0, 870_000)),
              first[2]]
    good = report_of(second, kept_candidate=Score(0, 800_000))
    assert check_report(task_of(), good, tuple(H)) == sorted(H[:2])
    assert training.round_contributions(config(), good) == {H[0]: 100_000, H[1]: 70_000}
    bad = {
        "no second pass": report_of(first),
        "no kept aggregate": report_of(second),
        "the excluded update scored": report_of(second[:2] + [dataclasses.replace(first[2], kept=Score(0, 1))],
                                                kept_candidate=Score(0, 800_000)),
        "a kept update unscored": report_of([second[0], first[1], first[2]], kept_candidate=Score(0, 800_000)),
    }
    for name, report in bad.items():
        with pytest.raises(BadReport):
            check_report(task_of(), report, tuple(H))
    # no update excluded: no second pass may be reported
    plain = [UpdateScore(H[i], ok, Score(0, 950_000)) for i in range(3)]
    assert check_report(task_of(), report_of(plain), tuple(H)) == sorted(H)
    with pytest.raises(BadReport):
        check_report(task_of(), report_of(plain, kept_candidate=Score(0, 800_000)), tuple(H))


def test_the_new_model_takes_every_update_that_adds_something_and_pays_only_those_over_the_bar():
    ok = training.UPDATE_OK
    task_config = config(min_relative_ppm=300_000, min_improvement_ppm=1)
    candidate = Score(0, 900_000)
    scores = [UpdateScore(H[0], ok, Score(0, 1_000_000)),  # +100,000
              UpdateScore(H[1], ok, Score(0, 910_000)),  # +10,000: under 30% of the best
              UpdateScore(H[2], ok, Score(0, 900_000))]  # 0: adds nothing (a near-zero update)
    assert training.accepted_updates(task_config, candidate, scores) == [H[0]]
    assert training.aggregated_updates(task_config, candidate, scores) == sorted(H[:2])
    # nothing accepted: no new model at all
    worse = [UpdateScore(h, ok, Score(0, 800_000)) for h in H]
    assert training.accepted_updates(task_config, candidate, worse) == []
    assert training.aggregated_updates(task_config, candidate, worse) == []
