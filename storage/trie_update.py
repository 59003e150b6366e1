"""One batch update of the state trie: a block's changes applied in one sorted pass.

Items are (key_hash, path, key, value or None), sorted by key hash, so the items below a
node are one run and each changed node is built and hashed once per update, however
many of its keys changed. Nodes written earlier in the same run and then replaced
never reach the database.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Mapping

from runtime.hashing import ZERO_HASH
from storage import schema
from storage.schema import TRIE_NODE
from storage.trie_nodes import (
    BYTE, HASHES_AT, HIGH_NIBBLE, INTERNAL_TAG, LEAF, MAX_DEPTH, VERSIONS_AT, ZERO_VERSION, Node, child_hash,
    child_key, encode_internal, leaf_hash, node_key_at, path_of,
)

if TYPE_CHECKING:
    from storage.trie import StateTrie

SAME = object()  # update result: the subtree did not change


class UpdateRun:
    """Each step returns SAME, None (the subtree is now empty) or (hash, is_leaf) of the subtree's new root,
    written at this run's version (so its key follows from its path), and the parent rebuilds itself only
    when a child changed."""

    def __init__(self, trie: "StateTrie", version: int, known: Mapping[bytes, bytes | None] | None = None) -> None:
        self.load = trie._load
        self.known = known
        self.cache = trie._internal  # an update's path is internal nodes but for its last step
        self.leaves = trie._cache
        self.version_bytes = version.to_bytes(8, "big")
        self.version_prefix = schema.trie_version_prefix(version)
        self.pack = trie._packer.pack
        self.new_nodes: dict[bytes, bytes] = {}
        self.decoded: dict[bytes, Node] = {}
        self.stale: list[bytes] = []

    def update(self, node_key: bytes | None, depth: int, items: list) -> Any:
        """Apply `items` (all sharing the first `depth` nibbles) to the subtree stored at `node_key` (None: empty).

        The hot loop of an import (one call per changed internal node, about 9,000 a block at a
        million keys): the fixed layout's accessors, child_key and retire are inlined; a child's key
        is cut from the first item's key hash, which shares the child's path."""
        if node_key is None:
            live = [item for item in items if item[3] is not None]
            return self.build(depth, live) if live else SAME
        node = self.cache.get(node_key) or self.load(node_key)
        if node[0] == LEAF:
            return self.update_leaf(node_key, node, depth, items)
        mask = new_mask = node[1] << 8 | node[2]
        leaf_mask = new_leaf_mask = node[3] << 8 | node[4]
        new = None  # the new node's bytes, from a copy of this one's (fixed layout: trie_nodes.py)
        below_depth = depth + 1
        half, odd, depth_byte = below_depth >> 1, below_depth & 1, BYTE[below_depth]
        start, count = 0, len(items)
        while start < count:  # one run of items per child slot
            first = items[start]
            nibble = first[1][depth]
            end = start + 1
            while end < count and items[end][1][depth] == nibble:
                end += 1
            bit = 1 << nibble
            run = items[start:end] if count > 1 else items
            if mask & bit:
                at = VERSIONS_AT + (nibble << 3)
                key_hash = first[0]
                if odd:
                    below = TRIE_NODE + node[at:at + 8] + depth_byte + key_hash[:half] + HIGH_NIBBLE[key_hash[half]]
                else:
                    below = TRIE_NODE + node[at:at + 8] + depth_byte + key_hash[:half]
                if leaf_mask & bit:  # straight to the leaf: known, or cached (a missed lookup costs a microsecond)
                    leaf = (self.known and self.known_leaf(run)) or self.leaves.get(below) or self.load(below)
                    result = self.update_leaf(below, leaf, below_depth, run)
                else:
                    result = self.update(below, below_depth, run)
            else:
                result = self.update(None, below_depth, run)
            if result is not SAME:
                if new is None:
                    new = bytearray(node)
                at, version_at = HASHES_AT + (nibble << 5), VERSIONS_AT + (nibble << 3)
                if result is None:
                    new[at:at + 32] = ZERO_HASH
                    new[version_at:version_at + 8] = ZERO_VERSION
                    new_mask &= ~bit
                    new_leaf_mask &= ~bit
                else:
                    new[at:at + 32] = result[0]
                    new[version_at:version_at + 8] = self.version_bytes
                    new_mask |= bit
                    new_leaf_mask = new_leaf_mask | bit if result[1] else new_leaf_mask & ~bit
            start = end
        if new is None:
            return SAME
        if self.new_nodes.pop(node_key, None) is not None:  # retire(node_key), inlined
            del self.decoded[node_key]
        else:
            self.stale.append(node_key)
        if new_mask == 0:
            return None
        new[1:5] = (new_mask << 16 | new_leaf_mask).to_bytes(4, "big")
        if new_mask & (new_mask - 1) == 0 and new_leaf_mask:  # one child left, a leaf: the leaf moves up here
            nibble = new_mask.bit_length() - 1
            return self.lift(child_key(node_key, new, nibble), bytes(child_hash(new, nibble)), depth)
        return self.write_internal(depth, items[0][0], bytes(new))

    def known_leaf(self, items: list) -> tuple | None:
        """The leaf in the slot these items' paths reach, if one of their keys is known present: its own."""
        known = self.known
        for key_hash, _, key, _ in items:
            value = known.get(key)
            if value is not None:
                return (LEAF, key, value, key_hash)
        return None

    def update_leaf(self, node_key: bytes, leaf: Node, depth: int, items: list) -> Any:
        existing_hash = leaf[3]
        if len(items) == 1:  # the common case, spelled out: one write reaches one leaf
            item = items[0]
            if item[0] == existing_hash:
                if item[3] == leaf[2]:
                    return SAME
                self.retire(node_key)
                if item[3] is None:
                    return None
                return self.write_leaf(depth, existing_hash, leaf[1], item[3])
            if item[3] is None:
                return SAME
        touched = False
        live = []
        for item in items:
            if item[0] == existing_hash:
                touched = True
            if item[3] is not None:
                live.append(item)
        if not touched:
            if not live:
                return SAME  # only deletions of absent keys
            live.append((existing_hash, path_of(existing_hash), leaf[1], leaf[2]))
            live.sort()
        elif len(live) == 1 and live[0][2] == leaf[1] and live[0][3] == leaf[2]:
            return SAME  # set to the value it already had
        self.retire(node_key)
        return self.build(depth, live) if live else None

    def build(self, depth: int, live: list) -> tuple:
        """A fresh subtree holding `live` (non-empty, sorted), rooted at `depth`."""
        if len(live) == 1:
            key_hash, _, key, value = live[0]
            return self.write_leaf(depth, key_hash, key, value)
        if depth >= MAX_DEPTH:
            raise ValueError("two different keys with the same 256-bit hash")
        hashes = [ZERO_HASH] * 16
        versions = [ZERO_VERSION] * 16
        mask = leaf_mask = 0
        start, count = 0, len(live)
        while start < count:
            nibble = live[start][1][depth]
            end = start + 1
            while end < count and live[end][1][depth] == nibble:
                end += 1
            hashes[nibble], is_leaf = self.build(depth + 1, live[start:end])
            versions[nibble] = self.version_bytes
            mask |= 1 << nibble
            if is_leaf:
                leaf_mask |= 1 << nibble
            start = end
        return self.write_internal(depth, live[0][0], encode_internal(mask, leaf_mask, b"".join(hashes),
                                                                      b"".join(versions)))

    def lift(self, lone_key: bytes, lone_hash: bytes, depth: int) -> tuple:
        """Rewrite a lone leaf one level up, where its parent was; its hash does not depend on depth."""
        leaf = self.decoded.get(lone_key) or self.load(lone_key)
        self.retire(lone_key)
        node_key = node_key_at(self.version_prefix, leaf[3], depth)
        self.new_nodes[node_key] = self.pack((LEAF, leaf[1], leaf[2]))
        self.decoded[node_key] = leaf
        return lone_hash, True

    def write_leaf(self, depth: int, key_hash: bytes, key: bytes, value: bytes) -> tuple:
        node_key = node_key_at(self.version_prefix, key_hash, depth)
        self.new_nodes[node_key] = self.pack((LEAF, key, value))
        self.decoded[node_key] = (LEAF, key, value, key_hash)
        return leaf_hash(key_hash, value), True

    def write_internal(self, depth: int, key_hash: bytes, node: bytes) -> tuple:
        """Write an internal node (its stored bytes, which are also its cached form) at this run's version."""
        half = depth >> 1  # node_key_at, inlined: this runs for every changed internal node
        if depth & 1:
            node_key = self.version_prefix + BYTE[depth] + key_hash[:half] + HIGH_NIBBLE[key_hash[half]]
        else:
            node_key = self.version_prefix + BYTE[depth] + key_hash[:half]
        self.new_nodes[node_key] = self.decoded[node_key] = node
        return blake2b(INTERNAL_TAG + node[HASHES_AT:VERSIONS_AT], digest_size=32).digest(), False

    def retire(self, node_key: bytes) -> None:
        if self.new_nodes.pop(node_key, None) is not None:  # written earlier in this run: it never reaches the DB
            del self.decoded[node_key]
        else:
            self.stale.append(node_key)


__all__ = ["SAME", "UpdateRun"]
