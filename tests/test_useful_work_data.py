"""Data sets, splits, non-IID shards, the consensus-critical held-out subset, and held-out secrecy."""

from __future__ import annotations

import hashlib

import pytest
import torch

from consensus.useful_work import HeldOutError, decode_tensors
from consensus.useful_work.data import held_out_subset, load_dataset, shard_non_iid, split_held_out
from consensus.useful_work.errors import TensorFormatError
from consensus.useful_work.secrecy import encrypt_held_out, open_held_out
from runtime.crypto import Keypair
from tests.helpers.useful_work import digits_shards, digits_split

VALIDATORS = [Keypair.from_seed(bytes([index]) * 32) for index in range(3)]
TRAINER = Keypair.from_seed(b"\xee" * 32)


@pytest.mark.parametrize("name, shape, classes", [("digits", (1797, 64), 10), ("breast_cancer", (569, 30), 2)])
def test_the_shipped_data_sets_load_as_float32_features_and_int64_labels(name, shape, classes):
    features, labels = load_dataset(name)
    assert tuple(features.shape) == shape and features.dtype == torch.float32 and labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == list(range(classes))
    assert torch.isfinite(features).all()


def test_the_held_out_split_is_disjoint_complete_and_reproducible():
    features, labels = load_dataset("digits")
    first, second = split_held_out(features, labels, 0.2, seed=3), split_held_out(features, labels, 0.2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert first.held_out_labels.shape[0] == round(1797 * 0.2)
    rows = {tuple(row.tolist()) + (int(label),) for row, label in zip(first.train_features, first.train_labels)}
    held = [tuple(row.tolist()) + (int(label),) for row, label in zip(first.held_out_features, first.held_out_labels)]
    assert first.train_labels.shape[0] + len(held) == 1797
    assert sum(row in rows for row in held) <= 5  # digits has a few duplicate images, nothing more


def test_non_iid_shards_cover_every_example_once_and_each_mostly_sees_few_classes():
    split = digits_split()
    shards = digits_shards()
    assert sum(labels.shape[0] for _, labels in shards) == split.train_labels.shape[0]
    for _, labels in shards:
        counts = torch.bincount(labels, minlength=10).sort(descending=True).values
        assert counts[:3].sum() >= 0.9 * labels.shape[0]  # two chunks can straddle a label boundary
    again = shard_non_iid(split.train_features, split.train_labels, 5, 2, seed=0)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(again, shards))


def test_mixed_shards_keep_every_example_once_and_see_every_class_a_little():
    split = digits_split()
    shards = shard_non_iid(split.train_features, split.train_labels, 5, 2, seed=0, iid_fraction=0.2)
    rows = sorted(tuple(row.tolist()) for features, _ in shards for row in features)
    assert rows == sorted(tuple(row.tolist()) for row in split.train_features)
    for _, labels in shards:
        counts = torch.bincount(labels, minlength=10).sort(descending=True).values
        assert 0.7 * labels.shape[0] <= counts[:3].sum() < 0.95 * labels.shape[0]
        assert (counts > 0).sum() >= 8  # the pooled fifth brings most other classes
    with pytest.raises(ValueError):
        shard_non_iid(split.train_features, split.train_labels, 5, 2, seed=0, iid_fraction=1.5)


def test_the_held_out_subset_is_the_same_everywhere_and_moves_with_the_seed():
    subset = held_out_subset(360, b"\x01" * 32, 8)
    # Pinned: every validator must draw exactly these; a change here is a consensus change.
    assert subset.tolist() == held_out_subset(360, b"\x01" * 32, 8).tolist() == PINNED_SUBSET
    other = held_out_subset(360, b"\x02" * 32, 8)
    assert other.tolist() != subset.tolist()
    large = held_out_subset(360, b"\x01" * 32, 200)
    assert large.tolist() == sorted(set(large.tolist())) and 0 <= large.min() and large.max() < 360
    assert set(subset.tolist()) <= set(large.tolist())  # a larger subset extends a smaller one
    assert held_out_subset(10, b"s", 50).tolist() == list(range(10))


PINNED_SUBSET = [45, 71, 92, 220, 232, 266, 294, 308]


def test_the_held_out_subset_follows_its_documented_rule():
    seed = b"block hash"
    def rank(index: int) -> bytes:
        message = b"gradchain/held-out-subset/v1" + len(seed).to_bytes(4, "little") + seed + index.to_bytes(4, "little")
        return hashlib.blake2b(message, digest_size=8).digest()
    expected = sorted(sorted(range(50), key=lambda index: (rank(index), index))[:7])
    assert held_out_subset(50, seed, 7).tolist() == expected


def test_held_out_data_opens_for_each_validator_and_for_no_one_else():
    split = digits_split()
    ciphertext, sealed = encrypt_held_out(split.held_out_features, split.held_out_labels,
                                          [validator.public for validator in VALIDATORS])
    assert set(sealed) == {validator.public for validator in VALIDATORS}
    for validator in VALIDATORS:
        features, labels = open_held_out(ciphertext, sealed[validator.public], validator)
        assert torch.equal(features, split.held_out_features) and torch.equal(labels, split.held_out_labels)
    with pytest.raises(HeldOutError) as raised:
        open_held_out(ciphertext, sealed[VALIDATORS[0].public], TRAINER)  # a trainer with someone's sealed key
    assert raised.value.code == "held_out_not_sealed_to_us"
    with pytest.raises(HeldOutError):
        open_held_out(ciphertext, sealed[VALIDATORS[0].public], VALIDATORS[1])  # another validator's copy
    with pytest.raises(TensorFormatError):  # the ciphertext itself reveals nothing readable
        decode_tensors(ciphertext, max_bytes=len(ciphertext), max_tensors=2, max_elements=len(ciphertext))


def test_a_tampered_ciphertext_or_a_bad_public_key_is_refused():
    split = digits_split()
    ciphertext, sealed = encrypt_held_out(split.held_out_features, split.held_out_labels, [VALIDATORS[0].public])
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(HeldOutError) as raised:
        open_held_out(tampered, sealed[VALIDATORS[0].public], VALIDATORS[0])
    assert raised.value.code == "held_out_corrupt"
    with pytest.raises(HeldOutError) as raised:
        encrypt_held_out(split.held_out_features, split.held_out_labels, [b"\x00" * 31])
    assert raised.value.code == "held_out_bad_public_key"


def test_each_encryption_uses_a_fresh_key():
    split = digits_split()
    first, _ = encrypt_held_out(split.held_out_features, split.held_out_labels, [VALIDATORS[0].public])
    second, _ = encrypt_held_out(split.held_out_features, split.held_out_labels, [VALIDATORS[0].public])
    assert first != second
