"""Data for tasks, tests and demos: real data sets that scikit-learn ships (no download).

``digits``         1797 images of 8x8 pixels, 10 classes; pixels scaled to 0..1.
``breast_cancer``  569 samples of 30 features, 2 classes; each feature standardised
                   (mean 0, standard deviation 1 over the whole set).

Two kinds of randomness live here. The task creator's and the trainers' splits
(`split_held_out`, `shard_non_iid`) use numpy's seeded generator: reproducible on
one numpy version, and nobody else needs to reproduce them. `held_out_subset` is
consensus-critical (every validator must score the very same samples), so it uses
no library generator at all: each index is ranked by a blake2b hash of the round
seed and the index, which gives the same subset on every machine and version.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits

DATASETS = ("digits", "breast_cancer")
SUBSET_DOMAIN = b"gradchain/held-out-subset/v1"


class HeldOutSplit(NamedTuple):
    train_features: torch.Tensor
    train_labels: torch.Tensor
    held_out_features: torch.Tensor
    held_out_labels: torch.Tensor


def load_dataset(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 [n, d], labels int64 [n]) of a data set that scikit-learn ships."""
    if name == "digits":
        bunch = load_digits()
        features = bunch.data / 16.0
    elif name == "breast_cancer":
        bunch = load_breast_cancer()
        features = (bunch.data - bunch.data.mean(axis=0)) / bunch.data.std(axis=0)
    else:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return (torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(bunch.target, dtype=np.int64)))


def split_held_out(features: torch.Tensor, labels: torch.Tensor, fraction: float, seed: int) -> HeldOutSplit:
    """A random `fraction` of the examples held out (at least one, and at least one left to train on)."""
    count = labels.shape[0]
    held = min(max(round(count * fraction), 1), count - 1)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(count))
    held_index, train_index = order[:held].sort().values, order[held:].sort().values
    return HeldOutSplit(features[train_index], labels[train_index], features[held_index], labels[held_index])


def shard_non_iid(features: torch.Tensor, labels: torch.Tensor, shards: int, classes_per_shard: int,
                  seed: int, iid_fraction: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split the examples among `shards` trainers so that each mostly sees `classes_per_shard` classes.

    The examples are sorted by label (shuffled within a label), cut into
    shards * classes_per_shard contiguous chunks of near-equal size, and each
    shard gets `classes_per_shard` chunks chosen at random. Then, if
    `iid_fraction` > 0, that fraction of every shard is pooled and dealt out again
    at random, so each trainer also sees a few examples of the other classes
    (the usual "mostly a few classes" of federated benchmarks). Every example
    lands in exactly one shard.
    """
    if shards < 1 or classes_per_shard < 1 or not 0.0 <= iid_fraction <= 1.0:
        raise ValueError("shards and classes_per_shard must be positive and iid_fraction in 0..1")
    generator = np.random.default_rng(seed)
    shuffled = generator.permutation(labels.shape[0])
    by_label = shuffled[np.argsort(labels.numpy()[shuffled], kind="stable")]
    chunks = np.array_split(by_label, shards * classes_per_shard)
    chunk_order = generator.permutation(len(chunks))
    result = []
    for shard in range(shards):
        mine = chunk_order[shard * classes_per_shard:(shard + 1) * classes_per_shard]
        result.append(np.concatenate([chunks[i] for i in mine]))
    if iid_fraction > 0:
        kept, pooled = [], []
        for index in result:
            mixed = generator.permutation(index)
            cut = int(len(index) * iid_fraction)
            pooled.append(mixed[:cut])
            kept.append(mixed[cut:])
        dealt = np.array_split(generator.permutation(np.concatenate(pooled)), shards)
        result = [np.concatenate([mine, extra]) for mine, extra in zip(kept, dealt)]
    shards_out = []
    for index in result:
        index = torch.from_numpy(np.sort(index))
        shards_out.append((features[index], labels[index]))
    return shards_out


def held_out_subset(n: int, round_seed: bytes, size: int) -> torch.Tensor:
    """The ascending indices of `size` of `n` held-out examples, drawn from `round_seed`.

    Index i is ranked by blake2b-64(SUBSET_DOMAIN ++ round_seed ++ i as u32 LE),
    ties by i, and the `size` lowest are taken (all n if size >= n). A seed that
    trainers cannot know when they submit (a block hash after the round closes)
    keeps them from tuning to a fixed held-out set.
    """
    if not isinstance(round_seed, bytes) or not 1 <= n < 1 << 32 or size < 1:
        raise ValueError("held_out_subset needs 1 <= n < 2**32, size >= 1 and a bytes seed")
    prefix = blake2b(SUBSET_DOMAIN + len(round_seed).to_bytes(4, "little") + round_seed, digest_size=8)
    ranks = []
    for index in range(n):
        hasher = prefix.copy()
        hasher.update(index.to_bytes(4, "little"))
        ranks.append((hasher.digest(), index))
    chosen = sorted(index for _, index in sorted(ranks)[:size])
    return torch.tensor(chosen, dtype=torch.int64)
