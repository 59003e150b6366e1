"""Warming the trie's internal-node cache when a chain opens, and the cached node shape.

Warming changes speed, never results: a store reopened on an existing chain holds the
best state's internal nodes (top levels first, within the cache's bound), and what it
reads and computes from them is what a cold trie and the slow reference give, also
after a re-org, a pruned fork and a restart.
"""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.pallets.system import Account
from storage.chainstore import ChainStore
from storage.database import Database
from storage.fork_pruning import prune_excluded_forks
from storage.trie import EMPTY_STATE, StateTrie, _INTERNAL, compute_root_reference
from tests.helpers.chain import DEV_KEYS, TestChain

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def commit(db: Database, trie: StateTrie, state, changes, version):
    update = trie.update(state, changes, version)
    db.write(update.new_nodes)
    trie.remember(update)
    return update.state


def internal_keys(trie: StateTrie, state) -> set[bytes]:
    return {k for k in trie.iter_node_keys(state) if trie.read_node(k)[0] == _INTERNAL}


def test_warm_loads_every_internal_node_and_no_leaf(tmp_path):
    db = Database(tmp_path / "db")
    try:
        state = commit(db, StateTrie(db.get), EMPTY_STATE, {b"k%d" % i: b"v%d" % i for i in range(3000)}, 1)
        cold = StateTrie(db.get)
        assert cold.warm(state) == len(internal_keys(cold, state)) > 16
        assert set(cold._internal) == internal_keys(cold, state)
        assert not cold._cache  # leaves stay where they are until read
        assert cold.warm(state) == 0  # already there
    finally:
        db.close()


def test_warm_stays_within_the_cache_bound_and_takes_the_top_levels_first(tmp_path):
    db = Database(tmp_path / "db")
    try:
        state = commit(db, StateTrie(db.get), EMPTY_STATE, {b"k%d" % i: b"v" for i in range(3000)}, 1)
        small = StateTrie(db.get, internal_cache_size=17)
        assert small.warm(state) == 17
        depths = sorted(node_key[9] for node_key in small._internal)
        assert depths == [0] + [1] * 16  # the root and its 16 children, not some deep path
    finally:
        db.close()


def test_warm_of_an_empty_or_one_key_state_loads_nothing(tmp_path):
    db = Database(tmp_path / "db")
    try:
        trie = StateTrie(db.get)
        assert trie.warm(EMPTY_STATE) == 0
        one = commit(db, trie, EMPTY_STATE, {b"only": b"1"}, 1)  # its root is a leaf
        fresh = StateTrie(db.get)
        assert fresh.warm(one) == 0 and not fresh._internal
        assert fresh.get(one, b"only") == b"1"
    finally:
        db.close()


def test_warm_leaves_the_collector_as_it_found_it(tmp_path):
    db = Database(tmp_path / "db")
    try:
        state = commit(db, StateTrie(db.get), EMPTY_STATE, {b"k%d" % i: b"v" for i in range(200)}, 1)
        assert gc.isenabled()
        StateTrie(db.get).warm(state)
        assert gc.isenabled()
        gc.disable()
        try:
            StateTrie(db.get).warm(state)
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        db.close()


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(st.dictionaries(st.binary(min_size=1, max_size=5), st.one_of(st.none(), st.binary(max_size=6)),
                                        max_size=60), min_size=1, max_size=5),
       probes=st.lists(st.binary(min_size=1, max_size=5), max_size=10))
def test_a_warmed_trie_computes_what_the_reference_does(tmp_path_factory, batches, probes):
    """Updates and reads through warmed (tuple) nodes, decoded ones and nodes an update wrote agree."""
    db = Database(tmp_path_factory.mktemp("trie"))
    try:
        writer = StateTrie(db.get)
        model: dict[bytes, bytes] = {}
        state = EMPTY_STATE
        for version, changes in enumerate(batches, start=1):
            warmed = StateTrie(db.get)
            warmed.warm(state)
            expected = warmed.update(state, changes, version)
            state = commit(db, writer, state, changes, version)
            assert expected.state == state
            model = {k: v for k, v in {**model, **changes}.items() if v is not None}
            assert state.root == compute_root_reference(model)
            reopened = StateTrie(db.get)
            reopened.warm(state)
            for key in list(model) + probes:
                assert reopened.get(state, key) == writer.get(state, key) == model.get(key)
                assert reopened.prove(state, key) == writer.prove(state, key)
    finally:
        db.close()


def test_a_reopened_chain_is_warm_and_agrees_after_a_reorg_and_pruning(tmp_path):
    """Fork, re-org, finalize (the fork is pruned), restart: the warmed caches describe the best state."""
    chain = TestChain(tmp_path / "db", finalize=False)
    try:
        base = chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)]).block
        chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)])  # the first branch, one block
        fork = base.hash
        for i in range(2):  # a longer branch from the same parent: fork choice moves to it
            built = chain.build([chain.transfer(ALICE, bytes([i + 7]) * 32, 10**11, nonce=1 + i)], parent=fork)
            chain.import_block(built.block).raise_for_error()
            fork = built.block.hash
        assert chain.chain.best_hash == fork
        chain.chain.set_finalized(fork)
        assert prune_excluded_forks(chain.chain) == 1
        best = chain.chain.best_hash
        root = chain.state_root()
        alice = chain.account(ALICE.public)
    finally:
        chain.close()
    store = ChainStore.open(tmp_path / "db")
    try:
        store.warm_caches()
        ref = store.stored_state(best).ref
        assert store.head_cache.ref == ref and ref.root == root
        assert set(store.trie._internal) == internal_keys(store.trie, ref)
        view = store.state_view(best)
        assert view.get(Account.key_of(ALICE.public)) == StateTrie(store.db.get).get(ref, Account.key_of(ALICE.public))
        assert Account.get(_overlay(view), ALICE.public) == alice
    finally:
        store.close()


def _overlay(view):
    from runtime.state import Overlay

    return Overlay(view)
