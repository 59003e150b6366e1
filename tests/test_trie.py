"""The state trie as a specification, on a real LevelDB in a temporary directory.

Each committed update is written the way the chain store writes a block: new nodes
in one batch, then `remember`. Readers are fresh tries with a tiny cache, so reads
really go to LevelDB.
"""

from __future__ import annotations

import copy
import functools
import random
from pathlib import Path
from typing import Iterator, Mapping

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH, blake2b_256
from storage import schema
from storage.database import Database
from storage.trie import (EMPTY_ROOT, EMPTY_STATE, InvalidProof, MissingTrieNode, StateRef, StateTrie, TrieUpdate,
                          compute_root_reference, verify_proof)

# A small key space, so that batches overwrite and delete keys that exist, and
# deletions collapse internal nodes back into leaves.
pool_keys = st.integers(0, 47).map(lambda i: b"key-%d" % i)
keys = st.one_of(pool_keys, st.binary(min_size=0, max_size=12))
values = st.binary(min_size=0, max_size=24)  # b"" is a value, not a deletion
batches = st.tuples(
    st.dictionaries(pool_keys, values, min_size=8, max_size=48),  # a populated start, for deletions to hit
    st.lists(st.dictionaries(keys, st.one_of(st.none(), values), max_size=30), min_size=1, max_size=10),
).map(lambda start_and_rest: [start_and_rest[0], *start_and_rest[1]])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "db")
    yield database
    database.close()


