"""Exact scoring as a specification: integer evaluation gives the same bits whatever the threads,
batch sizes or order of evaluation, on the updates that broke float scoring (exact logit ties and
huge losses), and agrees with the float forward pass on ordinary models within a stated bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from consensus.useful_work.data import load_dataset, split_held_out
from consensus.useful_work.evaluate import compute_float_scores, compute_scores, evaluate
from consensus.useful_work.exact import log_sum_exp
from consensus.useful_work.fixed_point import norm_to_fixed, to_fixed
from consensus.useful_work.models import build_model, state_of
from consensus.useful_work.train import train_local
from consensus.useful_work.updates import UpdateLimits, check_update
from tests.helpers.useful_work import CNN, LOGISTIC, MLP, base_model, digits_split

NORM_BOUND = UpdateLimits(1 << 20, norm_to_fixed(8.0))  # the demo's bound on an update's L2 norm


def tie_forcing_update(weights) -> dict[str, torch.Tensor]:
    """Copy class 3's output row and bias into class 8's: every sample's logits 3 and 8 tie exactly."""
    delta = {name: torch.zeros_like(tensor) for name, tensor in weights.items()}
    delta["output_weight"][8] = weights["output_weight"][3] - weights["output_weight"][8]
    delta["output_bias"][8] = weights["output_bias"][3] - weights["output_bias"][8]
    return delta


def huge_loss_update(weights) -> dict[str, torch.Tensor]:
    """Point class 0's output row (norm 7.9, inside the bound) along the mean hidden activation: every
    logit 0 jumps by hundreds, a confidently wrong model with a huge loss."""
    split = digits_split()
    hidden = torch.relu(split.train_features @ weights["hidden_weight"].T + weights["hidden_bias"]).mean(dim=0)
    delta = {name: torch.zeros_like(tensor) for name, tensor in weights.items()}
    delta["output_weight"][0] = hidden / hidden.norm() * 7.9
    return delta


def apply(weights, delta):
    return {name: weights[name] + delta[name] for name in weights}


def scores_every_way(spec, weights, features, labels):
    """The scores under 1 and 2 threads, batch sizes 1, 7 and 512, and reversed and shuffled order."""
    results = set()
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for batch_size in (1, 7, 512):
                results.add(compute_scores(spec, weights, features, labels, batch_size=batch_size))
    finally:
        torch.set_num_threads(previous)
    shuffled = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(1))
    for order in (torch.arange(labels.shape[0] - 1, -1, -1), shuffled):
        results.add(compute_scores(spec, weights, features[order], labels[order]))
    return results


@pytest.mark.parametrize("make_update", [tie_forcing_update, huge_loss_update], ids=["ties", "huge_loss"])
def test_adversarial_updates_score_identically_under_any_threads_batches_and_order(make_update):
    weights = base_model(MLP).weights
    delta = make_update(weights)
    check_update(weights, delta, NORM_BOUND)  # inside the demo's norm bound
    split = digits_split()
    results = scores_every_way(MLP, apply(weights, delta), split.held_out_features, split.held_out_labels)
    assert len(results) == 1


def test_the_tie_forcing_update_really_makes_ties_and_they_go_to_the_lower_class():
    weights = apply(base_model(MLP).weights, tie_forcing_update(base_model(MLP).weights))
    split = digits_split()
    threes = split.held_out_labels == 3
    eights = split.held_out_labels == 8
    x, y = split.held_out_features, split.held_out_labels
    # every 8 whose best logit is the tied pair is predicted 3 (the lower class): no 8 is right by a tie
    only_threes = evaluate(MLP, weights, x[threes], y[threes])
    only_eights = evaluate(MLP, weights, x[eights], y[eights])
    assert only_threes.accuracy_ppm > 500_000 and only_eights.accuracy_ppm == 0


def test_the_huge_loss_update_is_scored_exactly_and_large():
    weights = apply(base_model(MLP).weights, huge_loss_update(base_model(MLP).weights))
    split = digits_split()
    scores = evaluate(MLP, weights, split.held_out_features, split.held_out_labels)
    assert scores.loss_ppm > 20_000_000  # over 20 nats: far from the base's ~0.8


def trained(spec, features, labels, epochs):
    initial = state_of(build_model(spec, 0))
    delta = train_local(spec, initial, features, labels, epochs=epochs, batch_size=32, lr=0.1, seed=0)
    return apply(initial, delta)


@pytest.mark.parametrize("spec", [MLP, CNN, LOGISTIC], ids=lambda spec: spec.architecture)
def test_float_and_integer_evaluation_agree_on_ordinary_models(spec):
    """The stated bound: accuracy within one sample of the float32 forward pass, loss within 100 ppm
    (the quantization moves a logit by about 2**-17 per layer and weight magnitude)."""
    if spec is LOGISTIC:
        split = split_held_out(*load_dataset("breast_cancer"), fraction=0.2, seed=0)
    else:
        split = digits_split()
    x, y = split.held_out_features, split.held_out_labels
    for epochs in (0, 1, 5):
        weights = trained(spec, split.train_features, split.train_labels, epochs) if epochs \
            else state_of(build_model(spec, 0))
        exact, floating = evaluate(spec, weights, x, y), compute_float_scores(spec, weights, x, y)
        assert abs(exact.accuracy_ppm - floating.accuracy_ppm) <= 1_000_000 // y.shape[0] + 1
        assert abs(exact.loss_ppm - floating.loss_ppm) <= 100


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-(40 << 16), 0), min_size=2, max_size=12), min_size=1, max_size=8))
def test_the_fixed_point_log_sum_exp_is_within_1e_8_nats_of_float64(rows):
    width = max(len(row) for row in rows)
    shifted = np.array([row + [-(40 << 16)] * (width - len(row)) for row in rows], dtype=np.int64)
    shifted[:, 0] = 0  # rows are logits minus their maximum
    exact = log_sum_exp(shifted) / 2 ** 30
    reference = np.log(np.exp(shifted / 2 ** 16).sum(axis=1))
    assert np.abs(exact - reference).max() < 1e-8


def test_a_model_with_nan_or_enormous_weights_scores_without_error_and_deterministically():
    weights = dict(base_model(MLP).weights)
    weights["hidden_weight"] = weights["hidden_weight"].clone()
    weights["hidden_weight"][0, 0] = float("nan")
    weights["output_weight"] = weights["output_weight"] * 1e30
    split = digits_split()
    results = scores_every_way(MLP, weights, split.held_out_features, split.held_out_labels)
    assert len(results) == 1


def test_weights_quantize_with_the_fixed_point_of_updates():
    values = np.array([0.5, -1.25, 2 ** -25, 3 * 2 ** -25], dtype=np.float32)
    assert to_fixed(values).tolist() == [1 << 23, -(5 << 22), 0, 2]  # round half to even
