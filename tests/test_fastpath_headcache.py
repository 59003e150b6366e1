"""The best-state read cache: reads through it equal reads of the trie, for every state."""

from __future__ import annotations

from runtime.genesis import build_genesis_state
from runtime.pallets.system import Account
from storage.chainstore import ChainStore
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def test_a_new_store_reads_genesis_through_its_cache_and_agrees_with_the_trie(tmp_path):
    genesis_state = build_genesis_state(dev_genesis())
    store = ChainStore.open(tmp_path / "db")
    try:
        store.initialize(genesis_state)
        view = store.state_view(store.best_hash)
        for key, value in genesis_state.items():
            assert view.get(key) == value == store.trie.get(view.ref, key)
            assert store.head_cache.values[key] == value
    finally:
        store.close()


def test_a_reopened_store_starts_its_cache_at_the_best_state_filled_from_the_flat_table(tmp_path):
    chain = TestChain(tmp_path / "db")
    chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)])
    best = chain.chain.best_hash
    chain.close()
    store = ChainStore.open(tmp_path / "db")
    try:
        store.initialize(build_genesis_state(dev_genesis()))
        best_ref = store.stored_state(best).ref
        assert store.head_cache.ref == best_ref and store.head_cache.values
        assert store.head_cache.values == dict(store.trie.iter_items(best_ref))  # the whole (small) state
        view = store.state_view(best)
        key = Account.key_of(ALICE.public)
        assert view.get(key) == store.trie.get(view.ref, key)
        assert store.head_cache.values[key] == view.get(key)  # read through the cache of the best state
    finally:
        store.close()


def test_views_of_genesis_and_of_later_blocks_each_read_their_own_state(tmp_path):
    chain = TestChain(tmp_path / "db")
    try:
        key = Account.key_of(ALICE.public)
        genesis_view = chain.chain.state_view(chain.chain.best_hash)
        at_genesis = genesis_view.get(key)
        for _ in range(3):
            chain.author_block([chain.transfer(ALICE, BOB.public, 10**11)])
        best_view = chain.chain.state_view(chain.chain.best_hash)
        assert genesis_view.get(key) == at_genesis == chain.chain.trie.get(genesis_view.ref, key)
        assert best_view.get(key) == chain.chain.trie.get(best_view.ref, key) != at_genesis
    finally:
        chain.close()


def test_a_full_cache_drops_its_oldest_entries_and_keeps_the_newest():
    from storage.state_view import HeadCache
    from storage.trie import StateRef

    cache = HeadCache(max_entries=100)
    states = [StateRef(bytes([n]) * 32, n) for n in range(4)]
    cache.start(states[0])
    cache.values.update({b"old%d" % i: b"v" for i in range(90)})
    cache.advance(states[0], states[1], {b"new%d" % i: b"n" for i in range(20)})
    assert len(cache.values) <= 100 and all(cache.values[b"new%d" % i] == b"n" for i in range(20))
    assert b"old0" not in cache.values and b"old89" in cache.values  # the oldest went first, not everything
    cache.advance(states[2], states[3], {b"x": b"y"})  # not on top of its state: nothing it held is kept
    assert cache.values == {b"x": b"y"} and cache.ref == states[3]
