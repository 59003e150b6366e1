"""Every LevelDB key gradchain writes is built here, and nowhere else.

One LevelDB per node; columns are one-byte key prefixes. Integers in keys are
8-byte big-endian so that LevelDB's byte order is numeric order.

    m<name>                        meta pointers (best, finalized, genesis, ...)
    h<block hash>                  encoded header
    b<block hash>                  encoded body (list of extrinsics)
    j<block hash>                  justification (finality proof)
    n<number>                      canonical chain: number -> block hash
    s<block hash>                  the block's state: StateRef and its version
    t<version><depth><nibbles>     state trie node written at that version
    x<version>                     trie nodes made stale by that version
    B<blob hash>                   content-addressed blob
    I<blob hash>                   the blob's size and upload block
    g<set id><round><stage>        this validator's own finality vote (the vote journal)
"""

from __future__ import annotations

META = b"m"
HEADER = b"h"
BODY = b"b"
JUSTIFICATION = b"j"
CANONICAL = b"n"
BLOCK_STATE = b"s"
TRIE_NODE = b"t"
STALE_NODES = b"x"
BLOB = b"B"
BLOB_INFO = b"I"
DISPUTED = b"d"  # blocks whose useful-work report a validator could not reproduce -> evidence
VOTE_JOURNAL = b"g"  # finality votes this validator signed, saved before they are sent

META_BEST = b"best"
META_FINALIZED = b"finalized"
META_GENESIS = b"genesis"
META_NEXT_VERSION = b"next_version"
META_SCHEMA_VERSION = b"schema_version"
META_BLOB_BYTES = b"blob_bytes"  # total size of stored blobs
META_PRUNED_BELOW = b"pruned_below"  # states of blocks below this number are pruned


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def meta_key(name: bytes) -> bytes:
    return META + name


def header_key(block_hash: bytes) -> bytes:
    return HEADER + block_hash


def body_key(block_hash: bytes) -> bytes:
    return BODY + block_hash


def justification_key(block_hash: bytes) -> bytes:
    return JUSTIFICATION + block_hash


def canonical_key(number: int) -> bytes:
    return CANONICAL + _u64(number)


def block_state_key(block_hash: bytes) -> bytes:
    return BLOCK_STATE + block_hash


def trie_version_prefix(version: int) -> bytes:
    """All trie nodes written at one version share this prefix (for discarding a fork)."""
    return TRIE_NODE + _u64(version)


def trie_node_key(version: int, nibbles: bytes) -> bytes:
    """Key of the trie node at `nibbles` (one nibble, 0..15, per byte) written at `version`.

    The path is packed two nibbles a byte after a depth byte, so two paths of
    different depth never collide.
    """
    depth = len(nibbles)
    padded = nibbles + b"\x00" if depth % 2 else nibbles
    packed = bytes((padded[i] << 4) | padded[i + 1] for i in range(0, len(padded), 2))
    return TRIE_NODE + _u64(version) + bytes((depth,)) + packed


def stale_nodes_key(version: int) -> bytes:
    return STALE_NODES + _u64(version)


def blob_key(blob_hash: bytes) -> bytes:
    return BLOB + blob_hash


def blob_info_key(blob_hash: bytes) -> bytes:
    return BLOB_INFO + blob_hash


def disputed_key(block_hash: bytes) -> bytes:
    return DISPUTED + block_hash


def vote_journal_set_prefix(set_id: int) -> bytes:
    """All of this validator's votes under one validator set share this prefix."""
    return VOTE_JOURNAL + _u64(set_id)


def vote_journal_key(set_id: int, round_number: int, stage: int) -> bytes:
    return VOTE_JOURNAL + _u64(set_id) + _u64(round_number) + bytes((stage,))
