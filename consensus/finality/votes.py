"""The votes of one round and what they imply: GHOSTs, the round estimate, completability.

GRANDPA's definitions (finality-grandpa's round.rs), over a base block B (the
last finalized block when the round began); a vote for block X counts for X and
for every ancestor of X above B, and an equivocator's weight counts for every
block (its other vote might be anywhere):

- the *GHOST* of a set of votes is the highest block whose weight reaches the
  supermajority threshold (> 2/3 of the stake); there is none until votes of a
  supermajority are heard;
- until precommits of a supermajority are heard, the round *estimate* is the
  prevote GHOST and the round is not completable: any block could still gather a
  supermajority of precommits (the voters not heard from, plus equivocations of
  up to a third of the stake among those heard);
- from then on the estimate is the highest ancestor of the prevote GHOST (itself
  included) that could still gather a supermajority of precommits, and the round
  is *completable* when the estimate can no longer rise: the estimate is already
  below the prevote GHOST, or no child of the GHOST could still reach it.

"Could still" counts the weight of voters not yet heard from, plus the further
equivocations the tolerated third of the stake could make among the voters
already heard, as if they were all added to the block.
Votes for blocks this node has not imported wait: they count once the block is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from consensus.finality.ports import VoterSet
from runtime.finality import PREVOTE, SignedVote
from runtime.types import Header

Block = tuple[bytes, int]  # (hash, number)
HeaderOf = Callable[[bytes], "Header | None"]

NEW, DUPLICATE, EQUIVOCATION = "new", "duplicate", "equivocation"


def ancestry(header_of: HeaderOf, base: Block, target: Block) -> list[bytes] | None:
    """Hashes from `target` (included) down to `base` (excluded), or None when `target` is
    not a known descendant of `base` (or is `base`: then the empty list)."""
    target_hash, number = target
    if number < base[1]:
        return None
    path = []
    while number > base[1]:
        header = header_of(target_hash)
        if header is None or header.number != number:
            return None
        path.append(target_hash)
        target_hash, number = header.parent_hash, number - 1
    return path if target_hash == base[0] else None


def is_descendant_or_equal(header_of: HeaderOf, ancestor: Block, block: Block) -> bool:
    return ancestry(header_of, ancestor, block) is not None


@dataclass
class VoteGraph:
    """Cumulative weight of a set of votes on each block above the base."""

    base: Block
    weight: dict[bytes, int] = field(default_factory=dict)
    number: dict[bytes, int] = field(default_factory=dict)
    parent: dict[bytes, bytes] = field(default_factory=dict)
    counted: int = 0  # the weight of votes placed in the graph

    @classmethod
    def of(cls, header_of: HeaderOf, base: Block, votes: list[tuple[Block, int]]) -> "VoteGraph":
        graph = cls(base)
        graph.number[base[0]] = base[1]
        graph.weight[base[0]] = 0
        for target, weight in votes:
            path = ancestry(header_of, base, target)
            if path is None:
                continue  # not (yet) known as a descendant of the base: waits
            graph.counted += weight
            graph.weight[base[0]] += weight
            for i, block_hash in enumerate(path):
                graph.weight[block_hash] = graph.weight.get(block_hash, 0) + weight
                graph.number[block_hash] = target[1] - i
                graph.parent[block_hash] = path[i + 1] if i + 1 < len(path) else base[0]
        return graph

    def ghost(self, is_heavy: Callable[[int, bytes], bool]) -> Block | None:
        """The highest block whose weight passes `is_heavy(weight, hash)` (the base counts like any block)."""
        best = None
        for block_hash, weight in self.weight.items():
            if is_heavy(weight, block_hash) and (best is None or self.number[block_hash] > best[1]):
                best = (block_hash, self.number[block_hash])
        return best

    def heaviest_child_weight(self, block_hash: bytes) -> int:
        return max((self.weight[h] for h, p in self.parent.items() if p == block_hash), default=0)


class StageVotes:
    """The prevotes (or precommits) of one round: each voter's first vote, and equivocators."""

    def __init__(self) -> None:
        self.first: dict[bytes, SignedVote] = {}
        self.equivocations: dict[bytes, tuple[SignedVote, SignedVote]] = {}

    def add(self, vote: SignedVote) -> str:
        """Record a vote whose signature and voter were checked; says whether it was new."""
        seen = self.first.get(vote.voter)
        if seen is None:
            self.first[vote.voter] = vote
            return NEW
        if seen.target == vote.target or vote.voter in self.equivocations:
            return DUPLICATE
        self.equivocations[vote.voter] = (seen, vote)
        return EQUIVOCATION

    def graph(self, header_of: HeaderOf, base: Block, voters: VoterSet) -> VoteGraph:
        return VoteGraph.of(header_of, base, [(v.target, voters.weight_of(v.voter)) for v in self.first.values()])

    def tally(self, header_of: HeaderOf, base: Block, voters: VoterSet) -> "StageTally":
        """GRANDPA's weights: an equivocator's weight counts for every block, its first vote places nothing."""
        equivocators = sum(voters.weight_of(v) for v in self.equivocations)
        honest = [(v.target, voters.weight_of(v.voter)) for v in self.first.values() if v.voter not in self.equivocations]
        graph = VoteGraph.of(header_of, base, honest + [(v.target, 0) for v in self.first.values()
                                                         if v.voter in self.equivocations])
        return StageTally(graph, equivocators, sum(w for _, w in honest) - graph.counted)


