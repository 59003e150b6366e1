"""The runtime as a specification: transfers, fees, the two tiers of failure, validators, sudo."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime import codec
from runtime.executive import sign_extrinsic
from runtime.crypto import Keypair
from runtime.pallets import balances, sudo, system, timestamp, validators
from runtime.types import Digest, Era, Extrinsic, Header
from runtime.validity import InvalidReason, InvalidTransaction
from tests.helpers.chain import DEV_KEYS, TestChain

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))


def events_of(chain: TestChain, block_hash: bytes) -> list:
    return [r.event for r in system.Events.get(chain.overlay(block_hash))]


def test_transfer_moves_value_and_charges_the_fee(chain):
    ed = chain.config.parameters.existential_deposit
    alice_before, bob_before = chain.free(ALICE.public), chain.free(BOB.public)
    built = chain.author_block([chain.transfer(ALICE, BOB.public, 10 * ed)])
    outcome = built.outcomes[-1]
    assert outcome.success
    assert chain.free(BOB.public) == bob_before + 10 * ed + _author_share(chain, built, BOB.public)
    assert chain.free(ALICE.public) == alice_before - 10 * ed - outcome.fee + _author_share(chain, built, ALICE.public)
    assert chain.nonce(ALICE.public) == 1
    assert balances.Transfer(ALICE.public, BOB.public, 10 * ed) in events_of(chain, built.block.hash)


def _author_share(chain: TestChain, built, who: bytes) -> int:
    if built.block.header.digest.author != who:
        return 0
    paid = [e for e in events_of(chain, built.block.hash) if type(e).__name__ == "FeesDistributed"]
    return paid[0].to_author if paid else 0


def test_fees_are_split_between_author_and_burn_and_issuance_falls_by_the_burn(chain):
    issuance = chain.total_issuance()
    built = chain.author_block([chain.transfer(ALICE, EVE.public, 10**6)])
    fee = built.outcomes[-1].fee
    burned = fee * chain.config.parameters.fee_burn_ppm // 1_000_000
    assert chain.total_issuance() == issuance - burned


def test_transfer_of_more_than_free_balance_is_a_dispatch_error_that_pays_its_fee(chain):
    alice_before = chain.free(ALICE.public)
    built = chain.author_block([chain.transfer(ALICE, BOB.public, alice_before * 10)])
    outcome = built.outcomes[-1]
    assert not outcome.success
    assert outcome.error.name == "InsufficientBalance"
    assert chain.nonce(ALICE.public) == 1
    assert chain.free(ALICE.public) == alice_before - outcome.fee + _author_share(chain, built, ALICE.public)
    assert any(type(e).__name__ == "ExtrinsicFailed" for e in events_of(chain, built.block.hash))


def test_transfer_below_existential_deposit_to_a_new_account_is_a_dispatch_error(chain):
    newcomer = b"\x77" * 32
    built = chain.author_block([chain.transfer(ALICE, newcomer, 1)])
    assert built.outcomes[-1].error.name == "ExistentialDeposit"
    assert chain.account(newcomer) is None


def test_transfer_keep_alive_refuses_to_kill_the_sender(chain):
    eve_free = chain.free(EVE.public)
    ed = chain.config.parameters.existential_deposit
    call = balances.transfer_keep_alive(BOB.public, eve_free - ed // 2 - 2 * 10**9)  # the fee is ~10**9
    built = chain.author_block([chain.sign(EVE, call)])
    assert built.outcomes[-1].error.name == "KeepAlive"


# --- invalid transactions never enter a block and change nothing ----------------

POOR = Keypair.from_seed(b"\x42" * 32)  # holds just over the existential deposit: cannot pay any fee


def _forge(extrinsic: Extrinsic, **changes) -> Extrinsic:
    return Extrinsic(dataclasses.replace(extrinsic.signed, **changes), extrinsic.call)


INVALID_CASES = {
    "bad_signature": (lambda c: _forge(c.transfer(ALICE, BOB.public, 10**6), signature=bytes(64)),
                      InvalidReason.BAD_PROOF),
    "wrong_genesis": (lambda c: sign_extrinsic(ALICE, balances.transfer(BOB.public, 10**6), nonce=1,
                                               genesis_hash=b"\x01" * 32), InvalidReason.BAD_PROOF),
    "stale_nonce": (lambda c: c.transfer(ALICE, BOB.public, 10**6, nonce=0), InvalidReason.STALE),
    "future_nonce": (lambda c: c.transfer(ALICE, BOB.public, 10**6, nonce=5), InvalidReason.FUTURE),
    "expired_era": (lambda c: c.transfer(ALICE, BOB.public, 10**6, era=Era(1, 4),
                                         birth_hash=c.chain.hash_at(1)), InvalidReason.ANCIENT_BIRTH_BLOCK),
    "insufficient_funds": (lambda c: c.transfer(DEV_KEYS["Ferdie"], BOB.public, 1), InvalidReason.PAYMENT),
    "below_existential_deposit": (lambda c: c.transfer(POOR, BOB.public, 1), InvalidReason.PAYMENT),
    "oversize": (lambda c: c.sign(ALICE, system.remark(b"x" * (c.config.parameters.max_extrinsic_length + 1))),
                 InvalidReason.EXHAUSTS_RESOURCES),
    "inherent_signed": (lambda c: c.sign(ALICE, timestamp.set(1)), InvalidReason.CALL),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_invalid_transaction_is_rejected_and_leaves_the_state_root_unchanged(chain, case):
    # History for eras, a nearly empty account, and Alice's nonce at 1.
    chain.author_block([chain.transfer(ALICE, POOR.public, chain.config.parameters.existential_deposit + 1)])
    for _ in range(5):
        chain.author_block()
    make, reason = INVALID_CASES[case]
    extrinsic = make(chain)
    with pytest.raises(InvalidTransaction) as raised:
        _apply_on_best(chain, extrinsic)
    assert raised.value.reason is reason, raised.value.message
    slot = chain.slot + 1
    with_it = chain.build([extrinsic], slot=slot)
    without = chain.build([], slot=slot)
    assert extrinsic not in with_it.block.extrinsics
    assert with_it.block.header.state_root == without.block.header.state_root
    if reason is not InvalidReason.FUTURE:
        assert [x for x, _ in with_it.invalid] == [extrinsic]


def _apply_on_best(chain: TestChain, extrinsic: Extrinsic) -> None:
    """Apply one extrinsic on the best state; when it raises, the overlay must be exactly as before."""
    best = chain.chain.best_header()
    header = Header(best.hash, best.number + 1, bytes(32), bytes(32), Digest(best.digest.slot + 1, ALICE.public, b""))
    ctx = chain.executive.initialize_block(chain.chain.state_view(best.hash), header)
    before = dict(ctx.state.changes), list(ctx.state.events)
    try:
        chain.executive.apply_extrinsic(ctx, extrinsic)
    finally:
        assert (dict(ctx.state.changes), list(ctx.state.events)) == before


# --- validity for the pool --------------------------------------------------------


def test_validate_transaction_reports_tags_priority_and_longevity(chain):
    chain.author_block()
    valid = chain.validate(chain.transfer(ALICE, BOB.public, 10**6, tip=7))
    assert valid.priority == 7
    assert valid.requires == ()
    assert valid.provides == (ALICE.public + (0).to_bytes(8, "big"),)
    future = chain.validate(chain.transfer(ALICE, BOB.public, 10**6, nonce=3))
    assert future.requires == (ALICE.public + (2).to_bytes(8, "big"),)
    mortal = chain.validate(chain.transfer(ALICE, BOB.public, 10**6, era=Era(1, 8), birth_hash=chain.chain.hash_at(1)))
    assert mortal.longevity == 1 + 8 - 2  # valid through block 8; the next block is 2


def test_block_weight_limit_is_enforced(tmp_path):
    chain = TestChain(tmp_path / "db")
    try:
        params = chain.config.parameters
        per_transfer = system.EXTRINSIC_BASE_WEIGHT + balances.TRANSFER_WEIGHT
        fits = (params.block_weight_limit - 100_000) // per_transfer
        keys = [DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve")]
        nonces = {k.public: 0 for k in keys}
        transactions = []
        for i in range(fits + 50):
            k = keys[i % len(keys)]
            transactions.append(chain.transfer(k, b"\x09" * 32, 10**9, nonce=nonces[k.public]))
            nonces[k.public] += 1
        built = chain.build(transactions)
        signed = [x for x in built.block.extrinsics if x.signed is not None]  # after the inherents
        assert signed == transactions[:len(signed)]
        assert built.postponed == transactions[len(signed):] and len(signed) < len(transactions)
        used = sum(o.weight for o in built.outcomes)
        assert used <= params.block_weight_limit < used + per_transfer  # full: the next transfer would not fit
    finally:
        chain.close()


# --- validators and sudo ----------------------------------------------------------


def test_bond_unbond_and_withdraw_after_the_unbonding_period(chain):
    chain.author_block([chain.sign(EVE, validators.bond(10**12))])
    assert validators.Ledgers.get(chain.overlay(), EVE.public).active == 10**12
    assert chain.account(EVE.public).reserved == 10**12
    chain.author_block([chain.sign(EVE, validators.unbond(4 * 10**11))])
    early = chain.author_block([chain.sign(EVE, validators.withdraw_unbonded())])
    assert early.outcomes[-1].error.name == "NothingToWithdraw"
    for _ in range(chain.config.parameters.unbonding_period):
        chain.author_block()
    chain.author_block([chain.sign(EVE, validators.withdraw_unbonded())])
    assert chain.account(EVE.public).reserved == 6 * 10**11


def test_sudo_slash_burns_stake_and_issuance(chain):
    issuance = chain.total_issuance()
    stake = validators.Ledgers.get(chain.overlay(), BOB.public).active
    call = sudo.sudo(sudo.slash(BOB.public, 100_000))
    built = chain.author_block([chain.sign(ALICE, call)])
    assert built.outcomes[-1].success
    assert validators.Ledgers.get(chain.overlay(), BOB.public).active == stake - stake // 10
    fee = built.outcomes[-1].fee
    assert chain.total_issuance() == issuance - stake // 10 - fee * chain.config.parameters.fee_burn_ppm // 1_000_000


def test_sudo_from_another_account_fails_with_require_sudo(chain):
    built = chain.author_block([chain.sign(BOB, sudo.sudo(sudo.slash(ALICE.public, 1)))])
    assert built.outcomes[-1].error.name == "RequireSudo"


def test_metadata_describes_every_pallet():
    from runtime.executive import Executive

    metadata = Executive(bytes(32)).metadata()
    names = [p["name"] for p in metadata["pallets"]]
    assert names == ["system", "balances", "payment", "timestamp", "validators", "sudo", "training", "randomness",
                     "offences", "held_out_keys"]
    balances_meta = metadata["pallets"][1]
    assert {c["name"] for c in balances_meta["calls"]} == {"transfer", "transfer_keep_alive"}
    assert any(e["name"] == "Transfer" and e["doc"] for e in balances_meta["events"])


# --- properties ----------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 2 * 10**15)), min_size=1, max_size=25))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_transfers_conserve_total_issuance(tmp_path_factory, moves):
    chain = TestChain(tmp_path_factory.mktemp("db") / "db")
    try:
        keys = [DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve")]
        others = [k.public for k in keys] + [b"\x55" * 32]
        nonces = {k.public: 0 for k in keys}
        transactions = []
        for sender, dest, value in moves:
            k = keys[sender]
            transactions.append(chain.transfer(k, others[dest], value, nonce=nonces[k.public]))
            nonces[k.public] += 1
        chain.author_block(transactions)
        overlay = chain.overlay()
        accounts = [system.Account.get(overlay, who) for who in others + [DEV_KEYS["Ferdie"].public]]
        total = sum(a.free + a.reserved for a in accounts if a)
        assert total == balances.TotalIssuance.get(overlay)
    finally:
        chain.close()


def test_signing_payload_binds_the_runtime_version(chain):
    from runtime.executive import VERSION, RuntimeVersion

    other = RuntimeVersion(VERSION.spec_name, VERSION.impl_name, VERSION.spec_version + 1, VERSION.transaction_version)
    extrinsic = sign_extrinsic(ALICE, balances.transfer(BOB.public, 10**6), nonce=0,
                               genesis_hash=chain.genesis_hash, version=other)
    with pytest.raises(InvalidTransaction) as raised:
        chain.validate(extrinsic)
    assert raised.value.reason is InvalidReason.BAD_PROOF
    assert codec.decode(Extrinsic, extrinsic.encoded).signed == extrinsic.signed
