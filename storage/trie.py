"""The state commitment: a 16-ary sparse Merkle tree over hashed keys (Jellyfish-style).

Shape. A key's path is the 64 nibbles of H(key), H = blake2b-256. A subtree that
holds one key is a LEAF at the shortest prefix unique to that key; a subtree with
two or more keys is an INTERNAL node with 16 child slots; an empty subtree hashes
to 32 zero bytes. The shape, and so the root, is a function of the key/value set
alone, never of the order in which keys were written.

    leaf hash     = H(0x00 ++ H(key) ++ H(value))
    internal hash = H(0x01 ++ child_hash_0 ++ ... ++ child_hash_15)   (empty child: ZERO_HASH)
    empty root    = ZERO_HASH

Why this and not a Merkle-Patricia trie with hash-addressed nodes:
- Keys are hashed, so the depth stays near log16(n) for any key set (no long
  shared storage prefixes) and there are no extension nodes to split and merge.
- Nodes are stored under (version, path), never under their hash. A node is
  written once, at the version of the state that created it, and never changed;
  an update reports the old nodes it replaced as stale. Pruning a state is then
  deleting one list of keys, with no reference counts, and two states never share
  a node by accident of equal content.
- A block's changes are applied in one sorted pass at the end of the block, so
  each changed node is built and hashed once per block, not once per write.

Storage. Node keys come from `schema.trie_node_key(version, nibbles)`; the root of
the state at version v is at path (). Encoding (msgpack): a leaf is
`[0, key, value]` (the whole key and value, so a read needs no second lookup); an
internal node is `[1, children]`, 16 entries each None or `[hash, version, is_leaf]`.
`StateTrie.update` writes nothing: its caller commits `new_nodes` (and records
`stale_nodes`) in the block's WriteBatch, then calls `remember`. Reading a state
whose stale nodes were deleted raises MissingTrieNode (a KeyError).

Read proofs (the wire format of state_getReadProof): `[levels, terminal]`.
`levels` lists, from the root down along H(key)'s path, each internal node's 16
child hashes (32 bytes each, ZERO_HASH for an empty slot), at most 64 of them.
`terminal` says what sits in the slot the path reaches below the last level:
    [0, value]                 the key's own leaf: the key is present with `value`
    [1, key_hash, value_hash]  another key's leaf holds the slot: the key is absent
    [2]                        the slot is empty: the key is absent
`verify_proof` hashes the terminal, checks it at the path's nibble of each level
from the bottom up, and compares the result with the state root.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Mapping

import msgpack

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH, blake2b_256
from storage import schema

EMPTY_ROOT = ZERO_HASH
DEFAULT_INTERNAL_CACHE_SIZE = 1_000_000  # internal nodes: all of a state of about 3 million keys
MAX_DEPTH = 64  # nibbles in a 256-bit key hash
_LEAF, _INTERNAL = 0, 1

# Decoded nodes, as cached:
#   leaf      (0, key, value, key_hash)
#   internal  (1, entries, child_keys, child_hashes): 16 entries (None or (hash, version, is_leaf))
#             and, in parallel, each child's DB key (so reads never build keys) and hash (ZERO_HASH
#             when empty, so hashing a node or proving through it is one join).
Node = tuple
Entry = tuple  # or the list msgpack decodes: [hash, version, is_leaf]


class InvalidProof(GradchainError):
    """A read proof that does not show a value under the given root; do not trust the node that sent it."""

    code = "invalid_proof"


class MissingTrieNode(GradchainError, KeyError):
    """A node of the requested state is not in the database: that state was pruned."""

    code = "missing_trie_node"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass(frozen=True)
class StateRef:
    root: bytes  # 32-byte root hash
    version: int | None  # the version the root node was written at; None for the empty tree


EMPTY_STATE = StateRef(EMPTY_ROOT, None)


@dataclass(frozen=True)
class TrieUpdate:
    state: StateRef  # the new state
    new_nodes: dict[bytes, bytes]  # DB key -> encoded node, all written at the new version
    stale_nodes: tuple[bytes, ...]  # DB keys of the old state's nodes that the new state no longer uses
    decoded: dict[bytes, Node] = field(default_factory=dict, repr=False, compare=False)  # new_nodes, decoded


# --- paths, keys and hashes ----------------------------------------------------------

_NIBBLE_OF_HEX = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_BYTE = [bytes((b,)) for b in range(256)]
_HIGH_NIBBLE = [bytes((b & 0xF0,)) for b in range(256)]


def _path(key_hash: bytes) -> bytes:
    """The 64 nibbles of a key hash, one per byte: path[depth] is the child slot at that depth."""
    return key_hash.hex().encode().translate(_NIBBLE_OF_HEX)


def _node_key(version: int, key_hash: bytes, depth: int) -> bytes:
    """schema.trie_node_key(version, first `depth` nibbles of key_hash)."""
    return _node_key_at(schema.trie_version_prefix(version), key_hash, depth)


def _node_key_at(version_prefix: bytes, key_hash: bytes, depth: int) -> bytes:
    """_node_key with the version already packed: the path is cut from the hash, never unpacked to nibbles."""
    half = depth >> 1
    if depth & 1:
        return version_prefix + _BYTE[depth] + key_hash[:half] + _HIGH_NIBBLE[key_hash[half]]
    return version_prefix + _BYTE[depth] + key_hash[:half]


def _root_key(version: int) -> bytes:
    return schema.trie_version_prefix(version) + _BYTE[0]


def _child_keys(node_key: bytes, entries) -> tuple:
    """The DB keys of an internal node's children, derived from its own key (t, version, depth, packed path)."""
    depth = node_key[9]
    packed = node_key[10:]
    child_depth = _BYTE[depth + 1]
    keys: list = [None] * 16
    for nibble, entry in enumerate(entries):
        if entry is not None:
            tail = packed[:-1] + _BYTE[packed[-1] | nibble] if depth & 1 else packed + _BYTE[nibble << 4]
            keys[nibble] = schema.TRIE_NODE + entry[1].to_bytes(8, "big") + child_depth + tail
    return tuple(keys)