@dataclass(frozen=True)
class StageTally:
    """One stage's votes weighed for GHOST, estimate and completability.

    A vote for a block not known here as a descendant of the base (not imported yet, or on a fork this node
    never fetched) is heard all the same. For the GHOST it counts at the base only: the voter is sure of
    nothing higher here, and the GHOST must not rest on a block nobody can show. For what precommits could
    still finalize it counts for every block, like an equivocator's: it might be for any of them. Left out
    altogether (as once), two voters prevoting a fork the other two never fetched left those two with no
    GHOST, no precommit and a round that never ends (the 2|2 partition scenario after its heal)."""

    graph: VoteGraph  # placed votes (equivocators' first votes placed with no weight, for the structure)
    equivocation_weight: int  # counted for every block
    unplaced_weight: int  # votes of other voters for blocks not in the graph

    @property
    def heard(self) -> int:
        """The weight of every voter whose vote came in."""
        return self.graph.counted + self.equivocation_weight + self.unplaced_weight

    def weight(self, block_hash: bytes) -> int:
        """Votes for the block or a descendant, and those that might be."""
        return self.graph.weight.get(block_hash, 0) + self.equivocation_weight + self.unplaced_weight

    def heaviest_child_weight(self, block_hash: bytes) -> int:
        return self.graph.heaviest_child_weight(block_hash) + self.equivocation_weight + self.unplaced_weight

    def ghost(self, threshold: int) -> Block | None:
        base = self.graph.base[0]
        return self.graph.ghost(lambda w, h: w + self.equivocation_weight
                                + (self.unplaced_weight if h == base else 0) >= threshold)


@dataclass(frozen=True)
class RoundOutlook:
    """What a round's votes imply right now."""

    prevote_ghost: Block | None
    precommit_ghost: Block | None  # the block this round finalizes (with its ancestors)
    estimate: Block | None
    completable: bool


def compute_outlook(header_of: HeaderOf, base: Block, voters: VoterSet, prevotes: StageVotes,
                    precommits: StageVotes) -> RoundOutlook:
    threshold = voters.threshold
    prevote = prevotes.tally(header_of, base, voters)
    prevote_ghost = prevote.ghost(threshold)
    # What this round finalizes: precommits of a supermajority as a justification carries them (one per voter).
    precommit_ghost = precommits.graph(header_of, base, voters).ghost(lambda w, _: w >= threshold)
    if prevote_ghost is None:
        return RoundOutlook(None, precommit_ghost, None, False)
    precommit = precommits.tally(header_of, base, voters)
    if precommit.heard < threshold:
        return RoundOutlook(prevote_ghost, precommit_ghost, prevote_ghost, False)
    # Precommits of a supermajority are in: only blocks they name could still reach a supermajority.
    remaining = voters.total_weight - precommit.heard
    # (votes for blocks not known here count as if anywhere, like equivocations: see StageTally)
    further_equivocations = max(0, voters.total_weight - threshold - precommit.equivocation_weight)

    def could_reach_supermajority(weight: int) -> bool:
        return weight + remaining + min(precommit.heard - weight, further_equivocations) >= threshold

    # Walk down the prevote GHOST's chain (the prevote graph knows it) and ask the precommits.
    block_hash = prevote_ghost[0]
    while not could_reach_supermajority(precommit.weight(block_hash)) and block_hash != base[0]:
        block_hash = prevote.graph.parent[block_hash]
    estimate = (block_hash, prevote.graph.number[block_hash])  # the base always could: every vote counts there
    if estimate != prevote_ghost:
        completable = True
    else:
        completable = not could_reach_supermajority(precommit.heaviest_child_weight(prevote_ghost[0]))
    return RoundOutlook(prevote_ghost, precommit_ghost, estimate, completable)


class Round:
    """One round's votes and this voter's part in it."""

    def __init__(self, number: int, base: Block, started_ms: int, prior_estimate: Block) -> None:
        self.number = number
        self.base = base  # the last finalized block when the round began: votes must descend from it
        self.started_ms = started_ms
        self.prior_estimate = prior_estimate  # the previous round's estimate (or finality, if higher)
        self.prevotes = StageVotes()
        self.precommits = StageVotes()
        self.outlook = RoundOutlook(None, None, None, False)
        self.prevoted: SignedVote | None = None
        self.precommitted: SignedVote | None = None

    def stage(self, stage: int) -> StageVotes:
        return self.prevotes if stage == PREVOTE else self.precommits


def may_wait(waiting: list[SignedVote], vote: SignedVote) -> bool:
    """Whether a vote of a round ahead joins the round's waiting votes: a voter's first vote of a stage, and
    a second one only when it conflicts with the first (an equivocation, recorded as evidence when the round
    starts; dropping it lost the evidence of a voter that signed both before we reached its round). Never
    more than two per voter and stage: no flooding."""
    same = [v for v in waiting if v.voter == vote.voter and v.stage == vote.stage]
    return not same or (len(same) == 1 and same[0].target != vote.target)


def unknown_targets(header_of: HeaderOf, finalized_number: int, rounds: list["Round | None"]) -> list[Block]:
    """Blocks above finality named by the rounds' votes that this node has not imported: a vote counts only
    once its block is known, so the node fetches them (a fork sync would never take: node/vote_blocks.py)."""
    found: dict[bytes, Block] = {}
    for round_ in rounds:
        for votes in (round_.prevotes, round_.precommits) if round_ is not None else ():
            for vote in votes.first.values():
                if vote.target_number > finalized_number and header_of(vote.target_hash) is None:
                    found[vote.target_hash] = vote.target
    return list(found.values())
