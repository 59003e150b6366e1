"""The canonical encoding: round trips, and rejection of every non-canonical form."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from runtime import codec
from runtime.errors import CodecError
from runtime.pallets import balances, system
from runtime.types import (
    Block, Digest, Era, EventRecord, Extrinsic, Header, SignedData, decode_block, decode_extrinsic, encode_block,
)

hash32 = st.binary(min_size=32, max_size=32)
u64 = st.integers(0, 2**64 - 1)
u128 = st.integers(0, 2**128 - 1)

digests = st.builds(Digest, u64, hash32, st.one_of(st.just(b""), st.binary(min_size=64, max_size=64)))
headers = st.builds(Header, hash32, u64, hash32, hash32, digests)
calls = st.one_of(
    st.builds(balances.transfer, hash32, u128),
    st.builds(balances.transfer_keep_alive, hash32, u128),
    st.builds(system.remark, st.binary(max_size=100)),
)
eras = st.one_of(st.just(Era(0, 0)), st.builds(Era, u64, st.integers(4, 2400)))
signed = st.builds(SignedData, hash32, st.binary(min_size=64, max_size=64), eras, u64, u128)
extrinsics = st.builds(Extrinsic, st.one_of(st.none(), signed), calls)
blocks = st.builds(Block, headers, st.lists(extrinsics, max_size=5).map(tuple))


@given(blocks)
@settings(max_examples=200)
def test_block_round_trips_through_its_canonical_encoding(block):
    encoded = encode_block(block)
    decoded = decode_block(encoded)
    assert decoded == block
    assert encode_block(decoded) == encoded


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_arbitrary_bytes_either_fail_cleanly_or_are_canonical(data):
    try:
        value = decode_extrinsic(data)
    except CodecError:
        return
    assert value.encoded == data or codec.encode(value, Extrinsic) == data


@given(extrinsics, st.data())
@settings(max_examples=200)
def test_any_single_byte_change_is_rejected_or_decodes_to_a_different_value(extrinsic, data):
    encoded = codec.encode(extrinsic, Extrinsic)
    position = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytes([encoded[position] ^ data.draw(st.integers(1, 255))])
    tampered = encoded[:position] + flipped + encoded[position + 1:]
    try:
        decoded = decode_extrinsic(tampered)
    except CodecError:
        return
    assert decoded != extrinsic
    assert codec.encode(decoded, Extrinsic) == tampered


def test_trailing_bytes_are_rejected():
    encoded = codec.encode(Era(1, 8), Era)
    with pytest.raises(CodecError, match="trailing"):
        codec.decode(Era, encoded + b"\x00")


def test_non_minimal_integer_encoding_is_rejected():
    # 5 encoded as uint32 (0xce) instead of a positive fixint
    data = b"\x92" + b"\xce\x00\x00\x00\x05" + b"\x08"
    assert msgpack.unpackb(data) == [5, 8]
    with pytest.raises(CodecError, match="canonical"):
        codec.decode(Era, data)


def test_wrong_field_count_is_rejected():
    with pytest.raises(CodecError, match="expected 2 fields"):
        codec.decode(Era, codec.pack([1, 8, 9]))


def test_maps_floats_and_bools_for_ints_are_rejected():
    for bad in ({"birth": 1}, [1.0, 8], [True, 8]):
        with pytest.raises(CodecError):
            codec.decode(Era, msgpack.packb(bad, use_bin_type=True))


def test_out_of_range_and_wrong_length_fields_are_rejected():
    with pytest.raises(CodecError, match="Hash"):
        codec.decode(Header, codec.pack([b"\x00" * 31, 0, b"\x00" * 32, b"\x00" * 32, [0, b"\x00" * 32, b""]]))
    with pytest.raises(CodecError, match="out of range"):
        codec.decode(codec.U8, codec.pack(256))


def test_u128_uses_an_int_below_two_to_the_64_and_sixteen_bytes_above():
    assert codec.decode(codec.U128, codec.encode(2**64 - 1, codec.U128)) == 2**64 - 1
    big = 2**100 + 7
    assert codec.decode(codec.U128, codec.encode(big, codec.U128)) == big
    with pytest.raises(CodecError, match="below 2\\*\\*64"):
        codec.decode(codec.U128, codec.pack((5).to_bytes(16, "big")))


def test_oversize_input_is_rejected_before_parsing():
    with pytest.raises(CodecError, match="over the limit"):
        codec.decode(Era, b"\x90" * 100, max_length=10)


def test_deep_nesting_is_rejected_cleanly():
    with pytest.raises(CodecError):
        codec.decode(Era, b"\x91" * 5000 + b"\x00")


def test_unknown_call_index_is_rejected_with_its_name():
    data = codec.pack([None, [1, 99, []]])
    with pytest.raises(CodecError, match="no call index 99"):
        decode_extrinsic(data)


def test_events_round_trip_through_their_tagged_encoding():
    record = EventRecord(3, balances.Transfer(b"\x01" * 32, b"\x02" * 32, 2**70))
    encoded = codec.encode(record, EventRecord)
    assert codec.decode(EventRecord, encoded) == record
