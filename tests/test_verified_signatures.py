"""A signature this node verified once (its pool admitted the transaction) is not verified again when a
block from a peer includes it; every other signature is, at the same stage and with the same error."""

from __future__ import annotations

import dataclasses

from consensus.authorship import build_block
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from runtime.types import Era
from tests.helpers.chain_nodes import ALICE

BOB = crypto.dev_keypair("Bob")
CHARLIE = crypto.dev_keypair("Charlie")


def counting_verify(monkeypatch) -> list:
    """The signers whose signatures get verified from now on (Alice's, the author's seal, aside)."""
    signers = []
    verify = crypto.verify

    def counted(public, message, signature):
        if public != ALICE.public:
            signers.append(public)
        return verify(public, message, signature)
    monkeypatch.setattr(crypto, "verify", counted)
    return signers


def signed(node, keypair, amount: int, nonce: int = 0, **era):
    return sign_extrinsic(keypair, balances.transfer(CHARLIE.public, amount), nonce=nonce,
                          genesis_hash=node.store.genesis_hash, **era)


def next_slot(node) -> int:
    slot = node.clock.now_ms() // node.config.slot_duration_ms + 1
    node.clock.time_ms = slot * node.config.slot_duration_ms
    return slot


def unchecked_block(node, transactions):
    """A block of Alice's whose author skipped the signature checks (so a forged one can be in it)."""
    slot = next_slot(node)
    return build_block(node.store, node.service.executive, node.store.best_hash, author=ALICE, slot=slot,
                       timestamp_ms=slot * node.config.slot_duration_ms, transactions=transactions,
                       signatures_checked=True).block


def test_transactions_the_pool_admitted_are_not_verified_again_when_a_block_includes_them(nodes, monkeypatch):
    author, follower = nodes
    transfers = [signed(author, BOB, 10**12 + i, nonce=i) for i in range(3)]
    for transfer in transfers:
        author.service._submit(transfer)
        follower.service._submit(transfer)  # gossip brought them here first
    block = author.author()
    assert sum(1 for x in block.extrinsics if x.signed) == 3
    calls = counting_verify(monkeypatch)
    result = follower.service.import_block_now(block).raise_for_error()
    assert result.is_best and follower.store.best_header().state_root == block.header.state_root
    assert calls == []  # without the cache: Bob's three again


def test_a_signature_the_pool_never_saw_is_verified_and_a_forged_one_is_refused_at_its_index(nodes, monkeypatch):
    author, follower = nodes
    honest = signed(author, BOB, 10**12)
    follower.service._submit(honest)
    unseen = signed(author, BOB, 10**12 + 1, nonce=1)
    forged = signed(author, CHARLIE, 10**12)
    forged = dataclasses.replace(forged, signed=dataclasses.replace(forged.signed, signature=b"\x05" * 64))
    calls = counting_verify(monkeypatch)
    result = follower.service.import_block_now(unchecked_block(author, [honest, unseen, forged]))
    assert result.outcome == "bad" and result.error.code == "bad_signature"
    assert "extrinsic signature 2 " in result.error.message  # the forged one, as without the cache
    assert calls == [BOB.public, CHARLIE.public]  # the unseen one and the forged one


def test_a_mortal_transaction_is_verified_again_at_import(nodes, monkeypatch):
    author, follower = nodes
    author.author()
    birth = author.store.best_header()
    follower.service.import_block_now(author.store.block(birth.hash)).raise_for_error()
    mortal = signed(author, BOB, 10**12, era=Era(birth.number, 16), birth_hash=birth.hash)
    author.service._submit(mortal)
    follower.service._submit(mortal)
    block = author.author()
    calls = counting_verify(monkeypatch)
    follower.service.import_block_now(block).raise_for_error()
    assert calls == [BOB.public]  # its birth block's hash may change in a re-org: verified again
