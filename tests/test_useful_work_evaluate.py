"""Evaluation and local training: integer scores, the same on every run, thread count and process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from consensus.useful_work import (
    EvaluationError, Scores, build_model, compute_update, load_state, state_of,
)
from consensus.useful_work.evaluate import deterministic_torch, evaluate
from consensus.useful_work.train import train_local
from tests.helpers.threads import ThreadRunner
from tests.helpers.useful_work import CNN, MLP, base_model, digits_shards, digits_split

ROOT = Path(__file__).resolve().parent.parent


def held_out_scores(spec, weights) -> Scores:
    split = digits_split()
    return evaluate(spec, weights, split.held_out_features, split.held_out_labels)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=lambda spec: spec.architecture)
def test_scores_are_identical_twice_and_with_two_threads_outside(spec):
    weights = base_model(spec).weights
    first = held_out_scores(spec, weights)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert held_out_scores(spec, weights) == first
    finally:
        torch.set_num_threads(previous)
    assert held_out_scores(spec, weights) == first
    assert isinstance(first.accuracy_ppm, int) and isinstance(first.loss_ppm, int)


SUBPROCESS = """
import json, torch
from consensus.useful_work.evaluate import evaluate
from tests.helpers.useful_work import CNN, MLP, base_model, digits_split
torch.set_num_threads(2)
split = digits_split()
print(json.dumps([list(evaluate(spec, base_model(spec).weights, split.held_out_features, split.held_out_labels))
                  for spec in (MLP, CNN)]))
"""


def test_scores_are_identical_in_another_process():
    result = subprocess.run([sys.executable, "-c", SUBPROCESS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    here = [list(held_out_scores(spec, base_model(spec).weights)) for spec in (MLP, CNN)]
    assert json.loads(result.stdout) == here


def test_accuracy_is_correct_times_a_million_over_n_and_loss_is_rounded_ppm():
    weights = {name: torch.zeros_like(t) for name, t in base_model(MLP).weights.items()}
    weights["output_bias"] = torch.tensor([5.0] + [0.0] * 9)  # always predicts class 0
    features, labels = torch.zeros(3, 64), torch.tensor([0, 0, 1])
    scores = evaluate(MLP, weights, features, labels)
    assert scores.accuracy_ppm == 2 * 1_000_000 // 3
    log_partition = torch.logsumexp(torch.tensor([5.0] + [0.0] * 9, dtype=torch.float64), 0).item()
    assert scores.loss_ppm == round((2 * (log_partition - 5.0) + log_partition) / 3 * 1e6)


def test_a_tie_between_logits_goes_to_the_lowest_class():
    weights = {name: torch.zeros_like(t) for name, t in base_model(MLP).weights.items()}  # every logit 0
    assert evaluate(MLP, weights, torch.rand(4, 64), torch.tensor([0, 1, 2, 3])).accuracy_ppm == 250_000


def test_deterministic_torch_restores_the_callers_settings():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with deterministic_torch():
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(previous)


def test_overlapping_users_on_two_threads_leave_the_callers_settings_as_they_were():
    """Thread A enters, B enters, A leaves, B leaves: per-thread save/restore would leave
    deterministic algorithms switched on (B saved A's settings)."""
    previous = torch.get_num_threads()
    a_entered, b_entered, a_left = threading.Event(), threading.Event(), threading.Event()
    b_saw = []

    def second():
        assert a_entered.wait(10), "thread A never entered"
        with deterministic_torch():
            b_entered.set()
            assert a_left.wait(10), "thread A never left"
            b_saw.append(torch.are_deterministic_algorithms_enabled())  # A leaving must not switch it off

    threads = ThreadRunner()
    try:
        torch.set_num_threads(2)
        threads.start(second)
        with deterministic_torch():
            a_entered.set()
            assert b_entered.wait(10), "thread B never entered while A was inside"
        a_left.set()
        threads.join_all(10)  # re-raises a failure of thread B here
        assert b_saw == [True]
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        a_entered.set(), a_left.set()  # never leave thread B waiting
        torch.set_num_threads(previous)


@pytest.mark.parametrize("features, labels, code", [
    (torch.rand(3, 63), torch.tensor([0, 1, 2]), "evaluation_bad_features"),
    (torch.rand(3, 64), torch.tensor([0, 1, 10]), "evaluation_bad_labels"),
    (torch.rand(3, 64), torch.tensor([0, 1, -1]), "evaluation_bad_labels"),
    (torch.rand(3, 64), torch.tensor([0.0, 1.0, 2.0]), "evaluation_bad_labels"),
    (torch.rand(2, 64), torch.tensor([0, 1, 2]), "evaluation_bad_labels"),
    (torch.full((1, 64), float("nan")), torch.tensor([0]), "evaluation_bad_features"),
])
def test_examples_a_model_cannot_score_are_refused(features, labels, code):
    with pytest.raises(EvaluationError) as raised:
        evaluate(MLP, base_model(MLP).weights, features, labels)
    assert raised.value.code == code


def test_a_few_local_epochs_on_one_shard_improve_held_out_accuracy_of_the_mlp():
    base = base_model(MLP).weights
    split = digits_split()
    iid_shard = (split.train_features[300:600], split.train_labels[300:600])  # examples the base never saw
    delta = train_local(MLP, base, *iid_shard, epochs=3, batch_size=32, lr=0.1, seed=0)
    trained = {name: base[name] + delta[name] for name in base}
    before, after = held_out_scores(MLP, base), held_out_scores(MLP, trained)
    assert after.accuracy_ppm > before.accuracy_ppm + 20_000 and after.loss_ppm < before.loss_ppm


def test_a_few_local_epochs_on_one_non_iid_shard_improve_a_fresh_mlp():
    fresh = state_of(build_model(MLP, 0))
    delta = train_local(MLP, fresh, *digits_shards()[0], epochs=3, batch_size=32, lr=0.1, seed=0)
    trained = {name: fresh[name] + delta[name] for name in fresh}
    assert held_out_scores(MLP, trained).accuracy_ppm > held_out_scores(MLP, fresh).accuracy_ppm + 50_000


def test_our_sgd_step_is_torchs_sgd():
    base, (features, labels) = base_model(MLP).weights, digits_shards()[2]
    for momentum in (0.0, 0.9):
        ours = train_local(MLP, base, features[:64], labels[:64], epochs=1, batch_size=64, lr=0.1, seed=0,
                           momentum=momentum)
        model = build_model(MLP, 0)
        load_state(model, base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
        order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
        with deterministic_torch():
            torch.nn.functional.cross_entropy(model(features[:64][order]), labels[:64][order]).backward()
            optimizer.step()
        theirs = compute_update(base, state_of(model))
        assert all(torch.allclose(ours[name], theirs[name], atol=1e-7) for name in ours)


def test_local_training_is_deterministic_given_its_seed():
    base, (features, labels) = base_model(MLP).weights, digits_shards()[1]
    first, second, other = (train_local(MLP, base, features, labels, epochs=1, batch_size=16, lr=0.1, seed=seed)
                            for seed in (5, 5, 6))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
