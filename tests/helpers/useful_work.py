"""Shared builders for the useful-work tests: a digits task, trained updates, rules (no tests here)."""

from __future__ import annotations

from functools import lru_cache

import torch

from consensus.useful_work import (
    AggregationRule, HeldOutSet, ModelSpec, ModelVersion, Submission, TaskRules, UpdateLimits, build_model,
    encode_tensors, state_of,
)
from consensus.useful_work.data import HeldOutSplit, load_dataset, shard_non_iid, split_held_out
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.train import train_local
from runtime.pallets import training
from runtime.pallets.training import ModelSpec as ChainModelSpec
from runtime.pallets.training import SealedKey, TaskConfig

MLP = ModelSpec("mlp", input_dim=64, hidden=32, classes=10)
CNN = ModelSpec("small_cnn", input_dim=64, channels=4, classes=10)
LOGISTIC = ModelSpec("logistic_regression", input_dim=30, classes=2)
SEED = b"\x07" * 32  # a round's subset seed (the chain uses a block hash)


@lru_cache(maxsize=None)
def digits_split() -> HeldOutSplit:
    return split_held_out(*load_dataset("digits"), fraction=0.2, seed=0)


@lru_cache(maxsize=None)
def digits_shards(shards: int = 5) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    split = digits_split()
    return tuple(shard_non_iid(split.train_features, split.train_labels, shards, classes_per_shard=2, seed=0))


def digits_held_out() -> HeldOutSet:
    split = digits_split()
    return HeldOutSet.from_tensors(split.held_out_features, split.held_out_labels)


def rules(spec: ModelSpec = MLP, aggregation: str = "fedavg", trim: int = 0, subset: int = 200,
          max_norm: float = 50.0) -> TaskRules:
    return TaskRules(spec, UpdateLimits(max_update_bytes=1 << 20, max_norm_fixed=norm_to_fixed(max_norm)),
                     AggregationRule(aggregation, trim), held_out_subset_size=subset)


@lru_cache(maxsize=None)
def base_model(spec: ModelSpec = MLP) -> ModelVersion:
    """A round's base: a fresh model warmed up on 300 training examples (about 80% accurate for the MLP)."""
    initial = state_of(build_model(spec, 0))
    split = digits_split()
    warm_up = train_local(spec, initial, split.train_features[:300], split.train_labels[:300], epochs=5,
                          batch_size=32, lr=0.3, seed=0)
    return ModelVersion.from_weights(spec, {name: initial[name] + warm_up[name] for name in initial})


@lru_cache(maxsize=None)
def trained_deltas(spec: ModelSpec = MLP, lr: float = 0.1) -> tuple[dict[str, torch.Tensor], ...]:
    """One honest update per non-IID digits shard: one epoch from `base_model(spec)`."""
    return tuple(train_local(spec, base_model(spec).weights, x, y, epochs=1, batch_size=32, lr=lr, seed=i)
                 for i, (x, y) in enumerate(digits_shards()))


def submissions(spec: ModelSpec = MLP) -> list[Submission]:
    """A round's honest submissions. With this small step some beat the base alone and some do not:
    a step on two classes often costs accuracy on the other eight, although the average helps."""
    return [Submission.of(encode_tensors(delta), len(y))
            for delta, (_, y) in zip(trained_deltas(spec, lr=0.01), digits_shards())]


# One round's task for the acceptance-rule specifications (sub-bar bound, free riders): the digits MLP,
# loss as the metric, four honest trainers, the smallest minimum (1 ppm) and a generous update norm.
ROUND_HONEST = 4
ROUND_MAX_NORM = 50.0
ROUND_CONFIG = TaskConfig(spec=ChainModelSpec("mlp", (64, 32, 10)), initial_model=base_model(MLP).model_hash,
                          metric=training.METRIC_LOSS, held_out=b"\0" * 32, held_out_size=1, held_out_subset=200,
                          sealed_keys=(SealedKey(b"\0" * 32, b"k"),), reward_per_round=10**12, rounds=2,
                          commit_blocks=2, reveal_blocks=2, min_improvement_ppm=1, min_relative_ppm=300_000,
                          max_update_bytes=1 << 20, max_update_norm=norm_to_fixed(ROUND_MAX_NORM), bond=10**11,
                          aggregation=0, trim=0)
