"""The offences pallet: evidence checked without torch, slashing, reporter rewards and burning.

Spec vectors: a pre-state (the dev chain), an operation, a post-state; every
`test_invalid_*` case must leave the state exactly as it was.
"""

from __future__ import annotations

import dataclasses

import pytest

from runtime.dispatch import DispatchFailure
from runtime.finality import PRECOMMIT, PREVOTE, sign_dispute, sign_vote
from runtime.hashing import blake2b_256
from runtime.pallets import balances, offences, system, validators
from runtime.state import Overlay
from runtime.types import Digest, Header, Seal, Slot
from tests.helpers.chain import DEV_KEYS, TestChain
from tests.helpers.chain import next_block_context as context

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))
VALIDATORS = (ALICE, BOB, CHARLIE, DAVE)


def every_balance(state) -> int:
    accounts = [system.Account.get(state, k.public) for k in DEV_KEYS.values()]
    return sum(a.free + a.reserved for a in accounts if a is not None)


def bond_of(state, who: bytes) -> int:
    ledger = validators.Ledgers.get(state, who)
    return ledger.active + sum(c.value for c in ledger.unlocking)


def votes(chain: TestChain, voter=DAVE, set_id=0, round_number=3, stage=PREVOTE):
    genesis = chain.genesis_hash
    return (sign_vote(voter, genesis, set_id, round_number, stage, blake2b_256(b"a"), 5),
            sign_vote(voter, genesis, set_id, round_number, stage, blake2b_256(b"b"), 6))


def sealed_header(author, slot: int, number: int, tag: bytes) -> Header:
    draft = Header(bytes(32), number, blake2b_256(tag), bytes(32), Digest(Slot(slot), author.public, Seal(b"")))
    return dataclasses.replace(draft, digest=Digest(Slot(slot), author.public, Seal(author.sign(draft.pre_seal_hash()))))


def disputes(chain: TestChain, header: Header, signers, set_id=0):
    return tuple(sign_dispute(k, chain.genesis_hash, set_id, header, blake2b_256(b"reasons")) for k in signers)


def apply_directly(chain, call_def, origin, *args):
    """Run a call's function on a fresh context; returns (ctx, error or None)."""
    ctx = context(chain)
    try:
        call_def.function(ctx, origin, *args)
    except DispatchFailure as error:
        return ctx, error
    return ctx, None


def assert_slashed(chain, ctx, offender, reporter):
    before = Overlay(chain.chain.state_view(chain.chain.best_hash))
    params = offences.Params.get(ctx.state)
    slashed = bond_of(before, offender.public) * params.slash_ppm // 1_000_000
    reward = slashed * params.reporter_share_ppm // 1_000_000
    assert slashed > 0 and reward > 0
    assert bond_of(ctx.state, offender.public) == bond_of(before, offender.public) - slashed
    assert system.Account.get(ctx.state, reporter.public).free == system.Account.get(before, reporter.public).free + reward
    issuance_before = balances.TotalIssuance.get(before)
    assert balances.TotalIssuance.get(ctx.state) == issuance_before - (slashed - reward)
    assert balances.TotalIssuance.get(ctx.state) == every_balance(ctx.state)
    (event,) = [r.event for r in ctx.state.events if isinstance(r.event, offences.OffenceReported)]
    assert (event.slashed, event.reward, event.burned) == (slashed, reward, slashed - reward)


# --- vote equivocation ----------------------------------------------------------


def test_vote_equivocation_slashes_the_voter_pays_the_reporter_and_burns_the_rest(chain):
    first, second = votes(chain)
    ctx, error = apply_directly(chain, offences.report_vote_equivocation, BOB.public, first, second)
    assert error is None
    assert_slashed(chain, ctx, DAVE, BOB)


