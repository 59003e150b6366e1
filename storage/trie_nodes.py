"""The state trie's nodes: their hashes (consensus), their database keys and their stored form (not consensus).

Hashes (what the state root commits to; see storage/trie.py):

    leaf hash     = H(0x00 ++ H(key) ++ H(value))
    internal hash = H(0x01 ++ child_hash_0 ++ ... ++ child_hash_15)   (empty child: ZERO_HASH)

Keys. A node is stored under `schema.trie_node_key(version, nibbles)`: the version of the
state that wrote it and its path. A child's key follows from its parent's key and the
child's version, so an internal node stores its children's versions, not their keys.

Stored form (internal to storage; a database may hold both forms of internal node):
- leaf: msgpack `[0, key, value]` (the whole key and value, so a read needs no second lookup);
- internal: the fixed layout `0x01 ++ mask ++ leaf_mask ++ hashes ++ versions`, where `mask`
  and `leaf_mask` are 2-byte big-endian bit sets (bit n: child n is present / is a leaf),
  `hashes` the 16 child hashes (512 bytes, ZERO_HASH where empty: the internal hash is
  H(0x01 ++ hashes)) and `versions` the 16 children's versions (8 bytes each, zero where empty);
- internal, as written before that layout: msgpack `[1, entries]`, 16 entries each None or
  `[hash, version, is_leaf]`. Still read; never written.
The fixed layout costs nothing to pack or to decode and LevelDB's block compression
squeezes the empty slots' zero runs.

Decoded (as cached):
    leaf      the tuple (0, key, value, key_hash)
    internal  its stored bytes (fixed layout; node[0] == 1 as for a tuple, and the accessors below)
An internal node is cached as the bytes it is stored as: no object per child, nothing for
the collector to traverse (bytes are not tracked), and a walk touches one object per
level. A tuple per child and tuples of 16 child keys and hashes, as cached before, made
the collector's pass after each block cost 33 ms at a million keys, and every level of
a walk several cache misses.
"""

from __future__ import annotations

from hashlib import blake2b

import msgpack

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH, blake2b_256
from storage import schema

MAX_DEPTH = 64  # nibbles in a 256-bit key hash
LEAF, INTERNAL = 0, 1
ZERO_VERSION = bytes(8)
# The internal hash's tag, and the fixed layout's first byte: msgpack never starts an array with 0x01,
# so the two stored forms of an internal node cannot be confused.
INTERNAL_TAG = b"\x01"
INTERNAL_SIZE = 1 + 2 + 2 + 512 + 128

Node = tuple | bytes  # a leaf's tuple, or an internal node's stored bytes


class MissingTrieNode(GradchainError, KeyError):
    """A node of the requested state is not in the database: that state was pruned."""

    code = "missing_trie_node"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class CorruptTrieNode(GradchainError):
    """A stored trie node that is neither stored form: the database is damaged."""

    code = "corrupt_trie_node"


# --- paths and keys ------------------------------------------------------------------

_NIBBLE_OF_HEX = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
BYTE = [bytes((b,)) for b in range(256)]
HIGH_NIBBLE = [bytes((b & 0xF0,)) for b in range(256)]


def path_of(key_hash: bytes) -> bytes:
    """The 64 nibbles of a key hash, one per byte: path[depth] is the child slot at that depth."""
    return key_hash.hex().encode().translate(_NIBBLE_OF_HEX)


def node_key_at(version_prefix: bytes, key_hash: bytes, depth: int) -> bytes:
    """schema.trie_node_key(version, first `depth` nibbles of key_hash), with `version_prefix` =
    schema.trie_version_prefix(version): the path is cut from the hash, never unpacked to nibbles."""
    half = depth >> 1
    if depth & 1:
        return version_prefix + BYTE[depth] + key_hash[:half] + HIGH_NIBBLE[key_hash[half]]
    return version_prefix + BYTE[depth] + key_hash[:half]


def root_key(version: int) -> bytes:
    return schema.trie_version_prefix(version) + BYTE[0]


# Offsets in the fixed layout of an internal node.
HASHES_AT, VERSIONS_AT = 5, 5 + 512


def mask_of(node: bytes) -> int:
    """Bit n set: child n is present."""
    return node[1] << 8 | node[2]


def leaf_mask_of(node: bytes) -> int:
    """Bit n set: child n is a leaf."""
    return node[3] << 8 | node[4]


def hashes_of(node: bytes) -> bytes:
    """The 16 child hashes, concatenated (ZERO_HASH where empty)."""
    return node[HASHES_AT:VERSIONS_AT]


def child_hash(node: bytes, nibble: int) -> bytes:
    at = HASHES_AT + (nibble << 5)
    return node[at:at + 32]


def child_key(node_key: bytes, node: bytes, nibble: int) -> bytes:
    """The DB key of child `nibble` of the internal node at `node_key` (layout: t, version, depth, packed path)."""
    depth = node_key[9]
    packed = node_key[10:]
    tail = packed[:-1] + BYTE[packed[-1] | nibble] if depth & 1 else packed + BYTE[nibble << 4]
    at = VERSIONS_AT + (nibble << 3)
    return schema.TRIE_NODE + node[at:at + 8] + BYTE[depth + 1] + tail


def child_keys(node_key: bytes, node: bytes) -> list:
    """The 16 child keys of an internal node (None where empty)."""
    mask = mask_of(node)
    return [child_key(node_key, node, nibble) if mask >> nibble & 1 else None for nibble in range(16)]


# --- hashes ----------------------------------------------------------------------------


def leaf_hash(key_hash: bytes, value: bytes) -> bytes:
    return blake2b(b"\x00" + key_hash + blake2b(value, digest_size=32).digest(), digest_size=32).digest()


def internal_hash(hashes: bytes) -> bytes:
    """The hash of an internal node from its 16 child hashes, concatenated."""
    return blake2b(b"\x01" + hashes, digest_size=32).digest()


# --- stored form ------------------------------------------------------------------------


def encode_internal(mask: int, leaf_mask: int, hashes: bytes, versions: bytes) -> bytes:
    return INTERNAL_TAG + mask.to_bytes(2, "big") + leaf_mask.to_bytes(2, "big") + hashes + versions


def decode_node(raw: bytes) -> Node:
    if raw[:1] == INTERNAL_TAG:
        if len(raw) != INTERNAL_SIZE or leaf_mask_of(raw) & ~mask_of(raw):
            raise CorruptTrieNode(f"an internal trie node of {len(raw)} bytes (a valid one has {INTERNAL_SIZE}) "
                                  f"or with a leaf that is not a child")
        return raw
    node = msgpack.unpackb(raw, raw=False, use_list=False)
    if node[0] == LEAF:
        return (LEAF, node[1], node[2], blake2b_256(node[1]))
    return _decode_entries(node[1])


def _decode_entries(entries: tuple) -> bytes:
    """An internal node in the msgpack form written before the fixed layout, as the fixed layout."""
    mask = leaf_mask = 0
    hashes, versions = [ZERO_HASH] * 16, [ZERO_VERSION] * 16
    for nibble, entry in enumerate(entries):
        if entry is not None:
            mask |= 1 << nibble
            if entry[2]:
                leaf_mask |= 1 << nibble
            hashes[nibble], versions[nibble] = entry[0], entry[1].to_bytes(8, "big")
    return encode_internal(mask, leaf_mask, b"".join(hashes), b"".join(versions))
