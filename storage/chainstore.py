"""Blocks, their states, and the pointers that say which chain is canonical.

A block is committed with everything that depends on it in one WriteBatch:
the new trie nodes of its state, the nodes its state made stale, its header and
body, its state record, and, if it becomes the best block, the canonical
number -> hash index and the best pointer. A crash at any instant leaves the last
committed block whole and nothing of the next.

Each committed state has a fresh `version` (never reused, also not after a
failed import, so cached trie nodes can never be confused). Pruning keeps the
states of the last `pruning` blocks below the finalized one; in archive mode
(`pruning=None`) nothing is pruned.
"""

from __future__ import annotations

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
from storage.database import Database
from storage.trie import EMPTY_STATE, StateRef, StateTrie, TrieUpdate

SCHEMA_VERSION = 1
HEADER_CACHE_SIZE = 4096
_MISSING = object()
DEFAULT_PRUNING = 256


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


class HeadCache:
    """Values of the best state, kept across blocks (Substrate's shared state cache).

    It only ever describes one state, `ref`: filled by reads of that state, and
    carried to the next state by the changes of the block that is committed on
    top of it. A read of any other state goes to the trie. It starts, empty, at
    the best state when the store is initialized.
    """

    def __init__(self, max_entries: int = 500_000) -> None:
        self.ref: StateRef | None = None
        self.values: dict[bytes, bytes | None] = {}
        self.max_entries = max_entries
        self.generation = 0  # bumped whenever `ref` moves, so a view re-checks whether it still reads the head

    def start(self, ref: StateRef) -> None:
        """Describe `ref` from now on, with nothing cached yet."""
        self.values = {}
        self.ref = ref
        self.generation += 1

    def advance(self, parent: StateRef, new: StateRef, changes: Mapping[bytes, bytes | None]) -> None:
        if self.ref != parent or len(self.values) + len(changes) > self.max_entries:
            self.values = {}
        self.values.update(changes)
        self.ref = new
        self.generation += 1


