"""Justifications: the proof that a block is final, and how anyone checks one.

A justification of block T in round r of set s holds signed precommits of that
round whose weight reaches the supermajority threshold of set s, each for T or a
descendant of T, and the headers that link each precommit's target down to T
(excluding T): with those, the proof is checked from the voter set alone, by a
node that never imported the descendants. Headers not needed are refused, so a
justification cannot be padded.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.finality.ports import VoterSet
from runtime import codec
from runtime.errors import CodecError, GradchainError
from runtime.finality import PRECOMMIT, SignedVote, is_valid_vote_signature
from runtime.types import BlockHash, BlockNumber, Header

MAX_JUSTIFICATION_BYTES = 4 * 1024 * 1024


class BadJustification(GradchainError):
    """A justification that does not prove what it claims; the message names the first problem."""

    code = "bad_justification"


@dataclass(frozen=True)
class Justification:
    set_id: codec.U64
    round: codec.U64
    target_hash: BlockHash
    target_number: BlockNumber
    precommits: tuple[SignedVote, ...]
    ancestry: tuple[Header, ...]  # headers from each precommit's target down to (excluding) the target

    @property
    def target(self) -> tuple[bytes, int]:
        return (self.target_hash, self.target_number)


@dataclass(frozen=True)
class FinalityProof:
    """Proof that block `block` is final (grandpa_proveFinality): the justification of a later (or the same)
    finalized block, and the headers from just after `block` up to that justified block."""

    block: BlockHash
    justification: bytes  # an encoded Justification
    unknown_headers: tuple[Header, ...]


def encode_justification(justification: Justification) -> bytes:
    return codec.encode(justification, Justification)


def decode_justification(data: bytes) -> Justification:
    try:
        return codec.decode(Justification, data, max_length=MAX_JUSTIFICATION_BYTES)
    except CodecError as error:
        raise BadJustification(f"not an encoded justification: {error.message}") from None


def build_justification(set_id: int, round_number: int, target: tuple[bytes, int], precommits: list[SignedVote],
                        header_of) -> Justification:
    """The justification of `target` from precommits (each for it or a descendant; known headers)."""
    headers: dict[bytes, Header] = {}
    for vote in precommits:
        block_hash, number = vote.target
        while number > target[1] and block_hash not in headers:
            header = header_of(block_hash)
            headers[block_hash] = header
            block_hash, number = header.parent_hash, number - 1
    ordered = tuple(sorted(headers.values(), key=lambda h: (h.number, h.hash)))
    votes = tuple(sorted(precommits, key=lambda v: v.voter))
    return Justification(set_id, round_number, BlockHash(target[0]), BlockNumber(target[1]), votes, ordered)


def verify_justification(justification: Justification, genesis_hash: bytes, voters: VoterSet) -> None:
    """Raise BadJustification unless it proves its target final under `voters`."""
    j = justification
    if j.set_id != voters.set_id:
        raise BadJustification(f"made by validator set {j.set_id}, but set {voters.set_id} is in force there")
    headers = {h.hash: h for h in j.ancestry}
    used: set[bytes] = set()
    weight = 0
    seen: set[bytes] = set()
    for vote in j.precommits:
        if vote.stage != PRECOMMIT or vote.round != j.round or vote.set_id != j.set_id:
            raise BadJustification("a vote is not a precommit of the justification's set and round")
        if vote.voter in seen:
            raise BadJustification(f"validator 0x{vote.voter.hex()[:16]} precommits twice")
        seen.add(vote.voter)
        if vote.voter not in voters:
            raise BadJustification(f"0x{vote.voter.hex()[:16]} is not a validator of set {voters.set_id}")
        if not is_valid_vote_signature(genesis_hash, vote):
            raise BadJustification(f"the precommit of 0x{vote.voter.hex()[:16]} has a bad signature")
        _check_descends(vote, j, headers, used)
        weight += voters.weight_of(vote.voter)
    if len(used) != len(headers):
        raise BadJustification("the ancestry holds headers no precommit needs")
    if weight < voters.threshold:
        raise BadJustification(f"precommits weigh {weight}, below the supermajority threshold {voters.threshold}")


def _check_descends(vote: SignedVote, j: Justification, headers: dict[bytes, Header], used: set[bytes]) -> None:
    block_hash, number = vote.target
    while number > j.target_number:
        header = headers.get(block_hash)
        if header is None or header.number != number:
            raise BadJustification(f"the ancestry does not link the precommit for #{vote.target_number} "
                                   f"down to the target #{j.target_number}")
        used.add(block_hash)
        block_hash, number = header.parent_hash, number - 1
    if (block_hash, number) != j.target:
        raise BadJustification(f"a precommit for #{vote.target_number} is not for the target or a descendant")
