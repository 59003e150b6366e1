"""Encodings built the quick way equal the ones built the plain way.

- A NamedTuple encodes exactly as a frozen dataclass with the same fields.
- `codec.join_array` of items' bytes is `codec.pack` of the items.
- An extrinsic's bytes (made from its call's cached bytes), a block body's bytes
  (joined from its extrinsics' bytes) and the signing message (the call's bytes
  and the packed extras) equal the codec's encoding of the whole value.
- A decoded block keeps each extrinsic's and call's bytes, and is still strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from runtime import codec
from runtime.dispatch import Call
from runtime.errors import CodecError
from runtime.executive import VERSION, RuntimeVersion, signing_message, signing_message_reference
from runtime.pallets import balances, system
from runtime.pallets.system import AccountInfo
from runtime.types import (
    AccountId, ApplyOutcome, Balance, Block, Digest, DispatchError, Era, EventRecord, Extrinsic, Header, Nonce,
    SignedData, decode_block, decode_extrinsic, encode_block,
)
from storage.chainstore import encode_body

hash32 = st.binary(min_size=32, max_size=32)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
u128 = st.one_of(st.integers(0, 2**64 + 5), st.integers(0, 2**128 - 1))
calls = st.one_of(
    st.builds(balances.transfer, hash32, u128),
    st.builds(balances.transfer_keep_alive, hash32, u128),
    st.builds(system.remark, st.binary(max_size=300)),
)
eras = st.one_of(st.just(Era(0, 0)), st.builds(Era, u64, st.integers(4, 2400)))
signed = st.builds(SignedData, hash32, st.binary(min_size=64, max_size=64), eras, u64, u128)
extrinsics = st.builds(Extrinsic, st.one_of(st.none(), signed), calls)


@dataclass(frozen=True)
class AccountInfoAsDataclass:
    nonce: Nonce
    free: Balance
    reserved: Balance


class Mixed(NamedTuple):
    who: AccountId
    amount: Balance
    note: codec.Text
    maybe: codec.U32 | None
    era: Era


@given(u64, u128, u128)
def test_a_named_tuple_encodes_exactly_as_the_same_dataclass(nonce, free, reserved):
    encoded = codec.encode(AccountInfo(nonce, free, reserved), AccountInfo)
    assert encoded == codec.encode(AccountInfoAsDataclass(nonce, free, reserved), AccountInfoAsDataclass)
    decoded = codec.decode(AccountInfo, encoded)
    assert decoded == AccountInfo(nonce, free, reserved) and type(decoded) is AccountInfo


@given(hash32, u128, st.text(max_size=20), st.one_of(st.none(), u32), eras)
def test_named_tuples_with_nested_and_optional_fields_round_trip(who, amount, note, maybe, era):
    value = Mixed(who, amount, note, maybe, era)
    encoded = codec.encode(value)
    assert codec.decode(Mixed, encoded) == value
    assert encoded == codec.pack([who, amount if amount < 2**64 else amount.to_bytes(16, "big"), note, maybe,
                                  [era.birth, era.period]])


def test_a_named_tuple_is_decoded_strictly():
    with pytest.raises(CodecError, match="expected 3 fields"):
        codec.decode(AccountInfo, codec.pack([1, 2]))
    with pytest.raises(CodecError, match="AccountInfo.free"):
        codec.decode(AccountInfo, codec.pack([1, b"\x00" * 16, 0]))  # below 2**64 must be an int
    with pytest.raises(CodecError, match="canonical"):
        codec.decode(AccountInfo, b"\x93\xcc\x01\x02\x03")  # 1 as uint8 instead of a fixint


def test_event_records_and_outcomes_keep_their_encodings():
    record = EventRecord(3, balances.Transfer(b"\x01" * 32, b"\x02" * 32, 2**70))
    assert codec.encode(record, EventRecord) == codec.pack(
        [3, [1, 0, [b"\x01" * 32, b"\x02" * 32, (2**70).to_bytes(16, "big")]]])
    assert codec.encode(EventRecord(None, system.ExtrinsicSuccess(5, 6)), EventRecord) == codec.pack(
        [None, [0, 0, [5, 6]]])
    outcome = ApplyOutcome(1, False, DispatchError(1, 0, "InsufficientBalance"), 80_000, 7)
    assert codec.decode(ApplyOutcome, codec.encode(outcome, ApplyOutcome)) == outcome


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 65_535, 65_536])
def test_join_array_is_pack_of_the_items(length):
    items = [i % 200 for i in range(length)]
    assert codec.join_array([codec.pack(i) for i in items]) == codec.pack(items)


@given(extrinsics)
@settings(max_examples=300)
def test_an_extrinsics_bytes_are_its_codec_encoding(extrinsic):
    reference = codec.pack(codec.encoder_for(Extrinsic)(extrinsic))
    fresh = Extrinsic(extrinsic.signed, Call(extrinsic.call.pallet_index, extrinsic.call.call_index,
                                             extrinsic.call.args))
    assert extrinsic.encoded == reference == fresh.encoded
    assert codec.decode(Extrinsic, reference) == extrinsic
    assert extrinsic.call.encoded == codec.encode(extrinsic.call, Call)


@given(st.lists(extrinsics, max_size=20))
@settings(max_examples=100)
def test_a_block_body_is_the_codec_encoding_of_its_extrinsics(body):
    assert encode_body(tuple(body)) == codec.encode(tuple(body), tuple[Extrinsic, ...])


@given(calls, u64, u128, eras, hash32, hash32, u32, u32)
@settings(max_examples=300)
def test_signing_message_equals_the_hash_of_the_encoded_signing_payload(call, nonce, tip, era, genesis, birth,
                                                                         spec_version, tx_version):
    version = RuntimeVersion(VERSION.spec_name, VERSION.impl_name, spec_version, tx_version)
    assert (signing_message(call, nonce, tip, era, genesis, birth, version)
            == signing_message_reference(call, nonce, tip, era, genesis, birth, version))


headers = st.builds(Header, hash32, u64, hash32, hash32,
                    st.builds(Digest, u64, hash32, st.one_of(st.just(b""), st.binary(min_size=64, max_size=64))))
blocks = st.builds(Block, headers, st.lists(extrinsics, max_size=6).map(tuple))


@given(blocks)
@settings(max_examples=200)
def test_a_decoded_block_keeps_bytes_equal_to_a_fresh_encoding(block):
    decoded = decode_block(encode_block(block))
    assert decoded == block
    for extrinsic in decoded.extrinsics:
        assert "encoded" in extrinsic.__dict__ and "encoded" in extrinsic.call.__dict__  # kept from decoding
        assert extrinsic.encoded == codec.pack(codec.encoder_for(Extrinsic)(extrinsic))
        assert extrinsic.call.encoded == codec.pack(codec.encoder_for(Call)(extrinsic.call))
    for extrinsic in block.extrinsics:
        assert decode_extrinsic(extrinsic.encoded).__dict__["encoded"] == extrinsic.encoded


def test_a_block_with_a_non_canonical_extrinsic_is_rejected():
    header = Header(b"\x00" * 32, 1, b"\x00" * 32, b"\x00" * 32, Digest(1, b"\x00" * 32, b""))
    transfer = balances.transfer(b"\x05" * 32, 5)
    canonical = encode_block(Block(header, (Extrinsic(None, transfer),)))
    assert decode_block(canonical).extrinsics[0].call == transfer
    five_as_uint16 = b"\xcd\x00\x05"
    call = b"\x93\x01\x00\x92\xc4\x20" + b"\x05" * 32 + five_as_uint16
    tampered = b"\x92" + codec.encode(header, Header) + b"\x91" + b"\x92\xc0" + call
    assert msgpack.unpackb(tampered) == msgpack.unpackb(canonical)
    with pytest.raises(CodecError, match="canonical"):
        decode_block(tampered)
    with pytest.raises(CodecError):
        decode_block(codec.pack([1, 2]))
