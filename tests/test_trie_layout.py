"""The trie's node layout (storage/trie_nodes.py) changes how nodes are stored and cached, never a root.

Property tests against the slow twin (`compute_root_reference`, a dict as the model):
random insert/delete sequences with forks off older states, on a real LevelDB that is
closed and reopened; databases written in the earlier msgpack form of internal nodes
(read and built upon, mixed with the new form); the diff between any two states; and
a damaged node, which is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH
from storage import schema
from storage.database import Database
from storage.state_diff import diff_states
from storage.trie import EMPTY_STATE, CorruptTrieNode, StateRef, StateTrie, TrieUpdate, compute_root_reference, \
    verify_proof
from storage.trie_nodes import (
    INTERNAL, VERSIONS_AT, decode_node, encode_internal, hashes_of, internal_hash, leaf_mask_of, mask_of,
)

pool_keys = st.integers(0, 63).map(lambda i: b"acct-%d" % i)  # small: batches overwrite and delete live keys
values = st.binary(min_size=0, max_size=20)
changes = st.dictionaries(st.one_of(pool_keys, st.binary(max_size=8)), st.one_of(st.none(), values), max_size=24)
# Each step applies its changes on top of an earlier state (index into the states so far, from the end): forks.
steps = st.lists(st.tuples(st.integers(0, 3), changes), min_size=1, max_size=12)


def applied(model: dict[bytes, bytes], batch: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    after = dict(model)
    for key, value in batch.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


def as_old_form(update: TrieUpdate) -> dict[bytes, bytes]:
    """The update's nodes as the store wrote them before the fixed layout: internal nodes as msgpack
    [1, entries], 16 entries each None or [hash, version, is_leaf]."""
    nodes = {}
    for node_key, raw in update.new_nodes.items():
        node = decode_node(raw)
        if node[0] == INTERNAL:
            mask, leaf_mask, hashes = mask_of(node), leaf_mask_of(node), hashes_of(node)
            versions = node[VERSIONS_AT:]
            entries = [[hashes[n * 32:n * 32 + 32], int.from_bytes(versions[n * 8:n * 8 + 8], "big"),
                        bool(leaf_mask >> n & 1)] if mask >> n & 1 else None for n in range(16)]
            raw = msgpack.packb([1, entries], use_bin_type=True)
        nodes[node_key] = raw
    return nodes


def check_state(trie: StateTrie, state: StateRef, model: dict[bytes, bytes], probes) -> None:
    assert state.root == compute_root_reference(model)
    assert dict(trie.iter_items(state)) == model
    for key in probes:
        assert trie.get(state, key) == model.get(key)
        assert verify_proof(state.root, key, trie.prove(state, key)) == model.get(key)


@pytest.mark.parametrize("old_form", [False, True], ids=["fixed-layout", "old-msgpack-form"])
@given(start=st.dictionaries(pool_keys, values, min_size=4, max_size=40), sequence=steps, data=st.data())
@settings(max_examples=40, deadline=None)
def test_forks_and_reopen_give_the_reference_roots_and_values(tmp_path_factory, old_form, start, sequence, data):
    path: Path = tmp_path_factory.mktemp("layout") / "db"
    db = Database(path)
    try:
        trie = StateTrie(db.get, cache_size=16, internal_cache_size=16)  # tiny caches: reads go to LevelDB
        first = trie.update(EMPTY_STATE, start, 1)
        db.write(as_old_form(first) if old_form else first.new_nodes)
        trie.remember(first)
        states = [(first.state, start)]
        for version, (back, batch) in enumerate(sequence, start=2):
            parent, model = states[max(0, len(states) - 1 - back)]  # a fork when back > 0
            update = trie.update(parent, batch, version)
            for node_key, raw in update.new_nodes.items():  # the update's inlined encoding is the documented one
                node = update.decoded[node_key]
                assert decode_node(raw) == node
                if node[0] == INTERNAL:  # cached as stored, and stored as documented
                    assert raw is node and raw == encode_internal(mask_of(node), leaf_mask_of(node),
                                                                  hashes_of(node), node[VERSIONS_AT:])
                    if node_key == schema.trie_node_key(version, b""):
                        assert internal_hash(hashes_of(node)) == update.state.root
            # alternate the stored forms, so that one state mixes nodes of both
            written = as_old_form(update) if old_form and version % 2 else update.new_nodes
            db.write(written)
            trie.remember(update)
            states.append((update.state, applied(model, batch)))
        probes = list(start) + [b"absent", b""] + [k for _, batch in sequence for k in batch]
        for state, model in states:
            check_state(trie, state, model, probes)
        db.close()

        db = Database(path)  # a restart: new caches, warmed at the last state
        reopened = StateTrie(db.get, cache_size=16)
        last_state, last_model = states[-1]
        reopened.warm(last_state)
        for state, model in data.draw(st.permutations(states))[:4]:
            check_state(reopened, state, model, probes)
        batch = data.draw(changes)
        update = reopened.update(last_state, batch, len(sequence) + 2)
        assert update.state.root == compute_root_reference(applied(last_model, batch))
    finally:
        db.close()


@given(start=st.dictionaries(pool_keys, values, max_size=40), batches=st.lists(changes, min_size=2, max_size=6),
       data=st.data())
@settings(max_examples=40, deadline=None)
def test_diff_between_any_two_states_is_the_models_difference(tmp_path_factory, start, batches, data):
    db = Database(tmp_path_factory.mktemp("diff") / "db")
    try:
        trie = StateTrie(db.get, cache_size=16)
        states, state, model = [], EMPTY_STATE, {}
        for version, batch in enumerate([start, *batches], start=1):
            update = trie.update(state, batch, version)
            db.write(update.new_nodes)
            trie.remember(update)
            state, model = update.state, applied(model, batch)
            states.append((state, model))
        (old, old_model), (new, new_model) = data.draw(st.permutations(states))[:2]
        expected = {k: (old_model.get(k), new_model.get(k)) for k in old_model.keys() | new_model.keys()
                    if old_model.get(k) != new_model.get(k)}
        diff = {key: (before, after) for key, before, after in diff_states(trie, old, new)}
        assert diff == expected
    finally:
        db.close()


def test_a_damaged_internal_node_is_refused_with_a_code_and_changes_nothing(tmp_path):
    db = Database(tmp_path / "db")
    try:
        trie = StateTrie(db.get)
        update = trie.update(EMPTY_STATE, {b"k%d" % i: b"v" for i in range(200)}, 1)
        db.write(update.new_nodes)
        root_key = schema.trie_node_key(1, b"")
        db.write({root_key: db.get(root_key)[:-3]})  # truncated
        before = list(db.items_with_prefix(b""))
        cold = StateTrie(db.get)
        for attempt in (lambda: cold.get(update.state, b"k1"), lambda: cold.update(update.state, {b"k1": b"w"}, 2),
                        lambda: cold.prove(update.state, b"k1")):
            with pytest.raises(CorruptTrieNode) as raised:
                attempt()
            assert isinstance(raised.value, GradchainError) and raised.value.code == "corrupt_trie_node"
        db.write({root_key: b"\x01" + ZERO_HASH})  # the right tag, the wrong size
        with pytest.raises(CorruptTrieNode):
            StateTrie(db.get).get(update.state, b"k1")
        assert len(list(db.items_with_prefix(b""))) == len(before)  # nothing written by the refused calls
    finally:
        db.close()
