"""The split of a round's reward as a specification: trainers' rewards are whole multiples of the
round's reward unit (they read as round amounts), the validators get the rest, and all rounding
dust lands in one stated place: the share of the author of the block that closes the round."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.context import BlockContext
from runtime.hashing import blake2b_256
from runtime.pallets import training, training_rewards, validators
from runtime.pallets.training import ModelSpec, SealedKey, Task, TaskConfig
from runtime.state import EmptyBackend, Overlay

GRAD = 10**12


def account(n: int) -> bytes:
    return blake2b_256(b"account-%d" % n)


def context(validator_count: int, author: int) -> BlockContext:
    state = Overlay(EmptyBackend())
    validators.Validators.put(state, tuple(validators.Validator(account(v), GRAD) for v in range(validator_count)))
    return BlockContext(state, 10, bytes(32), account(author), 10, None, bytes(32))


def split(ctx: BlockContext, task: Task, gains: dict[bytes, int]):
    """The round close's split of a round that pays its reward (the pool permitting)."""
    return training_rewards.split_rewards(ctx, task, min(task.config.reward_per_round, task.remaining_pool), gains)


def task(reward_per_round: int, remaining_pool: int | None = None) -> Task:
    config = TaskConfig(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=bytes(32), metric=training.METRIC_LOSS,
                        held_out=bytes(32), held_out_size=300, held_out_subset=100,
                        sealed_keys=(SealedKey(account(0), b"k" * 80),), reward_per_round=reward_per_round,
                        rounds=2, commit_blocks=3, reveal_blocks=3, min_improvement_ppm=1_000, min_relative_ppm=0,
                        max_update_bytes=10**6, max_update_norm=2**26, bond=GRAD, aggregation=0, trim=0)
    pool = reward_per_round * 2 if remaining_pool is None else remaining_pool
    return Task(account(99), config, 0, 0, bytes(32), None, pool, training.STATUS_ACTIVE)


def test_three_equal_contributions_of_1000_grad_pay_round_amounts_and_the_dust_to_the_author():
    gains = {blake2b_256(b"u%d" % i): 333_333 for i in range(3)}
    rewards, shares = split(context(1, author=0), task(1000 * GRAD), gains)
    unit = training_rewards.reward_unit(1000 * GRAD)
    assert unit == 10**9  # a thousandth of a GRAD: a millionth of the round's reward
    assert set(rewards.values()) == {300 * GRAD}  # not 299.999999999999... each
    assert shares == {account(0): 100 * GRAD}
    assert sum(rewards.values()) + sum(shares.values()) == 1000 * GRAD


def test_uneven_contributions_round_down_to_the_unit_and_the_author_takes_the_dust():
    gains = {b"a" * 32: 2, b"b" * 32: 1}  # 600 GRAD and 300 GRAD of a 900 GRAD trainers' pot: exact
    rewards, _ = split(context(3, author=1), task(1000 * GRAD), {b"c" * 32: 1, **gains})
    assert rewards == {b"a" * 32: 450 * GRAD, b"b" * 32: 225 * GRAD, b"c" * 32: 225 * GRAD}
    odd = {b"a" * 32: 1, b"b" * 32: 1, b"c" * 32: 1, b"d" * 32: 4}  # sevenths of 900 GRAD
    rewards, shares = split(context(3, author=1), task(1000 * GRAD), odd)
    assert rewards[b"a" * 32] == 128_571_000_000_000  # 128.571 GRAD (128.571428... rounded down)
    assert rewards[b"d" * 32] == 514_285_000_000_000
    rest = 1000 * GRAD - sum(rewards.values())
    each = rest // 3 // 10**9 * 10**9
    assert shares[account(0)] == shares[account(2)] == each
    assert shares[account(1)] == rest - 2 * each  # the author: the one place dust goes


def test_no_gains_pay_nothing_and_a_pool_smaller_than_the_reward_pays_only_the_pool():
    assert split(context(1, 0), task(1000 * GRAD), {}) == ({}, {})
    rewards, shares = split(context(2, 0), task(1000 * GRAD, remaining_pool=7 * GRAD),
                                              {b"a" * 32: 1})
    assert sum(rewards.values()) + sum(shares.values()) == 7 * GRAD


@settings(max_examples=300, deadline=None)
@given(pot=st.integers(1, 10**22), gains=st.lists(st.integers(1, 10**7), min_size=1, max_size=12),
       validator_count=st.integers(1, 9), author=st.integers(0, 12))
def test_the_split_pays_exactly_the_round_reward_in_whole_units_with_dust_only_at_the_author(
        pot, gains, validator_count, author):
    by_update = {blake2b_256(b"%d" % i): gain for i, gain in enumerate(gains)}
    ctx = context(validator_count, author)
    rewards, shares = split(ctx, task(pot), by_update)
    unit = training_rewards.reward_unit(pot)
    assert unit * 10**6 <= max(pot, 10**6) and (unit == 1 or unit * 10**7 > pot)
    assert sum(rewards.values()) + sum(shares.values()) == pot  # nothing lost, nothing made
    trainer_pot = pot - pot * training.VALIDATOR_SHARE_PPM // 1_000_000
    total = sum(gains)
    for update, gain in by_update.items():
        exact = trainer_pot * gain // total
        assert rewards[update] % unit == 0 and exact - unit < rewards[update] <= exact
    dust_to = ctx.author if author < validator_count else account(0)
    others = {who: share for who, share in shares.items() if who != dust_to}
    assert all(share % unit == 0 for share in others.values()) and len(set(others.values())) <= 1
    assert set(shares) <= {account(v) for v in range(validator_count)}