class StateView:
    """One block's state, as the runtime's StateBackend: reads, and the root after changes.

    `compute_root` keeps the trie update so that committing the block does not
    hash anything again.
    """

    def __init__(self, store: "ChainStore", ref: StateRef) -> None:
        self._store = store
        self._trie = store.trie
        self.ref = ref
        self.pending: TrieUpdate | None = None
        self.pending_changes: Mapping[bytes, bytes | None] = {}
        self._head = store.head_cache
        self._head_generation = -1
        self._reads_head = False

    def get(self, key: bytes) -> bytes | None:
        head = self._head
        if head.generation != self._head_generation:  # the head moves on when a block commits
            self._head_generation = head.generation
            self._reads_head = head.ref == self.ref
        if not self._reads_head:
            return self._trie.get(self.ref, key)
        cache = head.values
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            value = cache[key] = self._trie.get(self.ref, key)
        return value

    def compute_root(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        self.pending = self._trie.update(self.ref, changes, self._store.allocate_version())
        self.pending_changes = changes
        return self.pending.state.root


def encode_body(extrinsics: tuple[Extrinsic, ...]) -> bytes:
    """codec.encode(extrinsics, tuple[Extrinsic, ...]), from each extrinsic's already known bytes."""
    return codec.join_array([x.encoded for x in extrinsics])


class ChainStore:
    def __init__(self, db: Database, *, pruning: int | None = DEFAULT_PRUNING) -> None:
        self.db = db
        self.pruning = pruning
        self.trie = StateTrie(db.get)
        self.head_cache = HeadCache()
        self._headers: dict[bytes, Header] = {}  # immutable records: a plain bounded cache
        self._next_version = self._read_int(schema.META_NEXT_VERSION, 0)

    @classmethod
    def open(cls, path: str | Path, *, pruning: int | None = DEFAULT_PRUNING, sync: bool = False) -> "ChainStore":
        return cls(Database(path, sync=sync), pruning=pruning)

    def close(self) -> None:
        self.db.close()

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
            best = self.stored_state(self.best_hash)
            if best is not None:
                self.head_cache.start(best.ref)
            return block.hash
        self._next_version = max(self._next_version, 1)
        puts = dict(update.new_nodes)
        puts.update(self._block_puts(block, update.state, 0))
        puts[schema.canonical_key(0)] = block.hash
        for name in (schema.META_GENESIS, schema.META_BEST, schema.META_FINALIZED):
            puts[schema.meta_key(name)] = block.hash
        puts[schema.meta_key(schema.META_NEXT_VERSION)] = self._next_version.to_bytes(8, "big")
        puts[schema.meta_key(schema.META_SCHEMA_VERSION)] = SCHEMA_VERSION.to_bytes(8, "big")
        self.db.write(puts)
        self.trie.remember(update)
        self.head_cache.start(update.state)
        return block.hash

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

    def commit_block(self, block: Block, view: StateView, *, make_best: bool, finalize: bool = False) -> None:
        """Write a block and its executed state atomically; optionally make it best (and final)."""
        update = view.pending
        if update is None:
            raise ChainStoreError("commit_block needs a StateView whose compute_root was called")
        header = block.header
        block_hash = block.hash
        version = self._next_version - 1
        puts = self._block_puts(block, update.state, version)  # written after update.new_nodes, below
        deletes: list[bytes] = []
        if update.stale_nodes:
            puts[schema.stale_nodes_key(version)] = codec.pack(list(update.stale_nodes))
        puts[schema.meta_key(schema.META_NEXT_VERSION)] = self._next_version.to_bytes(8, "big")
        if make_best:
            self._route_puts(header, puts, deletes)
            puts[schema.meta_key(schema.META_BEST)] = block_hash
        if finalize:
            puts[schema.meta_key(schema.META_FINALIZED)] = block_hash
        self.db.write(update.new_nodes, deletes, more_puts=(puts,))
        self.trie.remember(update)
        if make_best:
            self.head_cache.advance(view.ref, update.state, view.pending_changes)
        view.pending = None
        if finalize:
            self.prune()

    def _route_puts(self, header: Header, puts: dict[bytes, bytes], deletes: list[bytes]) -> None:
        """Point the canonical index at the branch ending in `header` (a re-org if needed)."""
        current_best = self.best_header()
        for number in range(header.number + 1, current_best.number + 1):
            deletes.append(schema.canonical_key(number))
        puts[schema.canonical_key(header.number)] = header.hash
        parent_hash, number = header.parent_hash, header.number - 1
        while number >= 0 and self.hash_at(number) != parent_hash:
            puts[schema.canonical_key(number)] = parent_hash
            parent = self._require_header(parent_hash)
            parent_hash, number = parent.parent_hash, number - 1

    def set_best(self, block_hash: bytes) -> None:
        header = self._require_header(block_hash)
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        self._route_puts(header, puts, deletes)
        puts[schema.meta_key(schema.META_BEST)] = header.hash
        self.db.write(puts, deletes)

    def set_finalized(self, block_hash: bytes, justification: bytes | None = None) -> None:
        """Finalize a canonical block (and its ancestors), storing its justification in the same write.
        Finality never moves backwards, nor sideways to another block of the same height."""
        header = self._require_header(block_hash)
        if self.hash_at(header.number) != header.hash:
            raise ChainStoreError(f"block #{header.number} {block_hash.hex()[:16]} is not canonical")
        current = self.finalized_header()
        if header.number < current.number or (header.number == current.number and header.hash != current.hash):
            raise ChainStoreError(f"finality cannot move back from #{current.number} to #{header.number}",
                                  code="finality_backwards")
        disputed = self.disputed_between(self.finalized_header().number, header)
        if disputed is not None:
            raise ChainStoreError(f"block #{disputed.number} {disputed.hash.hex()[:16]} is disputed (its useful-work "
                                  f"report did not reproduce): it and its descendants are never finalized")
        puts = {schema.meta_key(schema.META_FINALIZED): header.hash}
        if justification is not None:
            puts[schema.justification_key(header.hash)] = justification
        self.db.write(puts)
        self.prune()

    def justification(self, block_hash: bytes) -> bytes | None:
        """The encoded justification stored with a finalized block, if any."""
        return self.db.get(schema.justification_key(block_hash))

    # --- disputed blocks --------------------------------------------------------

    def mark_disputed(self, block_hash: bytes, evidence: bytes) -> None:
        """Record that this node could not reproduce the block's useful-work report (`evidence` says why)."""
        self.db.write({schema.disputed_key(block_hash): evidence})

    def dispute_evidence(self, block_hash: bytes) -> bytes | None:
        return self.db.get(schema.disputed_key(block_hash))

    def disputed_between(self, finalized_number: int, header: Header) -> Header | None:
        """The first disputed block on the way from `header` down to (not including) the finalized height."""
        while header.number > finalized_number:
            if self.db.get(schema.disputed_key(header.hash)) is not None:
                return header
            header = self._require_header(header.parent_hash)
        return None

    # --- pruning --------------------------------------------------------------

    def prune(self) -> int:
        """Delete the trie nodes of canonical states older than the window below finality.

        The stale list of block k names the nodes of state k-1 that state k no
        longer uses; deleting it drops state k-1. Returns the nodes deleted.
        """
        if self.pruning is None:
            return 0
        finalized = self.finalized_header().number
        pruned_below = self._read_int(schema.META_PRUNED_BELOW, 0)
        target = finalized - self.pruning
        if target <= pruned_below:
            return 0
        deleted = 0
        deletes: list[bytes] = []
        for number in range(pruned_below + 1, target + 1):
            block_hash = self.hash_at(number)
            stored = self.stored_state(block_hash) if block_hash else None
            if stored is None:
                continue
            raw = self.db.get(schema.stale_nodes_key(stored.version))
            if raw:
                stale = codec.unpack_trusted(raw)
                deletes.extend(stale)
                deletes.append(schema.stale_nodes_key(stored.version))
                deleted += len(stale)
        self.db.write({schema.meta_key(schema.META_PRUNED_BELOW): target.to_bytes(8, "big")}, deletes)
        self.trie.forget(deletes)
        return deleted
