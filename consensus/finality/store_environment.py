"""The finality `Environment` over a node's chain store (used on the node's chain thread).

The validator set that votes on a block's descendants is the one in the block's
state (validators.Validators, weighted by stake, under set id = the era); the
verification status comes from the import pipeline (a function the node passes);
finalizing writes the justification with the finalized pointer in one write.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import structlog

from consensus.finality.justification import FinalityProof, Justification, encode_justification
from consensus.finality.ports import VERIFIED, VoterSet
from consensus.finality.votes import is_descendant_or_equal
from runtime.dispatch import Call
from runtime.finality import SignedVote
from runtime.pallets import offences, validators
from runtime.state import Overlay
from runtime.types import Header
from storage.chainstore import ChainStore
from storage.fork_pruning import prune_excluded_forks

log = structlog.get_logger("finality")

VOTER_SET_CACHE = 256
MAX_PROOF_SEARCH = 4096  # blocks searched above the asked one for a stored justification


def voter_set_of(state) -> VoterSet:
    """The finality voter set recorded in a state: the validators, weighted by stake, under the era's id."""
    return VoterSet(validators.CurrentEra.get(state),
                    tuple((bytes(v.account), int(v.stake)) for v in validators.Validators.get(state)))


class StoreEnvironment:
    def __init__(self, store: ChainStore, *, now_ms: Callable[[], int], block_status: Callable[[bytes], str],
                 submit_evidence: Callable[[Call], None],
                 on_finalized: Callable[[list[Header], Justification], None] = lambda headers, j: None,
                 route_through: Callable[[bytes], object] = lambda block_hash: None) -> None:
        self.store = store
        self.genesis_hash = store.genesis_hash
        self.now_ms = now_ms
        self.block_status = block_status
        self.submit_evidence = submit_evidence
        self.on_finalized = on_finalized  # the newly finalized headers, oldest first
        self.route_through = route_through  # moves the head onto the best chain through a block
        self._voter_sets: OrderedDict[bytes, VoterSet] = OrderedDict()

    def header(self, block_hash: bytes) -> Header | None:
        return self.store.header(block_hash)

    def best_chain_head(self, base_hash: bytes) -> bytes:
        best = self.store.best_header()
        base = self.store.header(base_hash)
        if base is not None and is_descendant_or_equal(self.header, (base.hash, base.number), (best.hash, best.number)):
            return best.hash
        return base_hash

    def voter_set_at(self, block_hash: bytes) -> VoterSet:
        found = self._voter_sets.get(block_hash)
        if found is None:
            found = voter_set_of(Overlay(self.store.state_view(block_hash)))
            self._voter_sets[block_hash] = found
            if len(self._voter_sets) > VOTER_SET_CACHE:
                self._voter_sets.popitem(last=False)
        return found

    def finalized(self) -> tuple[bytes, int]:
        header = self.store.finalized_header()
        return (header.hash, header.number)

    def finalize_block(self, block_hash: bytes, number: int, justification: Justification) -> None:
        previous = self.store.finalized_header()
        if self.store.hash_at(number) != block_hash and self._verified_above_finality(block_hash):
            # precommits of a supermajority settled on a fork this node left (it grew longer meanwhile):
            # the head follows finality, as fork choice's first rule says (the store finalizes the best chain).
            # Not onto a fork with a block this node did not verify: the store refuses that finality anyway
            self.route_through(block_hash)
        self.store.set_finalized(block_hash, encode_justification(justification))
        pruned = prune_excluded_forks(self.store)
        if pruned:
            log.info("pruned forks finality excluded", blocks=pruned, finalized=number)
        newly = []
        header = self.store.header(block_hash)
        while header.number > previous.number:
            newly.append(header)
            header = self.store.header(header.parent_hash)
        self.on_finalized(list(reversed(newly)), justification)

    def _verified_above_finality(self, block_hash: bytes) -> bool:
        finalized = self.store.finalized_header()
        header = self.store.header(block_hash)
        while header is not None and header.number > finalized.number:
            status = self.store.verification_status(header.hash)
            if status is None or status.state != VERIFIED:
                return False
            header = self.store.header(header.parent_hash)
        return header is not None and header.hash == finalized.hash

    def report_equivocation(self, first: SignedVote, second: SignedVote) -> None:
        self.submit_evidence(offences.report_vote_equivocation(first, second))


def prove_finality(store: ChainStore, number: int) -> FinalityProof | None:
    """A finality proof of the canonical block at `number`, from the first justification stored at or above
    it; None if the block is not final, or no justification is stored near it."""
    finalized = store.finalized_header()
    block_hash = store.hash_at(number)
    if block_hash is None or number > finalized.number:
        return None
    headers = []
    for height in range(number, min(finalized.number, number + MAX_PROOF_SEARCH) + 1):
        at = store.hash_at(height)
        if height > number:
            headers.append(store.header(at))
        justification = store.justification(at)
        if justification is not None:
            return FinalityProof(block_hash, justification, tuple(headers))
    return None
