"""The bound on an update the first pass does not exclude (training_acceptance.excluded_updates).

The first pass excludes every sound update whose contribution g_p does not reach the task's minimum
(a poisoned update of any scale, a zero or a token update), so no update that drags the aggregate down
or adds nothing stays in the round (there is no sub-bar zone left): with it the round decides exactly
what it decides without it. An update p that stays lifts the aggregate (g_p >= the minimum). As a
specification, against the same round with p's delta zeroed (its weight kept):
  * it lifts the measured aggregate's score by exactly g_p;
  * it moves every aggregate the pass measures by p / n in fixed point (n sound updates), within one
    unit of 2**-24 per coordinate: at most max_update_norm / n (times the server's lr);
  * it shifts each honest update h's contribution by exactly g_p - g_p(-h), where g_p(-h) is its
    effect on the aggregate without h."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from consensus.useful_work import decode_update, encode_tensors
from consensus.useful_work.aggregate import AggregationRule, WeightedUpdate, aggregate_fixed
from consensus.useful_work.fixed_point import FIXED_POINT_SCALE
from consensus.useful_work.rounds import RoundInputs, RoundWork, task_rules
from consensus.useful_work.updates import fixed_point_delta
from consensus.useful_work.verifier import Submission
from runtime.pallets import training
from runtime.pallets.training import Task
from runtime.pallets.training_acceptance import acceptance_bar, metric_value
from tests.helpers.useful_work import (
    MLP, SEED, base_model, digits_held_out, digits_shards, trained_deltas,
)
from tests.helpers.useful_work import ROUND_CONFIG as CONFIG
from tests.helpers.useful_work import ROUND_HONEST as HONEST
from tests.helpers.useful_work import ROUND_MAX_NORM as MAX_NORM



def honest() -> list[Submission]:
    return [Submission.of(encode_tensors(delta), len(y))
            for delta, (_, y) in list(zip(trained_deltas(MLP), digits_shards()))[:HONEST]]


def flipped(scale: float) -> Submission:
    """`scale` times the honest updates' mean, sign-flipped (0: the zero update)."""
    deltas = trained_deltas(MLP)[:HONEST]
    return Submission.of(encode_tensors({name: (-scale / HONEST * sum(d[name] for d in deltas)).to(torch.float32)
                                         for name in deltas[0]}), 100)


TASK = Task(b"\1" * 32, CONFIG, 0, 10, base_model(MLP).model_hash, None, 10**13, training.STATUS_ACTIVE)


def measure(work: RoundWork, submissions: list[Submission]):
    return work.measure(RoundInputs(0, TASK, task_rules(TASK), base_model(MLP), submissions, digits_held_out(), SEED))


def first_pass(report) -> tuple[dict[bytes, int], int]:
    gains = training.contributions(CONFIG.metric, report.candidate, report.scores)
    return gains, acceptance_bar(CONFIG, gains)


def helping(scale: float) -> Submission:
    """`scale` times the honest updates' mean, same sign: an update that lifts the aggregate."""
    return flipped(-scale)


@pytest.mark.parametrize("scale", [0.0, 0.05, 0.5, 1.0, 1.4, 3.0])
def test_an_update_under_the_minimum_is_excluded_and_the_round_is_the_clean_one(scale):
    """Scales 1.0 and 1.4 were under the old bar (-b < g_p < 0) on this round and stayed in it."""
    work = RoundWork(None, None)
    work.deferred = []  # no blob store: aggregates stay in memory
    poison = flipped(scale)
    attacked, clean = measure(work, honest() + [poison]), measure(work, honest())
    gains, _ = first_pass(attacked)
    assert gains[poison.update_hash] < max(CONFIG.min_improvement_ppm, 1)
    assert training.excluded_updates(CONFIG, clean.candidate, clean.scores) == []
    assert training.excluded_updates(CONFIG, attacked.candidate, attacked.scores) == [poison.update_hash]
    assert training.round_contributions(CONFIG, attacked) == training.round_contributions(CONFIG, clean)
    assert training.round_accepted(CONFIG, attacked) == training.round_accepted(CONFIG, clean)
    assert poison.update_hash not in training.round_aggregated(CONFIG, attacked)
    assert attacked.new_model == clean.new_model


def test_an_update_the_round_keeps_shifts_it_by_exactly_the_stated_bound():
    work = RoundWork(None, None)
    work.deferred = []
    kept, zero = helping(0.5), flipped(0.0)
    attacked, zeroed = measure(work, honest() + [kept]), measure(work, honest() + [zero])
    gains, bar = first_pass(attacked)
    zeroed_gains, _ = first_pass(zeroed)
    g_p = gains[kept.update_hash]
    assert g_p >= max(CONFIG.min_improvement_ppm, 1)
    assert training.excluded_updates(CONFIG, attacked.candidate, attacked.scores) == []
    # the aggregate without p is the zeroed round's candidate, bit for bit (same published score)
    without = {s.update: s.without for s in attacked.scores}
    assert without[kept.update_hash] == zeroed.candidate

    # the measured aggregate is higher by exactly g_p
    lift = metric_value(CONFIG.metric, attacked.candidate) - metric_value(CONFIG.metric, zeroed.candidate)
    assert lift == g_p > 0

    # in parameters: every aggregate moves by p / n within one fixed-point unit per coordinate
    base, limits = base_model(MLP).weights, task_rules(TASK).update_limits
    rows = {s.update_hash: fixed_point_delta(base, decode_update(s.update_blob, base, limits))
            for s in honest() + [kept, zero]}
    fedavg = AggregationRule("fedavg")
    with_p = aggregate_fixed(base, [WeightedUpdate(h, {}, 1, rows[h]) for h in rows if h != zero.update_hash], fedavg)
    with_0 = aggregate_fixed(base, [WeightedUpdate(h, {}, 1, rows[h]) for h in rows if h != kept.update_hash], fedavg)
    n = HONEST + 1
    moved = (with_p - with_0).astype(np.float64)
    assert np.max(np.abs(moved - rows[kept.update_hash] / n)) <= 1.0
    assert np.linalg.norm(moved) / FIXED_POINT_SCALE <= MAX_NORM / n + np.sqrt(moved.size) / FIXED_POINT_SCALE

    # each honest contribution moves by exactly g_p - g_p(-h)
    zeroed_without = {s.update: s.without for s in zeroed.scores}
    for submission in honest():
        h = submission.update_hash
        effect_without_h = (metric_value(CONFIG.metric, without[h]) - metric_value(CONFIG.metric, zeroed_without[h]))
        assert gains[h] - zeroed_gains[h] == g_p - effect_without_h
