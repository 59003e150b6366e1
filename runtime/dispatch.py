"""How pallets declare their calls, events and errors, and how calls are dispatched.

A pallet module creates one `Pallet(index, name)` and declares, in this order:
config, storage, events, errors, genesis, hooks, calls (see runtime/pallets/).
Indices are explicit and stable: they are part of the encoding of every call
and event.

- A call is a function `fn(ctx, origin, *params)`; `@pallet.call(index, weight)`
  turns it into a `CallDef`, which builds `Call` values: `transfer(dest, value)`.
  A `Call` is encoded as [pallet index, call index, [params...]], each param
  checked against the function's annotations.
- An event is a dataclass declared with `@pallet.event(index)`; it is encoded as
  [pallet index, event index, [fields...]].
- An error is an exception class declared with `@pallet.error(index)`; raising it
  inside a call is a dispatch error: the call's changes are reverted, its fee is
  kept, and the failure is recorded as an event.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from runtime import codec
from runtime.errors import CodecError, GradchainError
from runtime.memo import computed_once

ORIGIN_SIGNED = "signed"
ORIGIN_ROOT = "root"
ORIGIN_INHERENT = "inherent"


class Root:
    """The origin of a call dispatched by sudo (governance)."""

    def __repr__(self) -> str:
        return "Root"


ROOT = Root()


@dataclass(frozen=True)
class Call:
    """A call value: which pallet, which of its calls, and the call's arguments."""

    pallet_index: int
    call_index: int
    args: tuple

    @property
    def definition(self) -> "CallDef":
        return PALLETS[self.pallet_index].calls[self.call_index]

    @computed_once
    def encoded(self) -> bytes:
        """The call's canonical bytes, made once: the extrinsic and its signing payload both embed them."""
        return codec.pack(_encode_call(self))

    @property
    def name(self) -> str:
        definition = self.definition
        return f"{definition.pallet.name}.{definition.name}"

    def args_dict(self) -> dict[str, Any]:
        return dict(zip((p for p, _ in self.definition.params), self.args))


class Event:
    """Base of every pallet event; `@pallet.event(i)` fills in the class variables."""

    pallet_index: ClassVar[int]
    event_index: ClassVar[int]
    pallet_name: ClassVar[str]

    @classmethod
    def qualified_name(cls) -> str:
        return f"{cls.pallet_name}.{cls.__name__}"


class DispatchFailure(GradchainError):
    """Base of pallet errors raised inside calls (a dispatch error, not an invalid transaction)."""

    code = "dispatch_error"
    pallet_index: ClassVar[int]
    error_index: ClassVar[int]
    pallet_name: ClassVar[str]

    def __init__(self, message: str = "") -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())


@dataclass
class CallDef:
    pallet: "Pallet"
    index: int
    name: str
    function: Callable[..., None]
    params: list[tuple[str, Any]]
    weight: int | Callable[..., int]
    origin: str
    doc: str
    decoders: list[codec.Decoder] = dataclasses.field(default_factory=list)
    encoders: list[codec.Encoder] = dataclasses.field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Call:
        bound = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n, _ in self.params]
        ).bind(*args, **kwargs)
        return Call(self.pallet.index, self.index, tuple(bound.args))

    def weight_of(self, call: Call) -> int:
        return self.weight(*call.args) if callable(self.weight) else self.weight


class Pallet:
    """One pallet's declarations, registered under a stable index."""

    def __init__(self, index: int, name: str, doc: str = "") -> None:
        if index in PALLETS:
            raise ValueError(f"pallet index {index} is taken by {PALLETS[index].name}")
        self.index = index
        self.name = name
        self.doc = doc
        self.calls: dict[int, CallDef] = {}
        self.events: dict[int, type[Event]] = {}
        self.errors: dict[int, type[DispatchFailure]] = {}
        self.storage: list[Any] = []
        PALLETS[index] = self

    def call(self, index: int, *, weight: int | Callable[..., int], origin: str = ORIGIN_SIGNED):
        if not 0 <= index < 256 or not 0 <= self.index < 256:  # one byte each, as in FRAME (the executive's
            raise ValueError(f"{self.name}: call index {index} is not a byte")  # fast paths key on both)

        def declare(function: Callable[..., None]) -> CallDef:
            hints = typing.get_type_hints(function)
            names = list(inspect.signature(function).parameters)[2:]  # after ctx, origin
            params = [(n, hints[n]) for n in names]
            definition = CallDef(self, index, function.__name__, function, params, weight, origin,
                                 inspect.getdoc(function) or "")
            definition.decoders = [codec.decoder_for(t) for _, t in params]
            definition.encoders = [codec.encoder_for(t) for _, t in params]
            self._claim(self.calls, index, definition)
            return definition

        return declare

    def event(self, index: int):
        def declare(cls: type) -> type:
            cls = dataclass(frozen=True)(cls)
            cls.__init__ = _direct_init(cls)
            cls.pallet_index, cls.event_index, cls.pallet_name = self.index, index, self.name
            self._claim(self.events, index, cls)
            return cls

        return declare

    def error(self, index: int):
        def declare(cls: type[DispatchFailure]) -> type[DispatchFailure]:
            cls.pallet_index, cls.error_index, cls.pallet_name = self.index, index, self.name
            self._claim(self.errors, index, cls)
            return cls

        return declare

    def _claim(self, table: dict, index: int, item: Any) -> None:
        if index in table:
            raise ValueError(f"{self.name}: index {index} declared twice")
        table[index] = item