def test_vote_equivocation_in_a_block_keeps_total_issuance_equal_to_all_balances(chain):
    issuance = chain.total_issuance()
    first, second = votes(chain, stage=PRECOMMIT)
    built = chain.author_block([chain.sign(BOB, offences.report_vote_equivocation(first, second))])
    outcome = built.outcomes[-1]
    assert outcome.success, outcome.error
    state = chain.overlay()
    (event,) = [r.event for r in system.Events.get(state) if isinstance(r.event, offences.OffenceReported)]
    fee_burned = outcome.fee * chain.config.parameters.fee_burn_ppm // 1_000_000
    assert chain.total_issuance() == issuance - event.burned - fee_burned
    assert chain.total_issuance() == every_balance(state)
    # the same offence again: punished once only
    again = chain.author_block([chain.sign(BOB, offences.report_vote_equivocation(first, second))])
    assert again.outcomes[-1].error.name == "AlreadyReported"


@pytest.mark.parametrize("case", ["same_target", "other_round", "other_voter", "bad_signature", "unknown_set",
                                  "not_a_validator", "self_report", "other_chain"])
def test_invalid_vote_equivocation_leaves_state_untouched(chain, case):
    first, second = votes(chain)
    origin = BOB.public
    if case == "same_target":
        second = first
    elif case == "other_round":
        second = votes(chain, round_number=4)[1]
    elif case == "other_voter":
        second = votes(chain, voter=CHARLIE)[1]
    elif case == "bad_signature":
        second = dataclasses.replace(second, signature=bytes(64))
    elif case == "unknown_set":
        first, second = votes(chain, set_id=9)
    elif case == "not_a_validator":
        first, second = votes(chain, voter=EVE)
    elif case == "self_report":
        origin = DAVE.public
    elif case == "other_chain":
        first = sign_vote(DAVE, bytes(32), 0, 3, PREVOTE, blake2b_256(b"a"), 5)
    ctx, error = apply_directly(chain, offences.report_vote_equivocation, origin, first, second)
    assert error is not None and error.code == "dispatch_error"
    assert ctx.state.changes == {} and ctx.state.events == []


# --- double authoring -------------------------------------------------------------


def test_two_blocks_sealed_for_one_slot_slash_their_author(chain):
    first, second = sealed_header(CHARLIE, 7, 2, b"x"), sealed_header(CHARLIE, 7, 2, b"y")
    ctx, error = apply_directly(chain, offences.report_double_authoring, BOB.public, first, second)
    assert error is None
    assert_slashed(chain, ctx, CHARLIE, BOB)


@pytest.mark.parametrize("case", ["same_block", "other_slot", "other_author", "bad_seal", "not_a_validator"])
def test_invalid_double_authoring_leaves_state_untouched(chain, case):
    first, second = sealed_header(CHARLIE, 7, 2, b"x"), sealed_header(CHARLIE, 7, 2, b"y")
    if case == "same_block":
        second = first
    elif case == "other_slot":
        second = sealed_header(CHARLIE, 8, 2, b"y")
    elif case == "other_author":
        second = sealed_header(DAVE, 7, 2, b"y")
    elif case == "bad_seal":
        second = dataclasses.replace(second, digest=Digest(Slot(7), CHARLIE.public, Seal(bytes(64))))
    elif case == "not_a_validator":
        first, second = sealed_header(EVE, 7, 2, b"x"), sealed_header(EVE, 7, 2, b"y")
    ctx, error = apply_directly(chain, offences.report_double_authoring, BOB.public, first, second)
    assert error is not None
    assert ctx.state.changes == {} and ctx.state.events == []


# --- false useful-work reports ---------------------------------------------------------


def test_disputes_from_more_than_two_thirds_of_the_stake_slash_the_author(chain):
    header = sealed_header(DAVE, 4, 3, b"lying report")
    ctx, error = apply_directly(chain, offences.report_false_useful_work, ALICE.public, header,
                                disputes(chain, header, (ALICE, BOB, CHARLIE)))
    assert error is None
    assert_slashed(chain, ctx, DAVE, ALICE)


@pytest.mark.parametrize("case", ["two_thirds_only", "duplicate_disputer", "outsider", "other_block",
                                  "bad_dispute_signature", "bad_seal", "other_set", "empty"])
