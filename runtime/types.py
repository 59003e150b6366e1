"""The chain's values: headers, blocks, extrinsics, events. Frozen dataclasses, and
NamedTuples for the small values made once per extrinsic.

Every type here has one canonical encoding (`runtime.codec`); a block's hash is
blake2b-256 of its header's encoding, an extrinsic's hash of its own encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, NewType

from runtime import codec
from runtime.dispatch import Call, Event
from runtime.hashing import ZERO_HASH, blake2b_256

AccountId = NewType("AccountId", bytes)
BlockHash = NewType("BlockHash", bytes)
Hash = NewType("Hash", bytes)
Signature = NewType("Signature", bytes)
Seal = NewType("Seal", bytes)
Balance = NewType("Balance", int)
Nonce = NewType("Nonce", int)
BlockNumber = NewType("BlockNumber", int)
Slot = NewType("Slot", int)
Moment = NewType("Moment", int)
Weight = NewType("Weight", int)
PartsPerMillion = NewType("PartsPerMillion", int)

for _t in (AccountId, BlockHash, Hash):
    codec.register_bytes(_t, length=32)
codec.register_bytes(Signature, length=64)
codec.register_bytes(Seal, max_length=64)
codec.register_uint(Balance, 128)
for _t in (Nonce, BlockNumber, Slot, Moment, Weight):
    codec.register_uint(_t, 64)
codec.register_uint(PartsPerMillion, 32)

ZERO_ACCOUNT = AccountId(bytes(32))
MAX_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Digest:
    """Consensus data of a header: the slot it claims, its author, the author's seal."""

    slot: Slot
    author: AccountId
    seal: Seal  # empty before sealing (and in genesis), else a 64-byte signature


@dataclass(frozen=True)
class Header:
    parent_hash: BlockHash
    number: BlockNumber
    state_root: Hash
    extrinsics_root: Hash
    digest: Digest

    @cached_property
    def hash(self) -> BlockHash:
        return BlockHash(codec.hash_of(self, Header))

    def unsealed(self) -> "Header":
        """The header as the author signed it: the same, with an empty seal."""
        return Header(self.parent_hash, self.number, self.state_root, self.extrinsics_root,
                      Digest(self.digest.slot, self.digest.author, Seal(b"")))

    def pre_seal_hash(self) -> Hash:
        return Hash(codec.hash_of(self.unsealed(), Header))


@dataclass(frozen=True)
class Era:
    """Mortality. Immortal is (0, 0); a mortal transaction is valid for blocks
    birth .. birth + period - 1 and signs the hash of block `birth`, so it cannot be
    replayed on a fork that does not contain that block."""

    birth: BlockNumber
    period: BlockNumber

    @property
    def is_immortal(self) -> bool:
        return self.period == 0


IMMORTAL = Era(BlockNumber(0), BlockNumber(0))


@dataclass(frozen=True)
class SignedData:
    signer: AccountId
    signature: Signature
    era: Era
    nonce: Nonce
    tip: Balance


@dataclass(frozen=True)
class Extrinsic:
    """A signed transaction (signed is set) or an unsigned inherent (signed is None)."""

    signed: SignedData | None
    call: Call

    @cached_property
    def encoded(self) -> bytes:
        # codec.encode(self, Extrinsic), with the call's bytes reused (an array is its items' bytes in a row)
        signed = b"\xc0" if self.signed is None else codec.pack(_encode_signed(self.signed))
        return codec.join_array([signed, self.call.encoded])

    @cached_property
    def hash(self) -> Hash:
        return Hash(blake2b_256(self.encoded))

    @property
    def is_signed(self) -> bool:
        return self.signed is not None


_encode_signed = codec.encoder_for(SignedData)


@dataclass(frozen=True)
class SigningPayload:
    """What a signer signs (blake2b-256 of its encoding): the call and its
    extras, bound to one chain (genesis hash), one runtime and one era birth block."""

    call: Call
    nonce: Nonce
    tip: Balance
    era: Era
    spec_version: codec.U32
    transaction_version: codec.U32
    genesis_hash: BlockHash
    birth_hash: BlockHash


@dataclass(frozen=True)
class Block:
    header: Header
    extrinsics: tuple[Extrinsic, ...]

    @property
    def hash(self) -> BlockHash:
        return self.header.hash


@dataclass(frozen=True)
class DispatchError:
    """Why a dispatched call failed: the pallet and its error index (names via metadata)."""

    pallet_index: codec.U8
    error_index: codec.U8
    name: codec.Text


class EventRecord(NamedTuple):
    """An event and when it happened: during extrinsic `extrinsic_index`, or in the
    block's hooks (None). A NamedTuple: every extrinsic makes one or more."""

    extrinsic_index: codec.U32 | None
    event: Event


class ApplyOutcome(NamedTuple):
    """The per-extrinsic outcome the executive returns (also visible as events)."""

    extrinsic_index: codec.U32
    success: bool
    error: DispatchError | None
    weight: Weight
    fee: Balance = Balance(0)


def compute_extrinsics_root(extrinsic_hashes: list[bytes]) -> Hash:
    """Binary Merkle root over extrinsic hashes; leaves and inner nodes are domain-separated."""
    if not extrinsic_hashes:
        return Hash(ZERO_HASH)
    level = [blake2b_256(b"\x00" + h) for h in extrinsic_hashes]
    while len(level) > 1:
        paired = [blake2b_256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return Hash(level[0])


def encode_block(block: Block) -> bytes:
    return codec.encode(block, Block)


def decode_block(data: bytes) -> Block:
    return codec.decode(Block, data, max_length=MAX_BLOCK_BYTES)


def decode_extrinsic(data: bytes, *, max_length: int = codec.MAX_ENCODED_LENGTH) -> Extrinsic:
    return codec.decode(Extrinsic, data, max_length=max_length)
