"""A block of a run executes before the worker's signature answer is consulted; the outcome and
the first error are still the ones of importing it alone, in stage order: a bad signature, then a
wrong extrinsics root, then what execution finds. The database holds nothing of a refused block,
and the run stops there: the blocks built on it have no parent."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.authorship import build_block
from consensus.import_queue import BAD, IMPORTED, MISSING_PARENT, BadSignature, expected_author
from consensus.signatures import SignatureVerifier
from runtime.types import Block, compute_extrinsics_root
from tests.helpers.chain import DEV_KEYS, KEY_BY_PUBLIC, TestChain, imported_alone_and_as_run, resealed

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def with_forged_transfer(source: TestChain) -> Block:
    """A block whose author skipped the signature check: its second transfer's signature is forged."""
    forged = source.transfer(BOB, ALICE.public, 10**11)
    forged = dataclasses.replace(forged, signed=dataclasses.replace(forged.signed, signature=b"\x05" * 64))
    parent = source.chain.best_header()
    slot = parent.digest.slot + 1
    authorities = source.executive.authorities(source.chain.state_view(parent.hash))
    return build_block(source.chain, source.executive, parent.hash, author=KEY_BY_PUBLIC[expected_author(authorities, slot)],
                       slot=slot, timestamp_ms=slot * source.slot_ms,
                       transactions=[source.transfer(ALICE, BOB.public, 10**11), forged], signatures_checked=True).block


def forged_signature(source: TestChain) -> Block:
    return with_forged_transfer(source)


def forged_signature_and_wrong_state_root(source: TestChain) -> Block:
    block = with_forged_transfer(source)
    return resealed(block, dataclasses.replace(block.header, state_root=b"\x08" * 32))


def forged_signature_and_wrong_extrinsics_root(source: TestChain) -> Block:
    block = with_forged_transfer(source)
    return resealed(block, dataclasses.replace(block.header, extrinsics_root=b"\x09" * 32))


def wrong_extrinsics_root_and_state_root(source: TestChain) -> Block:
    block = source.build([source.transfer(ALICE, BOB.public, 10**11)]).block
    return resealed(block, dataclasses.replace(block.header, extrinsics_root=b"\x09" * 32, state_root=b"\x08" * 32))


def appended(source: TestChain, extrinsic) -> Block:
    """A block with `extrinsic` added after its author built it (roots of the body, not of the state)."""
    broke = extrinsic
    parent = source.chain.best_header()
    slot = parent.digest.slot + 1
    authorities = source.executive.authorities(source.chain.state_view(parent.hash))
    built = build_block(source.chain, source.executive, parent.hash, author=KEY_BY_PUBLIC[expected_author(authorities, slot)],
                        slot=slot, timestamp_ms=slot * source.slot_ms, transactions=[], signatures_checked=True).block
    extrinsics = built.extrinsics + (broke,)
    root = compute_extrinsics_root([x.hash for x in extrinsics])
    return resealed(Block(built.header, extrinsics), dataclasses.replace(built.header, extrinsics_root=root))


@pytest.mark.parametrize("spoil,error_type,message", [
    (forged_signature, BadSignature, "extrinsic signature 1 "),
    (forged_signature_and_wrong_state_root, BadSignature, "extrinsic signature 1 "),
    (forged_signature_and_wrong_extrinsics_root, BadSignature, "extrinsic signature 1 "),
    (wrong_extrinsics_root_and_state_root, None, "extrinsics root mismatch"),
    (lambda source: appended(source, source.transfer(BOB, ALICE.public, 10**11, nonce=99)), None,
     "(balances.transfer) is invalid: nonce 99 is ahead"),  # execution's error, once the signatures pass
    (lambda source: appended(source, source.transfer(BOB, ALICE.public, 10**30)), None,
     "state root mismatch"),  # a failing transfer is included: its fee and nonce are not in the header's state
])
def test_a_refused_block_in_the_middle_of_a_run_fails_as_alone_and_stops_the_run(tmp_path, spoil, error_type, message):
    source = TestChain(tmp_path / "source", finalize=False)
    try:
        run = [source.author_block([source.transfer(ALICE, BOB.public, 10**11 + i)]).block for i in range(3)]
        spoiled = spoil(source)
        after = source.build([source.transfer(ALICE, BOB.public, 10**11)], parent=spoiled.header.parent_hash).block
        after = resealed(Block(dataclasses.replace(after.header, parent_hash=spoiled.hash,
                                                   number=spoiled.header.number + 1), after.extrinsics),
                         dataclasses.replace(after.header, parent_hash=spoiled.hash, number=spoiled.header.number + 1))
    finally:
        source.close()
    run = run + [spoiled, after]
    with imported_alone_and_as_run(tmp_path, run) as (inline, shared, expected, got):
        outcomes = [IMPORTED, IMPORTED, IMPORTED, BAD, MISSING_PARENT]
        assert [r.outcome for r in got] == [r.outcome for r in expected] == outcomes
        assert type(got[3].error) is type(expected[3].error)
        assert got[3].error.message == expected[3].error.message and message in got[3].error.message
        if error_type is not None:
            assert isinstance(got[3].error, error_type)
        assert shared.chain.header(spoiled.hash) is None and shared.chain.verification_status(spoiled.hash) is None
        assert shared.chain.best_hash == inline.chain.best_hash == run[2].hash
        assert shared.chain.best_header().state_root == inline.chain.best_header().state_root


def test_a_body_that_is_not_the_headers_is_not_executed_in_a_run(tmp_path, monkeypatch):
    """The extrinsics root is compared before execution, as execution itself would: a peer serving real
    headers with other bodies costs a hash per block, not an execution."""
    source = TestChain(tmp_path / "source", finalize=False)
    try:
        run = [source.author_block([source.transfer(ALICE, BOB.public, 10**11)]).block]
        good = source.build([source.transfer(ALICE, BOB.public, 10**11)]).block
        other = source.build([source.transfer(BOB, ALICE.public, 10**11)]).block
    finally:
        source.close()
    swapped = Block(good.header, good.extrinsics[:-1] + other.extrinsics[-1:])
    shared = TestChain(tmp_path / "shared", finalize=False)
    executed = []
    execute_block = shared.executive.execute_block
    monkeypatch.setattr(shared.executive, "execute_block",
                        lambda view, block, **kw: executed.append(block.hash) or execute_block(view, block, **kw))
    try:
        with SignatureVerifier() as verifier:
            got = list(shared.importer.import_run(run + [swapped], verifier))
        assert [r.outcome for r in got] == [IMPORTED, BAD] and "extrinsics root mismatch" in got[1].error.message
        assert executed == [run[0].hash]
    finally:
        shared.close()