def _leaf_hash(key_hash: bytes, value: bytes) -> bytes:
    return blake2b(b"\x00" + key_hash + blake2b(value, digest_size=32).digest(), digest_size=32).digest()


def _internal_hash(child_hashes: list) -> bytes:
    return blake2b(b"\x01" + b"".join(child_hashes), digest_size=32).digest()


def _decode(node_key: bytes, raw: bytes) -> Node:
    # Tuples, not lists: a tuple of bytes and ints drops out of the garbage collector's
    # tracking after its first collection, so a cache of a million nodes costs the
    # collector's full passes nothing (as lists, ~20 tracked containers a node did).
    node = msgpack.unpackb(raw, raw=False, use_list=False)
    if node[0] == _LEAF:
        return (_LEAF, node[1], node[2], blake2b_256(node[1]))
    entries = node[1]
    return (_INTERNAL, entries, _child_keys(node_key, entries), tuple(ZERO_HASH if e is None else e[0] for e in entries))


# --- the trie ------------------------------------------------------------------------


class StateTrie:
    """Reads, proofs and batch updates of versioned states over one node store, with caches of decoded nodes.

    Internal nodes and leaves are cached apart. Every read and every update walks the
    internal nodes of one path, so they are hot and fewer (about n/3 for n keys, most of
    them with two or three children); a leaf is one key's, touched only when that key
    is, and a large state has far more of them than any cache holds. In one cache, a
    run of leaf reads pushed the internal nodes out and every read of a large state
    paid several database reads and decodes for its path; apart, the internal nodes of states up to about 3 million keys stay cached
    (`internal_cache_size`) and a read costs at most its leaf.
    """

    def __init__(self, get_node: Callable[[bytes], bytes | None], cache_size: int = 200_000,
                 internal_cache_size: int = DEFAULT_INTERNAL_CACHE_SIZE) -> None:
        self._get_node = get_node
        self._cache: dict[bytes, Node] = {}  # leaves
        self._cache_size = max(cache_size, 16)
        self._internal: dict[bytes, Node] = {}  # internal nodes
        self._internal_size = max(internal_cache_size, 16)
        self._packer = msgpack.Packer(use_bin_type=True)  # one Packer: packb builds a new one per call
        self._root_key_memo: tuple[int | None, bytes] = (None, b"")

    # --- node access ------------------------------------------------------------

    def _load(self, node_key: bytes) -> Node:
        node = self._internal.get(node_key) or self._cache.get(node_key)
        if node is None:
            node = self._peek(node_key)
            cache, size = (self._internal, self._internal_size) if node[0] else (self._cache, self._cache_size)
            cache[node_key] = node
            if len(cache) > size:
                _trim(cache, size)
        return node

    def _peek(self, node_key: bytes) -> Node:
        """A node from the caches or the DB, without caching it (for walks over a whole state)."""
        node = self._internal.get(node_key) or self._cache.get(node_key)
        if node is not None:
            return node
        raw = self._get_node(node_key)
        if raw is None:
            raise MissingTrieNode(f"trie node {node_key.hex()} is missing: the state was pruned or never committed")
        return _decode(node_key, raw)

    def _root(self, version: int) -> tuple[bytes, Node]:
        memo_version, root_key = self._root_key_memo
        if memo_version != version:
            root_key = _root_key(version)
            self._root_key_memo = (version, root_key)
        return root_key, self._internal.get(root_key) or self._load(root_key)

    def remember(self, update: TrieUpdate) -> None:
        """Cache the decoded new nodes of an update whose batch has been committed."""
        internal, leaves = self._internal, self._cache
        for node_key, node in update.decoded.items():
            if node[0]:
                internal[node_key] = node
            else:
                leaves[node_key] = node
        if len(internal) > self._internal_size:
            _trim(internal, self._internal_size)
        if len(leaves) > self._cache_size:
            _trim(leaves, self._cache_size)

    def warm(self, state: StateRef) -> int:
        """Load the state's internal nodes into their cache, the top levels first, until it is full; returns
        how many were loaded.

        A node that has run a while has them all cached (every read and update walks a path
        of them); a restarted one would otherwise pay a database read and a decode for each
        on first use, most of the cost of a block's reads and updates on a large state (a
        state of a million keys has about 360,000). Leaves are not loaded: a read costs its
        leaf, as in a running node. Costs about as much as the walk's reads (seconds at a
        million keys), once, when the store opens.
        """
        if state.version is None:
            return 0
        collecting = gc.isenabled()
        gc.disable()  # hundreds of thousands of new nodes: the collector would re-scan them all, again and again
        try:
            loaded = self._warm(state)
        finally:
            if collecting:
                gc.enable()
        if collecting and loaded >= 10_000:
            # One pass now, while the store opens, untracks the new tuples (all of atomic parts): left
            # for later, a collection of millions of them would stall whatever allocates next (an RPC call).
            gc.collect()
        return loaded

    def _warm(self, state: StateRef) -> int:
        internal, room = self._internal, self._internal_size - len(self._internal)
        level = [_root_key(state.version)]
        loaded = 0
        while level and loaded < room:
            below = []
            for node_key in level:
                node = internal.get(node_key)
                if node is None:
                    if loaded >= room:
                        break
                    node = self._peek(node_key)
                    if node[0] == _LEAF:  # a state of one key: its root is a leaf
                        continue
                    internal[node_key] = node
                    loaded += 1
                below.extend(key for key, entry in zip(node[2], node[1]) if entry is not None and not entry[2])
            level = below
        return loaded

    def forget(self, keys: Iterable[bytes]) -> None:
        """Drop deleted (pruned) nodes from the caches."""
        pop_internal, pop_leaf = self._internal.pop, self._cache.pop
        for node_key in keys:
            pop_internal(node_key, None)
            pop_leaf(node_key, None)

    # --- reads ------------------------------------------------------------------

    def get(self, state: StateRef, key: bytes) -> bytes | None:
        if state.version is None:
            return None
        path = _path(blake2b(key, digest_size=32).digest())
        internal = self._internal
        node = self._root(state.version)[1]
        depth = 0
        while node[0]:  # internal
            child_key = node[2][path[depth]]
            if child_key is None:
                return None
            depth += 1
            node = internal.get(child_key) or self._load(child_key)
        return node[2] if node[1] == key else None

    def prove(self, state: StateRef, key: bytes) -> list:
        """A read proof of `key`'s value (or absence) in `state`; see the module docstring."""
        levels: list[list[bytes]] = []
        if state.version is None:
            return [levels, [2]]
        path = _path(blake2b_256(key))
        node = self._root(state.version)[1]
        depth = 0
        while node[0]:
            levels.append(list(node[3]))
            child_key = node[2][path[depth]]
            if child_key is None:
                return [levels, [2]]
            depth += 1
            node = self._load(child_key)
        if node[1] == key:
            return [levels, [0, node[2]]]
        return [levels, [1, node[3], blake2b_256(node[2])]]

    def root_node_key(self, state: StateRef) -> bytes | None:
        """The DB key of the state's root node (None for the empty state); with `read_node`, for walks."""
        return None if state.version is None else _root_key(state.version)

    def read_node(self, node_key: bytes) -> Node:
        """A decoded node: (0, key, value, key_hash) or (1, entries, child_keys, child_hashes). Not cached."""
        return self._peek(node_key)

    def iter_items(self, state: StateRef) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the state, in path (key hash) order."""
        for _, node in self._walk(state):
            if node[0] == _LEAF:
                yield node[1], node[2]

    def iter_node_keys(self, state: StateRef) -> Iterator[bytes]:
        """The DB key of every node reachable from the state's root."""
        for node_key, _ in self._walk(state):
            yield node_key

    def _walk(self, state: StateRef) -> Iterator[tuple[bytes, Node]]:
        if state.version is None:
            return
        stack = [_root_key(state.version)]
        while stack:
            node_key = stack.pop()
            node = self._peek(node_key)
            yield node_key, node
            if node[0] == _INTERNAL:
                stack.extend(k for k in reversed(node[2]) if k is not None)  # popped in nibble order

    # --- updates ----------------------------------------------------------------

    def update(self, state: StateRef, changes: Mapping[bytes, bytes | None], version: int) -> TrieUpdate:
        """The state after `changes` (None deletes), its new nodes at `version`, and the nodes it made stale."""
        if state.version is not None and version <= state.version:
            # Nodes are addressed by (version, path): reusing a version would overwrite live nodes.
            raise ValueError(f"update version {version} must be above the state's version {state.version}")
        if not changes:
            return TrieUpdate(state, {}, ())
        items = []
        for key, value in changes.items():
            key_hash = blake2b(key, digest_size=32).digest()
            items.append((key_hash, _path(key_hash), key, value))
        items.sort()  # key hashes are unique, so the sort never compares further
        run = _UpdateRun(self, version)
        if state.version is None:
            result = run.update(None, b"", 0, items)
        else:
            root_key, _ = self._root(state.version)
            result = run.update((state.root, state.version, False), root_key, 0, items)
        if result is _SAME:
            return TrieUpdate(state, {}, ())
        new_state = EMPTY_STATE if result is None else StateRef(result[0][0], version)
        return TrieUpdate(new_state, run.new_nodes, tuple(run.stale), run.decoded)