PALLETS: dict[int, Pallet] = {}


def _direct_init(cls: type) -> Callable[..., None]:
    """The __init__ of a frozen dataclass without defaults, storing the fields straight into the
    instance's __dict__.

    The generated one goes through object.__setattr__ for each field (to get past the
    frozen __setattr__); the effect is the same, at half the cost, and events are made
    for every extrinsic. Like dataclasses, this compiles the function from its source."""
    names = [f.name for f in dataclasses.fields(cls)]
    if any(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
           for f in dataclasses.fields(cls)) or not all(name.isidentifier() for name in names):
        return cls.__init__
    body = "".join(f"\n    fields[{name!r}] = {name}" for name in names) or "\n    pass"
    source = f"def __init__(self, {', '.join(names)}):\n    fields = self.__dict__{body}"
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # noqa: S102 - source built from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


# ---------------------------------------------------------------------------
# codec of the tagged unions Call and Event


def _encode_call(call: Call) -> list:
    definition = call.definition
    return [call.pallet_index, call.call_index, [enc(a) for enc, a in zip(definition.encoders, call.args)]]


def _lookup_call(obj: Any) -> tuple[CallDef, list]:
    if type(obj) is not list or len(obj) != 3:
        raise CodecError("call: expected [pallet, call, args]")
    pallet_index, call_index, args = obj
    pallet = PALLETS.get(pallet_index) if type(pallet_index) is int else None
    if pallet is None:
        raise CodecError(f"call: unknown pallet index {pallet_index!r}")
    definition = pallet.calls.get(call_index) if type(call_index) is int else None
    if definition is None:
        raise CodecError(f"call: pallet {pallet.name} has no call index {call_index!r}")
    if type(args) is not list or len(args) != len(definition.params):
        raise CodecError(f"call {pallet.name}.{definition.name}: expected {len(definition.params)} arguments")
    return definition, args


def _decode_call(obj: Any) -> Call:
    definition, args = _lookup_call(obj)
    values = []
    for (name, _), decode_one, arg in zip(definition.params, definition.decoders, args):
        try:
            values.append(decode_one(arg))
        except CodecError as exc:
            raise CodecError(f"call {definition.pallet.name}.{definition.name}, argument {name}: {exc}") from None
    return Call(obj[0], obj[1], tuple(values))


_EVENT_HEADS: dict[type, tuple[int, int, codec.Encoder]] = {}  # event class -> its indices and field encoder


def _encode_event(event: Event) -> list:
    cls = type(event)
    head = _EVENT_HEADS.get(cls)
    if head is None:
        head = _EVENT_HEADS[cls] = (cls.pallet_index, cls.event_index, codec.encoder_for(cls))
    return [head[0], head[1], head[2](event)]


def encode_event_records(records: Any) -> list:
    """The codec's tree of a sequence of EventRecords (extrinsic index, event): the tree the generic
    sequence and record encoders build, in one loop with one call per event instead of three (a block
    of transfers has two events per transfer, all encoded into System's Events at the block's end)."""
    heads = _EVENT_HEADS
    tree = []
    append = tree.append
    for index, event in records:
        cls = type(event)
        head = heads.get(cls)
        if head is None:
            head = heads[cls] = (cls.pallet_index, cls.event_index, codec.encoder_for(cls))
        append((index, (head[0], head[1], head[2](event))))
    return tree


def _decode_event(obj: Any) -> Event:
    if type(obj) is not list or len(obj) != 3:
        raise CodecError("event: expected [pallet, event, fields]")
    pallet = PALLETS.get(obj[0]) if type(obj[0]) is int else None
    cls = pallet.events.get(obj[1]) if pallet is not None and type(obj[1]) is int else None
    if cls is None:
        raise CodecError(f"event: unknown event {obj[0]!r}/{obj[1]!r}")
    return codec.decoder_for(cls)(obj[2])


codec.register_custom(Call, _encode_call, _decode_call)
codec.register_custom(Event, _encode_event, _decode_event)
