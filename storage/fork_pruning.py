"""Pruning the forks that finality excluded: their blocks, states and statuses.

Once block F is final, a fork that branches off the canonical chain below F can
never become canonical. For each leaf of the block tree whose branch leaves the
canonical chain below F, every block of the branch above the branch point is
deleted in one write: header, body, state record, verification status, leaf
mark, and the trie nodes written at that block's version (only that branch's
states use them: a block's new nodes are written at its own version, and a
canonical state is built from canonical parents only). A fork block's stale
list names nodes of its parent's state, which the canonical chain may still use:
the list is dropped, the nodes are not.
"""

from __future__ import annotations

from storage import schema
from storage.chainstore import ChainStore

MAX_BLOCKS_PER_PRUNE = 10_000  # a bound on one write; what is left goes at the next finalization


def excluded_branch(store: ChainStore, leaf_hash: bytes, finalized_number: int) -> list[bytes]:
    """The blocks of the leaf's branch above its canonical ancestor, if that ancestor is below the finalized
    height (the branch can never be canonical); else nothing."""
    branch = []
    header = store.header(leaf_hash)
    while header is not None and store.hash_at(header.number) != header.hash:
        branch.append(header.hash)
        header = store.header(header.parent_hash)
    if header is None or header.number >= finalized_number:
        return []
    return branch


def prune_excluded_forks(store: ChainStore) -> int:
    """Delete every block of every branch finality excluded; returns how many blocks went."""
    finalized = store.finalized_header().number
    doomed: list[bytes] = []
    for leaf in store.leaves():
        doomed.extend(excluded_branch(store, leaf, finalized))
        if len(doomed) >= MAX_BLOCKS_PER_PRUNE:
            break
    if not doomed:
        return 0
    deletes: list[bytes] = []
    trie_nodes: list[bytes] = []
    for block_hash in dict.fromkeys(doomed):
        stored = store.stored_state(block_hash)
        if stored is not None:
            trie_nodes.extend(store.db.keys_with_prefix(schema.trie_version_prefix(stored.version)))
            deletes.append(schema.stale_nodes_key(stored.version))
        deletes += [schema.header_key(block_hash), schema.body_key(block_hash), schema.block_state_key(block_hash),
                    schema.status_key(block_hash), schema.waiting_key(block_hash), schema.leaf_key(block_hash),
                    schema.justification_key(block_hash)]
    store.db.write({}, deletes + trie_nodes)
    store.forget_blocks(doomed, trie_nodes)
    return len(set(doomed))
