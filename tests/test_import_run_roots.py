"""Importing a run of blocks with the worker (signatures and the extrinsics root in a second process)
fails exactly as importing them one at a time does: the same outcome, the same first error, and
nothing of the failed block in the database."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.import_queue import BAD, IMPORTED
from consensus.signatures import SignatureVerifier
from runtime.types import Block
from tests.helpers.chain import DEV_KEYS, TestChain, imported_alone_and_as_run, resealed

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def wrong_extrinsics_root(block: Block, other: Block) -> Block:
    return resealed(block, dataclasses.replace(block.header, extrinsics_root=b"\x09" * 32))


def body_swapped(block: Block, other: Block) -> Block:
    """The header commits to one transfer, the body carries another (validly signed) one."""
    return Block(block.header, block.extrinsics[:-1] + other.extrinsics[-1:])


def wrong_state_root(block: Block, other: Block) -> Block:
    return resealed(block, dataclasses.replace(block.header, state_root=b"\x08" * 32))


@pytest.mark.parametrize("spoil,message", [
    (wrong_extrinsics_root, "extrinsics root mismatch"),
    (body_swapped, "extrinsics root mismatch"),
    (wrong_state_root, "state root mismatch"),
])
def test_a_spoiled_block_in_a_run_fails_as_it_does_alone(tmp_path, spoil, message):
    source = TestChain(tmp_path / "source", finalize=False)
    try:
        blocks = [source.author_block([source.transfer(ALICE, BOB.public, 10**11)]).block for _ in range(2)]
        good = source.build([source.transfer(ALICE, BOB.public, 10**11)]).block
        other = source.build([source.transfer(BOB, ALICE.public, 10**11)]).block
        spoiled = spoil(good, other)
    finally:
        source.close()
    run = blocks + [spoiled]
    with imported_alone_and_as_run(tmp_path, run) as (inline, shared, expected, got):
        assert [r.outcome for r in got] == [r.outcome for r in expected] == [IMPORTED, IMPORTED, BAD]
        assert got[2].error.message == expected[2].error.message and message in got[2].error.message
        assert shared.chain.header(spoiled.hash) is None and shared.chain.verification_status(spoiled.hash) is None
        assert shared.chain.best_hash == inline.chain.best_hash == blocks[-1].hash


def test_a_run_of_good_blocks_uses_the_workers_root_and_ends_where_one_at_a_time_does(tmp_path):
    source = TestChain(tmp_path / "source", finalize=False)
    try:
        run = [source.author_block([source.transfer(ALICE, BOB.public, 10**11 + i)]).block for i in range(4)]
    finally:
        source.close()
    shared = TestChain(tmp_path / "shared", finalize=False)
    try:
        with SignatureVerifier() as verifier:
            checks = verifier.submit([], [x.encoded for x in run[0].extrinsics])
            assert checks.extrinsics_root() == run[0].header.extrinsics_root
            assert checks.first_failure() == -1
            got = list(shared.importer.import_run(run, verifier))
        assert [r.outcome for r in got] == [IMPORTED] * 4
        assert shared.chain.best_header().state_root == run[-1].header.state_root
    finally:
        shared.close()
