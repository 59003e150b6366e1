"""The trie's node caches (internal nodes apart from leaves) change speed, never results: a trie
with tiny caches and one with caches that hold everything give the same roots, reads and proofs
as the slow reference, and each cache stays within its bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.database import Database
from storage.trie import EMPTY_STATE, StateTrie, compute_root_reference

keys = st.binary(min_size=1, max_size=6)


def commit(db: Database, trie: StateTrie, state, changes, version):
    update = trie.update(state, changes, version)
    db.write(update.new_nodes)
    trie.remember(update)
    return update.state


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.dictionaries(keys, st.one_of(st.none(), st.binary(max_size=8)), max_size=40),
                        min_size=1, max_size=6),
       probes=st.lists(keys, max_size=20))
def test_tiny_and_large_caches_agree_with_the_reference(tmp_path_factory, batches, probes):
    db = Database(tmp_path_factory.mktemp("trie"))
    try:
        tiny = StateTrie(db.get, cache_size=16, internal_cache_size=16)
        large = StateTrie(db.get, cache_size=100_000, internal_cache_size=100_000)
        model: dict[bytes, bytes] = {}
        state = EMPTY_STATE
        for version, changes in enumerate(batches, start=1):
            expected = tiny.update(state, changes, version)
            state = commit(db, large, state, changes, version)  # large writes the nodes
            tiny.remember(expected)
            assert expected.state == state
            model = {k: v for k, v in {**model, **changes}.items() if v is not None}
            assert state.root == compute_root_reference(model)
            for key in list(model) + probes:
                assert tiny.get(state, key) == large.get(state, key) == model.get(key)
                assert tiny.prove(state, key) == large.prove(state, key)
            assert len(tiny._cache) <= 16 and len(tiny._internal) <= 16
    finally:
        db.close()


def test_leaf_reads_do_not_push_internal_nodes_out(tmp_path):
    db = Database(tmp_path / "db")
    try:
        writer = StateTrie(db.get)
        state = commit(db, writer, EMPTY_STATE, {b"k%d" % i: b"v" for i in range(5000)}, 1)
        trie = StateTrie(db.get, cache_size=100, internal_cache_size=10_000)
        for i in range(5000):
            assert trie.get(state, b"k%d" % i) == b"v"
        internal = len(trie._internal)
        assert internal == sum(1 for k in writer.iter_node_keys(state) if trie._peek(k)[0])  # every one kept
        assert len(trie._cache) <= 100
        reads = []
        trie._get_node = lambda key: reads.append(key) or db.get(key)
        for i in range(5000):
            trie.get(state, b"k%d" % i)
        assert len(reads) <= 5000  # a read of a large state costs at most its leaf
    finally:
        db.close()
