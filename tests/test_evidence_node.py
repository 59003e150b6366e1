"""A node turns what it sees into slashing evidence by itself: two blocks of one author in one slot, and
dispute statements of more than 2/3 of the stake on a block, become offences transactions that its next
block carries, slashing the offender and paying this validator."""

from __future__ import annotations

import asyncio

from consensus.finality.messages import encode_message
from node.chain_service import ChainService
from node.chain_setup import ChainPaths
from node.clock import FakeClock
from node.finality_service import FinalityService
from runtime.finality import sign_dispute
from runtime.hashing import blake2b_256
from runtime.pallets import balances, offences, system, validators
from runtime.state import Overlay
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis

ALICE, BOB, CHARLIE, DAVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave"))


def bond(chain: ChainService, who: bytes) -> int:
    ledger = validators.Ledgers.get(Overlay(chain.store.state_view(chain.store.best_hash)), who)
    return ledger.active + sum(c.value for c in ledger.unlocking)


def run_bob_node(tmp_path, scenario):
    """Bob's validator node (chain + finality services) on the 4-validator chain, with a fake clock."""
    config = dev_genesis()
    clock = FakeClock(start_ms=100 * config.slot_duration_ms)
    chain = ChainService(config, ChainPaths(tmp_path / "bob", config.chain_id), clock=clock, validator_key=BOB)
    finality = FinalityService(chain, BOB, clock)
    maker = TestChain(tmp_path / "maker", config, finalize=False)  # builds blocks other validators author

    async def main():
        await chain.start()
        await finality.start()
        try:
            return await scenario(chain, finality, maker, clock)
        finally:
            await finality.stop()
            await chain.stop()
            maker.close()
    return asyncio.run(main())


def offence_events(chain: ChainService) -> list:
    state = Overlay(chain.store.state_view(chain.store.best_hash))
    return [r.event for r in system.Events.get(state) if isinstance(r.event, offences.OffenceReported)]


def test_two_blocks_in_one_slot_get_their_author_slashed_by_the_node_that_saw_them(tmp_path):
    async def scenario(chain, finality, maker, clock):
        first = maker.build(slot=4).block  # slot 4 is Alice's
        second = maker.build([maker.transfer(CHARLIE, DAVE.public, 10**12)], slot=4).block
        assert first.hash != second.hash and first.header.digest.author == ALICE.public
        await chain.import_block(first)
        await chain.import_block(second)
        assert [x.call.name for x in list(chain.pool.ready())] == ["offences.report_double_authoring"]
        alice_bond = bond(chain, ALICE.public)
        before = Overlay(chain.store.state_view(chain.store.best_hash))
        bob_before, issuance = system.Account.get(before, BOB.public).free, balances.TotalIssuance.get(before)
        authored = await chain.author(5, BOB, clock.now_ms() + 10_000)  # slot 5 is Bob's
        assert authored is not None
        (event,) = offence_events(chain)
        assert event.kind == offences.KIND_DOUBLE_AUTHORING and event.offender == ALICE.public
        assert event.reporter == BOB.public and bond(chain, ALICE.public) == alice_bond - event.slashed
        state = Overlay(chain.store.state_view(chain.store.best_hash))
        assert system.Account.get(state, BOB.public).free > bob_before  # the reward (and fees, as the author)
        assert balances.TotalIssuance.get(state) <= issuance - event.burned
        everyone = sum(a.free + a.reserved for a in (system.Account.get(state, k.public) for k in DEV_KEYS.values())
                       if a is not None)
        assert balances.TotalIssuance.get(state) == everyone
    run_bob_node(tmp_path, scenario)


def test_dispute_statements_of_two_thirds_of_the_stake_slash_the_author(tmp_path):
    async def scenario(chain, finality, maker, clock):
        block = maker.build(slot=4).block  # Alice's block; its report is the one validators dispute
        await chain.import_block(block)
        reasons = blake2b_256(b"accuracy 91% reported, 40% measured")
        genesis = chain.store.genesis_hash
        for key in (CHARLIE, DAVE):  # two of four: not enough yet
            finality.deliver(encode_message(sign_dispute(key, genesis, 0, block.header, reasons)))
        await finality.step()
        assert list(chain.pool.ready()) == []
        finality.deliver(encode_message(sign_dispute(BOB, genesis, 0, block.header, reasons)))
        await finality.step()
        assert [x.call.name for x in list(chain.pool.ready())] == ["offences.report_false_useful_work"]
        alice_bond = bond(chain, ALICE.public)
        await chain.author(5, BOB, clock.now_ms() + 10_000)
        (event,) = offence_events(chain)
        assert event.kind == offences.KIND_FALSE_USEFUL_WORK and event.offender == ALICE.public
        assert event.reporter == BOB.public and bond(chain, ALICE.public) == alice_bond - event.slashed
    run_bob_node(tmp_path, scenario)


def test_a_double_voter_is_reported_by_the_node_that_saw_both_votes_and_slashed(tmp_path):
    from runtime.finality import PREVOTE, sign_vote

    async def scenario(chain, finality, maker, clock):
        first_block = maker.build(slot=4).block
        fork = maker.build([maker.transfer(CHARLIE, DAVE.public, 10**12)], slot=8).block  # Alice's too
        for block in (first_block, fork):
            await chain.import_block(block)
        genesis = chain.store.genesis_hash
        round_number = finality.voter.round_number
        for target in (first_block, fork):  # Dave prevotes for both forks in one round
            vote = sign_vote(DAVE, genesis, 0, round_number, PREVOTE, target.hash, 1)
            finality.deliver(encode_message(vote))
        await finality.step()
        assert [x.call.name for x in list(chain.pool.ready())] == ["offences.report_vote_equivocation"]
        dave_bond = bond(chain, DAVE.public)
        await chain.author(9, BOB, clock.now_ms() + 10_000)  # slot 9 is Bob's
        (event,) = offence_events(chain)
        assert event.kind == offences.KIND_VOTE_EQUIVOCATION and event.offender == DAVE.public
        assert event.reporter == BOB.public and event.reward > 0
        assert bond(chain, DAVE.public) == dave_bond - event.slashed
    run_bob_node(tmp_path, scenario)
