"""Aggregation as a specification: exact integers, the same bytes everywhere, robust to poison."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from consensus.useful_work import (
    AggregationError, AggregationRule, WeightedUpdate, compute_model_hash, encode_tensors,
)
from consensus.useful_work.evaluate import evaluate
from consensus.useful_work.aggregate import aggregate, aggregate_deltas
from consensus.useful_work.fixed_point import (
    FIXED_POINT_SCALE, divide_round_half_even, from_fixed, squared_norm, to_fixed, weighted_mean_round_half_even,
)
from runtime.hashing import blake2b_256
from tests.helpers.useful_work import MLP, base_model, digits_split, trained_deltas

RULES = [AggregationRule("fedavg"), AggregationRule("trimmed_mean", trim=1), AggregationRule("median")]
rule_ids = [rule.name for rule in RULES]


def honest_updates() -> list[WeightedUpdate]:
    return [WeightedUpdate(blake2b_256(encode_tensors(delta)), delta, 100 + 37 * index)
            for index, delta in enumerate(trained_deltas(MLP))]


def round_half_even(value: Fraction) -> int:
    floor = value.numerator // value.denominator
    rest = value - floor
    return floor + (rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1))


# --- fixed point ------------------------------------------------------------------

def test_float32_to_fixed_point_rounds_half_to_even():
    half = 0.5 / FIXED_POINT_SCALE
    values = np.array([half, 3 * half, 5 * half, -half, -3 * half, 1.0, -1.0], dtype=np.float32)
    assert to_fixed(values).tolist() == [0, 2, 2, 0, -2, FIXED_POINT_SCALE, -FIXED_POINT_SCALE]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-127.0, 127.0, width=32), min_size=1, max_size=20))
def test_fixed_point_round_trips_within_half_a_step(values):
    array = np.array(values, dtype=np.float32)
    back = from_fixed(to_fixed(array)).astype(np.float64)
    assert np.all(np.abs(back - array.astype(np.float64)) <= 0.5 / FIXED_POINT_SCALE + np.abs(array) * 2.0 ** -24)


fixed_values = st.integers(-(2 ** 31) + 1, 2 ** 31 - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(fixed_values, min_size=0, max_size=50))
def test_the_squared_norm_is_the_exact_integer(values):
    assert squared_norm(np.array(values, dtype=np.int64)) == sum(v * v for v in values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2 ** 45), 2 ** 45), min_size=1, max_size=20), st.integers(1, 2 ** 40))
def test_division_rounds_to_nearest_with_ties_to_even(numerators, denominator):
    result = divide_round_half_even(np.array(numerators, dtype=np.int64), denominator)
    assert result.tolist() == [round_half_even(Fraction(n, denominator)) for n in numerators]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(fixed_values, min_size=3, max_size=3), st.integers(1, 2 ** 32 - 1)),
                min_size=1, max_size=8))
def test_the_weighted_mean_is_exact_even_where_the_sums_exceed_int64(rows_and_weights):
    rows = np.array([row for row, _ in rows_and_weights], dtype=np.int64)
    weights = [weight for _, weight in rows_and_weights]
    expected = [round_half_even(Fraction(sum(w * int(rows[i, column]) for i, w in enumerate(weights)), sum(weights)))
                for column in range(3)]
    assert weighted_mean_round_half_even(rows, weights).tolist() == expected


def test_the_weighted_mean_survives_the_extremes():
    rows = np.array([[2 ** 31 - 1, -(2 ** 31) + 1, 1], [2 ** 31 - 1, -(2 ** 31) + 1, 0]], dtype=np.int64)
    weights = [2 ** 32 - 1, 2 ** 32 - 1]
    assert weighted_mean_round_half_even(rows, weights).tolist() == [2 ** 31 - 1, -(2 ** 31) + 1, 0]


# --- the rules --------------------------------------------------------------------

def test_the_rules_on_a_small_example():
    base = {"w": torch.zeros(4)}
    deltas = [[1, 10, -3, 0.5], [2, 20, -1, 0.5], [3, 30, -2, 1.5], [100, -100, 50, 2.5]]
    updates = [WeightedUpdate(bytes([i]), {"w": torch.tensor(delta)}, 1) for i, delta in enumerate(deltas)]

    def run(rule: AggregationRule) -> list[float]:
        return aggregate_deltas(base, updates, rule)["w"].tolist()

    assert run(AggregationRule("median")) == [2.0, 10.0, -2.0, 0.5]  # the lower of the two middle values
    assert run(AggregationRule("trimmed_mean", trim=1)) == [2.5, 15.0, -1.5, 1.0]
    assert run(AggregationRule("fedavg")) == [26.5, -10.0, 11.0, 1.25]
    weighted = [WeightedUpdate(u.update_hash, u.delta, n) for u, n in zip(updates, [3, 1, 1, 5])]
    assert aggregate_deltas(base, weighted, AggregationRule("fedavg"))["w"].tolist() == pytest.approx(
        [(3 + 2 + 3 + 500) / 10, (30 + 20 + 30 - 500) / 10, (-9 - 1 - 2 + 250) / 10, (1.5 + .5 + 1.5 + 12.5) / 10],
        rel=2 ** -23)


def test_a_trim_larger_than_the_round_shrinks_to_the_median():
    base = {"w": torch.zeros(1)}
    updates = [WeightedUpdate(bytes([i]), {"w": torch.tensor([float(v)])}, 1) for i, v in enumerate([1, 2, 9])]
    assert aggregate_deltas(base, updates, AggregationRule("trimmed_mean", trim=5))["w"].tolist() == [2.0]


def test_no_updates_leave_the_model_unchanged():
    base = base_model(MLP)
    for rule in RULES:
        assert compute_model_hash(aggregate(base.weights, [], rule)) == base.model_hash


@pytest.mark.parametrize("rule", RULES, ids=rule_ids)
def test_aggregation_is_byte_identical_across_runs_thread_counts_and_update_orders(rule):
    base, updates = base_model(MLP).weights, honest_updates()
    previous = torch.get_num_threads()
    hashes = set()
    try:
        for threads, seed in [(1, 0), (2, 1), (1, 2), (2, 3)]:
            torch.set_num_threads(threads)
            shuffled = updates[:]
            random.Random(seed).shuffle(shuffled)
            model = aggregate(base, shuffled, rule)
            hashes.add(compute_model_hash(model))
            assert blake2b_256(encode_tensors(model)) == compute_model_hash(model)
    finally:
        torch.set_num_threads(previous)
    assert len(hashes) == 1


def test_the_three_rules_give_three_different_models():
    base, updates = base_model(MLP).weights, honest_updates()
    assert len({compute_model_hash(aggregate(base, updates, rule)) for rule in RULES}) == 3


def test_robust_rules_resist_one_poisoned_update_better_than_fedavg():
    base, updates = base_model(MLP).weights, honest_updates()
    poisoned = WeightedUpdate(b"\xff" * 32, {name: 100 * t for name, t in updates[0].delta.items()}, 150)
    split = digits_split()

    def distance(first: dict, second: dict) -> float:
        return sum(float((first[name] - second[name]).pow(2).sum()) for name in first) ** 0.5

    def accuracy(model: dict) -> int:
        return evaluate(MLP, model, split.held_out_features, split.held_out_labels).accuracy_ppm

    clean = aggregate(base, updates, AggregationRule("fedavg"))
    shift = {rule.name: distance(aggregate(base, updates + [poisoned], rule), clean) for rule in RULES}
    scores = {rule.name: accuracy(aggregate(base, updates + [poisoned], rule)) for rule in RULES}
    assert shift["trimmed_mean"] < shift["fedavg"] / 10 and shift["median"] < shift["fedavg"] / 10
    assert scores["fedavg"] < 500_000  # one scaled update ruins the plain mean
    assert scores["trimmed_mean"] > scores["fedavg"] + 250_000 and scores["median"] > scores["fedavg"] + 250_000


def test_the_same_update_twice_is_refused():
    update = honest_updates()[0]
    with pytest.raises(AggregationError) as raised:
        aggregate(base_model(MLP).weights, [update, update], AggregationRule("median"))
    assert raised.value.code == "aggregation_duplicate"


@pytest.mark.parametrize("weight", [0, -1, 2 ** 32, 1.5])
def test_fedavg_weights_must_be_u32_sample_counts(weight):
    update = honest_updates()[0]
    with pytest.raises(AggregationError) as raised:
        aggregate(base_model(MLP).weights, [WeightedUpdate(update.update_hash, update.delta, weight)],
                  AggregationRule("fedavg"))
    assert raised.value.code == "aggregation_bad_weight"


@pytest.mark.parametrize("delta", [
    {"w": torch.tensor([1.0, 200.0])}, {"w": torch.tensor([1.0, float("nan")])}, {"w": torch.zeros(3)},
    {"v": torch.zeros(2)}, {"w": torch.zeros(2, dtype=torch.int64)},
], ids=["beyond the fixed-point range", "nan", "shape", "name", "dtype"])
def test_an_update_that_does_not_fit_the_base_is_refused(delta):
    with pytest.raises(AggregationError) as raised:
        aggregate({"w": torch.zeros(2)}, [WeightedUpdate(b"x", delta, 1)], AggregationRule("median"))
    assert raised.value.code == "aggregation_bad_update"


@pytest.mark.parametrize("name, trim", [("mean", 0), ("median", 1), ("trimmed_mean", -1)])
def test_bad_rules_are_refused(name, trim):
    with pytest.raises(AggregationError):
        AggregationRule(name, trim)
