"""Blocks, their states, and the pointers that say which chain is canonical.

A block is committed with everything that depends on it in one WriteBatch:
the new trie nodes of its state, the nodes its state made stale, its header and
body, its state record, its verification status, the leaves of the block tree,
and, if fork choice moves the head, the canonical number -> hash index and the
best pointer. A crash at any instant leaves the last committed block whole and
nothing of the next. Which block is best is decided by consensus/fork_choice.py;
this store only writes the `HeadChange` it is given.

Each committed state has a fresh `version` (never reused, also not after a
failed import, so cached trie nodes can never be confused). Pruning keeps the
states of the last `pruning` blocks below the finalized one; in archive mode
(`pruning=None`) nothing is pruned.
"""

from __future__ import annotations

import json
from itertools import chain
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from runtime import codec
from runtime.errors import GradchainError
from runtime.hashing import ZERO_HASH
from runtime.types import (
    Block, BlockHash, BlockNumber, Digest, Extrinsic, Hash, Header, Seal, ZERO_ACCOUNT, compute_extrinsics_root,
)
from storage import schema
from storage.block_status import DISPUTED, STATUS_VERIFIED, VERIFIED, VerificationStatus
from storage.database import Database
from storage.flat_state import FlatState, genesis_puts
from storage.state_view import ExecutedState, HeadCache, StateView
from storage.trie import EMPTY_STATE, StateRef, StateTrie, TrieUpdate

SCHEMA_VERSION = 1
HEADER_CACHE_SIZE = 4096
DEFAULT_PRUNING = 256
STATUS_CACHE_SIZE = 65_536


class ChainStoreError(GradchainError):
    code = "chain_store"


class ChainMismatch(ChainStoreError):
    code = "chain_mismatch"


class UnknownBlock(ChainStoreError):
    code = "unknown_block"


class StatePruned(ChainStoreError):
    code = "state_pruned"


@dataclass(frozen=True)
class StoredState:
    """Where a block's state lives in the trie, and the version its own nodes were written at."""

    root: Hash
    root_version: codec.U64 | None
    version: codec.U64
    number: BlockNumber

    @property
    def ref(self) -> StateRef:
        return StateRef(self.root, self.root_version)


@dataclass(frozen=True)
class HeadChange:
    """A new best block and the canonical index entries that lead to it (from fork choice)."""

    best: BlockHash
    canonical: tuple[tuple[int, BlockHash], ...]  # number -> hash entries to (re)write
    cleared: tuple[int, ...]  # numbers above the new best that the old best chain used


def encode_body(extrinsics: tuple[Extrinsic, ...]) -> bytes:
    """codec.encode(extrinsics, tuple[Extrinsic, ...]), from each extrinsic's already known bytes."""
    return codec.join_array([x.encoded for x in extrinsics])


