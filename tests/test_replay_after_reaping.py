"""Replay after reaping, inside the era: a new (or re-created) account's nonce is its position in the
chain, so no transaction signed in an earlier life of the account is ever valid again.

Reaping forgets an account's nonce. Re-created at nonce 0 (or, as in Substrate's block-number
default, at the block number), an account that was emptied and refunded within its transactions'
64-block era would accept them again. The cases here: several transfers in one block then emptied
(the block-number rule fails this one), emptied and refunded in the same block, an immortal transfer,
and a new account created in the finalize hooks.
"""

from __future__ import annotations

import dataclasses

import pytest

from runtime import api as runtime_api
from runtime import crypto
from runtime.context import BlockContext
from runtime.errors import InvalidBlock
from runtime.pallets import system
from runtime.state import EmptyBackend, Overlay
from runtime.types import Era
from runtime.validity import InvalidReason, InvalidTransaction
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis

GRAD = 10**12
ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]
STRIDE = system.NONCE_STRIDE
INHERENTS = 2  # timestamp and slot randomness come first in every block
ERA_PERIOD = 64


def mortal(chain: TestChain) -> dict:
    """A 64-block era born at the best block, as the wallet signs."""
    best = chain.chain.best_header()
    return {"era": Era(best.number, ERA_PERIOD), "birth_hash": best.hash}


def fee_of(chain: TestChain, extrinsic) -> int:
    return runtime_api.query_fee(chain.chain.state_view(chain.chain.best_hash), extrinsic).partial_fee


def emptying_transfer(chain: TestChain, victim: crypto.Keypair, free: int, *, nonce: int, **era):
    """A transfer of everything but less than the existential deposit, fee included: the sender is reaped."""
    dust = dev_genesis().parameters.existential_deposit // 2
    probe = chain.transfer(victim, BOB.public, free - dust, nonce=nonce, **era)
    transfer = chain.transfer(victim, BOB.public, free - fee_of(chain, probe) - dust, nonce=nonce, **era)
    assert fee_of(chain, transfer) == fee_of(chain, probe)
    return transfer


def assert_refused_as_stale(chain: TestChain, extrinsic) -> None:
    """Refused by the pool's check and left out of a block, with nothing changed."""
    with pytest.raises(InvalidTransaction) as refused:
        chain.validate(extrinsic)
    assert refused.value.reason is InvalidReason.STALE and refused.value.reason.value == 3
    root = chain.state_root()
    built = chain.author_block([extrinsic])
    assert [x for x, _ in built.invalid] == [extrinsic]
    assert [e.reason for _, e in built.invalid] == [InvalidReason.STALE]
    assert extrinsic not in built.block.extrinsics and chain.state_root() != root  # only the block's inherents ran


def test_a_new_account_starts_at_its_position_in_the_chain(chain):
    victim = crypto.keypair_from_uri("//NewAccount")
    built = chain.author_block([chain.transfer(ALICE, BOB.public, GRAD, nonce=0),
                                chain.transfer(ALICE, victim.public, GRAD, nonce=1)])
    number = built.block.header.number
    assert chain.nonce(victim.public) == number * STRIDE + INHERENTS + 1 + 1  # created by the block's 4th extrinsic
    assert chain.nonce(ALICE.public) == 2  # a genesis account starts at 0 (block 0, position 0)


