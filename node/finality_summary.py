"""Who finalized a block, in plain figures (grandpa_justifiedBy): for explorers and the network demo.

A block is final through the first justification stored at or above it (blocks in
between are finalized with it). The summary names the precommits' signers and adds
up their stake in the voter set recorded at the justified block's parent (the set
that voted on it), so a client needs neither the justification's encoding nor the
voter set's storage layout.
"""

from __future__ import annotations

from typing import Any

from consensus.finality.justification import decode_justification
from consensus.finality.store_environment import prove_finality, voter_set_of
from runtime.state import Overlay
from storage.chainstore import ChainStore


def justified_by(store: ChainStore, number: int) -> dict[str, Any] | None:
    """{block, justified: {hash, number}, setId, round, signers, signedWeight, totalWeight, voters} with raw
    account bytes, or None when the canonical block at `number` is not final or no justification is near it."""
    proof = prove_finality(store, number)
    if proof is None:
        return None
    justification = decode_justification(proof.justification)
    target = store.header(justification.target_hash)
    at = target.parent_hash if target.number > 0 else target.hash
    if store.stored_state(at) is None:  # pruned: the set in force now (sets change rarely; say so in the docs)
        at = store.finalized_hash
    voters = voter_set_of(Overlay(store.state_view(at)))
    signers = list(dict.fromkeys(vote.voter for vote in justification.precommits))
    return {"block": number, "justified": {"hash": justification.target_hash, "number": justification.target_number},
            "setId": justification.set_id, "round": justification.round, "signers": signers,
            "signedWeight": sum(voters.weight_of(who) for who in signers), "totalWeight": voters.total_weight,
            "voters": len(voters.voters)}
