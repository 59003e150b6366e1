"""A free rider's update (zero, or too small to lift the aggregate) does not dilute the honest updates.

Leave-one-out weighs every sound update the same, so an update that adds nothing still counts in
every aggregate the round measures: a zero update among n shrinks each honest step to (n - 1) / n,
and the honest contributions, acceptance and pay are measured on that diluted aggregate. As a
specification (training_acceptance.excluded_updates): an update whose first-pass contribution does
not reach the task's minimum is excluded, and the second pass measures the others without it, so
with a zero or a near-zero update in the round the honest contributions, the accepted updates and
the new model are exactly those of the same round without it; the free rider earns nothing."""

from __future__ import annotations

import torch

from consensus.useful_work import encode_tensors
from consensus.useful_work.rounds import RoundInputs, RoundWork, task_rules
from consensus.useful_work.verifier import Submission
from runtime.pallets import training
from runtime.pallets.training import Task
from runtime.pallets.training_acceptance import acceptance_bar
from tests.helpers.useful_work import MLP, SEED, base_model, digits_held_out, digits_shards, trained_deltas
from tests.helpers.useful_work import ROUND_CONFIG as CONFIG
from tests.helpers.useful_work import ROUND_HONEST as HONEST

TASK = Task(b"\1" * 32, CONFIG, 0, 10, base_model(MLP).model_hash, None, 10**13, training.STATUS_ACTIVE)


def honest() -> list[Submission]:
    return [Submission.of(encode_tensors(delta), len(y))
            for delta, (_, y) in list(zip(trained_deltas(MLP), digits_shards()))[:HONEST]]


def free_rider(scale: float) -> Submission:
    """`scale` times the honest updates' mean (0: the zero update; a small scale: a token step)."""
    deltas = trained_deltas(MLP)[:HONEST]
    return Submission.of(encode_tensors({name: (scale / HONEST * sum(d[name] for d in deltas)).to(torch.float32)
                                         for name in deltas[0]}), 100)


def measure(submissions: list[Submission]):
    work = RoundWork(None, None)
    work.deferred = []  # no blob store: aggregates stay in memory
    return work.measure(RoundInputs(0, TASK, task_rules(TASK), base_model(MLP), submissions, digits_held_out(), SEED))


def test_a_zero_update_leaves_the_honest_contributions_as_in_the_round_without_it():
    clean = measure(honest())
    assert training.excluded_updates(CONFIG, clean.candidate, clean.scores) == []
    rider = free_rider(0.0)
    diluted = measure(honest() + [rider])
    first = training.contributions(CONFIG.metric, diluted.candidate, diluted.scores)
    assert first[rider.update_hash] == 0  # the aggregate without it is the same aggregate
    # the first pass is diluted: every honest contribution differs from the clean round's
    clean_gains = training.round_contributions(CONFIG, clean)
    assert all(first[s.update_hash] != clean_gains[s.update_hash] for s in honest())
    # excluded, so the deciding pass is the clean round, exactly
    assert training.excluded_updates(CONFIG, diluted.candidate, diluted.scores) == [rider.update_hash]
    assert diluted.kept_candidate == clean.candidate
    assert training.round_contributions(CONFIG, diluted) == clean_gains
    assert training.round_accepted(CONFIG, diluted) == training.round_accepted(CONFIG, clean)
    assert rider.update_hash not in training.round_aggregated(CONFIG, diluted)
    assert diluted.new_model == clean.new_model and diluted.new_model_score == clean.new_model_score


def test_a_token_update_that_lifts_the_aggregate_by_less_than_the_minimum_is_excluded_too():
    clean = measure(honest())
    clean_gains = training.round_contributions(CONFIG, clean)
    for scale in (1e-6, -1e-6, -0.01):  # a step too small to move the loss, or a slightly harmful one
        rider = free_rider(scale)
        diluted = measure(honest() + [rider])
        first = training.contributions(CONFIG.metric, diluted.candidate, diluted.scores)
        assert first[rider.update_hash] < max(CONFIG.min_improvement_ppm, 1)
        assert first[rider.update_hash] > -acceptance_bar(CONFIG, first)  # under the old rule it stayed
        assert training.excluded_updates(CONFIG, diluted.candidate, diluted.scores) == [rider.update_hash]
        assert training.round_contributions(CONFIG, diluted) == clean_gains
        assert diluted.new_model == clean.new_model


def test_an_update_that_adds_something_stays_in_the_round():
    rider = free_rider(0.5)  # half the honest mean: it lifts the aggregate
    report = measure(honest() + [rider])
    first = training.contributions(CONFIG.metric, report.candidate, report.scores)
    assert first[rider.update_hash] >= max(CONFIG.min_improvement_ppm, 1)
    assert training.excluded_updates(CONFIG, report.candidate, report.scores) == []