def test_transfers_of_one_block_cannot_be_replayed_after_the_account_is_emptied_and_refunded(chain):
    victim = crypto.keypair_from_uri("//Burst")
    chain.author_block([chain.transfer(ALICE, victim.public, GRAD)])
    first = chain.nonce(victim.public)
    era = mortal(chain)
    small = [chain.transfer(victim, BOB.public, GRAD // 10, nonce=first + i, **era) for i in range(3)]
    remaining = GRAD - sum(GRAD // 10 + fee_of(chain, x) for x in small)
    emptying = emptying_transfer(chain, victim, remaining, nonce=first + 3, **era)
    built = chain.author_block([*small, emptying])
    assert all(outcome.success for outcome in built.outcomes)
    assert chain.account(victim.public) is None  # reaped
    refunded = chain.author_block([chain.transfer(ALICE, victim.public, 2 * GRAD)])
    assert chain.chain.best_header().number < era["era"].birth + ERA_PERIOD  # still inside the old era
    # a block-number start would be `first + 2` here: the third old transfer would be valid again
    assert chain.nonce(victim.public) == refunded.block.header.number * STRIDE + INHERENTS + 1
    assert chain.nonce(victim.public) > first + 3
    for old in (*small, emptying):
        assert_refused_as_stale(chain, old)
    assert chain.free(victim.public) == 2 * GRAD  # the refund is untouched
    fresh = chain.transfer(victim, BOB.public, GRAD // 10, **mortal(chain))
    built = chain.author_block([fresh])
    assert fresh in built.block.extrinsics and built.outcomes[-1].success
    assert chain.free(victim.public) == 2 * GRAD - GRAD // 10 - fee_of(chain, fresh)


def test_an_account_emptied_and_refunded_in_one_block_cannot_replay_its_transfer_in_that_block(chain):
    victim = crypto.keypair_from_uri("//SameBlock")
    chain.author_block([chain.transfer(ALICE, victim.public, GRAD)])
    nonce = chain.nonce(victim.public)
    emptying = emptying_transfer(chain, victim, GRAD, nonce=nonce, **mortal(chain))
    refund = chain.transfer(ALICE, victim.public, GRAD)  # Alice signs at her own nonce: no clash
    # the author tries the old transfer again right after the refund, in the same block
    built = chain.author_block([emptying, refund, emptying])
    assert built.block.extrinsics.count(emptying) == 1
    assert [e.reason for _, e in built.invalid] == [InvalidReason.STALE]
    assert chain.free(victim.public) == GRAD
    assert chain.nonce(victim.public) == built.block.header.number * STRIDE + INHERENTS + 1 + 1
    assert_refused_as_stale(chain, emptying)


def test_an_immortal_transfer_is_not_replayed_after_reaping_either(chain):
    victim = crypto.keypair_from_uri("//Immortal")
    chain.author_block([chain.transfer(ALICE, victim.public, GRAD)])
    emptying = emptying_transfer(chain, victim, GRAD, nonce=chain.nonce(victim.public))
    chain.author_block([emptying])
    assert chain.account(victim.public) is None
    for _ in range(3):
        chain.author_block()
    chain.author_block([chain.transfer(ALICE, victim.public, GRAD)])
    assert_refused_as_stale(chain, emptying)
    assert chain.free(victim.public) == GRAD


def test_an_account_created_in_the_finalize_hooks_starts_past_every_extrinsic_of_its_block():
    ctx = BlockContext(Overlay(EmptyBackend()), 7, bytes(32), bytes(32), 7, None, bytes(32))
    assert system.new_account_nonce(ctx) == 7 * STRIDE  # initialize hooks: before the first extrinsic
    ctx.extrinsic_index = 5
    assert system.new_account_nonce(ctx) == 7 * STRIDE + 6  # after extrinsic 5 moved a nonce up to at most this
    ctx.extrinsic_index, ctx.finalizing = None, True
    assert system.new_account_nonce(ctx) == 8 * STRIDE - 1  # finalize: past the most extrinsics a block holds


def test_a_block_with_more_extrinsics_than_the_stride_allows_is_invalid(chain, monkeypatch):
    extra = [chain.transfer(ALICE, BOB.public, GRAD, nonce=n) for n in range(2)]
    built = chain.build(extra)
    assert len(built.block.extrinsics) == INHERENTS + 2
    monkeypatch.setattr(system, "MAX_BLOCK_EXTRINSICS", INHERENTS + 1)
    with pytest.raises(InvalidBlock, match="a block holds 3 at most"):
        chain.executive.execute_block(chain.chain.state_view(chain.chain.best_hash), built.block)


def test_parameters_whose_blocks_could_outgrow_the_stride_are_refused():
    params = dev_genesis().parameters
    limit = system.MAX_BLOCK_EXTRINSICS // 2 * system.EXTRINSIC_BASE_WEIGHT
    system.check_parameters(dataclasses.replace(params, block_weight_limit=limit, max_task_work=0))
    with pytest.raises(system.InvalidParameters, match="block_weight_limit must be at most"):
        system.check_parameters(dataclasses.replace(params, block_weight_limit=limit + system.EXTRINSIC_BASE_WEIGHT))
