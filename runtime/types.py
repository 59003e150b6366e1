"""The chain's values: headers, blocks, extrinsics, events. Frozen dataclasses, and
NamedTuples for the small values made once per extrinsic.

Every type here has one canonical encoding (`runtime.codec`); a block's hash is
blake2b-256 of its header's encoding, an extrinsic's hash of its own encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b as _blake2b  # blake2b_256 without its call layer, for the hashes made per extrinsic
from typing import NamedTuple, NewType

from runtime import codec
from runtime.dispatch import Call, Event, encode_event_records
from runtime.errors import CodecError
from runtime.hashing import ZERO_HASH
from runtime.memo import computed_once

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

    @computed_once
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

    @computed_once
    def encoded(self) -> bytes:
        # codec.encode(self, Extrinsic), with the call's bytes reused (an array is its items' bytes in a row)
        signed = b"\xc0" if self.signed is None else codec.pack(_encode_signed(self.signed))
        return codec.join_array([signed, self.call.encoded])

    @computed_once
    def hash(self) -> Hash:
        return Hash(_blake2b(self.encoded, digest_size=32).digest())

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


# A block's events are encoded (into System's Events) by one loop rather than a call per record and field.
codec.register_custom(tuple[EventRecord, ...], encode_event_records, codec.decoder_for(tuple[EventRecord, ...]))


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
    level = [_blake2b(b"\x00" + h, digest_size=32).digest() for h in extrinsic_hashes]
    while len(level) > 1:
        paired = [_blake2b(b"\x01" + level[i] + level[i + 1], digest_size=32).digest()
                  for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return Hash(level[0])


def encode_block(block: Block) -> bytes:
    return codec.encode(block, Block)


def decode_block(data: bytes) -> Block:
    """Strictly decode a block (as codec.decode does), and keep each extrinsic's bytes and its call's.

    Canonicity is checked by packing the header and each extrinsic's two parts
    separately and joining them (an array's bytes are its items' bytes in a row):
    the same work as packing the whole tree, and importing the block then never
    encodes an extrinsic or a call again (for its hash, length and signing message)."""
    tree = codec.parse(data, max_length=MAX_BLOCK_BYTES)
    packed, pieces = _pack_block_tree(tree)
    if packed != data:
        raise CodecError("not the canonical encoding")
    block = _decode_block_tree(tree)
    for extrinsic, (encoded, call_encoded) in zip(block.extrinsics, pieces):
        # the values of their cached properties, known already (the same bytes the properties would make)
        extrinsic.__dict__["encoded"] = encoded
        extrinsic.call.__dict__["encoded"] = call_encoded
    return block


def _pack_block_tree(tree) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """codec.pack(tree) for a block's tree, joined from each extrinsic's [signed, call] parts."""
    if type(tree) is not list or len(tree) != 2 or type(tree[1]) is not list or not all(
            type(x) is list and len(x) == 2 for x in tree[1]):
        return codec.pack_canonical_check(tree), []  # not a block: the decoder names what is wrong
    pieces = []
    try:
        for signed, call in tree[1]:
            call_encoded = codec.pack(call)
            pieces.append((_PAIR + codec.pack(signed) + call_encoded, call_encoded))
        packed = _PAIR + codec.pack(tree[0]) + codec.join_array([encoded for encoded, _ in pieces])
    except (TypeError, ValueError, OverflowError):
        return None, []
    return packed, pieces


_PAIR = codec.array_header(2)
_decode_block_tree = codec.decoder_for(Block)


def decode_extrinsic(data: bytes, *, max_length: int = codec.MAX_ENCODED_LENGTH) -> Extrinsic:
    extrinsic = codec.decode(Extrinsic, data, max_length=max_length)
    extrinsic.__dict__["encoded"] = bytes(data)  # canonical, so these are its bytes: no need to encode it again
    return extrinsic
