"""Finality for blocks a node imported without witnessing their rounds (sync), from peers' justifications.

A node that syncs executes every block it imports, so it holds the validator-set
history of the chain in its own states: the set recorded in a block's state votes
on that block's descendants, and the block that changes the set (an era change)
is finalized by the old set, the one recorded in its parent's state. A
justification from a peer is accepted only when it proves its target final under
the set this node derived for it, never under a set the peer names.

Sets change only at blocks finalized on their own, so justifications are taken in
order: the one of each set-change block above the last finalized block before
any later one (a later block's set is not in force until its change is final).
`check_justification` says whether a justification can finalize its target now;
the caller finalizes through the finality environment (so listeners and the voter
follow). A justification that does not verify raises BadJustification: the peer
that served it is at fault.
"""

from __future__ import annotations

from consensus.finality.justification import BadJustification, Justification, verify_justification
from consensus.finality.store_environment import voter_set_of
from runtime.pallets import validators
from runtime.state import Overlay
from runtime.types import Header
from storage.chainstore import ChainStore

MAX_SET_CHANGES = 16  # set-change blocks named per call (a request carries at most this many)


def set_change_blocks(store: ChainStore, limit: int = MAX_SET_CHANGES) -> list[tuple[bytes, int]]:
    """The canonical blocks above the last finalized one, up to the best, that change the validator set,
    lowest first, at most `limit` (the lowest: they are finalized first).

    Read from this node's own states (they are never pruned above finality): the set in force at a block
    records the block after the change that elected it (SetHistory's first_block), and the parent of
    that change block holds the set before, whose record names the change before it, and so on."""
    finalized = store.finalized_header().number
    found: list[tuple[bytes, int]] = []
    at = store.best_hash
    while True:
        state = Overlay(store.state_view(at))
        set_id = validators.CurrentEra.get(state)
        record = validators.set_record(state, set_id) if set_id > 0 else None
        if record is None:
            break
        change = record.first_block - 1
        change_hash = store.hash_at(change) if change > finalized else None
        if change_hash is None:
            break
        found.append((change_hash, change))
        at = store.header(change_hash).parent_hash
    return list(reversed(found))[:limit]


def check_justification(store: ChainStore, genesis_hash: bytes, justification: Justification) -> Header | None:
    """The header the justification finalizes now, or None if it cannot yet or need not (its target is
    final already, not imported, not on this node's best chain, or above a set change not final yet).
    Raises BadJustification if it does not prove its target final under the set this node derived."""
    j = justification
    finalized = store.finalized_header()
    if j.target_number <= finalized.number:
        return None
    header = store.header(j.target_hash)
    if header is None:
        return None
    if header.number != j.target_number:
        raise BadJustification(f"it names block #{j.target_number}, but that block is #{header.number}")
    if store.hash_at(header.number) != header.hash:
        return None  # another fork is best here: its own justification (or the voter) will settle it
    voters = voter_set_of(Overlay(store.state_view(header.parent_hash)))
    in_force = validators.CurrentEra.get(Overlay(store.state_view(finalized.hash)))
    if voters.set_id != in_force:
        # a set change lies between: the old set's justification of it comes first. Checked all the same,
        # so that a forged proof is refused now, not when its turn comes.
        verify_justification(j, genesis_hash, voters)
        return None
    verify_justification(j, genesis_hash, voters)
    return header
