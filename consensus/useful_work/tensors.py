"""The tensor blob: how models, updates and held-out sets travel and are hashed.

Wire format (version 1)::

    blob   = header_length (u32, little-endian) ++ header ++ data
    header = msgpack [1, [[name, dtype, shape], ...]]       (names strictly ascending)
    data   = each tensor's elements, C order, little-endian, in header order

* ``name``: 1..128 characters of ``[A-Za-z0-9._-]``.
* ``dtype``: ``"float32"``, ``"int64"`` or ``"int32"``.
* ``shape``: 0..8 dimensions, each an integer >= 1 (a scalar has shape ``[]``).
* Float tensors hold finite values only: NaN and infinities are refused both ways.

There is exactly one blob for a given set of tensors (names sorted, msgpack's
shortest forms, the decoder re-encodes the header and compares), so
``blake2b_256(blob)`` is the identity of a model or an update on the chain.

Decoding takes hostile bytes from the network: every size is checked against the
caller's limits and against the blob's own length before anything is allocated,
and tensors are read with numpy from the buffer. Never pickle, never ``torch.load``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping

import msgpack
import numpy as np
import torch

from consensus.useful_work.errors import TensorFormatError

FORMAT_VERSION = 1
HEADER_LENGTH_PREFIX = struct.Struct("<I")
MAX_HEADER_BYTES = 1 << 20
MAX_NAME_LENGTH = 128
MAX_RANK = 8

_NAME = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_NAME_LENGTH)
# wire name -> (numpy little-endian dtype, torch dtype)
DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "float32": (np.dtype("<f4"), torch.float32),
    "int64": (np.dtype("<i8"), torch.int64),
    "int32": (np.dtype("<i4"), torch.int32),
}
_WIRE_NAME = {torch_dtype: name for name, (_, torch_dtype) in DTYPES.items()}

Tensors = dict[str, torch.Tensor]


def encode_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The canonical blob of `tensors` (any order in, names sorted out)."""
    entries, arrays = [], []
    for name in sorted(tensors):
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            raise TensorFormatError(f"tensor {name!r} is a {type(tensor).__name__}; pass torch tensors",
                                    code="tensor_type")
        _check_name(name)
        dtype = _WIRE_NAME.get(tensor.dtype)
        if dtype is None:
            raise TensorFormatError(f"tensor {name!r} has dtype {tensor.dtype}; convert it to one of "
                                    f"{', '.join(DTYPES)}", code="tensor_unknown_dtype")
        shape = list(tensor.shape)
        if len(shape) > MAX_RANK or any(dim < 1 for dim in shape):
            raise TensorFormatError(f"tensor {name!r} has shape {shape}; at most {MAX_RANK} dimensions, "
                                    f"each at least 1", code="tensor_bad_shape")
        array = tensor.detach().cpu().contiguous().numpy().astype(DTYPES[dtype][0], copy=False)
        if dtype == "float32" and not np.isfinite(array).all():
            raise TensorFormatError(f"tensor {name!r} holds NaN or infinity; only finite values can be "
                                    f"encoded", code="tensor_not_finite")
        entries.append([name, dtype, shape])
        arrays.append(array.tobytes())
    header = _pack_header(entries)
    return b"".join([HEADER_LENGTH_PREFIX.pack(len(header)), header, *arrays])


