"""The one canonical encoding of everything on chain: msgpack with a fixed schema.

Contract:
- A value is a frozen dataclass or a NamedTuple (either is encoded as a msgpack
  array of its fields in declaration order, so the two are interchangeable on
  the wire), an integer of a declared width, fixed- or bounded-length
  bytes, bounded text, bool, None (for optional fields), or a tuple of these.
  Maps and floats never occur.
- `decode` is strict: a size limit before parsing, no trailing bytes, no unknown
  or missing fields, every integer in its declared range, and only the canonical
  form of each value (msgpack's shortest encodings). It checks canonicity by
  re-packing the parsed tree and comparing bytes, so `encode(decode(b)) == b`
  holds for every accepted `b` by construction.
- Integers of up to 64 bits are msgpack ints. A `U128` value at or above 2**64 is
  16 big-endian bytes (msgpack bin); below 2**64 it must be an int, so each value
  still has exactly one form.
- `hash_of(value)` is blake2b-256 of the encoding.

Decoders and encoders are compiled once per type from its annotations.
Types declare their widths through `NewType`s registered here (`U8` .. `U128`,
`Bytes32`, ...); the chain's own names (AccountId, Balance, ...) live in
`runtime.types` and are registered there.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from typing import Any, Callable, NewType

import msgpack

from runtime.errors import CodecError
from runtime.hashing import blake2b_256

MAX_ENCODED_LENGTH = 8 * 1024 * 1024
MAX_SEQUENCE_LENGTH = 1_000_000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_TEXT = 4096

U8 = NewType("U8", int)
U16 = NewType("U16", int)
U32 = NewType("U32", int)
U64 = NewType("U64", int)
U128 = NewType("U128", int)
Bytes32 = NewType("Bytes32", bytes)
Bytes64 = NewType("Bytes64", bytes)
Text = NewType("Text", str)

_U64_LIMIT = 1 << 64

Obj = Any  # a msgpack tree: int, bytes, str, bool, None, list or tuple (both pack as arrays)
Encoder = Callable[[Any], Obj]
Decoder = Callable[[Obj], Any]


@dataclasses.dataclass(frozen=True)
class _Rule:
    """How a NewType is checked: an int range or a bytes/str length range."""

    kind: type
    low: int
    high: int  # inclusive


_RULES: dict[Any, _Rule] = {}
# Types with their own codec (tagged unions such as Call and Event): type -> (encoder, decoder).
_CUSTOM: dict[Any, tuple[Encoder, Decoder]] = {}
_ENCODERS: dict[Any, Encoder] = {}
_DECODERS: dict[Any, Decoder] = {}


def register_uint(new_type: Any, bits: int) -> None:
    _RULES[new_type] = _Rule(int, 0, (1 << bits) - 1)


def register_bytes(new_type: Any, *, length: int | None = None, max_length: int | None = None) -> None:
    if length is not None:
        _RULES[new_type] = _Rule(bytes, length, length)
    else:
        _RULES[new_type] = _Rule(bytes, 0, max_length if max_length is not None else DEFAULT_MAX_BYTES)


def register_text(new_type: Any, *, max_length: int) -> None:
    _RULES[new_type] = _Rule(str, 0, max_length)


def register_custom(tp: Any, encoder: Encoder, decoder: Decoder) -> None:
    """Give a type its own encoder and decoder (used for tagged unions)."""
    _CUSTOM[tp] = (encoder, decoder)


for _t, _bits in ((U8, 8), (U16, 16), (U32, 32), (U64, 64), (U128, 128)):
    register_uint(_t, _bits)
register_bytes(Bytes32, length=32)
register_bytes(Bytes64, length=64)
register_text(Text, max_length=DEFAULT_MAX_TEXT)


def int_range(tp: Any) -> tuple[int, int]:
    """The inclusive range of a registered integer type."""
    rule = _rule_for(tp)
    if rule is None or rule.kind is not int:
        raise TypeError(f"{tp!r} is not a registered integer type")
    return rule.low, rule.high


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _rule_for(tp: Any) -> _Rule | None:
    while True:
        if tp in _RULES:
            return _RULES[tp]
        supertype = getattr(tp, "__supertype__", None)
        if supertype is None:
            return None
        tp = supertype


# ---------------------------------------------------------------------------
# decoders


def _int_decoder(name: str, low: int, high: int) -> Decoder:
    big = high >= _U64_LIMIT

    def decode_int(obj: Obj) -> int:
        if type(obj) is int:
            if low <= obj <= high:
                return obj
            raise CodecError(f"{name}: {obj} is out of range {low}..{high}")
        if big and type(obj) is bytes and len(obj) == 16:
            value = int.from_bytes(obj, "big")
            if value < _U64_LIMIT:
                raise CodecError(f"{name}: a value below 2**64 must be encoded as an integer")
            if value > high:
                raise CodecError(f"{name}: {value} is out of range")
            return value
        raise CodecError(f"{name}: expected an integer, got {type(obj).__name__}")

    return decode_int


def _sized_decoder(name: str, kind: type, low: int, high: int) -> Decoder:
    what = "bytes" if kind is bytes else "text"

    def decode_sized(obj: Obj) -> Any:
        if type(obj) is not kind:
            raise CodecError(f"{name}: expected {what}, got {type(obj).__name__}")
        if not low <= len(obj) <= high:
            if low == high:
                raise CodecError(f"{name}: expected {low} {what} long, got {len(obj)}")
            raise CodecError(f"{name}: length {len(obj)} is outside {low}..{high}")
        return obj

    return decode_sized


def _bool_decoder(obj: Obj) -> bool:
    if type(obj) is not bool:
        raise CodecError(f"bool: expected true or false, got {type(obj).__name__}")
    return obj


def _dataclass_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    decoders: list[Decoder] = []
    names = [f.name for f in fields]
    count = len(fields)
    cls_name = cls.__name__

    def decode_dataclass(obj: Obj) -> Any:
        if type(obj) is not list:
            raise CodecError(f"{cls_name}: expected an array of {count} fields")
        if len(obj) != count:
            raise CodecError(f"{cls_name}: expected {count} fields, got {len(obj)}")
        try:
            return cls(*[d(o) for d, o in zip(decoders, obj)])
        except CodecError as exc:
            raise CodecError(f"{cls_name}.{_failed_field(decoders, obj, names)}: {exc}") from None

    # Filled after the closure exists so recursive types terminate.
    _DECODERS[cls] = decode_dataclass
    decoders.extend(decoder_for(hints[f.name]) for f in fields)
    return decode_dataclass


def _named_tuple_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    names = list(cls._fields)  # type: ignore[attr-defined]
    decoders: list[Decoder] = []
    count = len(names)
    cls_name = cls.__name__
    new = tuple.__new__  # a NamedTuple's own __new__ only assigns the fields in order

    def decode_named_tuple(obj: Obj) -> Any:
        if type(obj) is not list:
            raise CodecError(f"{cls_name}: expected an array of {count} fields")
        if len(obj) != count:
            raise CodecError(f"{cls_name}: expected {count} fields, got {len(obj)}")
        try:
            return new(cls, [d(o) for d, o in zip(decoders, obj)])
        except CodecError as exc:
            raise CodecError(f"{cls_name}.{_failed_field(decoders, obj, names)}: {exc}") from None

    _DECODERS[cls] = decode_named_tuple
    decoders.extend(decoder_for(hints[name]) for name in names)
    return decode_named_tuple


def _failed_field(decoders: list[Decoder], obj: list, names: list[str]) -> str:
    for decode_one, o, name in zip(decoders, obj, names):
        try:
            decode_one(o)
        except CodecError:
            return name
    return "?"


def _sequence_decoder(item: Any) -> Decoder:
    decode_item = decoder_for(item)

    def decode_sequence(obj: Obj) -> tuple:
        if type(obj) is not list:
            raise CodecError(f"expected an array, got {type(obj).__name__}")
        return tuple([decode_item(o) for o in obj])

    return decode_sequence


def _tuple_decoder(items: tuple) -> Decoder:
    decoders = [decoder_for(t) for t in items]
    count = len(decoders)

    def decode_tuple(obj: Obj) -> tuple:
        if type(obj) is not list or len(obj) != count:
            raise CodecError(f"expected an array of {count} items")
        return tuple(d(o) for d, o in zip(decoders, obj))

    return decode_tuple


def _optional_decoder(inner: Any) -> Decoder:
    decode_inner = decoder_for(inner)

    def decode_optional(obj: Obj) -> Any:
        return None if obj is None else decode_inner(obj)

    return decode_optional


def decoder_for(tp: Any) -> Decoder:
    """The compiled decoder (msgpack tree -> typed value) for a type annotation."""
    found = _DECODERS.get(tp)
    if found is not None:
        return found
    if tp in _CUSTOM:
        decoder = _CUSTOM[tp][1]
    elif (rule := _rule_for(tp)) is not None:
        if rule.kind is int:
            decoder = _int_decoder(_type_name(tp), rule.low, rule.high)
        else:
            decoder = _sized_decoder(_type_name(tp), rule.kind, rule.low, rule.high)
    elif tp is bool:
        decoder = _bool_decoder
    elif tp is bytes:
        decoder = _sized_decoder("bytes", bytes, 0, DEFAULT_MAX_BYTES)
    elif dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    elif is_named_tuple(tp):
        return _named_tuple_decoder(tp)
    else:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            decoder = _sequence_decoder(args[0])
        elif origin is tuple:
            decoder = _tuple_decoder(args)
        elif origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            decoder = _optional_decoder(args[0] if args[1] is type(None) else args[1])
        else:
            raise TypeError(f"no codec for type {tp!r}: declare its width with a registered NewType")
    _DECODERS[tp] = decoder
    return decoder


# ---------------------------------------------------------------------------
# encoders


def _identity(value: Any) -> Obj:
    return value


def _big_int_encoder(value: int) -> Obj:
    return value if value < _U64_LIMIT else value.to_bytes(16, "big")


def _recursive_type(value: Any) -> Obj:
    raise TypeError("a record type that contains itself has no codec")


def _record_encoder(fields_of: Callable[[Any], tuple], encoders: list[Encoder]) -> Encoder:
    """Encode a record (its field values in order, from `fields_of`) as a msgpack array.

    A tuple packs as an array, so when every field encodes as itself the field
    tuple is the tree; U128 fields only need a look at whether they are below
    2**64 (their one form is then the int itself)."""
    if all(enc is _identity for enc in encoders):
        return fields_of
    if all(enc is _identity or enc is _big_int_encoder for enc in encoders):
        big = tuple(i for i, enc in enumerate(encoders) if enc is _big_int_encoder)
        if fields_of is _identity:  # a NamedTuple is its own field tuple

            def encode_small_tuple(value: Any) -> Obj:
                for i in big:
                    if value[i] >= _U64_LIMIT:
                        return [enc(x) for enc, x in zip(encoders, value)]
                return value

            return encode_small_tuple

        def encode_small_record(value: Any) -> Obj:
            values = fields_of(value)
            for i in big:
                if values[i] >= _U64_LIMIT:
                    return [enc(x) for enc, x in zip(encoders, values)]
            return values

        return encode_small_record

    converted = [(i, enc) for i, enc in enumerate(encoders) if enc is not _identity]
    if len(converted) == 1:  # e.g. EventRecord: only its event needs encoding
        ((index, encode_field),) = converted

        if fields_of is _identity:  # a NamedTuple is its own field tuple

            def encode_tuple_one_field(value: Any) -> Obj:
                values = list(value)
                values[index] = encode_field(values[index])
                return values

            return encode_tuple_one_field

        def encode_record_one_field(value: Any) -> Obj:
            values = list(fields_of(value))
            values[index] = encode_field(values[index])
            return values

        return encode_record_one_field

    def encode_record(value: Any) -> Obj:
        return [x if enc is _identity else enc(x) for enc, x in zip(encoders, fields_of(value))]

    return encode_record


def _dataclass_encoder(cls: type) -> Encoder:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    fields = operator.attrgetter(*names) if len(names) > 1 else (
        (lambda v, n=names[0]: (getattr(v, n),)) if names else (lambda v: ()))
    _ENCODERS[cls] = _recursive_type
    encoder = _record_encoder(fields, [encoder_for(hints[name]) for name in names])
    _ENCODERS[cls] = encoder
    return encoder


def _named_tuple_encoder(cls: type) -> Encoder:
    hints = typing.get_type_hints(cls)
    _ENCODERS[cls] = _recursive_type
    encoder = _record_encoder(_identity, [encoder_for(hints[name]) for name in cls._fields])  # type: ignore[attr-defined]
    _ENCODERS[cls] = encoder
    return encoder


def is_named_tuple(tp: Any) -> bool:
    """A class made with typing.NamedTuple (or collections.namedtuple)."""
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def encoder_for(tp: Any) -> Encoder:
    """The compiled encoder (typed value -> msgpack tree) for a type annotation."""
    found = _ENCODERS.get(tp)
    if found is not None:
        return found
    if tp in _CUSTOM:
        encoder = _CUSTOM[tp][0]
    elif (rule := _rule_for(tp)) is not None:
        encoder = _big_int_encoder if rule.kind is int and rule.high >= _U64_LIMIT else _identity
    elif tp in (bool, bytes):
        encoder = _identity
    elif dataclasses.is_dataclass(tp):
        return _dataclass_encoder(tp)
    elif is_named_tuple(tp):
        return _named_tuple_encoder(tp)
    else:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = encoder_for(args[0])
            encoder = _identity if item is _identity else (lambda v, item=item: [item(x) for x in v])
        elif origin is tuple:
            encs = [encoder_for(t) for t in args]
            encoder = lambda v, encs=encs: [e(x) for e, x in zip(encs, v)]  # noqa: E731
        elif origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            inner = encoder_for(args[0] if args[1] is type(None) else args[1])
            encoder = _identity if inner is _identity else (lambda v, inner=inner: None if v is None else inner(v))
        else:
            raise TypeError(f"no codec for type {tp!r}: declare its width with a registered NewType")
    _ENCODERS[tp] = encoder
    return encoder


# ---------------------------------------------------------------------------
# bytes <-> values


# One Packer for the process: msgpack.packb builds a new Packer per call, which costs
# more than packing a small value. Sharing it is safe: for the trees the codec makes
# (ints, bytes, str, bool, None, lists and tuples) `pack` runs start to end in C under
# the GIL, never calling back into Python, and it empties its buffer if it raises.
_packer = msgpack.Packer(use_bin_type=True)
pack = _packer.pack
"""msgpack-encode a tree (the shortest form of every value)."""


def unpack(data: bytes, *, max_length: int = MAX_ENCODED_LENGTH) -> Obj:
    """Parse canonical msgpack bytes into a tree; raise CodecError for anything else."""
    obj = parse(data, max_length=max_length)
    if pack_canonical_check(obj) != data:
        raise CodecError("not the canonical encoding")
    return obj


def parse(data: bytes, *, max_length: int = MAX_ENCODED_LENGTH) -> Obj:
    """`unpack` without its last step: the caller must still check that packing the tree gives `data`."""
    if not isinstance(data, (bytes, bytearray)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_length:
        raise CodecError(f"{len(data)} bytes is over the limit of {max_length}")
    size = len(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=min(size, MAX_SEQUENCE_LENGTH),
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise CodecError("trailing bytes after the value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise CodecError(f"not valid msgpack: {exc}") from None
    return obj


def array_header(length: int) -> bytes:
    """The shortest msgpack header of an array of `length` items."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def join_array(encoded_items: list[bytes]) -> bytes:
    """The encoding of an array from the encodings of its items.

    A msgpack array is its header followed by its items' encodings, so this is
    byte for byte `pack([...items...])`, without re-encoding items whose bytes
    are already known (an extrinsic's, a call's)."""
    return array_header(len(encoded_items)) + b"".join(encoded_items)


def pack_canonical_check(obj: Obj) -> bytes | None:
    try:
        return _packer.pack(obj)
    except (TypeError, ValueError, OverflowError):
        return None


def encode(value: Any, tp: Any = None) -> bytes:
    """The canonical bytes of `value` (its type is taken from the value unless given)."""
    return pack(encoder_for(tp if tp is not None else type(value))(value))


def decode(tp: Any, data: bytes, *, max_length: int = MAX_ENCODED_LENGTH) -> Any:
    """Strictly decode bytes that must be the canonical encoding of a `tp`."""
    return decoder_for(tp)(unpack(data, max_length=max_length))


def unpack_trusted(data: bytes) -> Obj:
    """Parse bytes this node wrote itself (state, block store): no canonicity check."""
    return msgpack.unpackb(data, raw=False, use_list=True)


def decode_trusted(tp: Any, data: bytes) -> Any:
    """Decode bytes this node wrote itself (state, block store): typed, but not re-packed."""
    return decoder_for(tp)(msgpack.unpackb(data, raw=False, use_list=True))


def hash_of(value: Any, tp: Any = None) -> bytes:
    return blake2b_256(encode(value, tp))
