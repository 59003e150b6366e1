"""The chain store: determinism, pruning, fork choice and the database's guards."""

from __future__ import annotations

import pytest

from runtime.genesis import build_genesis_state, parse_genesis
from storage.chainstore import ChainMismatch, ChainStore, StatePruned
from storage.database import DatabaseLocked
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def test_the_same_blocks_on_two_fresh_databases_give_identical_state_roots(tmp_path):
    source = TestChain(tmp_path / "source")
    replicas = [TestChain(tmp_path / f"replica{i}") for i in range(2)]
    try:
        for b in range(8):
            built = source.author_block([source.transfer(ALICE, bytes([b + 1]) * 32, 10**11 + b)])
            for replica in replicas:
                result = replica.import_block(built.block)
                assert result.is_best
        roots = {source.state_root()} | {r.state_root() for r in replicas}
        assert len(roots) == 1
    finally:
        source.close()
        for replica in replicas:
            replica.close()


def test_old_states_are_pruned_past_the_window_and_archive_keeps_them(tmp_path):
    pruned = TestChain(tmp_path / "pruned", pruning=4)
    archive = TestChain(tmp_path / "archive", pruning=None)
    try:
        for b in range(12):
            built = pruned.author_block([pruned.transfer(ALICE, BOB.public, 10**11)])
            archive.import_block(built.block)
        old = pruned.chain.hash_at(3)
        with pytest.raises(StatePruned):
            pruned.chain.state_view(old)
        assert pruned.account(ALICE.public, pruned.chain.hash_at(9)).nonce == 9  # inside the window
        assert archive.account(ALICE.public, old).nonce == 3  # blocks 1..3 each took one of its transfers
        nodes_pruned = sum(1 for _ in pruned.chain.db.keys_with_prefix(b"t"))
        nodes_archive = sum(1 for _ in archive.chain.db.keys_with_prefix(b"t"))
        assert nodes_pruned < nodes_archive
    finally:
        pruned.close()
        archive.close()


def test_a_longer_fork_becomes_best_and_moves_the_canonical_index(tmp_path):
    chain = TestChain(tmp_path / "db", finalize=False)
    try:
        genesis = chain.chain.best_hash
        a1 = chain.build([], parent=genesis, slot=1)
        assert chain.importer.import_block(a1.block, authored=a1.state).is_best
        b1 = chain.build([chain.transfer(ALICE, BOB.public, 10**11)], parent=genesis, slot=2)
        assert not chain.importer.import_block(b1.block, authored=b1.state).is_best  # a tie: the lower slot stays
        b2 = chain.build([], parent=b1.block.hash, slot=3)
        assert chain.importer.import_block(b2.block, authored=b2.state).is_best
        assert chain.chain.hash_at(1) == b1.block.hash and chain.chain.hash_at(2) == b2.block.hash
        assert chain.nonce(ALICE.public) == 1
    finally:
        chain.close()


def test_a_database_of_another_chain_is_refused(tmp_path):
    chain = TestChain(tmp_path / "db")
    chain.close()
    spec = dict(dev_genesis().spec, id="another_chain")
    store = ChainStore.open(tmp_path / "db")
    try:
        with pytest.raises(ChainMismatch, match="belongs to another chain"):
            store.initialize(build_genesis_state(parse_genesis(spec)))
    finally:
        store.close()


def test_a_database_open_in_another_process_is_refused(tmp_path):
    import subprocess
    import sys

    from tests.helpers.processes import LineReader

    holder = subprocess.Popen([sys.executable, "-c",
                               "import plyvel,sys,time; db=plyvel.DB(sys.argv[1], create_if_missing=True); "
                               "print('open', flush=True); time.sleep(30)", str(tmp_path / "db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert LineReader(holder.stdout).readline(timeout=30) == "open"
        with pytest.raises(DatabaseLocked, match="in use by another process"):
            ChainStore.open(tmp_path / "db")
    finally:
        holder.kill()
        holder.wait()


def test_a_view_of_an_older_state_never_sees_the_head_caches_newer_values(tmp_path):
    chain = TestChain(tmp_path / "db")
    try:
        chain.author_block()
        old_hash = chain.chain.best_hash
        old_view = chain.chain.state_view(old_hash)
        from runtime.pallets.system import Account

        account_key = Account.key_of(ALICE.public)
        before = old_view.get(account_key)  # fills the head cache for the old state
        chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)])
        assert old_view.get(account_key) == before
        assert chain.chain.state_view(chain.chain.best_hash).get(account_key) != before
    finally:
        chain.close()
