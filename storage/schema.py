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
    f<storage key>                 the value of that key in the best block's state (storage/flat_state.py)
    x<version>                     trie nodes made stale by that version
    v<block hash>                  the block's useful-work verification status
    w<block hash>                  blocks whose status is pending or unverifiable (checked again)
    l<block hash>                  leaves of the block tree (blocks without a child)
    B<blob hash>                   content-addressed blob
    I<blob hash>                   the blob's size and upload block
    g<set id><round><stage>        this validator's own finality vote (the vote journal)

Node-side indexes (node/indexer.py): derived from the chain, never part of consensus,
rebuilt from the best state when missing. Those derived from the best state move with
it (meta `index_head` names the block they describe); the account history keeps every
imported block's entries and filters them by the canonical index when read.
    K<storage key>                           the keys of the best state, in key order (state_getKeysPaged)
    L<inverted earned u128><account>         all-time rewards, best first (training_leaderboard)
    T<task u64><account>                     a trainer's rewards in one task
    R<task u64><inverted reward u128><account>  the same, best first (training_taskLeaderboard)
    P<blob hash>                             blobs of ended tasks, kept from blob GC (the audit trail)
    A<account><number u64><block hash>       the extrinsics and events of a block that involve the account
"""

from __future__ import annotations

META = b"m"
HEADER = b"h"
BODY = b"b"
JUSTIFICATION = b"j"
CANONICAL = b"n"
BLOCK_STATE = b"s"
TRIE_NODE = b"t"
FLAT_STATE = b"f"
STALE_NODES = b"x"
BLOB = b"B"
BLOB_INFO = b"I"
STATUS = b"v"
WAITING = b"w"
LEAF = b"l"
VOTE_JOURNAL = b"g"  # finality votes this validator signed, saved before they are sent

STATE_KEYS = b"K"
LEADERBOARD = b"L"
TASK_EARNED = b"T"
TASK_RANKING = b"R"
PINNED_BLOB = b"P"
ACCOUNT_HISTORY = b"A"

META_BEST = b"best"
META_FINALIZED = b"finalized"
META_GENESIS = b"genesis"
META_NEXT_VERSION = b"next_version"
META_SCHEMA_VERSION = b"schema_version"
META_BLOB_BYTES = b"blob_bytes"  # total size of stored blobs
META_FLAT_HEAD = b"flat_head"  # the block whose state the flat table holds (absent: rebuild it)
META_PRUNED_BELOW = b"pruned_below"  # states of blocks below this number are pruned
META_INDEX_HEAD = b"index_head"  # the block whose state the node-side indexes describe
META_HISTORY_NUMBER = b"history_number"  # the highest block whose account history is recorded


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


def flat_state_key(storage_key: bytes) -> bytes:
    """Key of a storage key's value in the flat table (by the key itself, so the table can be read back
    into the head cache; LevelDB stores the shared pallet prefixes once per block of keys)."""
    return FLAT_STATE + storage_key


def stale_nodes_key(version: int) -> bytes:
    return STALE_NODES + _u64(version)


def blob_key(blob_hash: bytes) -> bytes:
    return BLOB + blob_hash


def blob_info_key(blob_hash: bytes) -> bytes:
    return BLOB_INFO + blob_hash


def status_key(block_hash: bytes) -> bytes:
    return STATUS + block_hash


def waiting_key(block_hash: bytes) -> bytes:
    return WAITING + block_hash


def leaf_key(block_hash: bytes) -> bytes:
    return LEAF + block_hash


def vote_journal_set_prefix(set_id: int) -> bytes:
    """All of this validator's votes under one validator set share this prefix."""
    return VOTE_JOURNAL + _u64(set_id)


def vote_journal_key(set_id: int, round_number: int, stage: int) -> bytes:
    return VOTE_JOURNAL + _u64(set_id) + _u64(round_number) + bytes((stage,))


# --- node-side indexes ------------------------------------------------------------

_U128_MAX = (1 << 128) - 1


def _inverted_u128(amount: int) -> bytes:
    """Larger amounts sort first in LevelDB's byte order."""
    return (_U128_MAX - min(amount, _U128_MAX)).to_bytes(16, "big")


def state_key_index_key(storage_key: bytes) -> bytes:
    return STATE_KEYS + storage_key


def leaderboard_key(earned: int, account: bytes) -> bytes:
    return LEADERBOARD + _inverted_u128(earned) + account


def account_from_leaderboard_key(key: bytes) -> tuple[bytes, int]:
    return key[17:], _U128_MAX - int.from_bytes(key[1:17], "big")


def task_earned_key(task_id: int, account: bytes) -> bytes:
    return TASK_EARNED + _u64(task_id) + account


def task_ranking_prefix(task_id: int) -> bytes:
    return TASK_RANKING + _u64(task_id)


def task_ranking_key(task_id: int, earned: int, account: bytes) -> bytes:
    return task_ranking_prefix(task_id) + _inverted_u128(earned) + account


def account_from_task_ranking_key(key: bytes) -> tuple[bytes, int]:
    return key[25:], _U128_MAX - int.from_bytes(key[9:25], "big")


def pinned_blob_key(blob_hash: bytes) -> bytes:
    return PINNED_BLOB + blob_hash


def account_history_prefix(account: bytes) -> bytes:
    return ACCOUNT_HISTORY + account


def account_history_key(account: bytes, number: int, block_hash: bytes) -> bytes:
    return ACCOUNT_HISTORY + account + _u64(number) + block_hash


def history_entry_block(key: bytes) -> tuple[int, bytes]:
    """(block number, block hash) of an account history key."""
    return int.from_bytes(key[33:41], "big"), key[41:]
