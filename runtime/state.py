"""How the runtime sees state: a small read interface below, an overlay on top.

The runtime never touches the database. The node hands it a `StateBackend`
(the parent block's state) and the runtime writes only into an `Overlay`:
a dict of changed keys with nested transactional layers, so a failed call's
writes (and events) are rolled back while its fee stays paid. At the end of a
block `StateBackend.compute_state(changes)` gives the new state (its `root`, and
whatever storage needs to commit it); the executive returns it to the caller.

Keys: every storage item of a pallet lives under
blake2b_128(pallet name) ++ blake2b_128(item name), and a map entry appends
blake2b_128(encoded key) ++ encoded key (Substrate's Blake2_128Concat), so
entries of one item share a prefix and the key can be read back from the key.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Callable, Generic, Iterator, Mapping, Protocol, TypeVar

from runtime import codec
from runtime.hashing import blake2b_128

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()
_KEY_CACHE_SIZE = 100_000  # storage keys of hot map entries (accounts): hashing them is a large share of a transfer


def make_room(cache: dict) -> None:
    """Drop the oldest quarter of a full cache (a dict keeps insertion order).

    Clearing it all at once made the next block miss on every hot account (about one block in 25 of
    a long import decoded nearly every account again); a quarter at a time keeps the recent ones."""
    for key in list(islice(cache, len(cache) // 4 + 1)):
        del cache[key]


class ComputedState(Protocol):
    """A state computed by a backend: the runtime reads only its root and hands it back to the caller."""

    @property
    def root(self) -> bytes:
        """The state root."""


class StateBackend(Protocol):
    """The parent state, as storage provides it to the runtime."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key` in this state, or None."""

    def compute_state(self, changes: Mapping[bytes, bytes | None]) -> ComputedState:
        """This state with `changes` applied (None deletes): its root, and what storage commits."""


