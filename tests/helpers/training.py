"""Builders for the training pallet's tests on a TestChain: a task config, commits, outcomes (no tests here)."""

from __future__ import annotations

from runtime.hashing import blake2b_256
from runtime.pallets import training
from runtime.pallets.training import ModelSpec, SealedKey, TaskConfig
from tests.helpers.chain import DEV_KEYS

ALICE = DEV_KEYS["Alice"]
REWARD, BOND = 10**12, 10**11


def H(text: str) -> bytes:
    return blake2b_256(text.encode())


def task_config(**changes) -> TaskConfig:
    """A two-round MLP task whose held-out key is sealed to Alice; `changes` replace any field."""
    values = dict(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=H("model-0"), metric=training.METRIC_LOSS,
                  held_out=H("held-out"), held_out_size=300, held_out_subset=100,
                  sealed_keys=(SealedKey(ALICE.public, b"k" * 80),), reward_per_round=REWARD, rounds=2,
                  commit_blocks=3, reveal_blocks=3, min_improvement_ppm=1_000, min_relative_ppm=0, max_update_bytes=10**6,
                  max_update_norm=2**26, bond=BOND, aggregation=0, trim=0)
    values.update(changes)
    return TaskConfig(**values)


def outcome(built):
    """The outcome of a built block's last extrinsic."""
    return built.outcomes[-1]


def commit(chain, who, update, salt=b"\x01" * 32, round=0):
    """`who`'s signed commitment to `update` in task 0."""
    return chain.sign(who, training.commit_update(0, round, training.update_commitment(update, who.public, salt)))
