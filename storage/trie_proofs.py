"""Read proofs checked against a state root alone, and the trie's root computed the slow, obvious way.

A proof is `[levels, terminal]` (the wire format of state_getReadProof; see storage/trie.py).
Neither function reads the database: a light client or a test needs only this module.
"""

from __future__ import annotations

from typing import Any, Mapping

from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH, blake2b_256
from storage.trie_nodes import MAX_DEPTH, leaf_hash as _leaf_hash, path_of as _path


class InvalidProof(GradchainError):
    """A read proof that does not show a value under the given root; do not trust the node that sent it."""

    code = "invalid_proof"


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