class EmptyBackend:
    """The state before genesis."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def compute_state(self, changes: Mapping[bytes, bytes | None]) -> ComputedState:
        raise NotImplementedError("the empty backend has no trie; storage computes genesis roots")


class Overlay:
    """Pending writes over a backend, with transactional layers.

    `changes` maps a key to its new value, or None for a deletion. Each open layer
    journals the previous overlay entry of every key it first touches, and the
    length of the event list, so `rollback` restores both exactly.
    """

    __slots__ = ("backend", "changes", "events", "_journals")

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self.changes: dict[bytes, bytes | None] = {}
        self.events: list[Any] = []
        self._journals: list[tuple[dict[bytes, Any], int]] = []

    def get(self, key: bytes) -> bytes | None:
        value = self.changes.get(key, _MISSING)
        if value is _MISSING:
            return self.backend.get(key)
        return value  # type: ignore[return-value]

    def set(self, key: bytes, value: bytes | None) -> None:
        if self._journals:
            journal = self._journals[-1][0]
            if key not in journal:
                journal[key] = self.changes.get(key, _MISSING)
        self.changes[key] = value

    def delete(self, key: bytes) -> None:
        self.set(key, None)

    def begin(self) -> None:
        self._journals.append(({}, len(self.events)))

    def commit(self) -> None:
        journal, _ = self._journals.pop()
        if self._journals:
            outer = self._journals[-1][0]
            for key, previous in journal.items():
                outer.setdefault(key, previous)

    def rollback(self) -> None:
        journal, event_count = self._journals.pop()
        for key, previous in journal.items():
            if previous is _MISSING:
                del self.changes[key]
            else:
                self.changes[key] = previous
        del self.events[event_count:]


class _DecodeMemo:
    """decode(raw) remembered by the raw bytes: values are immutable, so this is always right,
    and it spares re-decoding an account that a block reads again after writing it."""

    __slots__ = ("decode", "memo")

    def __init__(self, value_type: Any) -> None:
        self.decode = codec.decoder_for(value_type)
        self.memo: dict[bytes, Any] = {}

    def __call__(self, raw: bytes) -> Any:
        value = self.memo.get(raw, _MISSING)
        if value is _MISSING:
            value = self.decode(codec.unpack_trusted(raw))
            self.remember(raw, value)
        return value

    def remember(self, raw: bytes, value: Any) -> None:
        if len(self.memo) >= _KEY_CACHE_SIZE:
            make_room(self.memo)
        self.memo[raw] = value


def item_prefix(pallet: str, item: str) -> bytes:
    return blake2b_128(pallet.encode()) + blake2b_128(item.encode())


class StorageValue(Generic[V]):
    """One value of a pallet (FRAME's StorageValue)."""

    kind = "value"

    def __init__(self, pallet: Any, name: str, value_type: Any, default: V | None = None, doc: str = "") -> None:
        self.pallet_name = pallet.name
        self.name, self.value_type, self.default, self.doc = name, value_type, default, doc
        self.key = item_prefix(pallet.name, name)
        self._encode = codec.encoder_for(value_type)
        self._decode = codec.decoder_for(value_type)
        pallet.storage.append(self)

    def get(self, state: Overlay) -> V:
        raw = state.get(self.key)
        return self.default if raw is None else self._decode(codec.unpack_trusted(raw))

    def put(self, state: Overlay, value: V) -> None:
        state.set(self.key, codec.pack(self._encode(value)))

    def kill(self, state: Overlay) -> None:
        state.delete(self.key)


class StorageMap(Generic[K, V]):
    """A map of a pallet (FRAME's StorageMap with the Blake2_128Concat hasher)."""

    kind = "map"

    def __init__(self, pallet: Any, name: str, key_type: Any, value_type: Any,
                 default: V | None = None, doc: str = "") -> None:
        self.pallet_name = pallet.name
        self.name, self.key_type, self.value_type, self.default, self.doc = name, key_type, value_type, default, doc
        self.prefix = item_prefix(pallet.name, name)
        self._encode_key = codec.encoder_for(key_type)
        self._decode_key = codec.decoder_for(key_type)
        self._encode = codec.encoder_for(value_type)
        self._decode = _DecodeMemo(value_type)
        self._key_cache: dict[Any, bytes] = {}
        pallet.storage.append(self)

    def key_of(self, key: K) -> bytes:
        storage_key = self._key_cache.get(key)
        if storage_key is None:
            encoded = codec.pack(self._encode_key(key))
            storage_key = self.prefix + blake2b_128(encoded) + encoded
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                make_room(self._key_cache)
            self._key_cache[key] = storage_key
        return storage_key

    def key_from_storage_key(self, storage_key: bytes) -> K:
        return self._decode_key(codec.unpack(storage_key[len(self.prefix) + 16:]))

    def decode_value(self, raw: bytes) -> V:
        """A stored value of this map, from its bytes (for tools that walk the whole map)."""
        return self._decode(raw)

    def get(self, state: Overlay, key: K) -> V:
        storage_key = self._key_cache.get(key) or self.key_of(key)
        raw = state.changes.get(storage_key, _MISSING)  # Overlay.get, inlined: this is the hottest read
        if raw is _MISSING:
            raw = state.backend.get(storage_key)
        if raw is None:
            return self.default
        value = self._decode.memo.get(raw, _MISSING)
        return self._decode(raw) if value is _MISSING else value

    def contains(self, state: Overlay, key: K) -> bool:
        return state.get(self.key_of(key)) is not None

    def insert(self, state: Overlay, key: K, value: V) -> None:
        raw = codec.pack(self._encode(value))
        memo = self._decode.memo  # _DecodeMemo.remember, inlined
        if len(memo) >= _KEY_CACHE_SIZE:
            make_room(memo)
        memo[raw] = value
        storage_key = self._key_cache.get(key) or self.key_of(key)
        if state._journals:
            state.set(storage_key, raw)
        else:
            state.changes[storage_key] = raw  # Overlay.set with no layer open, inlined

    def remove(self, state: Overlay, key: K) -> None:
        state.delete(self.key_of(key))

    def mutate(self, state: Overlay, key: K, change: Callable[[V], V]) -> V:
        value = change(self.get(state, key))
        self.insert(state, key, value)
        return value


def changed_map_keys(state: Overlay, item: StorageMap) -> Iterator[bytes]:
    """Storage keys of `item` written in this overlay (for hooks that sweep a block's writes)."""
    prefix = item.prefix
    return (k for k in state.changes if k.startswith(prefix))
