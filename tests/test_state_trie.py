"""The state trie as a specification, on a real LevelDB."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from storage.database import Database
from storage.trie import EMPTY_ROOT, EMPTY_STATE, InvalidProof, StateTrie, compute_root_reference, verify_proof

keys = st.binary(min_size=1, max_size=12)
values = st.binary(min_size=0, max_size=40)
batches = st.lists(st.dictionaries(keys, st.one_of(st.none(), values), max_size=30), min_size=1, max_size=8)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


def apply(db: Database, trie: StateTrie, state, changes, version):
    update = trie.update(state, changes, version)
    db.write(update.new_nodes)
    trie.remember(update)
    return update


def fresh_trie(db: Database) -> StateTrie:
    return StateTrie(db.get, cache_size=64)  # a small cache: reads really go to LevelDB


@given(batches)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_incremental_root_equals_reference_root(tmp_path_factory, sequence):
    db = Database(tmp_path_factory.mktemp("trie") / "db")
    try:
        trie = fresh_trie(db)
        model: dict[bytes, bytes] = {}
        state = EMPTY_STATE
        for version, changes in enumerate(sequence, start=1):
            state = apply(db, trie, state, changes, version).state
            for k, v in changes.items():
                if v is None:
                    model.pop(k, None)
                else:
                    model[k] = v
            assert state.root == compute_root_reference(model)
            reader = fresh_trie(db)
            for k, v in model.items():
                assert reader.get(state, k) == v
            assert dict(reader.iter_items(state)) == model
    finally:
        db.close()


@given(st.dictionaries(keys, values, min_size=1, max_size=40), st.randoms())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_root_is_independent_of_insertion_order(tmp_path_factory, items, rnd):
    db = Database(tmp_path_factory.mktemp("trie") / "db")
    try:
        trie = fresh_trie(db)
        state, version = EMPTY_STATE, 0
        pairs = list(items.items())
        rnd.shuffle(pairs)
        for i in range(0, len(pairs), 3):
            version += 1
            state = apply(db, trie, state, dict(pairs[i:i + 3]), version).state
        one_batch = trie.update(EMPTY_STATE, items, version + 1).state
        assert state.root == one_batch.root == compute_root_reference(items)
    finally:
        db.close()


def test_deleting_everything_gives_the_empty_root(db):
    trie = fresh_trie(db)
    state = apply(db, trie, EMPTY_STATE, {b"a": b"1", b"b": b"2", b"c": b"3"}, 1).state
    state = apply(db, trie, state, {b"a": None, b"b": None, b"c": None}, 2).state
    assert state == EMPTY_STATE and state.root == EMPTY_ROOT


def test_noop_update_writes_nothing(db):
    trie = fresh_trie(db)
    state = apply(db, trie, EMPTY_STATE, {b"a": b"1", b"b": b"2"}, 1).state
    update = trie.update(state, {b"a": b"1", b"zz": None}, 2)
    assert update.state == state and update.new_nodes == {} and update.stale_nodes == ()


def test_get_returns_every_value_and_none_for_absent(db):
    trie = fresh_trie(db)
    items = {b"k%d" % i: b"v%d" % i for i in range(500)}
    state = apply(db, trie, EMPTY_STATE, items, 1).state
    assert all(trie.get(state, k) == v for k, v in items.items())
    assert trie.get(state, b"missing") is None


@given(st.dictionaries(keys, values, max_size=40), keys)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_inclusion_and_non_inclusion_proofs_verify(tmp_path_factory, items, probe):
    db = Database(tmp_path_factory.mktemp("trie") / "db")
    try:
        trie = fresh_trie(db)
        state = apply(db, trie, EMPTY_STATE, items, 1).state if items else EMPTY_STATE
        for key in list(items)[:5] + [probe]:
            assert verify_proof(state.root, key, trie.prove(state, key)) == items.get(key)
    finally:
        db.close()


def test_tampered_proofs_are_rejected(db):
    trie = fresh_trie(db)
    items = {b"k%d" % i: b"v%d" % i for i in range(300)}
    state = apply(db, trie, EMPTY_STATE, items, 1).state
    levels, terminal = trie.prove(state, b"k7")
    assert verify_proof(state.root, b"k7", [levels, terminal]) == b"v7"
    with pytest.raises(InvalidProof):
        verify_proof(state.root, b"k7", [levels, [0, b"forged"]])
    with pytest.raises(InvalidProof):
        verify_proof(state.root, b"k7", [levels, [2]])  # claiming absence
    with pytest.raises(InvalidProof):
        verify_proof(state.root, b"k7", [levels[1:], terminal])
    forged_level = list(levels[0])
    forged_level[3] = bytes(32) if forged_level[3] != bytes(32) else b"\x01" * 32
    with pytest.raises(InvalidProof):
        verify_proof(state.root, b"k7", [[forged_level] + levels[1:], terminal])
    with pytest.raises(InvalidProof):
        verify_proof(b"\x09" * 32, b"k7", [levels, terminal])


@given(st.recursive(st.one_of(st.none(), st.integers(), st.binary(max_size=40), st.text(max_size=5)),
                    lambda inner: st.lists(inner, max_size=17), max_leaves=60))
@settings(max_examples=300)
def test_junk_proofs_never_raise_anything_but_invalid_proof(junk):
    try:
        verify_proof(b"\x01" * 32, b"key", junk)
    except InvalidProof:
        pass


def test_old_state_is_readable_until_its_stale_nodes_are_deleted(db):
    trie = fresh_trie(db)
    first = apply(db, trie, EMPTY_STATE, {b"k%d" % i: b"a" for i in range(200)}, 1)
    second = apply(db, trie, first.state, {b"k%d" % i: b"b" for i in range(0, 200, 3)} | {b"k5": None}, 2)
    assert fresh_trie(db).get(first.state, b"k3") == b"a"
    db.write({}, second.stale_nodes)
    reader = fresh_trie(db)
    assert set(reader.iter_node_keys(second.state)).isdisjoint(second.stale_nodes)
    assert reader.get(second.state, b"k3") == b"b" and reader.get(second.state, b"k4") == b"a"
    assert reader.get(second.state, b"k5") is None
    with pytest.raises(KeyError):
        list(reader.iter_items(first.state))


def test_node_keys_follow_the_schema():
    from storage import schema
    from storage.trie import _node_key

    key_hash = bytes(range(32))
    nibbles = bytes(n for b in key_hash for n in (b >> 4, b & 15))
    for depth in (0, 1, 2, 7, 64):
        assert _node_key(9, key_hash, depth) == schema.trie_node_key(9, nibbles[:depth])
