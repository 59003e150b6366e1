"""What finality votes and dispute statements are, and what their signatures cover.

The finality gadget (consensus/finality/) signs these; the offences pallet checks
them as evidence. Both sides must agree on every byte, so the values and their
signing payloads live here, at the bottom of the import graph, and nowhere else.

A signature covers a domain-separated payload: a fixed tag, the chain's genesis
hash, the validator-set id, and then what is claimed. The tag keeps a finality
vote from ever being read as a transaction or a seal (those sign other types);
the genesis hash keeps a vote of one chain from counting on another; the set id
and round keep an old vote from being replayed into a later round.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import codec, crypto
from runtime.types import AccountId, BlockHash, BlockNumber, Hash, Header, Signature

VOTE_TAG = b"gradchain/finality-vote/v1"
DISPUTE_TAG = b"gradchain/useful-work-dispute/v1"

PREVOTE = 0
PRECOMMIT = 1
STAGES = (PREVOTE, PRECOMMIT)
STAGE_NAMES = {PREVOTE: "prevote", PRECOMMIT: "precommit"}

SetId = codec.U64
RoundNumber = codec.U64


@dataclass(frozen=True)
class VotePayload:
    """The bytes a validator signs for one vote (their encoding)."""

    tag: bytes
    genesis_hash: BlockHash
    set_id: SetId
    round: RoundNumber
    stage: codec.U8
    target_hash: BlockHash
    target_number: BlockNumber


@dataclass(frozen=True)
class SignedVote:
    """One prevote or precommit for a block, by one validator of set `set_id`."""

    set_id: SetId
    round: RoundNumber
    stage: codec.U8
    target_hash: BlockHash
    target_number: BlockNumber
    voter: AccountId
    signature: Signature

    @property
    def target(self) -> tuple[bytes, int]:
        return (self.target_hash, self.target_number)


def vote_signing_payload(genesis_hash: bytes, set_id: int, round_number: int, stage: int,
                         target_hash: bytes, target_number: int) -> bytes:
    return codec.encode(VotePayload(VOTE_TAG, BlockHash(genesis_hash), set_id, round_number, stage,
                                    BlockHash(target_hash), BlockNumber(target_number)))


def sign_vote(keypair: crypto.Keypair, genesis_hash: bytes, set_id: int, round_number: int, stage: int,
              target_hash: bytes, target_number: int) -> SignedVote:
    payload = vote_signing_payload(genesis_hash, set_id, round_number, stage, target_hash, target_number)
    return SignedVote(set_id, round_number, stage, BlockHash(target_hash), BlockNumber(target_number),
                      AccountId(keypair.public), Signature(keypair.sign(payload)))


def is_valid_vote_signature(genesis_hash: bytes, vote: SignedVote) -> bool:
    if vote.stage not in STAGES:
        return False
    payload = vote_signing_payload(genesis_hash, vote.set_id, vote.round, vote.stage, vote.target_hash,
                                   vote.target_number)
    return crypto.verify(vote.voter, payload, vote.signature)


def is_vote_equivocation(first: SignedVote, second: SignedVote) -> bool:
    """Two votes of one validator in one set, round and stage, for different blocks."""
    return (first.voter == second.voter and first.set_id == second.set_id and first.round == second.round
            and first.stage == second.stage and first.target != second.target)


@dataclass(frozen=True)
class DisputePayload:
    """The bytes a validator signs to say a block's useful-work report did not reproduce."""

    tag: bytes
    genesis_hash: BlockHash
    set_id: SetId
    block_hash: BlockHash
    block_number: BlockNumber
    reasons_hash: Hash  # blake2b-256 of the validator's reasons (kept off chain)


@dataclass(frozen=True)
class SignedDispute:
    """A validator's signed statement that block `block_hash`'s useful-work report is false."""

    set_id: SetId
    block_hash: BlockHash
    block_number: BlockNumber
    reasons_hash: Hash
    validator: AccountId
    signature: Signature


def dispute_signing_payload(genesis_hash: bytes, set_id: int, block_hash: bytes, block_number: int,
                            reasons_hash: bytes) -> bytes:
    return codec.encode(DisputePayload(DISPUTE_TAG, BlockHash(genesis_hash), set_id, BlockHash(block_hash),
                                       BlockNumber(block_number), Hash(reasons_hash)))


def sign_dispute(keypair: crypto.Keypair, genesis_hash: bytes, set_id: int, header: Header,
                 reasons_hash: bytes) -> SignedDispute:
    payload = dispute_signing_payload(genesis_hash, set_id, header.hash, header.number, reasons_hash)
    return SignedDispute(set_id, header.hash, header.number, Hash(reasons_hash), AccountId(keypair.public),
                         Signature(keypair.sign(payload)))


def is_valid_dispute_signature(genesis_hash: bytes, dispute: SignedDispute) -> bool:
    payload = dispute_signing_payload(genesis_hash, dispute.set_id, dispute.block_hash, dispute.block_number,
                                      dispute.reasons_hash)
    return crypto.verify(dispute.validator, payload, dispute.signature)


def is_valid_seal(header: Header) -> bool:
    """Whether the header carries its claimed author's seal (Aura's check, without the slot rule)."""
    seal = header.digest.seal
    return len(seal) == crypto.SIGNATURE_LENGTH and crypto.verify(header.digest.author, header.pre_seal_hash(), seal)


def supermajority_threshold(total_weight: int) -> int:
    """The least weight that is more than two thirds of `total_weight` (GRANDPA's: total - faulty)."""
    return total_weight - (total_weight - 1) // 3 if total_weight > 0 else 1