_SAME = object()  # update result: the subtree did not change


class _UpdateRun:
    """One batch update. Items are (key_hash, path, key, value or None), sorted by key hash.

    Each step returns _SAME, None (the subtree is now empty) or (entry, node_key) of
    the subtree's new root, so a parent rebuilds itself only when a child changed.
    """

    def __init__(self, trie: StateTrie, version: int) -> None:
        self.trie = trie
        self.cache = trie._internal  # an update's path is internal nodes but for its last step
        self.version = version
        self.version_prefix = schema.trie_version_prefix(version)
        self.pack = trie._packer.pack
        self.new_nodes: dict[bytes, bytes] = {}
        self.decoded: dict[bytes, Node] = {}
        self.stale: list[bytes] = []

    def update(self, entry: Entry | None, node_key: bytes, depth: int, items: list) -> Any:
        """Apply `items` (all sharing the first `depth` nibbles) to the subtree `entry` stored at `node_key`."""
        if entry is None:
            live = [item for item in items if item[3] is not None]
            return self.build(depth, live) if live else _SAME
        node = self.cache.get(node_key) or self.trie._load(node_key)
        if node[0] == _LEAF:
            return self.update_leaf(entry, node_key, node, depth, items)
        entries, keys = node[1], node[2]
        new_entries = new_keys = new_hashes = None
        start, count = 0, len(items)
        while start < count:  # one run of items per child slot
            nibble = items[start][1][depth]
            end = start + 1
            while end < count and items[end][1][depth] == nibble:
                end += 1
            result = self.update(entries[nibble], keys[nibble], depth + 1, items[start:end] if count > 1 else items)
            if result is not _SAME:
                if new_entries is None:
                    new_entries, new_keys, new_hashes = list(entries), list(keys), list(node[3])
                if result is None:
                    new_entries[nibble] = new_keys[nibble] = None
                    new_hashes[nibble] = ZERO_HASH
                else:
                    new_entry, new_keys[nibble] = result
                    new_entries[nibble], new_hashes[nibble] = new_entry, new_entry[0]
            start = end
        if new_entries is None:
            return _SAME
        self.retire(entry, node_key)
        present = 16 - new_entries.count(None)
        if present == 0:
            return None
        if present == 1:
            nibble = next(i for i, e in enumerate(new_entries) if e is not None)
            if new_entries[nibble][2]:  # a lone leaf: the subtree has one key, so the leaf moves up here
                return self.lift(new_entries[nibble], new_keys[nibble], depth)
        return self.write_internal(depth, items[0][0], new_entries, new_keys, new_hashes)

    def update_leaf(self, entry: Entry, node_key: bytes, leaf: Node, depth: int, items: list) -> Any:
        existing_hash = leaf[3]
        if len(items) == 1:  # the common case, spelled out: one write reaches one leaf
            item = items[0]
            if item[0] == existing_hash:
                if item[3] == leaf[2]:
                    return _SAME
                self.retire(entry, node_key)
                if item[3] is None:
                    return None
                return self.write_leaf(depth, existing_hash, leaf[1], item[3], _leaf_hash(existing_hash, item[3]))
            if item[3] is None:
                return _SAME
        touched = False
        live = []
        for item in items:
            if item[0] == existing_hash:
                touched = True
            if item[3] is not None:
                live.append(item)
        if not touched:
            if not live:
                return _SAME  # only deletions of absent keys
            live.append((existing_hash, _path(existing_hash), leaf[1], leaf[2]))
            live.sort()
        elif len(live) == 1 and live[0][2] == leaf[1] and live[0][3] == leaf[2]:
            return _SAME  # set to the value it already had
        self.retire(entry, node_key)
        return self.build(depth, live) if live else None

    def build(self, depth: int, live: list) -> tuple:
        """A fresh subtree holding `live` (non-empty, sorted), rooted at `depth`."""
        if len(live) == 1:
            key_hash, _, key, value = live[0]
            return self.write_leaf(depth, key_hash, key, value, _leaf_hash(key_hash, value))
        if depth >= MAX_DEPTH:
            raise ValueError("two different keys with the same 256-bit hash")
        entries: list = [None] * 16
        keys: list = [None] * 16
        hashes = [ZERO_HASH] * 16
        start, count = 0, len(live)
        while start < count:
            nibble = live[start][1][depth]
            end = start + 1
            while end < count and live[end][1][depth] == nibble:
                end += 1
            entry, keys[nibble] = self.build(depth + 1, live[start:end])
            entries[nibble], hashes[nibble] = entry, entry[0]
            start = end
        return self.write_internal(depth, live[0][0], entries, keys, hashes)

    def lift(self, child: Entry, child_key: bytes, depth: int) -> tuple:
        """Rewrite a lone leaf one level up, where its parent was; its hash does not depend on depth."""
        leaf = self.decoded.get(child_key) or self.trie._load(child_key)
        self.retire(child, child_key)
        return self.write_leaf(depth, leaf[3], leaf[1], leaf[2], child[0])

    def write_leaf(self, depth: int, key_hash: bytes, key: bytes, value: bytes, leaf_hash: bytes) -> tuple:
        node_key = _node_key_at(self.version_prefix, key_hash, depth)
        self.new_nodes[node_key] = self.pack((_LEAF, key, value))
        self.decoded[node_key] = (_LEAF, key, value, key_hash)
        return (leaf_hash, self.version, True), node_key

    def write_internal(self, depth: int, key_hash: bytes, entries: list, keys: list, hashes: list) -> tuple:
        node_key = _node_key_at(self.version_prefix, key_hash, depth)
        entries = tuple(entries)  # cached as tuples, as _decode makes them (see there)
        self.new_nodes[node_key] = self.pack((_INTERNAL, entries))
        self.decoded[node_key] = (_INTERNAL, entries, tuple(keys), tuple(hashes))
        return (_internal_hash(hashes), self.version, False), node_key

    def retire(self, entry: Entry, node_key: bytes) -> None:
        if entry[1] == self.version:  # written earlier in this run: it never reaches the DB
            del self.new_nodes[node_key]
            del self.decoded[node_key]
        else:
            self.stale.append(node_key)


