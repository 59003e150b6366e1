"""The import pipeline: every failed check leaves nothing of the block, and fork choice follows its rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from consensus.fork_choice import tie_key
from consensus.import_queue import (
    BAD, IMPORTED, KNOWN, MISSING_PARENT, BadSeal, BadSlot, BadTimestamp, RevertsFinality, UnknownParent, WrongAuthor,
)
from runtime.errors import InvalidBlock
from runtime.genesis import BadAvailabilityDeadline, parse_genesis
from runtime.pallets import timestamp
from runtime.types import Block, Digest, Extrinsic, Seal
from storage.block_status import DISPUTED, UNVERIFIABLE, VERIFIED, VerificationStatus
from tests.helpers.chain import DEV_KEYS, KEY_BY_PUBLIC, TestChain, dev_genesis, imported_alone_and_as_run, resealed

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def two_validator_chain(path, **kwargs) -> TestChain:
    spec = dict(dev_genesis().spec)
    spec["validators"] = spec["validators"][:1] + [{"name": "Bob", "account": "//Bob",
                                                     "stake": spec["validators"][0]["stake"]}]
    return TestChain(path, parse_genesis(spec), **kwargs)


def everything(chain: TestChain) -> dict[bytes, bytes]:
    return dict(chain.chain.db.items_with_prefix(b""))


@pytest.fixture
def chain(tmp_path):
    chain = TestChain(tmp_path / "db", finalize=False)
    yield chain
    chain.close()


def _good_block(chain: TestChain) -> Block:
    chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)])
    built = chain.build([chain.transfer(ALICE, BOB.public, 10**11)])
    return built.block


def _bad_seal(chain, block):
    header = block.header
    return Block(dataclasses.replace(header, digest=Digest(header.digest.slot, header.digest.author,
                                                           Seal(b"\x01" * 64))), block.extrinsics)


def _wrong_author(chain, block):
    header = block.header
    return resealed(block, header, BOB)


def _bad_slot(chain, block):
    parent = chain.chain.header(block.header.parent_hash)
    return resealed(block, dataclasses.replace(block.header, digest=dataclasses.replace(
        block.header.digest, slot=parent.digest.slot)))


def _bad_timestamp(chain, block):
    moment = Extrinsic(None, timestamp.set(block.extrinsics[0].call.args[0] + chain.slot_ms))  # the next slot's
    extrinsics = (moment,) + block.extrinsics[1:]
    from runtime.types import compute_extrinsics_root
    header = dataclasses.replace(block.header, extrinsics_root=compute_extrinsics_root([x.hash for x in extrinsics]))
    return resealed(Block(header, extrinsics), header)


def _unknown_parent(chain, block):
    return resealed(block, dataclasses.replace(block.header, parent_hash=b"\x07" * 32))


def _wrong_state_root(chain, block):
    return resealed(block, dataclasses.replace(block.header, state_root=b"\x08" * 32))


def _wrong_extrinsics_root(chain, block):
    return resealed(block, dataclasses.replace(block.header, extrinsics_root=b"\x09" * 32))


@pytest.mark.parametrize("spoil,error,outcome,message", [
    (_bad_seal, BadSeal, BAD, "seal"),
    (_wrong_author, WrongAuthor, BAD, "belongs to"),
    (_bad_slot, BadSlot, BAD, "not after the parent's slot"),
    (_bad_timestamp, BadTimestamp, BAD, "is not in slot"),
    (_unknown_parent, UnknownParent, MISSING_PARENT, "is unknown"),
    (_wrong_state_root, InvalidBlock, BAD, "state root mismatch"),
    (_wrong_extrinsics_root, InvalidBlock, BAD, "extrinsics root mismatch"),
])
def test_a_block_that_fails_a_check_leaves_nothing_in_the_database(chain, spoil, error, outcome, message):
    block = spoil(chain, _good_block(chain))
    before = everything(chain)
    result = chain.importer.import_block(block)
    assert result.outcome == outcome and isinstance(result.error, error), result.error
    assert message in result.error.message
    assert everything(chain) == before
    assert chain.chain.header(block.hash) is None and chain.chain.verification_status(block.hash) is None


def test_a_block_below_finality_reverts_finality_and_leaves_nothing(tmp_path):
    chain = TestChain(tmp_path / "db", finalize=True)
    try:
        genesis = chain.chain.best_hash
        chain.author_block()
        chain.author_block()
        fork = chain.build([], parent=genesis).block  # #1 beside the finalized #2
        before = everything(chain)
        result = chain.importer.import_block(fork)
        assert result.outcome == BAD and isinstance(result.error, RevertsFinality)
        assert everything(chain) == before
    finally:
        chain.close()


def test_an_imported_block_says_so_and_a_second_import_is_already_known(chain):
    block = _good_block(chain)
    first = chain.importer.import_block(block)
    assert first.outcome == IMPORTED and first.is_best and first.status.state == VERIFIED
    again = chain.importer.import_block(block)
    assert again.outcome == KNOWN and not again.is_best


# --- fork choice ----------------------------------------------------------------------------


@pytest.fixture
def forks(tmp_path):
    chain = two_validator_chain(tmp_path / "db", finalize=False)
    yield chain
    chain.close()


def add(chain: TestChain, parent: bytes, slot: int):
    built = chain.build([], parent=parent, slot=slot)
    return chain.importer.import_block(built.block, authored=built.state).raise_for_error()


def test_the_longest_fork_wins_whichever_arrives_first(forks):
    genesis = forks.chain.best_hash
    a1 = add(forks, genesis, 2)
    b1 = add(forks, genesis, 3)
    b2 = add(forks, b1.hash, 4)
    assert a1.is_best and not b1.is_best and b2.is_best
    assert b2.route.retracted[0].hash == a1.hash and [h.hash for h in b2.route.enacted] == [b1.hash, b2.hash]
    assert forks.chain.hash_at(1) == b1.hash and forks.chain.hash_at(2) == b2.hash


def test_a_tie_goes_to_the_lower_slot_then_the_lower_hash(forks):
    genesis = forks.chain.best_hash
    late = add(forks, genesis, 5)
    early = add(forks, genesis, 3)  # same height, authored earlier: it wins though it arrived second
    assert late.is_best and early.is_best and forks.chain.best_hash == early.hash
    a, b = forks.chain.header(late.hash), forks.chain.header(early.hash)
    assert min([a, b], key=tie_key).hash == early.hash
    same_slot = [dataclasses.replace(a, digest=dataclasses.replace(a.digest, slot=7)),
                 dataclasses.replace(b, digest=dataclasses.replace(b.digest, slot=7))]
    assert min(same_slot, key=tie_key).hash == min(h.hash for h in same_slot)


def test_a_disputed_branch_is_never_best_however_long(forks):
    genesis = forks.chain.best_hash
    a1 = add(forks, genesis, 2)
    b1 = add(forks, genesis, 3)
    forks.importer.set_status(b1.hash, VerificationStatus(DISPUTED, ("report does not reproduce",)))
    b2 = add(forks, b1.hash, 4)
    b3 = add(forks, b2.hash, 6)
    assert not b2.is_best and not b3.is_best
    assert forks.chain.best_hash == a1.hash
    a2 = add(forks, a1.hash, 8)
    assert a2.is_best  # authors build on the best: never on the disputed branch


def test_a_dispute_arriving_after_descendants_reorgs_to_the_best_undisputed_chain(forks):
    genesis = forks.chain.best_hash
    a1 = add(forks, genesis, 2)
    a2 = add(forks, a1.hash, 4)
    a3 = add(forks, a2.hash, 6)
    b1 = add(forks, genesis, 3)
    b2 = add(forks, b1.hash, 5)
    assert forks.chain.best_hash == a3.hash
    moved = forks.importer.set_status(a2.hash, VerificationStatus(DISPUTED, ("aggregate differs",)))
    assert moved is not None and moved.new_best.hash == b2.hash
    assert [h.hash for h in moved.retracted] == [a3.hash, a2.hash, a1.hash]
    assert forks.chain.hash_at(1) == b1.hash and forks.chain.hash_at(2) == b2.hash and forks.chain.hash_at(3) is None
    # and an unverifiable block is excluded the same way: cannot-check is not checked
    moved = forks.importer.set_status(b2.hash, VerificationStatus(UNVERIFIABLE, (), (b"\x01" * 32,), 2))
    assert moved.new_best.hash == a1.hash  # a1 (slot 2) beats b1 (slot 3) at height 1


def test_finalize_refuses_a_block_that_is_not_verified(forks):
    genesis = forks.chain.best_hash
    a1 = add(forks, genesis, 2)
    forks.importer.set_status(a1.hash, VerificationStatus("pending"))
    from storage.chainstore import ChainStoreError
    with pytest.raises(ChainStoreError, match="pending, not verified"):
        forks.chain.set_finalized(a1.hash)


# --- genesis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, "20", 1.5, 10**7])
def test_a_bad_availability_deadline_in_genesis_is_a_named_error(value):
    spec = dict(dev_genesis().spec, useful_work_availability_blocks=value)
    with pytest.raises(BadAvailabilityDeadline, match="useful_work_availability_blocks") as caught:
        parse_genesis(spec)
    assert caught.value.code == "genesis_availability_deadline"


def test_the_availability_deadline_is_read_from_genesis():
    config = parse_genesis(dict(dev_genesis().spec, useful_work_availability_blocks=7))
    assert config.useful_work_availability_blocks == 7
    assert dev_genesis().useful_work_availability_blocks == 20


# --- a run of blocks on two cores -------------------------------------------------------------


def test_a_run_imported_on_two_cores_gives_the_same_chain_and_the_same_first_error(tmp_path):
    from consensus.authorship import build_block
    from consensus.import_queue import BadSignature, expected_author
    from runtime.types import Era

    source = TestChain(tmp_path / "source")
    try:
        blocks = [source.author_block([source.transfer(ALICE, BOB.public, 10**11)]).block]
        birth = source.chain.best_header()
        blocks.append(source.author_block().block)
        mortal = source.transfer(ALICE, BOB.public, 10**11, era=Era(8, birth.number), birth_hash=birth.hash)
        blocks.append(source.author_block([mortal]).block)  # its message needs the ancestry: block 1's hash
        forged = source.transfer(BOB, ALICE.public, 10**11)
        forged = dataclasses.replace(forged, signed=dataclasses.replace(forged.signed, signature=b"\x05" * 64))
        honest = source.transfer(ALICE, BOB.public, 10**11)
        parent = source.chain.best_header()
        slot = parent.digest.slot + 1
        authorities = source.executive.authorities(source.chain.state_view(parent.hash))
        author = KEY_BY_PUBLIC[expected_author(authorities, slot)]
        bad = build_block(source.chain, source.executive, parent.hash, author=author, slot=slot,
                          timestamp_ms=slot * source.slot_ms, transactions=[honest, forged],
                          signatures_checked=True).block  # the author skipped the check: the importer must not
        blocks.append(bad)
    finally:
        source.close()
    with imported_alone_and_as_run(tmp_path, blocks) as (inline, shared, expected, got):
        assert [r.outcome for r in got] == [r.outcome for r in expected] == [IMPORTED, IMPORTED, IMPORTED, BAD]
        assert isinstance(got[3].error, BadSignature) and got[3].error.message == expected[3].error.message
        assert "extrinsic signature 1 " in got[3].error.message  # the forged one, after the honest one
        assert shared.chain.best_header().state_root == inline.chain.best_header().state_root
        assert shared.chain.header(bad.hash) is None


# --- fork choice against its slow twin ----------------------------------------------------------


def best_by_definition(store) -> bytes:
    """The rule read literally: every stored block that descends from the finalized block with no excluded
    block on the way (itself included); the highest, then the lowest slot, then the lowest hash."""
    finalized = store.finalized_header()
    every = {}
    for leaf in store.leaves():
        header = store.header(leaf)
        while header is not None and header.hash not in every:
            every[header.hash] = header
            header = store.header(header.parent_hash) if header.number > 0 else None

    def candidate(header) -> bool:
        while header.number > finalized.number:
            status = store.verification_status(header.hash)
            if status is not None and status.is_excluded:
                return False
            header = store.header(header.parent_hash)
        return header.hash == finalized.hash
    return min((h for h in every.values() if candidate(h)),
               key=lambda h: (-h.number, h.digest.slot, bytes(h.hash))).hash


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["verified", "pending", "disputed",
                                                                  "unverifiable", "later-disputed"])),
                min_size=1, max_size=14))
def test_fork_choice_agrees_with_its_definition_on_random_block_trees(tmp_path_factory, moves):
    chain = two_validator_chain(tmp_path_factory.mktemp("tree") / "db", finalize=False)
    try:
        blocks = [chain.chain.genesis_hash]
        later = []
        for pick, state in moves:
            parent = blocks[pick % len(blocks)]
            slot = chain.slot + 1 + pick % 3
            built = chain.build([], parent=parent, slot=slot)
            chain.importer.import_block(built.block, authored=built.state).raise_for_error()
            blocks.append(built.block.hash)
            if state in ("disputed", "unverifiable", "pending"):
                chain.importer.set_status(built.block.hash, VerificationStatus(
                    state, missing=(b"\x01" * 32,) if state == "unverifiable" else (), since=1))
            elif state == "later-disputed":
                later.append(built.block.hash)
            assert chain.chain.best_hash == best_by_definition(chain.chain)
        for block_hash in later:  # disputes arriving after descendants were imported
            chain.importer.set_status(block_hash, VerificationStatus(DISPUTED, ("late",)))
            assert chain.chain.best_hash == best_by_definition(chain.chain)
            best = chain.chain.best_header()  # and the canonical index leads to the best block
            assert all(chain.chain.hash_at(h.number) == h.hash for h in _ancestry(chain.chain, best))
            assert chain.chain.hash_at(best.number + 1) is None
    finally:
        chain.close()


def _ancestry(store, header):
    while True:
        yield header
        if header.number == 0:
            return
        header = store.header(header.parent_hash)
