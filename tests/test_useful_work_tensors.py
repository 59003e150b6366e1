"""The tensor blob as a specification: one canonical encoding, and hostile bytes refused cheaply."""

from __future__ import annotations

import struct
import tracemalloc

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from consensus.useful_work.errors import TensorFormatError
from consensus.useful_work.tensors import decode_tensors, encode_tensors

LIMITS = dict(max_bytes=1 << 20, max_tensors=16, max_elements=1 << 16)


def decode(blob: bytes, **limits) -> dict[str, torch.Tensor]:
    return decode_tensors(blob, **{**LIMITS, **limits})


def craft(entries: list, data: bytes = b"", version: int = 1) -> bytes:
    """A blob with an arbitrary header, bypassing the encoder's checks."""
    header = msgpack.packb([version, entries], use_bin_type=True)
    return struct.pack("<I", len(header)) + header + data


def refused_code(blob: bytes, **limits) -> str:
    with pytest.raises(TensorFormatError) as raised:
        decode(blob, **limits)
    return raised.value.code


SAMPLE = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7, "step": torch.tensor(3, dtype=torch.int64)}

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=12)
shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3)
dtypes = st.sampled_from([torch.float32, torch.int64, torch.int32])


@st.composite
def tensor_dicts(draw):
    result = {}
    for name in draw(st.lists(names, min_size=0, max_size=5, unique=True)):
        shape, dtype = draw(shapes), draw(dtypes)
        count = int(np.prod(shape)) if shape else 1
        if dtype == torch.float32:
            finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
            values = draw(st.lists(finite, min_size=count, max_size=count))
        else:
            bits = 63 if dtype == torch.int64 else 31
            values = draw(st.lists(st.integers(-(2 ** bits), 2 ** bits - 1), min_size=count, max_size=count))
        result[name] = torch.tensor(values, dtype=dtype).reshape(shape)
    return result


