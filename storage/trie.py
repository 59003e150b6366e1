"""The state commitment: a 16-ary sparse Merkle tree over hashed keys (Jellyfish-style).

Shape. A key's path is the 64 nibbles of blake2b-256(key). A subtree holding one
key is a LEAF at the shortest prefix that is unique to it; a subtree with two or
more keys is an INTERNAL node of 16 children; an empty subtree hashes to 32 zero
bytes. The shape, and so the root, is a function of the key/value set alone.

    leaf hash     = H(0x00 ++ H(key) ++ H(value))
    internal hash = H(0x01 ++ child_hash_0 ++ ... ++ child_hash_15)

Why this and not a Patricia trie with hash-addressed nodes: hashed keys keep the
depth near log16(n) with no extension nodes; nodes are stored under (version,
path), never under their hash, so two states never share a node by accident and
pruning is a list of the nodes each version made stale, not reference counting;
and a block's changes are applied in one sorted pass at the end of the block,
hashing each changed node once (a key-by-key update costs about as much as six
signature checks per key).

Storage. A node is written once, at the version of the state that created it,
under `schema.trie_node_key`. `update` returns the new nodes and the keys of the
old state's nodes that the new state no longer uses; the caller commits both in
its block's WriteBatch.

Read proofs (the wire format of state_getReadProof): `[levels, terminal]`, where
`levels` lists, from the root down along the key's path, each internal node's 16
child hashes, and `terminal` is `[0, value]` (the key's leaf), `[1, key_hash,
value_hash]` (another key's leaf holds the prefix: the key is absent) or `[2]`
(an empty slot: the key is absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import msgpack
from hashlib import blake2b as _blake2b

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH, blake2b_256
from storage import schema

EMPTY_ROOT = ZERO_HASH
MAX_DEPTH = 64
_LEAF, _INTERNAL = 0, 1
_EMPTY_CHILDREN = (None,) * 16

# A child entry: (hash, version, is_leaf). A decoded leaf: (0, key, value); internal: (1, [entry or None] * 16).
Entry = tuple


class InvalidProof(GradchainError):
    code = "invalid_proof"


@dataclass(frozen=True)
class StateRef:
    root: bytes
    version: int | None  # the version the root node was written at; None for the empty tree


EMPTY_STATE = StateRef(EMPTY_ROOT, None)


@dataclass(frozen=True)
class TrieUpdate:
    state: StateRef
    new_nodes: dict[bytes, bytes]
    stale_nodes: tuple[bytes, ...]
    decoded: dict[bytes, tuple] = field(default_factory=dict, repr=False, compare=False)  # new_nodes, decoded


def _nibble(key_hash: bytes, depth: int) -> int:
    byte = key_hash[depth >> 1]
    return byte & 15 if depth & 1 else byte >> 4


_DEPTH = [bytes((d,)) for d in range(MAX_DEPTH + 1)]
_HIGH_NIBBLE = [bytes((b & 0xF0,)) for b in range(256)]


def _node_key(version: int, key_hash: bytes, depth: int) -> bytes:
    """schema.trie_node_key for the first `depth` nibbles of `key_hash`, built without unpacking them."""
    half = depth >> 1
    if depth & 1:
        return schema.TRIE_NODE + version.to_bytes(8, "big") + _DEPTH[depth] + key_hash[:half] + _HIGH_NIBBLE[key_hash[half]]
    return schema.TRIE_NODE + version.to_bytes(8, "big") + _DEPTH[depth] + key_hash[:half]


def _leaf_hash(key_hash: bytes, value: bytes) -> bytes:
    return _blake2b(b"\x00" + key_hash + _blake2b(value, digest_size=32).digest(), digest_size=32).digest()


def _internal_hash(children: list) -> bytes:
    return _blake2b(b"\x01" + b"".join([ZERO_HASH if c is None else c[0] for c in children]), digest_size=32).digest()


def _pack(node: tuple) -> bytes:
    return msgpack.packb(node, use_bin_type=True)


def _unpack(raw: bytes) -> tuple:
    node = msgpack.unpackb(raw, raw=False)
    if node[0] == _LEAF:
        return (_LEAF, node[1], node[2])
    return (_INTERNAL, [None if c is None else tuple(c) for c in node[1]])


class StateTrie:
    def __init__(self, get_node: Callable[[bytes], bytes | None], cache_size: int = 200_000) -> None:
        self._get_node = get_node
        self._cache: dict[bytes, tuple] = {}
        self._cache_size = cache_size

    # --- node access ----------------------------------------------------------

    def _load(self, node_key: bytes) -> tuple:
        node = self._cache.get(node_key)
        if node is None:
            raw = self._get_node(node_key)
            if raw is None:
                raise KeyError(f"trie node {node_key.hex()} is missing (pruned state?)")
            node = _unpack(raw)
            self._cache_put(node_key, node)
        return node

    def _cache_put(self, node_key: bytes, node: tuple) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            for stale_key in list(cache)[: self._cache_size // 4]:  # drop the oldest quarter
                del cache[stale_key]
        cache[node_key] = node

    def remember(self, update: TrieUpdate) -> None:
        for node_key, node in update.decoded.items():
            self._cache_put(node_key, node)

    def forget(self, keys: Iterable[bytes]) -> None:
        for node_key in keys:
            self._cache.pop(node_key, None)

    def _root(self, state: StateRef) -> tuple | None:
        if state.version is None:
            return None
        return self._load(schema.trie_version_prefix(state.version) + b"\x00")

    # --- reads ----------------------------------------------------------------

    def get(self, state: StateRef, key: bytes) -> bytes | None:
        node = self._root(state)
        if node is None:
            return None
        key_hash = blake2b_256(key)
        cache, depth = self._cache, 0
        while node[0] == _INTERNAL:
            byte = key_hash[depth >> 1]
            child = node[1][byte & 15 if depth & 1 else byte >> 4]
            if child is None:
                return None
            depth += 1
            node_key = _node_key(child[1], key_hash, depth)
            node = cache.get(node_key) or self._load(node_key)
        return node[2] if node[1] == key else None

    def iter_items(self, state: StateRef) -> Iterator[tuple[bytes, bytes]]:
        for _, node in self._walk(state):
            if node[0] == _LEAF:
                yield node[1], node[2]

    def iter_node_keys(self, state: StateRef) -> Iterator[bytes]:
        for node_key, _ in self._walk(state):
            yield node_key

    def _walk(self, state: StateRef) -> Iterator[tuple[bytes, tuple]]:
        if state.version is None:
            return
        stack = [(schema.trie_version_prefix(state.version) + b"\x00", b"", 0)]
        while stack:
            node_key, path_hash, depth = stack.pop()
            node = self._load(node_key)
            yield node_key, node
            if node[0] == _INTERNAL:
                for nibble in range(15, -1, -1):
                    child = node[1][nibble]
                    if child is not None:
                        child_path = _with_nibble(path_hash, depth, nibble)
                        stack.append((_node_key(child[1], child_path, depth + 1), child_path, depth + 1))

    # --- proofs ---------------------------------------------------------------

    def prove(self, state: StateRef, key: bytes) -> list:
        node = self._root(state)
        levels: list[list[bytes]] = []
        if node is None:
            return [levels, [2]]
        key_hash = blake2b_256(key)
        depth = 0
        while node[0] == _INTERNAL:
            levels.append([ZERO_HASH if c is None else c[0] for c in node[1]])
            child = node[1][_nibble(key_hash, depth)]
            if child is None:
                return [levels, [2]]
            depth += 1
            node = self._load(_node_key(child[1], key_hash, depth))
        if node[1] == key:
            return [levels, [0, node[2]]]
        return [levels, [1, blake2b_256(node[1]), blake2b_256(node[2])]]

    # --- updates --------------------------------------------------------------

    def update(self, state: StateRef, changes: Mapping[bytes, bytes | None], version: int) -> TrieUpdate:
        items = sorted((blake2b_256(k), k, v) for k, v in changes.items())
        run = _UpdateRun(self, version)
        old_root = None
        if state.version is not None:
            node = self._root(state)
            old_root = (state.root, state.version, node[0] == _LEAF)
        new_root = run.update(old_root, 0, items) if items else old_root
        if new_root is None:
            new_state = EMPTY_STATE
        elif new_root == old_root:
            return TrieUpdate(state, {}, ())
        else:
            new_state = StateRef(new_root[0], new_root[1])
        return TrieUpdate(new_state, run.new_nodes, tuple(run.stale), run.decoded)


def _with_nibble(path_hash: bytes, depth: int, nibble: int) -> bytes:
    """A 32-byte path whose nibble `depth` is `nibble` (enough of a key hash to build node keys)."""
    padded = path_hash.ljust(32, b"\x00")
    index = depth >> 1
    byte = padded[index]
    byte = (byte & 0xF0) | nibble if depth & 1 else (nibble << 4) | (byte & 0x0F)
    return padded[:index] + bytes((byte,)) + padded[index + 1:]


def _runs_by_nibble(items: list, depth: int) -> Iterator[tuple[int, list]]:
    """Split items sorted by key hash into runs that share the nibble at `depth`."""
    start = 0
    while start < len(items):
        nibble = _nibble(items[start][0], depth)
        end = start + 1
        while end < len(items) and _nibble(items[end][0], depth) == nibble:
            end += 1
        yield nibble, items[start:end]
        start = end


class _UpdateRun:
    """One batch update: new nodes written at `version`, old nodes it makes stale."""

    def __init__(self, trie: StateTrie, version: int) -> None:
        self.trie = trie
        self.version = version
        self.new_nodes: dict[bytes, bytes] = {}
        self.decoded: dict[bytes, tuple] = {}
        self.stale: list[bytes] = []

    def update(self, entry: Entry | None, depth: int, items: list) -> Entry | None:
        """The subtree at `depth` (sharing the items' path prefix) after applying `items`."""
        if entry is None:
            return self.build(depth, [(h, k, v) for h, k, v in items if v is not None])
        key_hash = items[0][0]
        node_key = _node_key(entry[1], key_hash, depth)
        node = self.trie._load(node_key)
        if node[0] == _LEAF:
            existing_hash = blake2b_256(node[1])
            live = [(h, k, v) for h, k, v in items if v is not None]
            touched = any(h == existing_hash for h, _, _ in items)
            if not touched:
                if not live:
                    return entry
                live.append((existing_hash, node[1], node[2]))
                live.sort()
            elif len(live) == 1 and live[0][1] == node[1] and live[0][2] == node[2]:
                return entry  # set to the value it already had
            self.retire(entry, node_key)
            return self.build(depth, live)
        children = list(node[1])
        changed = False
        for nibble, run in _runs_by_nibble(items, depth):
            new_child = self.update(children[nibble], depth + 1, run)
            if new_child != children[nibble]:
                children[nibble] = new_child
                changed = True
        if not changed:
            return entry
        self.retire(entry, node_key)
        return self.finish_internal(depth, key_hash, children)

    def finish_internal(self, depth: int, key_hash: bytes, children: list) -> Entry | None:
        present = [c for c in children if c is not None]
        if not present:
            return None
        if len(present) == 1 and present[0][2]:
            return self.lift_leaf(present[0], depth, key_hash, children.index(present[0]))
        return self.write(depth, key_hash, (_INTERNAL, children), _internal_hash(children), False)

    def lift_leaf(self, child: Entry, depth: int, key_hash: bytes, nibble: int) -> Entry:
        """An internal node left with one leaf becomes that leaf, one level up."""
        child_key = _node_key(child[1], _with_nibble(key_hash[: (depth >> 1) + 1], depth, nibble), depth + 1)
        leaf = self.decoded.get(child_key) or self.trie._load(child_key)
        self.retire(child, child_key)
        return self.write(depth, blake2b_256(leaf[1]), (_LEAF, leaf[1], leaf[2]), child[0], True)

    def build(self, depth: int, live: list) -> Entry | None:
        if not live:
            return None
        if len(live) == 1:
            key_hash, key, value = live[0]
            return self.write(depth, key_hash, (_LEAF, key, value), _leaf_hash(key_hash, value), True)
        children: list = [None] * 16
        for nibble, run in _runs_by_nibble(live, depth):
            children[nibble] = self.build(depth + 1, run)
        return self.write(depth, live[0][0], (_INTERNAL, children), _internal_hash(children), False)

    def write(self, depth: int, key_hash: bytes, node: tuple, node_hash: bytes, is_leaf: bool) -> Entry:
        if depth > MAX_DEPTH:
            raise ValueError("two keys with the same 256-bit hash")
        node_key = _node_key(self.version, key_hash, depth)
        self.new_nodes[node_key] = _pack(node)  # tuples pack as msgpack arrays
        self.decoded[node_key] = node
        return (node_hash, self.version, is_leaf)

    def retire(self, entry: Entry, node_key: bytes) -> None:
        if entry[1] == self.version:
            self.new_nodes.pop(node_key, None)  # written earlier in this same run
            self.decoded.pop(node_key, None)
        else:
            self.stale.append(node_key)


# --- verification and the reference root ------------------------------------------


def verify_proof(root: bytes, key: bytes, proof: Any) -> bytes | None:
    """The value a proof shows for `key` under `root` (None: proven absent). Raises InvalidProof."""
    try:
        levels, terminal = proof
        if not isinstance(levels, list) or len(levels) > MAX_DEPTH or not isinstance(terminal, list):
            raise InvalidProof("malformed proof")
        for level in levels:
            if not isinstance(level, list) or len(level) != 16 or not all(
                    isinstance(h, bytes) and len(h) == 32 for h in level):
                raise InvalidProof("malformed proof level")
        key_hash = blake2b_256(key)
        depth = len(levels)
        tag = terminal[0] if terminal else None
        if tag == 0 and len(terminal) == 2 and isinstance(terminal[1], bytes):
            value = terminal[1]
            node_hash, result = _leaf_hash(key_hash, value), value
        elif tag == 1 and len(terminal) == 3 and all(isinstance(x, bytes) and len(x) == 32 for x in terminal[1:]):
            other = terminal[1]
            if other == key_hash or any(_nibble(other, d) != _nibble(key_hash, d) for d in range(depth)):
                raise InvalidProof("the leaf in the proof is not on the key's path")
            node_hash, result = blake2b_256(b"\x00" + other + terminal[2]), None
        elif tag == 2 and len(terminal) == 1:
            node_hash, result = ZERO_HASH, None
        else:
            raise InvalidProof("malformed proof terminal")
        for d in range(depth - 1, -1, -1):
            level = levels[d]
            if level[_nibble(key_hash, d)] != node_hash:
                raise InvalidProof(f"proof level {d} does not contain the node below it")
            node_hash = blake2b_256(b"\x01" + b"".join(level))
    except InvalidProof:
        raise
    except (TypeError, ValueError, IndexError, AttributeError):
        raise InvalidProof("malformed proof") from None
    if node_hash != root:
        raise InvalidProof("the proof does not lead to the state root")
    return result


def compute_root_reference(items: Mapping[bytes, bytes]) -> bytes:
    """The slow, obviously correct twin of `StateTrie.update`: the root straight from a dict."""

    def subtree(depth: int, pairs: list[tuple[bytes, bytes]]) -> bytes:
        if not pairs:
            return ZERO_HASH
        if len(pairs) == 1:
            return _leaf_hash(pairs[0][0], pairs[0][1])
        children = [subtree(depth + 1, [p for p in pairs if _nibble(p[0], depth) == n]) for n in range(16)]
        return blake2b_256(b"\x01" + b"".join(children))

    return subtree(0, [(blake2b_256(k), v) for k, v in items.items()])
