"""Pruning the canonical states older than the window below finality.

The stale list of block k names the nodes of state k-1 that state k no longer uses;
deleting it drops state k-1. The flat table and the head cache describe the best
state, which is never below finality, so pruning never touches them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import codec
from storage import schema

if TYPE_CHECKING:
    from storage.chainstore import ChainStore


def prune_canonical_states(store: "ChainStore") -> int:
    """Delete the trie nodes of the canonical states below `finalized - store.pruning`; returns how many."""
    if store.pruning is None:
        return 0
    finalized = store.finalized_header().number
    raw_below = store.db.get(schema.meta_key(schema.META_PRUNED_BELOW))
    pruned_below = 0 if raw_below is None else int.from_bytes(raw_below, "big")
    target = finalized - store.pruning
    if target <= pruned_below:
        return 0
    deleted = 0
    deletes: list[bytes] = []
    for number in range(pruned_below + 1, target + 1):
        block_hash = store.hash_at(number)
        stored = store.stored_state(block_hash) if block_hash else None
        if stored is None:
            continue
        raw = store.db.get(schema.stale_nodes_key(stored.version))
        if raw:
            stale = codec.unpack_trusted(raw)
            deletes.extend(stale)
            deletes.append(schema.stale_nodes_key(stored.version))
            deleted += len(stale)
    store.db.write({schema.meta_key(schema.META_PRUNED_BELOW): target.to_bytes(8, "big")}, deletes)
    store.trie.forget(deletes)
    return deleted
