"""The flat table: every key's value in the best block's state, one LevelDB get per read.

A read through the trie walks one internal node per level (about six at a million
keys, each a cache miss of its own) and then reads and decodes the key's leaf; a read
of the flat table is one get of `f ++ key` (geth's snapshot, Substrate's value
cache kept on disk), and a store that opens reads it into the head cache
(`items`), as far as that holds. The trie stays the commitment: roots, proofs, reads of any
other state and updates all use it.

Exactness. The table describes one block's state, named by meta `flat_head`, and
moves only in the WriteBatch that moves the best block (ChainStore.commit_block,
write_status, set_head): with the block's own changes when the new best block
builds on the state it describes, else with the difference of the two states
(storage/state_diff.py), so a crash leaves table and pointer in agreement. A state
it does not describe is read from the trie. A database written before the table
existed (no `flat_head`) has it built from the trie when the store warms its caches,
with the pointer deleted first, so a crash during the build leaves it unused.

Readers on other threads (RPC) check `generation` around a read: it changes before
and after every move, so a read that raced a move is made again from the trie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

from storage import schema
from storage.state_diff import diff_states
from storage.trie import StateRef, StateTrie
from storage.trie_nodes import MissingTrieNode

if TYPE_CHECKING:
    from storage.database import Database

REBUILD_CHUNK = 50_000  # writes per batch while building the table from the trie
_FLAT_HEAD = schema.meta_key(schema.META_FLAT_HEAD)
_FLAT = schema.FLAT_STATE


class FlatState:
    """The flat table of one database, and which state it describes (`block`, `ref`; None: not usable)."""

    def __init__(self, get: Callable[[bytes], bytes | None]) -> None:
        self._get = get
        self.block: bytes | None = get(_FLAT_HEAD)
        self.ref: StateRef | None = None  # set by the store, which reads the block's state record
        self.generation = 0

    def get(self, key: bytes) -> bytes | None:
        """The key's value in the state `ref` (the caller checked that it reads that state)."""
        return self._get(_FLAT + key)

    # --- moves, written in the batch that moves the best block --------------------------

    def writes_to(self, trie: StateTrie, block_hash: bytes, target: StateRef, *, parent: StateRef | None = None,
                  changes: Mapping[bytes, bytes | None] | None = None) -> tuple[dict[bytes, bytes], list[bytes]]:
        """(puts, deletes) that move the table to `block_hash`'s state `target`. With `changes`: that block's
        own changes on top of `parent` (its new trie nodes are not in the database yet). A table that describes
        no state stays unusable (the pointer is not written), and so does one whose state cannot be diffed."""
        if self.ref is None:
            return {}, [_FLAT_HEAD]
        try:
            if changes is not None:
                moved = {} if parent == self.ref else _differences(trie, self.ref, parent)
                moved.update(changes)
            else:
                moved = _differences(trie, self.ref, target)
        except MissingTrieNode:  # the described state was pruned under it: build the table again at open
            return {}, [_FLAT_HEAD]
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        for key, value in moved.items():
            flat_key = _FLAT + key
            if value is None:
                deletes.append(flat_key)
            else:
                puts[flat_key] = value
        puts[_FLAT_HEAD] = block_hash
        return puts, deletes

    def begin_move(self) -> None:
        """Before the batch that moves the table is written: readers on other threads stop trusting it."""
        self.ref = None
        self.generation += 1

    def moved(self, block_hash: bytes, target: StateRef, usable: bool) -> None:
        """After that batch was written."""
        self.block, self.ref = (block_hash, target) if usable else (None, None)
        self.generation += 1

    # --- at open ----------------------------------------------------------------------

    def repair(self, trie: StateTrie, db: "Database", best_hash: bytes, best: StateRef) -> None:
        """Bring the table to the best state if it describes another (a database written before it existed,
        or by a version that did not keep it): by the difference of the two states, or built again."""
        if self.block == best_hash and self.ref == best:
            return
        if self.ref is not None:
            puts, deletes = self.writes_to(trie, best_hash, best)
            if _FLAT_HEAD in puts:
                self.begin_move()
                db.write(puts, deletes)
                self.moved(best_hash, best, True)
                return
        self.rebuild(trie, best_hash, best, db.keys_with_prefix(_FLAT), db.write)

    def items(self, db: "Database") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the described state, in key order (nothing if the table is not usable)."""
        if self.ref is None:
            return
        for flat_key, value in db.items_with_prefix(_FLAT):
            yield flat_key[1:], value

    # --- building it from the trie ----------------------------------------------------

    def rebuild(self, trie: StateTrie, block_hash: bytes, target: StateRef, keys: Iterable[bytes],
                write: Callable[..., None]) -> int:
        """Write the whole table for `target` from the trie (`keys`: the table's present keys, to delete);
        returns the number of keys written. Takes seconds at a million keys, once per database."""
        self.begin_move()
        write({}, [_FLAT_HEAD])  # from here until the end a crash leaves the table unused
        chunk: list[bytes] = []
        for flat_key in keys:
            chunk.append(flat_key)
            if len(chunk) >= REBUILD_CHUNK:
                write({}, chunk)
                chunk = []
        write({}, chunk)
        puts: dict[bytes, bytes] = {}
        written = 0
        for key, value in trie.iter_items(target):
            puts[_FLAT + key] = value
            if len(puts) >= REBUILD_CHUNK:
                written += len(puts)
                write(puts)
                puts = {}
        written += len(puts)
        puts[_FLAT_HEAD] = block_hash
        write(puts)
        self.moved(block_hash, target, True)
        return written


def genesis_puts(changes: Mapping[bytes, bytes | None], block_hash: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The table of a genesis state, written with the genesis block (pairs, not a second dict of it all)."""
    for key, value in changes.items():
        if value is not None:
            yield _FLAT + key, value
    yield _FLAT_HEAD, block_hash


def _differences(trie: StateTrie, old: StateRef, new: StateRef) -> dict[bytes, bytes | None]:
    return {key: after for key, _, after in diff_states(trie, old, new)}


__all__ = ["FlatState", "genesis_puts"]