def decode_tensors(blob: bytes, *, max_bytes: int, max_tensors: int, max_elements: int) -> Tensors:
    """The tensors of `blob`, refusing anything malformed or beyond the limits.

    `max_bytes` bounds the whole blob, `max_tensors` the number of tensors and
    `max_elements` the sum of their element counts. Raises `TensorFormatError`.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TensorFormatError(f"a tensor blob is bytes, got {type(blob).__name__}", code="tensor_type")
    blob = bytes(blob)
    if len(blob) > max_bytes:
        raise TensorFormatError(f"tensor blob of {len(blob)} bytes exceeds the limit of {max_bytes}",
                                code="tensor_too_large")
    if len(blob) < HEADER_LENGTH_PREFIX.size:
        raise TensorFormatError("tensor blob is shorter than its header length prefix", code="tensor_truncated")
    (header_length,) = HEADER_LENGTH_PREFIX.unpack_from(blob)
    data_offset = HEADER_LENGTH_PREFIX.size + header_length
    if header_length > MAX_HEADER_BYTES or data_offset > len(blob):
        raise TensorFormatError(f"tensor header claims {header_length} bytes but the blob has "
                                f"{len(blob) - HEADER_LENGTH_PREFIX.size} after the prefix", code="tensor_truncated")
    header = blob[HEADER_LENGTH_PREFIX.size:data_offset]
    entries = _unpack_header(header, max_tensors)

    layout, total_elements, total_bytes = [], 0, 0
    for name, dtype, shape in entries:
        count = 1
        for dim in shape:
            count *= dim
            # checked inside the loop, so a claimed shape never builds a huge integer
            if count > max_elements:
                break
        total_elements += count
        if total_elements > max_elements:
            raise TensorFormatError(f"tensor blob claims more than {max_elements} elements (at {name!r})",
                                    code="tensor_too_many_elements")
        numpy_dtype = DTYPES[dtype][0]
        layout.append((name, numpy_dtype, shape, count, data_offset + total_bytes))
        total_bytes += count * numpy_dtype.itemsize
    remaining = len(blob) - data_offset
    if remaining < total_bytes:
        raise TensorFormatError(f"tensor data is {remaining} bytes, the header needs {total_bytes}",
                                code="tensor_truncated")
    if remaining > total_bytes:
        raise TensorFormatError(f"tensor blob has {remaining - total_bytes} bytes after its last tensor",
                                code="tensor_trailing_bytes")

    tensors: Tensors = {}
    for name, numpy_dtype, shape, count, offset in layout:
        array = np.frombuffer(blob, dtype=numpy_dtype, count=count, offset=offset)
        if numpy_dtype.kind == "f" and not np.isfinite(array).all():
            raise TensorFormatError(f"tensor {name!r} holds NaN or infinity", code="tensor_not_finite")
        # astype makes a writable copy in native byte order
        tensors[name] = torch.from_numpy(array.astype(numpy_dtype.newbyteorder("="))).reshape(shape)
    return tensors


def is_finite(tensor: torch.Tensor) -> bool:
    """Whether a float tensor holds no NaN or infinity (numpy's check is ~10x faster than torch's here)."""
    return bool(np.isfinite(tensor.detach().cpu().numpy()).all())


def count_elements(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(tensor.numel() for tensor in tensors.values())


def _pack_header(entries: list) -> bytes:
    return msgpack.packb([FORMAT_VERSION, entries], use_bin_type=True)


def _unpack_header(header: bytes, max_tensors: int) -> list[tuple[str, str, list[int]]]:
    try:
        decoded = msgpack.unpackb(
            header, raw=False, use_list=True, strict_map_key=True,
            max_str_len=MAX_NAME_LENGTH * 4, max_bin_len=0, max_ext_len=0, max_map_len=0,
            max_array_len=max(max_tensors, MAX_RANK, 3),
        )
    except Exception as error:  # msgpack raises several types for hostile input
        raise TensorFormatError(f"tensor header is not valid msgpack within the limits ({error})",
                                code="tensor_bad_header") from None
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[1], list)):
        raise TensorFormatError("tensor header must be [version, [[name, dtype, shape], ...]]",
                                code="tensor_bad_header")
    version, raw_entries = decoded
    if type(version) is not int or version != FORMAT_VERSION:
        raise TensorFormatError(f"tensor format version {version!r} is not supported; this node reads "
                                f"version {FORMAT_VERSION}", code="tensor_version")
    if len(raw_entries) > max_tensors:
        raise TensorFormatError(f"tensor blob holds {len(raw_entries)} tensors, the limit is {max_tensors}",
                                code="tensor_too_many")
    entries, previous = [], None
    for entry in raw_entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise TensorFormatError("each tensor header entry must be [name, dtype, shape]",
                                    code="tensor_bad_header")
        name, dtype, shape = entry
        _check_name(name)
        if previous is not None and name <= previous:
            raise TensorFormatError(f"tensor names must be unique and ascending; {name!r} follows {previous!r}",
                                    code="tensor_not_canonical")
        previous = name
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise TensorFormatError(f"tensor {name!r} has unknown dtype {dtype!r}; known: {', '.join(DTYPES)}",
                                    code="tensor_unknown_dtype")
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK
                and all(type(dim) is int and dim >= 1 for dim in shape)):
            raise TensorFormatError(f"tensor {name!r} has shape {shape!r}; at most {MAX_RANK} integer "
                                    f"dimensions, each at least 1", code="tensor_bad_shape")
        entries.append((name, dtype, shape))
    if _pack_header([[n, d, s] for n, d, s in entries]) != header:
        raise TensorFormatError("tensor header is not in canonical msgpack form", code="tensor_not_canonical")
    return entries


def _check_name(name: object) -> None:
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise TensorFormatError(f"tensor name {name!r} must be 1..{MAX_NAME_LENGTH} characters of "
                                f"[A-Za-z0-9._-]", code="tensor_bad_name")
