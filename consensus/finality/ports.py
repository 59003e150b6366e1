"""The ports of the finality gadget: everything it knows of the world comes through these.

The voter (voter.py) is a synchronous state machine, like finality-grandpa's: it
reads no clock, opens no socket and starts no thread. The node implements
`Environment` over its chain store and verification statuses, `NetworkPort` over
gossip, and `VoteJournal` over LevelDB (storage/vote_journal.py); tests use the
in-memory ones in memory.py with a fake clock.

Driving a voter: call `voter.poll()` after anything happened (a message was
handed to `voter.on_message`, a block was imported or verified, the clock moved),
and again no later than `voter.next_wakeup_ms()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runtime.finality import SignedVote, supermajority_threshold
from runtime.types import Header

# What this node concluded about a block's useful work (the import pipeline's verification status).
VERIFIED = "verified"
PENDING = "pending"
DISPUTED = "disputed"
UNVERIFIABLE = "unverifiable"
BLOCK_STATUSES = (VERIFIED, PENDING, DISPUTED, UNVERIFIABLE)


@dataclass(frozen=True)
class VoterSet:
    """The validators whose votes count, with their weights (stake), under one set id."""

    set_id: int
    voters: tuple[tuple[bytes, int], ...]  # (account, weight), every weight > 0, no account twice

    def __post_init__(self) -> None:
        object.__setattr__(self, "_weights", dict(self.voters))

    def weight_of(self, voter: bytes) -> int:
        return self._weights.get(voter, 0)

    def __contains__(self, voter: bytes) -> bool:
        return voter in self._weights

    @property
    def total_weight(self) -> int:
        return sum(w for _, w in self.voters)

    @property
    def threshold(self) -> int:
        """The least weight that is more than two thirds of the total."""
        return supermajority_threshold(self.total_weight)


class Environment(Protocol):
    """The chain as the voter needs it."""

    genesis_hash: bytes

    def now_ms(self) -> int:
        """The current time (a fake clock in tests)."""

    def header(self, block_hash: bytes) -> Header | None:
        """A known block's header, or None if this node has not imported it."""

    def best_chain_head(self, base_hash: bytes) -> bytes:
        """The head of the best chain containing `base_hash` (fork choice), or `base_hash` itself."""

    def block_status(self, block_hash: bytes) -> str:
        """This node's verification status of the block's useful work: one of BLOCK_STATUSES."""

    def voter_set_at(self, block_hash: bytes) -> VoterSet:
        """The set recorded in the block's state: it votes on the block's descendants."""

    def finalized(self) -> tuple[bytes, int]:
        """The last finalized block (hash, number)."""

    def finalize_block(self, block_hash: bytes, number: int, justification: object) -> None:
        """Finalize the block and its ancestors, storing the justification with it."""

    def report_equivocation(self, first: SignedVote, second: SignedVote) -> None:
        """Two conflicting votes by one validator were seen: submit them as evidence."""


class NetworkPort(Protocol):
    """Gossip of finality messages (the network's finality topic)."""

    def broadcast(self, message: bytes) -> None:
        """Send an encoded message (messages.py) to every peer, best effort."""


class VoteJournal(Protocol):
    """This validator's own votes, saved durably before they are sent: a restarted
    voter re-sends what it voted and never signs a second, different vote."""

    def saved_vote(self, set_id: int, round_number: int, stage: int) -> SignedVote | None:
        """The vote this validator cast in that set, round and stage, if any."""

    def save_vote(self, vote: SignedVote) -> None:
        """Persist the vote; when this returns it survives a crash (synced)."""

    def last_round(self, set_id: int) -> int:
        """The highest round of `set_id` this validator voted in (0 if none)."""

    def forget_before_round(self, set_id: int, round_number: int) -> int:
        """Drop the votes of earlier sets, and of rounds of `set_id` before `round_number`."""