def test_invalid_false_useful_work_report_leaves_state_untouched(chain, case):
    header = sealed_header(DAVE, 4, 3, b"lying report")
    signed = disputes(chain, header, (ALICE, BOB, CHARLIE))
    if case == "two_thirds_only":  # 2 of 4 equal stakes is not more than 2/3
        signed = signed[:2]
    elif case == "duplicate_disputer":
        signed = (signed[0], signed[1], signed[1])
    elif case == "outsider":
        signed = signed[:2] + disputes(chain, header, (EVE,))
    elif case == "other_block":
        signed = signed[:2] + disputes(chain, sealed_header(DAVE, 4, 3, b"another"), (CHARLIE,))
    elif case == "bad_dispute_signature":
        signed = signed[:2] + (dataclasses.replace(signed[2], signature=bytes(64)),)
    elif case == "bad_seal":
        header = dataclasses.replace(header, digest=Digest(Slot(4), DAVE.public, Seal(bytes(64))))
        signed = disputes(chain, header, (ALICE, BOB, CHARLIE))
    elif case == "other_set":
        signed = disputes(chain, header, (ALICE, BOB, CHARLIE), set_id=1)
    elif case == "empty":
        signed = ()
    ctx, error = apply_directly(chain, offences.report_false_useful_work, BOB.public, header, signed)
    assert error is not None
    assert ctx.state.changes == {} and ctx.state.events == []


# --- set history and the evidence window ------------------------------------------------------


def test_set_history_is_kept_through_the_evidence_window_then_forgotten(chain):
    ctx = context(chain)
    params = offences.Params.get(ctx.state)
    record = validators.SetHistory.get(ctx.state, 0)
    assert [v.account for v in record.validators] == [k.public for k in VALIDATORS] and record.last_block is None
    # an era change at block 100 closes set 0; it is kept until 100 + evidence_window
    ctx.number = 100
    validators.start_new_era(ctx)
    assert validators.SetHistory.get(ctx.state, 0).last_block == 100
    assert validators.SetHistory.get(ctx.state, 1).first_block == 101
    ctx.number = 100 + params.evidence_window
    offences.on_finalize(ctx)
    assert validators.SetHistory.get(ctx.state, 0) is not None
    ctx.number += 1
    offences.on_finalize(ctx)
    assert validators.SetHistory.get(ctx.state, 0) is None and validators.OldestSet.get(ctx.state) == 1
    first, second = votes(chain, set_id=0)
    with pytest.raises(offences.UnknownSet):
        offences.report_vote_equivocation.function(ctx, BOB.public, first, second)


def test_unbonding_outlasts_an_era_plus_the_evidence_window(chain):
    from runtime.genesis import parse_genesis

    spec = dict(chain.config.spec)
    spec["parameters"] = dict(spec["parameters"], unbonding_period=120)
    with pytest.raises(Exception, match="unbonding_period"):
        parse_genesis(spec)
    params = chain.config.parameters
    assert params.unbonding_period > params.era_length + chain.config.offences.evidence_window


@pytest.mark.parametrize("offences_spec,problem", [
    ({"slash_ppm": 0}, "slash_ppm"), ({"reporter_share_ppm": 1_000_001}, "reporter_share_ppm"),
    ({"evidence_window": 500}, "unbonding_period"), ({"slash_pm": 1}, "unknown field"),
    ("lots", "must be an object"), ({"evidence_window": -1}, "between"),
])
def test_a_bad_offences_object_in_the_chain_spec_names_its_field(chain, offences_spec, problem):
    from runtime.errors import GenesisError
    from runtime.genesis import parse_genesis

    spec = dict(chain.config.spec, offences=offences_spec)
    with pytest.raises(GenesisError, match=problem):
        parse_genesis(spec)


def test_the_chain_spec_offences_object_is_optional_and_reaches_the_state(chain):
    from runtime.genesis import build_genesis_state, parse_genesis

    spec = {k: v for k, v in chain.config.spec.items() if k != "offences"}
    config = parse_genesis(spec)
    assert config.offences == offences.DEFAULT_PARAMS
    custom = parse_genesis(dict(spec, offences={"slash_ppm": 250_000}))
    state = Overlay(_Backend(build_genesis_state(custom)))
    assert offences.Params.get(state).slash_ppm == 250_000


class _Backend:
    def __init__(self, changes):
        self.changes = changes

    def get(self, key):
        return self.changes.get(key)
