"""The flat table of the best state (storage/flat_state.py) equals the trie's best state after any sequence of
blocks on random forks, head moves, re-orgs, pruning, reopening and an interrupted build; real LevelDB."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.hashing import ZERO_HASH
from runtime.types import Block, BlockHash, BlockNumber, Digest, Hash, Header, Seal, ZERO_ACCOUNT, \
    compute_extrinsics_root
from storage import schema
from storage.block_status import STATUS_VERIFIED
from storage.chainstore import ChainStore, HeadChange

KEYS = [b"key%d" % n for n in range(12)]
GENESIS = {key: b"genesis-%d" % n for n, key in enumerate(KEYS[:6])}


class ForkTree:
    """A ChainStore driven directly, with a model of every block's state."""

    def __init__(self, path, pruning=None) -> None:
        self.path, self.pruning = path, pruning
        self.store = ChainStore.open(path, pruning=pruning)
        genesis = self.store.initialize(GENESIS)
        self.states = {genesis: dict(GENESIS)}
        self.numbers = {genesis: 0}
        self.parents = {genesis: None}
        self.slot = 0

    def add(self, parent: bytes, changes: dict, head_to: str) -> bytes:
        view = self.store.state_view(parent)
        executed = view.compute_state(changes)
        self.slot += 1
        header = Header(BlockHash(parent), BlockNumber(self.numbers[parent] + 1), Hash(executed.root),
                        compute_extrinsics_root([]), Digest(self.slot, ZERO_ACCOUNT, Seal(b"")))
        block = Block(header, ())
        state = dict(self.states[parent])
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        self.states[block.hash], self.numbers[block.hash], self.parents[block.hash] = state, header.number, parent
        target = {"new": block.hash, "none": None, "other": self.store.best_hash}[head_to]
        head = None if target is None else self.head_change(target)
        self.store.commit_block(block, executed, STATUS_VERIFIED, head=head)
        return block.hash

    def head_change(self, best: bytes) -> HeadChange:
        chain, cursor = [], best
        while cursor is not None:
            chain.append((self.numbers[cursor], cursor))
            cursor = self.parents[cursor]
        top = max(self.numbers.values())
        return HeadChange(best, tuple(chain), tuple(range(self.numbers[best] + 1, top + 1)))

    def reopen(self) -> None:
        self.store.close()
        self.store = ChainStore.open(self.path, pruning=self.pruning)
        self.store.initialize(GENESIS)

    def flat_table(self) -> dict[bytes, bytes]:
        return {key[1:]: value for key, value in self.store.db.items_with_prefix(schema.FLAT_STATE)}

    def check(self, readable=None) -> None:
        best = self.store.best_hash
        expected = self.states[best]
        assert self.flat_table() == expected
        assert self.store.flat.block == best and self.store.db.get(schema.meta_key(schema.META_FLAT_HEAD)) == best
        for block_hash in (readable if readable is not None else self.states):
            view = self.store.state_view(block_hash)
            for key in KEYS:
                assert view.get(key) == self.states[block_hash].get(key) == self.store.trie.get(view.ref, key)


changes_strategy = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=1, max_size=8)),
                                   max_size=5)
step = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 10**6), changes_strategy, st.sampled_from(["new", "none", "other"])),
    st.tuples(st.just("head"), st.integers(0, 10**6), st.sampled_from(["set_head", "write_status"])),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("forget")),  # a database of a version without the table: it is built again at open
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_the_flat_table_is_the_best_state_after_any_forks_reorgs_and_reopens(tmp_path_factory, steps):
    tree = ForkTree(tmp_path_factory.mktemp("flat") / "db")
    try:
        tree.check()
        for action in steps:
            blocks = sorted(tree.states)
            if action[0] == "add":
                tree.add(blocks[action[1] % len(blocks)], action[2], action[3])
            elif action[0] == "head":
                target = blocks[action[1] % len(blocks)]
                if action[2] == "set_head":
                    tree.store.set_head(tree.head_change(target))
                else:
                    tree.store.write_status(target, STATUS_VERIFIED, head=tree.head_change(target))
            elif action[0] == "reopen":
                tree.reopen()
            else:
                tree.store.db.write({}, [schema.meta_key(schema.META_FLAT_HEAD)])
                tree.reopen()
            tree.check()
    finally:
        tree.store.close()


