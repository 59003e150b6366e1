"""FedAvgM in fixed point as a specification: plain settings leave FedAvg's bytes alone, the step is
lr x aggregate + momentum x (base - previous) in exact integers, and the previous model is the one
the task's current model replaced (derived from the chain, so every validator agrees)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from consensus.useful_work import AggregationError, AggregationRule, ModelVersion, WeightedUpdate
from consensus.useful_work.aggregate import (
    ServerOptimizer, aggregate, aggregate_fixed, previous_step, server_step,
)
from consensus.useful_work.fixed_point import unflatten_float
from consensus.useful_work.verifier import Submission, UsefulWorkVerifier
from runtime import api as runtime_api
from runtime.hashing import blake2b_256
from runtime.pallets import training
from runtime.pallets.training import ModelSpec, ModelVersion as ChainModelVersion, Score, Task
from runtime.state import EmptyBackend, Overlay
from tests.helpers.training import task_config as config
from tests.helpers.useful_work import MLP, SEED, base_model, digits_held_out, rules, submissions


def test_plain_settings_leave_the_aggregate_untouched():
    combined = np.array([5, -7, 1 << 30], dtype=np.int64)
    assert server_step(combined, ServerOptimizer(), np.array([9, 9, 9])) is combined


def test_the_step_is_lr_times_the_aggregate_plus_momentum_times_the_last_step_rounded_half_even():
    combined = np.array([3, -3, 1_000_001, 10], dtype=np.int64)
    previous = np.array([1, 1, -2_000_000, (1 << 40)], dtype=np.int64)  # the last is clipped to 2**31 - 1
    step = server_step(combined, ServerOptimizer(lr_ppm=500_000, momentum_ppm=500_000), previous)
    # 1.5 -> 2 (half to even), 0.5 -> 0; -1.5 -> -2, 0.5 -> 0; 500000.5 -> 500000, -1000000; 5, 2**30 - 0.5 -> 2**30
    assert step.tolist() == [2 + 0, -2 + 0, 500_000 - 1_000_000, 5 + (1 << 30)]


@pytest.mark.parametrize("lr,momentum", [(0, 0), (10_000_001, 0), (1_000_000, 1_000_000), (1_000_000, -1)])
def test_a_server_optimizer_out_of_range_is_refused(lr, momentum):
    with pytest.raises(AggregationError) as error:
        ServerOptimizer(lr, momentum)
    assert error.value.code == "aggregation_bad_server_optimizer"


def test_the_candidate_with_momentum_is_base_plus_the_server_step_and_verifies():
    base, held_out = base_model(MLP), digits_held_out()
    previous = ModelVersion.from_weights(MLP, {n: t * 0.9 for n, t in base.weights.items()})
    task = dataclasses.replace(rules(), server=ServerOptimizer(lr_ppm=1_000_000, momentum_ppm=500_000))
    round_submissions = [Submission(s.update_hash, s.update_blob, 1) for s in submissions()]  # as leave-one-out
    verifier = UsefulWorkVerifier()
    measured = verifier.measure_round(task, base, round_submissions, held_out, SEED, previous=previous)
    everything = sorted(measured.without)
    outcome = verifier.aggregate_round(task, base, round_submissions, everything, held_out, SEED, previous=previous)
    updates = [WeightedUpdate(s.update_hash, verifier._delta(task, base, s), s.num_samples)
               for s in round_submissions if s.update_hash in measured.without]
    step = server_step(aggregate_fixed(base.weights, updates, AggregationRule("fedavg")), task.server,
                       previous_step(base.weights, previous.weights))
    expected = {n: base.weights[n] + d for n, d in unflatten_float(step, base.weights).items()}
    assert all(bool((outcome.model.weights[n] == expected[n]).all()) for n in expected)
    assert outcome.scores == measured.candidate
    plain = aggregate(base.weights, updates, AggregationRule("fedavg"))
    assert any(not bool((plain[n] == expected[n]).all()) for n in plain)  # the momentum changed something
    # another validator reproduces it, with the same previous model; without it, it does not
    report = dict(reported_base=measured.base, reported_candidate=measured.candidate,
                  reported_without=dict(measured.without), accepted=everything,
                  reported_aggregate_hash=outcome.model.model_hash, reported_aggregate_score=outcome.scores)
    assert UsefulWorkVerifier().verify_report(task, base, round_submissions, held_out, SEED, previous=previous,
                                              **report).ok
    assert not UsefulWorkVerifier().verify_report(task, base, round_submissions, held_out, SEED, **report).ok


def H(text: str) -> bytes:
    return blake2b_256(text.encode())


def test_the_previous_model_is_the_one_the_current_model_replaced():
    state = Overlay(EmptyBackend())
    task_config = config(spec=ModelSpec("mlp", (64, 32, 10)))
    training.Tasks.insert(state, 0, Task(b"\x01" * 32, task_config, 5, 0, H("model-3"), Score(1, 1), 0,
                                         training.STATUS_ACTIVE))
    assert runtime_api.previous_model(state, 0) is None  # no version adopted yet: the task still has its initial model
    training.ModelVersions.insert(state, (0, 3), ChainModelVersion(H("model-3"), Score(1, 1), 3, ()))
    assert runtime_api.previous_model(state, 0) == task_config.initial_model  # the first adopted replaced the initial
    training.ModelVersions.insert(state, (0, 1), ChainModelVersion(H("model-1"), Score(1, 1), 1, ()))
    assert runtime_api.previous_model(state, 0) == H("model-1")  # rounds 2 and 4 kept their model
