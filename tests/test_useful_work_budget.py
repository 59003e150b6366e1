"""The compute budget and O(n) leave-one-out as a specification: a task that would cost validators
more than the genesis budget is refused, a block's reports weigh their useful work, and fedavg's
leave-one-out aggregates from exact sums are byte-identical to recomputing each one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from consensus.useful_work import AggregationRule, WeightedUpdate, compute_model_hash
from consensus.useful_work.aggregate import aggregate, fedavg_without_each
from consensus.useful_work.fixed_point import unflatten_float, weighted_mean_round_half_even
from consensus.useful_work.models import ModelSpec as EngineSpec, parameter_count as engine_parameter_count
from consensus.useful_work.verifier import Submission, UsefulWorkVerifier
from runtime import api as runtime_api
from runtime.pallets import training
from runtime.pallets.training import ModelSpec, RoundReport
from runtime.validity import InvalidTransaction
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis
from tests.helpers.training import H, commit, outcome
from tests.helpers.training import task_config as config
from tests.helpers.useful_work import MLP, base_model, digits_held_out, rules, SEED, submissions

BOB, EVE = DEV_KEYS["Bob"], DEV_KEYS["Eve"]


# --- leave-one-out in O(n P) ---------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(-(1 << 31) + 1, (1 << 31) - 1), min_size=5, max_size=5), min_size=n, max_size=n),
    st.lists(st.integers(1, (1 << 32) - 1), min_size=n, max_size=n))))
def test_fedavg_without_each_equals_the_mean_with_that_row_zeroed(rows_and_weights):
    rows, weights = rows_and_weights
    stacked = np.array(rows, dtype=np.int64)
    combined, each = fedavg_without_each(list(stacked), weights)
    assert combined.tolist() == weighted_mean_round_half_even(stacked, weights).tolist()
    for index, fast in enumerate(each):
        zeroed = stacked.copy()
        zeroed[index] = 0
        assert fast.tolist() == weighted_mean_round_half_even(zeroed, weights).tolist()


def test_a_rounds_leave_one_out_models_have_the_bytes_of_the_slow_definition():
    """measure_round (fast path) against aggregate_round(zeroed=...) (each aggregate recomputed)."""
    fast, slow = UsefulWorkVerifier(), UsefulWorkVerifier()
    # leave-one-out weighs every sound update the same (weight 1), whatever samples it declares
    round_submissions = [Submission(s.update_hash, s.update_blob, 1) for s in submissions()]
    measured = fast.measure_round(rules(), base_model(MLP), round_submissions, digits_held_out(), SEED)
    everything = [s.update_hash for s in round_submissions if s.update_hash in measured.without]
    assert len(everything) >= 3
    for update_hash in everything:
        outcome = slow.aggregate_round(rules(), base_model(MLP), round_submissions, everything, digits_held_out(),
                                       SEED, zeroed=update_hash)
        assert measured.without[update_hash] == outcome.scores
    model_hashes = set()
    for index, update_hash in enumerate(sorted(everything)):  # the same bytes, by hash
        updates = [WeightedUpdate(s.update_hash, slow._delta(rules(), base_model(MLP), s), s.num_samples)
                   for s in round_submissions if s.update_hash in everything]
        rows = [slow._fixed(rules(), base_model(MLP), s) for s in sorted(round_submissions,
                                                                         key=lambda s: s.update_hash)
                if s.update_hash in everything]
        _, each = fedavg_without_each(rows, [u.num_samples for u in sorted(updates, key=lambda u: u.update_hash)])
        fast_model = {name: base_model(MLP).weights[name] + delta for name, delta in
                      unflatten_float(list(each)[index], base_model(MLP).weights).items()}
        zeroed = [dataclasses.replace(u, delta={n: t * 0 for n, t in u.delta.items()}, fixed=None)
                  if u.update_hash == update_hash else u for u in updates]
        slow_model = aggregate(base_model(MLP).weights, zeroed, AggregationRule("fedavg"))
        assert compute_model_hash(fast_model) == compute_model_hash(slow_model)
        model_hashes.add(compute_model_hash(fast_model))
    assert len(model_hashes) == len(everything)


# --- the budget ------------------------------------------------------------------------


def test_the_runtimes_parameter_count_matches_the_model_registry():
    for architecture, params in [("mlp", (64, 32, 10)), ("small_cnn", (64, 4, 10)), ("small_cnn", (256, 8, 10)),
                                 ("logistic_regression", (30, 2)), ("mlp", (1024, 1000, 10))]:
        assert training.parameter_count(ModelSpec(architecture, params)) == \
            engine_parameter_count(EngineSpec.from_params(architecture, params))
    assert training.parameter_count(ModelSpec("transformer", (1, 2))) == 0


def test_task_work_is_parameters_times_updates_times_subset_and_robust_rules_pay_for_sorting():
    fedavg = config(spec=ModelSpec("mlp", (64, 32, 10)), max_updates=10, held_out_subset=100)
    assert training.task_work(fedavg) == 2410 * 12 * 100
    median = dataclasses.replace(fedavg, aggregation=2)
    assert training.task_work(median) == 2410 * 12 * 100 + 2410 * 10 * 10
    assert training.round_work_weight(fedavg, 3) == 2410 * 5 * 100 // 1000


def test_a_task_over_the_compute_budget_is_refused_with_a_named_error(chain):
    budget = chain.config.parameters.max_task_work
    huge = config(spec=ModelSpec("mlp", (4096, 4096, 10)), max_updates=256, held_out_subset=1024)
    assert training.task_work(huge) > budget
    built = chain.author_block([chain.sign(EVE, training.create_task(huge))])
    assert outcome(built).error.name == "TaskTooCostly"
    assert training.NextTaskId.get(chain.overlay()) == 0 and chain.account(EVE.public).reserved == 0
    fewer = dataclasses.replace(huge, max_updates=8, held_out_subset=64)
    assert training.task_work(fewer) <= budget
    assert outcome(chain.author_block([chain.sign(EVE, training.create_task(fewer))])).success


@pytest.mark.parametrize("changes", [dict(max_updates=0), dict(max_updates=257), dict(server_lr_ppm=0),
                                     dict(server_momentum_ppm=1_000_000), dict(spec=ModelSpec("mlp", (1, 2)))])
def test_bad_budget_or_server_optimizer_fields_are_invalid_task_configs(chain, changes):
    built = chain.author_block([chain.sign(EVE, training.create_task(config(**changes)))])
    assert outcome(built).error.name == "InvalidTaskConfig"


def test_a_round_takes_at_most_the_tasks_max_updates(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config(max_updates=1)))])
    built = chain.author_block([commit(chain, BOB, H("bob")), commit(chain, EVE, H("eve"))])
    assert [o.success for o in built.outcomes[-2:]] == [True, False]
    assert built.outcomes[-1].error.name == "RoundFull"


def test_genesis_refuses_a_budget_that_does_not_fit_in_half_a_block():
    from runtime.pallets import system
    params = dev_genesis().parameters
    with pytest.raises(system.InvalidParameters, match="max_task_work"):
        system.check_parameters(dataclasses.replace(params, max_task_work=params.block_weight_limit * 1000))


def test_reports_that_weigh_more_than_the_block_are_refused(tmp_path):
    """Each of four due rounds weighs about a third of the block: two fit in one block, four do not."""
    genesis = dev_genesis()
    limit = 1_300_000
    big = ModelSpec("mlp", (1024, 1024, 10))  # 1,059,850 parameters
    task = config(spec=big, max_updates=1, held_out_subset=200, commit_blocks=1, reveal_blocks=1, rounds=1)
    params = dataclasses.replace(genesis.parameters, block_weight_limit=limit,
                                 max_task_work=training.task_work(task))
    assert training.round_work_weight(task, 0) > limit * 3 // 10
    chain = TestChain(tmp_path / "db", dataclasses.replace(genesis, parameters=params))
    try:
        for _ in range(4):
            assert outcome(chain.author_block([chain.sign(EVE, training.create_task(task))])).success
        chain.author_block()
        chain.author_block()

        def empty_report(task_id):
            state = chain.overlay()
            current = training.Tasks.get(state, task_id)
            seed = runtime_api.round_seed(state, current)
            return RoundReport(task_id, 0, seed, training.Score(0, 0), None, (), None, None)

        with pytest.raises(InvalidTransaction, match="weigh"):
            chain.build(useful_work=tuple(empty_report(i) for i in range(4)))
        assert all(o.success for o in chain.author_block(useful_work=(empty_report(0), empty_report(1))).outcomes)
    finally:
        chain.close()