def test_the_table_follows_the_best_chain_while_old_states_are_pruned(tmp_path):
    tree = ForkTree(tmp_path / "db", pruning=2)
    try:
        parent = tree.store.best_hash
        side = tree.add(parent, {KEYS[0]: b"side"}, "none")
        for n in range(8):
            parent = tree.add(parent, {KEYS[n % 12]: b"v%d" % n, KEYS[(n + 5) % 12]: None}, "new")
            tree.store.set_finalized(parent)
        assert tree.store.prune() == 0  # finality pruned on the way
        kept = [h for h in tree.states if h != side and tree.numbers[h] >= tree.numbers[parent] - 2]
        tree.check(readable=kept)
        tree.reopen()
        tree.check(readable=kept)
    finally:
        tree.store.close()


def test_a_build_interrupted_by_a_crash_leaves_the_table_unused_and_is_done_again_at_open(tmp_path, monkeypatch):
    tree = ForkTree(tmp_path / "db")
    best = tree.add(tree.store.best_hash, {KEYS[7]: b"x", KEYS[1]: None}, "new")
    tree.store.db.write({}, [schema.meta_key(schema.META_FLAT_HEAD)])  # as if written before the table existed
    tree.store.close()
    store = ChainStore.open(tmp_path / "db", pruning=None)
    writes = []
    real_write = store.db.write

    def crash_after_two(*args, **kwargs):
        if len(writes) == 2:
            raise KeyboardInterrupt("killed")
        writes.append(args)
        real_write(*args, **kwargs)

    monkeypatch.setattr(store.db, "write", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.initialize(GENESIS)
    store.close()
    store = ChainStore.open(tmp_path / "db", pruning=None)
    assert store.flat.block is None and store.flat.ref is None  # unused: reads go to the trie
    view = store.state_view(best)
    assert view.get(KEYS[7]) == b"x" and view.get(KEYS[1]) is None
    store.close()
    tree.store = ChainStore.open(tmp_path / "db", pruning=None)
    tree.store.initialize(GENESIS)
    tree.check()
    tree.store.close()


def test_a_read_that_races_a_move_of_the_table_is_made_again_from_the_trie(tmp_path):
    tree = ForkTree(tmp_path / "db")
    try:
        block = tree.add(tree.store.best_hash, {KEYS[2]: b"new"}, "none")
        view = tree.store.state_view(tree.store.best_hash)  # the best state: genesis
        flat = tree.store.flat
        real_get = flat.get

        def get_while_the_head_moves(key):
            value = real_get(key)
            tree.store.set_head(tree.head_change(block))  # another thread's commit, between read and check
            return value

        flat.get = get_while_the_head_moves
        assert view.get(KEYS[2]) == GENESIS[KEYS[2]]  # not the new block's value
        flat.get = real_get
        assert tree.store.state_view(block).get(KEYS[2]) == b"new"
        tree.check()
    finally:
        tree.store.close()


def test_an_update_told_a_keys_value_gives_the_same_root_without_loading_its_leaf(tmp_path):
    tree = ForkTree(tmp_path / "db")
    try:
        store = tree.store
        ref = store.stored_state(store.best_hash).ref
        changes = {KEYS[0]: b"changed", KEYS[4]: b"also", KEYS[5]: GENESIS[KEYS[5]]}  # present keys' values
        plain = store.trie.update(ref, changes, 100)
        store.trie._cache.clear()
        loaded = []
        real_fetch = store.trie._fetch
        store.trie._fetch = lambda key: loaded.append(key) or real_fetch(key)
        told = store.trie.update(ref, changes, 100, known=dict(GENESIS))
        assert told.state == plain.state and told.new_nodes == plain.new_nodes
        assert set(told.stale_nodes) == set(plain.stale_nodes)
        assert all(store.trie._read(key)[0] for key in loaded)  # internal nodes only: no leaf was read
        assert told.state.root != ZERO_HASH and told.state.root != ref.root
        # an added and a deleted key: the other keys' leaves they meet are loaded, and the roots still agree
        more = {KEYS[9]: b"added", KEYS[3]: None}
        assert store.trie.update(ref, more, 101, known=dict(GENESIS)).state.root == \
            store.trie.update(ref, more, 101).state.root
    finally:
        tree.store.close()


def test_a_store_that_opens_fills_its_head_cache_from_the_table_as_far_as_it_holds(tmp_path, monkeypatch):
    tree = ForkTree(tmp_path / "db")
    best = tree.add(tree.store.best_hash, {KEYS[8]: b"eight", KEYS[0]: None}, "new")
    tree.reopen()
    assert tree.store.head_cache.values == tree.states[best]
    tree.store.close()
    monkeypatch.setattr("storage.state_view.HeadCache.__init__.__defaults__", (8,))
    tree.reopen()
    values = tree.store.head_cache.values
    assert len(values) == 6 and all(tree.states[best][key] == value for key, value in values.items())
    tree.check()
    tree.store.close()