def _trim(cache: dict[bytes, Node], size: int) -> None:
    # Insertion order approximates age: drop the oldest quarter at once, so the cost of
    # eviction is amortised and reads never pay for recency bookkeeping.
    for node_key in list(islice(cache, len(cache) - size * 3 // 4)):
        del cache[node_key]


# --- verification and the reference root ------------------------------------------------


def verify_proof(root: bytes, key: bytes, proof: Any) -> bytes | None:
    """The value a proof shows for `key` under `root` (None: proven absent). Raises InvalidProof.

    Every part is type-checked before use, so junk of any shape raises InvalidProof only.
    """
    if type(root) is not bytes or len(root) != 32 or type(key) is not bytes:
        raise InvalidProof("the root must be 32 bytes and the key bytes")
    if type(proof) is not list or len(proof) != 2:
        raise InvalidProof("a proof is [levels, terminal]")
    levels, terminal = proof
    if type(levels) is not list or len(levels) > MAX_DEPTH:
        raise InvalidProof(f"the proof's levels must be a list of at most {MAX_DEPTH}")
    for level in levels:
        if type(level) is not list or len(level) != 16 or any(type(h) is not bytes or len(h) != 32 for h in level):
            raise InvalidProof("each proof level must be 16 hashes of 32 bytes")
    if type(terminal) is not list or not terminal or type(terminal[0]) is not int:
        raise InvalidProof("the proof's terminal must be a list that starts with its tag")
    key_hash = blake2b_256(key)
    path = _path(key_hash)
    depth = len(levels)
    tag = terminal[0]
    if tag == 0 and len(terminal) == 2 and type(terminal[1]) is bytes:
        result: bytes | None = terminal[1]
        node_hash = _leaf_hash(key_hash, terminal[1])
    elif tag == 1 and len(terminal) == 3 and all(type(h) is bytes and len(h) == 32 for h in terminal[1:]):
        other_hash, value_hash = terminal[1], terminal[2]
        # The other leaf must sit on the key's path, and must not be the key's own leaf.
        if other_hash == key_hash or _path(other_hash)[:depth] != path[:depth]:
            raise InvalidProof("the leaf in the proof does not exclude the key")
        result, node_hash = None, blake2b_256(b"\x00" + other_hash + value_hash)
    elif tag == 2 and len(terminal) == 1:
        result, node_hash = None, ZERO_HASH
    else:
        raise InvalidProof("the proof's terminal is none of [0, value], [1, key_hash, value_hash], [2]")
    for d in range(depth - 1, -1, -1):
        if levels[d][path[d]] != node_hash:
            raise InvalidProof(f"proof level {d} does not contain the node below it")
        node_hash = blake2b_256(b"\x01" + b"".join(levels[d]))
    if node_hash != root:
        raise InvalidProof("the proof does not hash to the state root")
    return result


def compute_root_reference(items: Mapping[bytes, bytes]) -> bytes:
    """The slow, obviously correct twin of `StateTrie.update`: the root straight from a dict."""

    def nibble(key_hash: bytes, depth: int) -> int:
        return int(key_hash.hex()[depth], 16)

    def subtree(depth: int, pairs: list[tuple[bytes, bytes]]) -> bytes:
        if not pairs:
            return ZERO_HASH
        if len(pairs) == 1:
            key_hash, value = pairs[0]
            return blake2b_256(b"\x00" + key_hash + blake2b_256(value))
        children = [subtree(depth + 1, [p for p in pairs if nibble(p[0], depth) == n]) for n in range(16)]
        return blake2b_256(b"\x01" + b"".join(children))

    return subtree(0, [(blake2b_256(key), value) for key, value in items.items()])