class ChainStore:
    def __init__(self, db: Database, *, pruning: int | None = DEFAULT_PRUNING) -> None:
        self.db = db
        self.pruning = pruning
        self.trie = StateTrie(db.get)
        self.head_cache = HeadCache()
        self.flat = FlatState(db.get)  # the best state's values, one get each (storage/flat_state.py)
        if self.flat.block is not None:
            flat_state = self.stored_state(self.flat.block)
            self.flat.ref = None if flat_state is None else flat_state.ref
        self._headers: dict[bytes, Header] = {}  # immutable records: a plain bounded cache
        self._statuses: dict[bytes, VerificationStatus] = {}  # written only through this store: a write-through cache
        self._next_version = self._read_int(schema.META_NEXT_VERSION, 0)

    @classmethod
    def open(cls, path: str | Path, *, pruning: int | None = DEFAULT_PRUNING, sync: bool = False) -> "ChainStore":
        return cls(Database(path, sync=sync), pruning=pruning)

    def close(self) -> None:
        """Close the database and drop the caches (hundreds of MB at a million accounts), also while some
        object still holds this store."""
        self.db.close()
        self.head_cache.start(None)
        self.trie.forget_all()

    # --- meta pointers --------------------------------------------------------

    def _read_int(self, name: bytes, default: int) -> int:
        raw = self.db.get(schema.meta_key(name))
        return default if raw is None else int.from_bytes(raw, "big")

    def _meta_hash(self, name: bytes) -> BlockHash | None:
        return self.db.get(schema.meta_key(name))

    @property
    def is_initialized(self) -> bool:
        return self._meta_hash(schema.META_GENESIS) is not None

    @property
    def genesis_hash(self) -> BlockHash:
        return self._require_meta(schema.META_GENESIS)

    @property
    def best_hash(self) -> BlockHash:
        return self._require_meta(schema.META_BEST)

    @property
    def finalized_hash(self) -> BlockHash:
        return self._require_meta(schema.META_FINALIZED)

    def _require_meta(self, name: bytes) -> BlockHash:
        value = self._meta_hash(name)
        if value is None:
            raise ChainStoreError("the database holds no chain yet")
        return value

    def allocate_version(self) -> int:
        version = self._next_version
        self._next_version += 1
        return version

    # --- genesis --------------------------------------------------------------

    def genesis_block(self, genesis_changes: Mapping[bytes, bytes | None]) -> tuple[Block, TrieUpdate]:
        """The genesis block of a genesis state (computed, not stored)."""
        update = self.trie.update(EMPTY_STATE, genesis_changes, 0)
        header = Header(BlockHash(ZERO_HASH), BlockNumber(0), Hash(update.state.root),
                        compute_extrinsics_root([]), Digest(0, ZERO_ACCOUNT, Seal(b"")))
        return Block(header, ()), update

    def initialize(self, genesis_changes: Mapping[bytes, bytes | None]) -> BlockHash:
        """Write the genesis block, or check that the stored one is the same chain's."""
        block, update = self.genesis_block(genesis_changes)
        if self.is_initialized:
            if self.genesis_hash != block.hash:
                raise ChainMismatch(f"the database at {self.db.path} belongs to another chain "
                                    f"(genesis {self.genesis_hash.hex()[:16]}..., this spec gives "
                                    f"{block.hash.hex()[:16]}...); use another --base-path or purge-chain")
            self.warm_caches()
            return block.hash
        self._next_version = max(self._next_version, 1)
        # The state first, in batches, and the block with the pointers that make the chain exist last: a crash
        # before that last write leaves a database that is initialized again from the start.
        self.db.write_in_batches(chain(update.new_nodes.items(), genesis_puts(genesis_changes, block.hash)))
        puts = self._block_puts(block, update.state, 0)
        puts[schema.canonical_key(0)] = block.hash
        puts[schema.status_key(block.hash)] = STATUS_VERIFIED.encode()
        puts[schema.leaf_key(block.hash)] = b""
        for name in (schema.META_GENESIS, schema.META_BEST, schema.META_FINALIZED):
            puts[schema.meta_key(name)] = block.hash
        puts[schema.meta_key(schema.META_NEXT_VERSION)] = self._next_version.to_bytes(8, "big")
        puts[schema.meta_key(schema.META_SCHEMA_VERSION)] = SCHEMA_VERSION.to_bytes(8, "big")
        self.db.write(puts)
        self.trie.remember(update)
        self.flat.moved(block.hash, update.state, True)
        self.head_cache.start(update.state)
        return block.hash

    def warm_caches(self) -> None:
        """Start the head cache at the best state and load that state's internal trie nodes (StateTrie.warm):
        what opening an existing chain does, so the first blocks cost what later ones do."""
        best = self.stored_state(self.best_hash)
        if best is not None:
            self.head_cache.start(best.ref)
            self.trie.warm(best.ref)
            self.flat.repair(self.trie, self.db, self.best_hash, best.ref)
            self.head_cache.preload(self.flat.items(self.db))

    # --- reads ----------------------------------------------------------------

    def header(self, block_hash: bytes) -> Header | None:
        header = self._headers.get(block_hash)
        if header is not None:
            return header
        raw = self.db.get(schema.header_key(block_hash))
        if raw is None:
            return None
        header = codec.decode_trusted(Header, raw)
        header.__dict__["hash"] = block_hash  # the key is the hash: no need to hash again
        if len(self._headers) >= HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[block_hash] = header
        return header

    def body(self, block_hash: bytes) -> tuple[Extrinsic, ...] | None:
        raw = self.db.get(schema.body_key(block_hash))
        return None if raw is None else codec.decode_trusted(tuple[Extrinsic, ...], raw)

    def block(self, block_hash: bytes) -> Block | None:
        header = self.header(block_hash)
        body = self.body(block_hash) if header is not None else None
        return None if header is None or body is None else Block(header, body)

    def hash_at(self, number: int) -> BlockHash | None:
        return self.db.get(schema.canonical_key(number))

    def best_header(self) -> Header:
        return self._require_header(self.best_hash)

    def finalized_header(self) -> Header:
        return self._require_header(self.finalized_hash)

    def _require_header(self, block_hash: bytes) -> Header:
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"block {block_hash.hex()} is not in the database")
        return header

    def stored_state(self, block_hash: bytes) -> StoredState | None:
        raw = self.db.get(schema.block_state_key(block_hash))
        return None if raw is None else codec.decode_trusted(StoredState, raw)

    def state_view(self, block_hash: bytes) -> StateView:
        stored = self.stored_state(block_hash)
        if stored is None:
            raise UnknownBlock(f"block {block_hash.hex()} is not in the database")
        if self.is_state_pruned(stored):
            raise StatePruned(f"the state of block #{stored.number} was pruned; run an archive node for old states")
        return StateView(self, stored.ref)

    def is_state_pruned(self, stored: StoredState) -> bool:
        if self.pruning is None:
            return False
        return stored.number < self._read_int(schema.META_PRUNED_BELOW, 0)

    def iter_canonical(self, start: int = 0) -> Iterator[BlockHash]:
        for key, value in self.db.items_with_prefix(schema.CANONICAL):
            if int.from_bytes(key[1:], "big") >= start:
                yield value

    # --- writes ---------------------------------------------------------------

    def _block_puts(self, block: Block, state: StateRef, version: int) -> dict[bytes, bytes]:
        block_hash = block.hash
        stored = StoredState(Hash(state.root), state.version, version, block.header.number)
        return {
            schema.header_key(block_hash): codec.encode(block.header, Header),
            schema.body_key(block_hash): encode_body(block.extrinsics),
            schema.block_state_key(block_hash): codec.encode(stored, StoredState),
        }

    def commit_block(self, block: Block, executed: ExecutedState, status: VerificationStatus, *,
                     head: HeadChange | None = None) -> None:
        """Write a block, its executed state and its verification status atomically, and, if fork choice
        moved the head, the new best pointer and canonical index in the same batch."""
        update = executed.update
        version = executed.version
        if version >= self._next_version:
            raise ChainStoreError("commit_block needs a state computed by this store's StateView")
        block_hash = block.hash
        puts = self._block_puts(block, update.state, version)  # written after update.new_nodes, below
        deletes: list[bytes] = [schema.leaf_key(block.header.parent_hash)]
        puts[schema.leaf_key(block_hash)] = b""
        if update.stale_nodes:
            puts[schema.stale_nodes_key(version)] = codec.pack(list(update.stale_nodes))
        puts[schema.meta_key(schema.META_NEXT_VERSION)] = self._next_version.to_bytes(8, "big")
        self._status_puts(block_hash, status, puts, deletes)
        flat_puts: dict[bytes, bytes] = {}
        if head is not None:
            self._head_puts(head, puts, deletes)
            if head.best == block_hash:
                best = update.state
                flat_puts, flat_deletes = self.flat.writes_to(self.trie, block_hash, best, parent=executed.parent,
                                                              changes=executed.changes)
            else:
                best = self._require_state(head.best)
                flat_puts, flat_deletes = self.flat.writes_to(self.trie, head.best, best)
            deletes.extend(flat_deletes)
            self.flat.begin_move()
        self.db.write(update.new_nodes, deletes, more_puts=(puts, flat_puts))
        self._statuses[block_hash] = status
        self.trie.remember(update)
        if head is not None:
            self.flat.moved(head.best, best, bool(flat_puts))
            if head.best == block_hash:
                self.head_cache.advance(executed.parent, update.state, executed.changes)
            else:
                self._restart_head_cache(head.best)

    def write_status(self, block_hash: bytes, status: VerificationStatus, *, head: HeadChange | None = None) -> None:
        """A new verdict for a stored block, and the head it moves (if any), in one batch."""
        self._require_header(block_hash)
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        self._status_puts(block_hash, status, puts, deletes)
        if head is not None:
            self._head_puts(head, puts, deletes)
            best = self._move_flat_state(head.best, puts, deletes)
        self.db.write(puts, deletes)
        self._statuses[block_hash] = status
        if head is not None:
            self.flat.moved(head.best, best, schema.meta_key(schema.META_FLAT_HEAD) in puts)
            self._restart_head_cache(head.best)

    def set_head(self, head: HeadChange) -> None:
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        self._head_puts(head, puts, deletes)
        best = self._move_flat_state(head.best, puts, deletes)
        self.db.write(puts, deletes)
        self.flat.moved(head.best, best, schema.meta_key(schema.META_FLAT_HEAD) in puts)
        self._restart_head_cache(head.best)

    def _move_flat_state(self, best_hash: bytes, puts: dict, deletes: list) -> StateRef:
        """Add the writes that move the flat table to a stored block's state; returns that state."""
        best = self._require_state(best_hash)
        flat_puts, flat_deletes = self.flat.writes_to(self.trie, best_hash, best)
        puts.update(flat_puts)
        deletes.extend(flat_deletes)
        self.flat.begin_move()
        return best

    def _require_state(self, block_hash: bytes) -> StateRef:
        stored = self.stored_state(block_hash)
        if stored is None:
            raise UnknownBlock(f"block {block_hash.hex()} is not in the database")
        return stored.ref

    def _status_puts(self, block_hash: bytes, status: VerificationStatus, puts: dict, deletes: list) -> None:
        puts[schema.status_key(block_hash)] = status.encode()
        if status.is_waiting:
            puts[schema.waiting_key(block_hash)] = b""
        else:
            deletes.append(schema.waiting_key(block_hash))

    def _head_puts(self, head: HeadChange, puts: dict, deletes: list) -> None:
        for number in head.cleared:
            deletes.append(schema.canonical_key(number))
        for number, block_hash in head.canonical:
            puts[schema.canonical_key(number)] = block_hash
        puts[schema.meta_key(schema.META_BEST)] = head.best

    def _restart_head_cache(self, best_hash: bytes) -> None:
        stored = self.stored_state(best_hash)
        if stored is not None and self.head_cache.ref != stored.ref:
            self.head_cache.start(stored.ref)

    def set_finalized(self, block_hash: bytes, justification: bytes | None = None) -> None:
        """Finalize a canonical block: only if it and every block since the last final one is `verified`, and
        never backwards (nor sideways to another block of the same height). The justification, if given, is
        stored in the same write."""
        header = self._require_header(block_hash)
        finalized = self.finalized_header().number
        cursor = header
        while cursor.number > finalized:
            status = self.verification_status(cursor.hash)
            if status is None or status.state != VERIFIED:
                state = "unknown" if status is None else status.state
                raise ChainStoreError(f"block #{cursor.number} {cursor.hash.hex()[:16]} is {state}, not verified "
                                      f"(its useful work did not reproduce here, or not yet): it and its "
                                      f"descendants are not finalized")
            cursor = self._require_header(cursor.parent_hash)
        if self.hash_at(header.number) != header.hash:
            raise ChainStoreError(f"block #{header.number} {block_hash.hex()[:16]} is not canonical")
        current = self.finalized_header()
        if header.number < current.number or (header.number == current.number and header.hash != current.hash):
            raise ChainStoreError(f"finality cannot move back from #{current.number} to #{header.number}",
                                  code="finality_backwards")
        puts = {schema.meta_key(schema.META_FINALIZED): header.hash}
        if justification is not None:
            puts[schema.justification_key(header.hash)] = justification
        self.db.write(puts)
        self.prune()

    def justification(self, block_hash: bytes) -> bytes | None:
        """The encoded justification stored with a finalized block, if any."""
        return self.db.get(schema.justification_key(block_hash))

    # --- verification status and the block tree -------------------------------------

    def verification_status(self, block_hash: bytes) -> VerificationStatus | None:
        """The block's useful-work verification status (None for a block not in the database)."""
        status = self._statuses.get(block_hash)
        if status is not None:
            return status
        raw = self.db.get(schema.status_key(block_hash))
        if raw is None:
            return None
        status = VerificationStatus.decode(raw)
        if len(self._statuses) >= STATUS_CACHE_SIZE:
            self._statuses.clear()
        self._statuses[block_hash] = status
        return status

    def dispute_evidence(self, block_hash: bytes) -> bytes | None:
        """What this node holds against a block it disputes (JSON: block, number, author, reasons), or None."""
        status = self.verification_status(block_hash)
        if status is None or status.state != DISPUTED:
            return None
        header = self._require_header(block_hash)
        return json.dumps({"block": block_hash.hex(), "number": header.number, "author": header.digest.author.hex(),
                           "reasons": list(status.reasons)}, sort_keys=True).encode()

    def waiting_blocks(self) -> list[BlockHash]:
        """Blocks whose status is still to be decided (pending or unverifiable)."""
        return [key[len(schema.WAITING):] for key in self.db.keys_with_prefix(schema.WAITING)]

    def forget_blocks(self, block_hashes: list[bytes], trie_nodes: list[bytes]) -> None:
        """Drop deleted blocks (storage/fork_pruning.py) and their trie nodes from the caches."""
        for block_hash in block_hashes:
            self._headers.pop(block_hash, None)
            self._statuses.pop(block_hash, None)
        self.trie.forget(trie_nodes)

    def leaves(self) -> list[BlockHash]:
        """Blocks with no child yet: the tips of every fork."""
        return [key[len(schema.LEAF):] for key in self.db.keys_with_prefix(schema.LEAF)]

    # --- pruning --------------------------------------------------------------

    def prune(self) -> int:
        """Delete the trie nodes of canonical states older than the window below finality (storage/state_pruning.py);
        returns the nodes deleted."""
        from storage.state_pruning import prune_canonical_states  # it reads this store: imported when used

        return prune_canonical_states(self)