@settings(max_examples=100, deadline=None)
@given(tensor_dicts())
def test_every_dict_of_tensors_round_trips_exactly(tensors):
    decoded = decode(encode_tensors(tensors))
    assert list(decoded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape
        assert torch.equal(decoded[name], tensor)


def test_the_encoding_is_canonical_whatever_the_insertion_order_or_memory_layout():
    reordered = {"step": SAMPLE["step"], "weight": SAMPLE["weight"].t().contiguous().t()}  # non-contiguous view
    assert encode_tensors(reordered) == encode_tensors(SAMPLE)


def test_the_wire_layout_is_prefix_header_then_little_endian_data():
    blob = encode_tensors({"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([7], dtype=torch.int32)})
    header = msgpack.packb([1, [["a", "float32", [2]], ["b", "int32", [1]]]], use_bin_type=True)
    assert blob == struct.pack("<I", len(header)) + header + struct.pack("<ff", 1.0, -2.0) + struct.pack("<i", 7)


def test_every_truncation_is_refused():
    blob = encode_tensors(SAMPLE)
    for length in range(len(blob)):
        assert refused_code(blob[:length]) in {"tensor_truncated", "tensor_bad_header"}


def test_extra_bytes_after_the_last_tensor_are_refused():
    assert refused_code(encode_tensors(SAMPLE) + b"\x00") == "tensor_trailing_bytes"


def test_a_huge_shape_claimed_in_a_tiny_blob_is_refused_without_allocating_it():
    claims = [craft([["w", "float32", [1 << 31, 1 << 31]]]),       # 2**62 elements
              craft([["w", "float32", [(1 << 64) - 1] * 8]]),      # a product far beyond int64
              craft([["w", "float32", [1 << 20]]], b"\x00" * 16)]  # within max_elements, 4 MiB missing
    tracemalloc.start()
    try:
        codes = [refused_code(blob, max_elements=1 << 21) for blob in claims]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codes == ["tensor_too_many_elements", "tensor_too_many_elements", "tensor_truncated"]
    assert peak < 1 << 20


def test_a_header_length_beyond_the_blob_is_refused():
    assert refused_code(struct.pack("<I", 0xFFFFFFFF) + b"\x92\x01\x90") == "tensor_truncated"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_on_decode_and_on_encode(value):
    blob = craft([["w", "float32", [2]]], struct.pack("<ff", 1.0, value))
    assert refused_code(blob) == "tensor_not_finite"
    with pytest.raises(TensorFormatError) as raised:
        encode_tensors({"w": torch.tensor([1.0, value])})
    assert raised.value.code == "tensor_not_finite"


@pytest.mark.parametrize("dtype", ["float16", "float64", "bool", "object", "uint8", "", ["float32"], 7, None])
def test_unknown_dtypes_are_refused(dtype):
    assert refused_code(craft([["w", dtype, [1]]], b"\x00" * 8)) == "tensor_unknown_dtype"


def test_tensors_of_unsupported_dtypes_cannot_be_encoded():
    with pytest.raises(TensorFormatError) as raised:
        encode_tensors({"w": torch.zeros(2, dtype=torch.float64)})
    assert raised.value.code == "tensor_unknown_dtype"


@pytest.mark.parametrize("shape", [[-1], [0], [2, 0], [1.5], [True], ["2"], [1] * 9, 3, None])
def test_negative_zero_fractional_and_non_list_shapes_are_refused(shape):
    assert refused_code(craft([["w", "float32", shape]], b"\x00" * 4)) == "tensor_bad_shape"


def test_limits_on_size_count_and_elements_are_enforced():
    blob = encode_tensors(SAMPLE)
    assert refused_code(blob, max_bytes=len(blob) - 1) == "tensor_too_large"
    assert refused_code(blob, max_tensors=1) == "tensor_too_many"
    assert refused_code(blob, max_elements=6) == "tensor_too_many_elements"
    assert set(decode(blob, max_bytes=len(blob), max_tensors=2, max_elements=7)) == {"step", "weight"}


@pytest.mark.parametrize("entries", [
    [["b", "float32", [1]], ["a", "float32", [1]]],  # out of order
    [["a", "float32", [1]], ["a", "float32", [1]]],  # duplicate
])
def test_unsorted_or_duplicate_names_are_refused(entries):
    assert refused_code(craft(entries, b"\x00" * 8)) == "tensor_not_canonical"


def test_a_header_that_is_not_msgpacks_shortest_form_is_refused():
    canonical = msgpack.packb([1, [["w", "float32", [1]]]], use_bin_type=True)
    widened = canonical.replace(b"\x91\x01", b"\x91\xcd\x00\x01")  # the dimension 1 as a uint16
    assert widened != canonical
    assert refused_code(struct.pack("<I", len(widened)) + widened + b"\x00" * 4) == "tensor_not_canonical"


@pytest.mark.parametrize("name", ["", "a b", "é", "x" * 129, 7, None, b"w"])
def test_bad_names_are_refused(name):
    assert refused_code(craft([[name, "float32", [1]]], b"\x00" * 4)) in {"tensor_bad_name", "tensor_bad_header"}


def test_another_format_version_is_refused_with_its_own_code():
    assert refused_code(craft([["w", "float32", [1]]], b"\x00" * 4, version=2)) == "tensor_version"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_a_tensor_format_error(junk):
    try:
        decode(junk)
    except TensorFormatError:
        pass


msgpack_values = st.recursive(st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1) | st.text(max_size=8)
                              | st.binary(max_size=8) | st.floats(), lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(msgpack_values, st.binary(max_size=32))
def test_arbitrary_headers_raise_nothing_but_a_tensor_format_error(header, data):
    blob = msgpack.packb(header, use_bin_type=True)
    try:
        decode(struct.pack("<I", len(blob)) + blob + data)
    except TensorFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(msgpack_values, msgpack_values, msgpack_values), max_size=3), st.binary(max_size=32))
def test_arbitrary_header_entries_raise_nothing_but_a_tensor_format_error(entries, data):
    try:
        decode(craft([list(entry) for entry in entries], data))
    except TensorFormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_a_flipped_byte_is_refused_or_decodes_to_a_valid_blob_again(position, value):
    blob = bytearray(encode_tensors(SAMPLE))
    blob[position % len(blob)] = value
    try:
        decoded = decode(bytes(blob))
    except TensorFormatError:
        return
    assert encode_tensors(decoded) == bytes(blob)  # anything accepted is canonical
