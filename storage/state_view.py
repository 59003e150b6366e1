"""A block's state as the runtime reads it, and the cache of the best state's values.

`StateView.compute_state(changes)` returns an `ExecutedState`: the new root and the
trie update that committing the block writes. It is returned (the executive hands
it back in its BlockExecution), never kept on the view, so one view can serve any
number of reads and executions.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Iterable, Mapping

from storage.trie import StateRef, TrieUpdate

if TYPE_CHECKING:
    from storage.chainstore import ChainStore

_MISSING = object()


@dataclass(frozen=True)
class ExecutedState:
    """A state computed on top of `parent`: what ChainStore.commit_block writes."""

    parent: StateRef
    update: TrieUpdate
    version: int  # allocated for this state (its own nodes, its stale list), even when nothing changed
    changes: Mapping[bytes, bytes | None]

    @property
    def root(self) -> bytes:
        return self.update.state.root


class HeadCache:
    """Values of the best state, kept across blocks (Substrate's shared state cache).

    It only ever describes one state, `ref`: filled by reads of that state, and
    carried to the next state by the changes of the block that is committed on
    top of it. A read of any other state goes to the trie. It starts at the best
    state when the store is initialized, filled from the flat table (`preload`) as far
    as three quarters of `max_entries`. When it outgrows `max_entries` it drops its
    oldest quarter, not everything: on a large state a full drop made every read after
    it go to the trie again at once (a cliff every few hundred blocks).

    `max_entries` bounds its memory (measured: about 400 MB for a million entries). A state
    of a million accounts fits whole: at that size a read missing the cache cost 11-13 us
    (one get of the flat table while the block's writes fill LevelDB's memtable), about
    40 ms of a block of 2,000 transfers.
    """

    def __init__(self, max_entries: int = 1_500_000) -> None:
        self.ref: StateRef | None = None
        self.values: dict[bytes, bytes | None] = {}
        self.max_entries = max_entries
        self.generation = 0  # bumped whenever `ref` moves, so a view re-checks whether it still reads the head

    def start(self, ref: StateRef | None) -> None:
        """Describe `ref` from now on, with nothing cached yet."""
        self.values = {}
        self.ref = ref
        self.generation += 1

    def preload(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Fill the cache with (key, value) pairs of `ref` (the flat table's, in key order) until it holds three
        quarters of `max_entries`; returns how many were added."""
        values, added = self.values, 0
        for key, value in islice(items, max(0, self.max_entries * 3 // 4 - len(values))):
            if key not in values:  # a value read since `start` is as good, and no older
                values[key] = value
                added += 1
        return added

    def advance(self, parent: StateRef, new: StateRef, changes: Mapping[bytes, bytes | None]) -> None:
        if self.ref != parent:
            self.values = {}
        elif len(self.values) + len(changes) > self.max_entries:
            values = self.values  # insertion order approximates age, as in the trie's node caches
            for key in list(islice(values, max(0, len(values) + len(changes) - self.max_entries * 3 // 4))):
                del values[key]
        self.values.update(changes)
        self.ref = new
        self.generation += 1


class StateView:
    """One block's state, as the runtime's StateBackend: reads, and the state after changes.

    A read of the best state goes to the head cache, then to the flat table (one database
    get: storage/flat_state.py), and only for another state to the trie."""

    def __init__(self, store: "ChainStore", ref: StateRef) -> None:
        self._store = store
        self._trie = store.trie
        self._flat = store.flat
        self.ref = ref
        self._head = store.head_cache
        self._head_generation = -1
        self._reads_head = False

    def get(self, key: bytes) -> bytes | None:
        head = self._head
        generation = head.generation
        if generation != self._head_generation:  # the head moves on when a block commits
            self._head_generation = generation
            self._reads_head = head.ref == self.ref
        if not self._reads_head:
            return self._trie.get(self.ref, key)
        cache = head.values
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._read_head(key)
            if head.generation == generation:  # not if a commit moved the head meanwhile (a reader on another thread)
                cache[key] = value
        return value

    def _read_head(self, key: bytes) -> bytes | None:
        flat = self._flat
        generation = flat.generation
        if flat.ref == self.ref:
            value = flat.get(key)
            if flat.generation == generation:  # no move began meanwhile: the value is this state's
                return value
        return self._trie.get(self.ref, key)

    def compute_state(self, changes: Mapping[bytes, bytes | None]) -> ExecutedState:
        """This state with `changes` applied: its root, and the trie nodes that commit it (hashed once).
        The head cache's values of this state, if it is the best one, spare the update loading their leaves."""
        version = self._store.allocate_version()
        head = self._head
        known = head.values if head.ref == self.ref else None
        return ExecutedState(self.ref, self._trie.update(self.ref, changes, version, known=known), version, changes)