def fresh_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A database per hypothesis example (a function-scoped tmp_path would be shared by all examples)."""
    return Database(tmp_path_factory.mktemp("trie") / "db")


def reader(db: Database) -> StateTrie:
    return StateTrie(db.get, cache_size=16)


def commit(db: Database, trie: StateTrie, update: TrieUpdate, *, prune: bool = False) -> StateRef:
    """Write an update as a block would; with `prune`, also delete the nodes it made stale (window 0)."""
    db.write(update.new_nodes, update.stale_nodes if prune else ())
    trie.remember(update)
    if prune:
        trie.forget(update.stale_nodes)
    return update.state


def build(db: Database, items: Mapping[bytes, bytes], version: int = 1,
          cache_size: int = 16) -> tuple[StateTrie, StateRef]:
    trie = StateTrie(db.get, cache_size=cache_size)
    return trie, commit(db, trie, trie.update(EMPTY_STATE, items, version))


def applied(model: dict[bytes, bytes], changes: Mapping[bytes, bytes | None]) -> dict[bytes, bytes]:
    model = dict(model)
    for key, value in changes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return model


@functools.lru_cache(maxsize=None)
def nibbles(key: bytes) -> bytes:
    return bytes(n for b in blake2b_256(key) for n in (b >> 4, b & 15))


def keys_sharing_a_prefix(length: int, count: int) -> list[bytes]:
    """`count` keys whose hashes share their first `length` nibbles (found by search, deterministic)."""
    by_prefix: dict[bytes, list[bytes]] = {}
    i = 0
    while True:
        key = b"k%d" % i
        group = by_prefix.setdefault(nibbles(key)[:length], [])
        group.append(key)
        if len(group) == count:
            return group
        i += 1


# --- roots -----------------------------------------------------------------------------


def test_empty_tree_has_the_zero_root():
    assert EMPTY_ROOT == ZERO_HASH == EMPTY_STATE.root == compute_root_reference({})
    assert EMPTY_STATE.version is None


def test_hashes_follow_the_documented_formulas(db):
    def leaf(key: bytes, value: bytes) -> bytes:
        return blake2b_256(b"\x00" + blake2b_256(key) + blake2b_256(value))

    a = b"k0"
    b = next(k for k in (b"k%d" % i for i in range(1, 100)) if nibbles(k)[0] != nibbles(a)[0])
    children = [ZERO_HASH] * 16  # two keys in different slots under the root
    children[nibbles(a)[0]], children[nibbles(b)[0]] = leaf(a, b"x"), leaf(b, b"")
    expected = blake2b_256(b"\x01" + b"".join(children))
    assert compute_root_reference({a: b"x", b: b""}) == expected
    assert build(db, {a: b"x", b: b""})[1].root == expected
    assert compute_root_reference({a: b"x"}) == leaf(a, b"x")  # one key: the root is its leaf


@given(st.dictionaries(keys, values, min_size=1, max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_root_is_independent_of_insertion_order(tmp_path_factory, items, rnd):
    db = fresh_db(tmp_path_factory)
    try:
        trie = reader(db)
        state, pairs = EMPTY_STATE, list(items.items())
        rnd.shuffle(pairs)
        for version, start in enumerate(range(0, len(pairs), 3), start=1):
            state = commit(db, trie, trie.update(state, dict(pairs[start:start + 3]), version))
        one_batch = trie.update(EMPTY_STATE, items, 1000).state
        assert state.root == one_batch.root == compute_root_reference(items)
    finally:
        db.close()


@given(batches)
@settings(max_examples=60, deadline=None)
def test_incremental_root_equals_reference_root(tmp_path_factory, sequence):
    db = fresh_db(tmp_path_factory)
    try:
        trie, state, model = reader(db), EMPTY_STATE, {}
        live: set[bytes] = set()  # the nodes of the current state, tracked from new_nodes and stale_nodes alone
        for version, changes in enumerate(sequence, start=1):
            update = trie.update(state, changes, version)
            new, stale = set(update.new_nodes), set(update.stale_nodes)
            assert all(k.startswith(schema.trie_version_prefix(version)) for k in new)
            assert stale <= live and len(stale) == len(update.stale_nodes)
            after = applied(model, changes)
            if after == model:  # nothing really changed: nothing is written
                assert update.state == state and not new and not stale
            state, model = commit(db, trie, update, prune=True), after
            live = (live - stale) | new

            assert state.root == compute_root_reference(model)
            assert (state == EMPTY_STATE) == (not model)
            fresh = reader(db)
            assert set(fresh.iter_node_keys(state)) == live == set(db.keys_with_prefix(schema.TRIE_NODE))
            assert dict(fresh.iter_items(state)) == model
            for key in list(changes) + list(model)[:10]:
                assert trie.get(state, key) == fresh.get(state, key) == model.get(key)
    finally:
        db.close()


def leaf_depths(db: Database, state: StateRef) -> dict[bytes, int]:
    """Each key of the state and the depth its leaf is stored at (byte 9 of a node key is its depth)."""
    depths = {}
    for node_key in reader(db).iter_node_keys(state):
        raw = db.get(node_key)
        if raw[0] != 1:  # a leaf (msgpack [0, key, value]); internal nodes start with 0x01
            node = msgpack.unpackb(raw)
            depths[node[1]] = node_key[9]
    return depths


def shortest_unique_depth(key: bytes, others: list[bytes]) -> int:
    """One more than the longest path prefix `key` shares with any other key (0 when alone)."""
    own = nibbles(key)
    shared = [next((d for d in range(64) if own[d] != nibbles(o)[d]), 64) for o in others if o != key]
    return max(shared) + 1 if shared else 0


def test_deleting_a_key_collapses_its_parent_back_into_a_leaf(db):
    a, b = keys_sharing_a_prefix(3, 2)  # a and b need internal nodes down to depth 3 to separate
    others = {b"x%d" % i: b"o" for i in range(20)}
    trie, state = build(db, {a: b"A", b: b"B"} | others)
    assert leaf_depths(db, state)[b] >= 4
    state = commit(db, trie, trie.update(state, {a: None}, 2), prune=True)
    assert state.root == compute_root_reference({b: b"B"} | others)
    assert leaf_depths(db, state)[b] == shortest_unique_depth(b, list(others)) < 4
    state = commit(db, trie, trie.update(state, {k: None for k in others}, 3), prune=True)
    assert leaf_depths(db, state) == {b: 0} and state.root == compute_root_reference({b: b"B"})
    assert list(db.keys_with_prefix(schema.TRIE_NODE)) == [schema.trie_node_key(3, b"")]
    assert commit(db, trie, trie.update(state, {b: None}, 4), prune=True) == EMPTY_STATE
    assert list(db.keys_with_prefix(schema.TRIE_NODE)) == []


def test_random_deletions_keep_every_leaf_at_its_shortest_unique_prefix(db):
    rnd = random.Random(3)
    items = {b"k%d" % i: b"v%d" % i for i in range(300)}
    trie, state = build(db, items)
    remaining, version = list(items), 1
    while remaining:
        version += 1
        doomed = set(rnd.sample(remaining, min(len(remaining), rnd.choice([1, 5, 40]))))
        state = commit(db, trie, trie.update(state, dict.fromkeys(doomed), version), prune=True)
        remaining = [k for k in remaining if k not in doomed]
        assert state.root == compute_root_reference({k: items[k] for k in remaining})
        assert leaf_depths(db, state) == {k: shortest_unique_depth(k, remaining) for k in remaining}
    assert state == EMPTY_STATE and list(db.keys_with_prefix(schema.TRIE_NODE)) == []


def test_deleting_everything_gives_the_empty_root(db):
    trie, state = build(db, {b"a": b"1", b"b": b"2", b"c": b"3"})
    update = trie.update(state, {b"a": None, b"b": None, b"c": None}, 2)
    assert update.state == EMPTY_STATE and update.new_nodes == {}
    assert set(update.stale_nodes) == set(reader(db).iter_node_keys(state))


# --- the stored form -------------------------------------------------------------------


def test_nodes_are_stored_as_documented(db):
    """Walk the raw LevelDB with schema keys, msgpack and byte slices alone, and re-derive every hash
    (the stored form of storage/trie_nodes.py: leaves in msgpack, internal nodes in a fixed layout)."""
    items = {b"acct-%d" % i: b"v" * (i % 7) for i in range(300)}
    _, state = build(db, items, version=7)
    seen: dict[bytes, bytes] = {}

    def walk(version: int, path: bytes, expected_hash: bytes) -> None:
        raw = db.get(schema.trie_node_key(version, path))
        assert raw is not None
        if raw[0] != 1:
            tag, key, value = msgpack.unpackb(raw, raw=False)
            assert tag == 0 and nibbles(key)[:len(path)] == path
            assert blake2b_256(b"\x00" + blake2b_256(key) + blake2b_256(value)) == expected_hash
            seen[key] = value
            return
        assert len(raw) == 1 + 2 + 2 + 16 * 32 + 16 * 8
        mask, leaf_mask = int.from_bytes(raw[1:3], "big"), int.from_bytes(raw[3:5], "big")
        hashes, versions = raw[5:5 + 512], raw[5 + 512:]
        assert mask and leaf_mask & ~mask == 0
        assert blake2b_256(b"\x01" + hashes) == expected_hash
        for nibble in range(16):
            child_hash, child_version = hashes[nibble * 32:nibble * 32 + 32], versions[nibble * 8:nibble * 8 + 8]
            if mask >> nibble & 1:
                walk(int.from_bytes(child_version, "big"), path + bytes((nibble,)), child_hash)
            else:
                assert child_hash == ZERO_HASH and child_version == bytes(8)

    walk(state.version, b"", state.root)
    assert seen == items


def test_leaves_sit_at_the_shortest_unique_prefix(db):
    items = {b"k%d" % i: b"v" for i in range(400)}
    _, state = build(db, items)
    depths = leaf_depths(db, state)
    assert set(depths) == set(items)
    assert all(depth == shortest_unique_depth(key, list(items)) for key, depth in depths.items())


def test_update_never_writes_to_the_database(db):
    trie, state = build(db, {b"a": b"1"})
    before = list(db.items_with_prefix(b""))
    update = trie.update(state, {b"b": b"2", b"a": None}, 2)
    assert update.new_nodes and list(db.items_with_prefix(b"")) == before


def test_reusing_or_lowering_a_version_is_refused(db):
    trie, state = build(db, {b"a": b"1"}, version=5)
    for version in (5, 4):
        with pytest.raises(ValueError):
            trie.update(state, {b"a": b"2"}, version)


# --- reads -----------------------------------------------------------------------------


def test_get_returns_every_value_and_none_for_absent(db):
    items = {b"k%d" % i: b"v%d" % i for i in range(500)} | {b"": b"empty key", b"empty value": b""}
    trie, state = build(db, items)
    cold = reader(db)
    for key, value in items.items():
        assert trie.get(state, key) == cold.get(state, key) == value
    for absent in (b"missing", b"k500", b"k1\x00"):
        assert trie.get(state, absent) is None and cold.get(state, absent) is None
    assert trie.get(EMPTY_STATE, b"k1") is None


def test_iter_items_is_in_key_hash_order(db):
    items = {b"k%d" % i: b"v" for i in range(200)}
    trie, state = build(db, items)
    listed = [k for k, _ in trie.iter_items(state)]
    assert listed == sorted(items, key=blake2b_256)
    assert list(trie.iter_items(EMPTY_STATE)) == [] and list(trie.iter_node_keys(EMPTY_STATE)) == []


def test_the_cache_stays_within_its_size(db):
    trie, state = build(db, {b"k%d" % i: b"v" for i in range(2000)})
    small = StateTrie(db.get, cache_size=100)
    for i in range(2000):
        assert small.get(state, b"k%d" % i) == b"v"
    assert len(small._cache) <= 100  # the cache is internal; its bound is the contract


# --- versions and pruning ----------------------------------------------------------------


def test_noop_update_writes_nothing(db):
    trie, state = build(db, {b"a": b"1", b"b": b"2"})
    for changes in ({}, {b"zz": None}, {b"a": b"1"}, {b"a": b"1", b"b": b"2", b"zz": None}):
        update = trie.update(state, changes, 2)
        assert update.state == state and update.new_nodes == {} and update.stale_nodes == ()
    assert trie.update(EMPTY_STATE, {b"a": None}, 1) == TrieUpdate(EMPTY_STATE, {}, ())
    # Several changes that all reach one leaf: its own key, unchanged, and absent keys deleted.
    slot = nibbles(b"a")[0]
    absent = [k for k in (b"z%d" % i for i in range(200)) if nibbles(k)[0] == slot][:3]
    assert nibbles(b"b")[0] != slot and len(absent) == 3  # so all four changes meet at b"a"'s leaf
    update = trie.update(state, {b"a": b"1"} | dict.fromkeys(absent), 2)
    assert update.state == state and update.new_nodes == {} and update.stale_nodes == ()


def test_unchanged_nodes_are_carried_over_not_rewritten(db):
    trie, state = build(db, {b"k%d" % i: b"v" for i in range(1000)})
    update = trie.update(state, {b"k1": b"new"}, 2)
    depth_of_leaf = max(k[9] for k in update.new_nodes)
    assert len(update.new_nodes) == len(update.stale_nodes) == depth_of_leaf + 1  # one node per level of one path


def test_old_state_readable_until_its_stale_nodes_are_deleted(db):
    items = {b"k%d" % i: b"a" for i in range(200)}
    trie, first = build(db, items, cache_size=100_000)  # holds every node: forget must drop the pruned ones
    changes = {b"k%d" % i: b"b" for i in range(0, 200, 3)} | {b"k5": None, b"new": b"n"}
    second_update = trie.update(first, changes, 2)
    second = commit(db, trie, second_update)
    assert dict(reader(db).iter_items(first)) == items  # both states are complete on disk
    assert dict(reader(db).iter_items(second)) == applied(items, changes)

    db.write({}, second_update.stale_nodes)  # prune the first state
    trie.forget(second_update.stale_nodes)
    deleted = set(second_update.stale_nodes)
    fresh = reader(db)
    assert deleted.isdisjoint(fresh.iter_node_keys(second))
    assert dict(fresh.iter_items(second)) == applied(items, changes)
    for state_reader in (fresh, trie):  # the cache forgot the pruned nodes too
        with pytest.raises(MissingTrieNode) as raised:
            list(state_reader.iter_items(first))
        assert isinstance(raised.value, GradchainError) and isinstance(raised.value, KeyError)
        assert raised.value.code == "missing_trie_node"


# --- proofs ----------------------------------------------------------------------------


@given(st.dictionaries(keys, values, max_size=40), keys)
@settings(max_examples=60, deadline=None)
def test_inclusion_and_non_inclusion_proofs_verify(tmp_path_factory, items, probe):
    db = fresh_db(tmp_path_factory)
    try:
        trie, state = build(db, items) if items else (reader(db), EMPTY_STATE)
        for key in list(items)[:5] + [probe]:
            proof = trie.prove(state, key)
            wire = msgpack.unpackb(msgpack.packb(proof, use_bin_type=True), raw=False)  # the RPC's form
            assert verify_proof(state.root, key, proof) == verify_proof(state.root, key, wire) == items.get(key)
    finally:
        db.close()


@pytest.fixture(scope="module")
def proofs(tmp_path_factory) -> tuple[bytes, dict[int, tuple[bytes, list]]]:
    """The root of 300 keys and one proof per terminal kind: 0 included, 1 another leaf, 2 an empty slot."""
    db = Database(tmp_path_factory.mktemp("proofs") / "db")
    trie, state = build(db, {b"k%d" % i: b"v%d" % i for i in range(300)})
    found: dict[int, tuple[bytes, list]] = {0: (b"k7", trie.prove(state, b"k7"))}
    for i in range(10_000):
        key = b"absent-%d" % i
        proof = trie.prove(state, key)
        found.setdefault(proof[1][0], (key, proof))
        if len(found) == 3:
            break
    db.close()
    return state.root, found


def test_each_kind_of_proof_says_what_it_proves(proofs):
    root, found = proofs
    assert set(found) == {0, 1, 2}
    assert verify_proof(root, *found[0]) == b"v7"
    assert verify_proof(root, *found[1]) is None and verify_proof(root, *found[2]) is None


def mutations(proof: list) -> Iterator[list]:
    """Every single-byte flip of every bytes item, every dropped and every duplicated item, at any depth."""
    def at(tree: list, path: tuple[int, ...]):
        for i in path:
            tree = tree[i]
        return tree

    def positions(tree, path=()) -> Iterator[tuple[int, ...]]:
        for i, item in enumerate(tree):
            yield path + (i,)
            if isinstance(item, list):
                yield from positions(item, path + (i,))

    for path in positions(proof):
        *parent_path, index = path
        item = at(proof, path)
        if isinstance(item, bytes):
            for byte in range(len(item)):
                forged = copy.deepcopy(proof)
                at(forged, tuple(parent_path))[index] = item[:byte] + bytes((item[byte] ^ 1,)) + item[byte + 1:]
                yield forged
        for edit in ("drop", "duplicate"):
            forged = copy.deepcopy(proof)
            parent = at(forged, tuple(parent_path))
            parent.insert(index, parent[index]) if edit == "duplicate" else parent.pop(index)
            yield forged
    yield [proof[0], [1 - proof[1][0]] + proof[1][1:]]  # the other tag on the same terminal


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_tampered_proof_is_rejected(proofs, kind):
    root, found = proofs
    key, proof = found[kind]
    count = 0
    for forged in mutations(proof):
        count += 1
        with pytest.raises(InvalidProof):
            verify_proof(root, key, forged)
    assert count > 100
    with pytest.raises(InvalidProof):
        verify_proof(bytes(31) + b"\x01", key, proof)  # another root
    if kind == 0:
        with pytest.raises(InvalidProof):
            verify_proof(root, b"k8", proof)  # the proof of another key
        with pytest.raises(InvalidProof):
            verify_proof(root, key, [proof[0], [2]])  # claiming the key is absent
        with pytest.raises(InvalidProof):
            verify_proof(root, key, [proof[0], [False, proof[1][1]]])  # a bool is not the tag 0
        with pytest.raises(InvalidProof):  # the key's own leaf passed off as another key's
            verify_proof(root, key, [proof[0], [1, blake2b_256(key), blake2b_256(proof[1][1])]])


def test_proofs_deeper_than_a_key_hash_are_rejected(proofs):
    root, found = proofs
    key, (levels, terminal) = found[0]
    with pytest.raises(InvalidProof):
        verify_proof(root, key, [[[ZERO_HASH] * 16] * 65, terminal])


junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.integers(), st.floats(), st.text(max_size=4),
              st.binary(max_size=40), st.binary(min_size=32, max_size=32)),
    lambda inner: st.one_of(st.lists(inner, max_size=17), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=2), inner, max_size=3)),
    max_leaves=60)


@given(junk, st.one_of(st.just(b"k7"), junk), st.one_of(st.just(bytes(32)), junk))
@settings(max_examples=250, deadline=None)
def test_junk_proofs_never_raise_other_errors(proof, key, root):
    try:
        verify_proof(root, key, proof)
    except InvalidProof:
        pass


@given(st.sampled_from([0, 1, 2]), st.lists(st.integers(0, 64), min_size=1, max_size=4), junk)
@settings(max_examples=200, deadline=None)
def test_real_proofs_with_junk_inside_never_verify_a_forgery(proofs, kind, where, replacement):
    root, found = proofs
    key, proof = found[kind]
    forged, parent = copy.deepcopy(proof), None
    node: object = forged
    for step in where:  # walk down to some item and replace it with junk
        if not isinstance(node, list) or not node:
            break
        parent, index = node, step % len(node)
        node = node[index]
    if parent is not None:
        parent[index] = replacement
    try:
        answer = verify_proof(root, key, forged)
    except InvalidProof:
        return
    assert answer == verify_proof(root, key, proof)  # only the truth can verify


# --- scale -----------------------------------------------------------------------------


@pytest.mark.slow
def test_many_blocks_over_many_accounts_match_the_reference(db):
    rnd = random.Random(7)
    accounts = [b"acct-%d" % i for i in range(20_000)]
    model = {k: b"%d" % rnd.randrange(10**9) for k in accounts}
    trie, state = build(db, model)
    for version in range(2, 30):
        changes: dict[bytes, bytes | None] = {rnd.choice(accounts): b"%d" % rnd.randrange(10**9) for _ in range(2000)}
        changes.update({rnd.choice(accounts): None for _ in range(50)})
        state, model = commit(db, trie, trie.update(state, changes, version), prune=True), applied(model, changes)
    assert state.root == compute_root_reference(model)
    assert dict(reader(db).iter_items(state)) == model
