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
the state at version v is at path (). The stored and the cached forms of a node are in
storage/trie_nodes.py (internal to storage: they may change, the hashes may not).
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
from typing import Callable, Iterable, Iterator, Mapping

import msgpack

from runtime.hashing import ZERO_HASH, blake2b_256
from storage import schema
from storage.trie_nodes import (
    BYTE, HIGH_NIBBLE, INTERNAL, LEAF, MAX_DEPTH, VERSIONS_AT, CorruptTrieNode, MissingTrieNode, Node, child_hash,
    child_keys, decode_node, leaf_mask_of, mask_of, path_of, root_key,
)
from storage.trie_proofs import InvalidProof, compute_root_reference, verify_proof
from storage.trie_update import SAME, UpdateRun

EMPTY_ROOT = ZERO_HASH
DEFAULT_INTERNAL_CACHE_SIZE = 1_000_000  # internal nodes: all of a state of about 3 million keys
_LEAF, _INTERNAL = LEAF, INTERNAL


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


class StateTrie:
    """Reads, proofs and batch updates of versioned states over one node store, with caches of decoded nodes.

    Internal nodes and leaves are cached apart. Every read and every update walks the
    internal nodes of one path, so they are hot and fewer (about n/3 for n keys, most of
    them with two or three children); a leaf is one key's, touched only when that key
    is, and a large state has far more of them than any cache holds. In one cache, a
    run of leaf reads pushed the internal nodes out and every read of a large state
    paid several database reads and decodes for its path; apart, the internal nodes of
    states up to about 3 million keys stay cached (`internal_cache_size`) and a read
    costs at most its leaf.
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
        return self._fetch(node_key) if node is None else node

    def _fetch(self, node_key: bytes) -> Node:
        """A node in neither cache: read, decoded and cached. A parent's leaf flag tells its caller which cache
        to look in, so a leaf read at a million keys costs one dictionary lookup, not four, before the DB."""
        node = self._read(node_key)
        cache, size = (self._internal, self._internal_size) if node[0] else (self._cache, self._cache_size)
        cache[node_key] = node
        if len(cache) > size:
            _trim(cache, size)
        return node

    def _peek(self, node_key: bytes) -> Node:
        """A node from the caches or the DB, without caching it (for walks over a whole state)."""
        node = self._internal.get(node_key) or self._cache.get(node_key)
        return self._read(node_key) if node is None else node

    def _read(self, node_key: bytes) -> Node:
        raw = self._get_node(node_key)
        if raw is None:
            raise MissingTrieNode(f"trie node {node_key.hex()} is missing: the state was pruned or never committed")
        try:
            return decode_node(raw)
        except (ValueError, TypeError, IndexError, msgpack.ExtraData) as exc:
            raise CorruptTrieNode(f"trie node {node_key.hex()} does not decode ({exc}): the database is "
                                  f"damaged; run purge-chain and sync again") from None

    def _root(self, version: int) -> tuple[bytes, Node]:
        memo_version, key = self._root_key_memo
        if memo_version != version:
            key = root_key(version)
            self._root_key_memo = (version, key)
        return key, self._internal.get(key) or self._load(key)

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
        level = [root_key(state.version)]
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
                inner = mask_of(node) & ~leaf_mask_of(node)  # internal children only: a read costs its leaf
                below.extend(key for nibble, key in enumerate(child_keys(node_key, node)) if inner >> nibble & 1)
            level = below
        return loaded

    def forget_all(self) -> None:
        """Drop every cached node (the store closed)."""
        self._internal = {}
        self._cache = {}

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
        key_hash = blake2b(key, digest_size=32).digest()
        path = path_of(key_hash)
        internal, leaves, trie_node = self._internal, self._cache, schema.TRIE_NODE
        node = self._root(state.version)[1]
        depth = 0
        while node[0]:  # internal: its stored bytes (trie_nodes.py); mask_of, leaf_mask_of and child_key inlined
            nibble = path[depth]
            if not (node[1] << 8 | node[2]) >> nibble & 1:
                return None
            depth += 1
            at, half = VERSIONS_AT + (nibble << 3), depth >> 1
            if depth & 1:
                child_key = (trie_node + node[at:at + 8] + BYTE[depth] + key_hash[:half]
                             + HIGH_NIBBLE[key_hash[half]])
            else:
                child_key = trie_node + node[at:at + 8] + BYTE[depth] + key_hash[:half]
            if (node[3] << 8 | node[4]) >> nibble & 1:  # the child is a leaf
                node = leaves.get(child_key) or self._fetch(child_key)
                break
            node = internal.get(child_key) or self._fetch(child_key)
        return node[2] if node[1] == key else None

    def prove(self, state: StateRef, key: bytes) -> list:
        """A read proof of `key`'s value (or absence) in `state`; see the module docstring."""
        levels: list[list[bytes]] = []
        if state.version is None:
            return [levels, [2]]
        path = path_of(blake2b_256(key))
        node_key, node = self._root(state.version)
        depth = 0
        while node[0]:
            levels.append([child_hash(node, nibble) for nibble in range(16)])
            nibble = path[depth]
            if not mask_of(node) >> nibble & 1:
                return [levels, [2]]
            depth += 1
            node_key = child_keys(node_key, node)[nibble]
            node = self._load(node_key)
        if node[1] == key:
            return [levels, [0, node[2]]]
        return [levels, [1, node[3], blake2b_256(node[2])]]

    def root_node_key(self, state: StateRef) -> bytes | None:
        """The DB key of the state's root node (None for the empty state); with `read_node`, for walks."""
        return None if state.version is None else root_key(state.version)

    def read_node(self, node_key: bytes) -> Node:
        """A decoded node: (0, key, value, key_hash), or an internal node's stored bytes (read with
        trie_nodes' accessors and `children`). Not cached."""
        return self._peek(node_key)

    @staticmethod
    def children(node_key: bytes, node: Node) -> list:
        """An internal node's 16 child keys (None where empty), for walks with `read_node`."""
        return child_keys(node_key, node)

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
        stack = [root_key(state.version)]
        while stack:
            node_key = stack.pop()
            node = self._peek(node_key)
            yield node_key, node
            if node[0] == _INTERNAL:
                stack.extend(k for k in reversed(child_keys(node_key, node)) if k is not None)  # nibble order

    # --- updates ----------------------------------------------------------------

    def update(self, state: StateRef, changes: Mapping[bytes, bytes | None], version: int, *,
               known: Mapping[bytes, bytes | None] | None = None) -> TrieUpdate:
        """The state after `changes` (None deletes), its new nodes at `version`, and the nodes it made stale.

        `known`: values of some keys in `state` (None: absent), such as the head cache holds. A key
        present in `state` has its own leaf where its path meets a leaf, so the update writes over that
        leaf without loading it (at a million keys, most of a block's leaves are not cached)."""
        if state.version is not None and version <= state.version:
            # Nodes are addressed by (version, path): reusing a version would overwrite live nodes.
            raise ValueError(f"update version {version} must be above the state's version {state.version}")
        if not changes:
            return TrieUpdate(state, {}, ())
        items = []
        for key, value in changes.items():
            key_hash = blake2b(key, digest_size=32).digest()
            items.append((key_hash, path_of(key_hash), key, value))
        items.sort()  # key hashes are unique, so the sort never compares further
        run = UpdateRun(self, version, known)
        result = run.update(None if state.version is None else self._root(state.version)[0], 0, items)
        if result is SAME:
            return TrieUpdate(state, {}, ())
        new_state = EMPTY_STATE if result is None else StateRef(result[0], version)
        return TrieUpdate(new_state, run.new_nodes, tuple(run.stale), run.decoded)


def _trim(cache: dict[bytes, Node], size: int) -> None:
    # Insertion order approximates age: drop the oldest quarter at once, so the cost of
    # eviction is amortised and reads never pay for recency bookkeeping.
    for node_key in list(islice(cache, len(cache) - size * 3 // 4)):
        del cache[node_key]


__all__ = ["EMPTY_ROOT", "EMPTY_STATE", "MAX_DEPTH", "CorruptTrieNode", "InvalidProof", "MissingTrieNode",
           "StateRef", "StateTrie", "TrieUpdate", "compute_root_reference", "verify_proof"]
