"""The one seam between the network and the chain: everything the network asks of ChainService.

The network never touches the chain store, pool or blob store except through
this class, so when the import pipeline changes (consensus/import_queue.py),
only this file follows. Reads of immutable records (headers, bodies, blobs) run
on a worker thread (LevelDB is safe to read from any thread); imports and pool
submissions go to the chain thread through ChainService's own methods.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Callable

import structlog

from consensus.import_queue import BAD, IMPORTED, KNOWN, MISSING_PARENT, ImportResult
from consensus.signatures import SignatureVerifier
from runtime import api as runtime_api
from runtime import codec
from storage.block_status import UNVERIFIABLE
from runtime.types import Block, Extrinsic, Header
from storage import schema

log = structlog.get_logger("network")
SUBMIT_CHUNK = 64  # gossiped transactions handed to the pool per chain-thread job


@dataclass(frozen=True)
class ChainHead:
    genesis_hash: bytes
    best: Header
    finalized: Header


@dataclass(frozen=True)
class ImportOutcome:
    """What importing one block from a peer did: `imported`, `known`, `unknown_parent` or `bad` (reason)."""

    kind: str
    reason: str = ""
    code: str = ""  # the import error's code, for `bad`

    @property
    def is_misbehaviour(self) -> bool:
        """A bad block an honest peer cannot send is misbehaviour. A block below this node's finality is
        not: a validator that was offline (or partitioned) authors and relays on the head it had, which
        finality has since passed; refusing the block is enough, banning it would keep it from syncing."""
        return self.kind == "bad" and self.code not in HONEST_RACES


HONEST_RACES = frozenset({"reverts_finality"})


def _outcome_of(result: ImportResult) -> ImportOutcome:
    if result.error is None:
        return ImportOutcome(OUTCOMES[result.outcome])
    return ImportOutcome(OUTCOMES[result.outcome], f"{result.error.code}: {result.error.message}", result.error.code)


OUTCOMES = {IMPORTED: "imported", KNOWN: "known", MISSING_PARENT: "unknown_parent", BAD: "bad"}


class ChainAdapter:
    def __init__(self, chain) -> None:
        self.chain = chain
        self._verifier: SignatureVerifier | None = None  # a second process for signatures while syncing
        self._imports_in_flight = 0
        self._no_imports = asyncio.Event()
        self._no_imports.set()
        self.finality = None  # the FinalityService (node/run.py attaches it): finality from peers' justifications

    def attach_finality(self, finality) -> None:
        self.finality = finality

    # --- reads ------------------------------------------------------------------------

    def head(self) -> ChainHead:
        store = self.chain.store
        return ChainHead(store.genesis_hash, store.best_header(), store.finalized_header())

    def has_block(self, block_hash: bytes) -> bool:
        return self.chain.store.header(block_hash) is not None

    def block_in_flight(self, header: Header) -> None:
        """A peer's block is on its way here (fetched, then imported): the next author waits for it."""
        self.chain.in_flight.announced(header)

    def is_in_flight(self, block_hash: bytes) -> bool:
        return block_hash in self.chain.in_flight

    def block_settled(self, block_hash: bytes) -> None:
        self.chain.in_flight.settled(block_hash)

    async def parent_arrives(self, header: Header, timeout_s: float) -> bool:
        """Whether `header`'s parent is here, waiting (at most `timeout_s`) if it is in flight itself: blocks
        can come faster than a loaded node imports them, and the child of one still importing is no
        reason to start a sync (a request by number for what is already here or on its way)."""
        if header.parent_hash in self.chain.in_flight:
            await self.chain.in_flight.wait_settled(header.parent_hash, timeout_s)
        return self.has_block(header.parent_hash)

    async def encoded_blocks(self, start_number: int, start_hash: bytes | None, count: int, budget: int) -> list[bytes]:
        """Up to `count` encoded blocks of the best chain from a hash or number, within `budget` bytes (>= 1 block)."""
        def read() -> list[bytes]:
            store = self.chain.store
            if start_hash is not None:
                header = store.header(start_hash)
                if header is None:
                    return []
                first = stored_block_bytes(store, start_hash)
                if first is None:
                    return []
                if store.hash_at(header.number) != start_hash:
                    return [first]  # not on our best chain: its descendants here may differ
                encoded, number = [first], header.number + 1
            else:
                encoded, number = [], start_number
            used = sum(map(len, encoded))
            while len(encoded) < count:
                block_hash = store.hash_at(number)
                if block_hash is None:
                    break
                data = stored_block_bytes(store, block_hash)
                if data is None:
                    break
                if encoded and used + len(data) > budget:
                    break
                encoded.append(data)
                used += len(data)
                number += 1
            return encoded
        return await asyncio.to_thread(read)

    async def justifications(self, block_hashes: list[bytes], finalized_head: bool,
                             budget: int) -> list[tuple[bytes, int, bytes]]:
        """(hash, number, encoded justification) of each asked block that has one stored, then of the
        finalized head if asked and stored; within `budget` bytes (at least one)."""
        def read() -> list[tuple[bytes, int, bytes]]:
            store = self.chain.store
            wanted = list(dict.fromkeys(block_hashes))
            if finalized_head:
                wanted.append(store.finalized_hash)
            found, used = [], 0
            for block_hash in wanted:
                data, header = store.justification(block_hash), store.header(block_hash)
                if data is None or header is None:
                    continue
                if found and used + len(data) > budget:
                    break
                found.append((block_hash, header.number, data))
                used += len(data)
            return found
        return await asyncio.to_thread(read)

    async def blob(self, blob_hash: bytes) -> bytes | None:
        return await asyncio.to_thread(self.chain.blobs.get, blob_hash)

    async def missing_blobs(self) -> list[bytes]:
        """Blobs this node lacks that the chain names: by the best state's tasks (models, held-out sets,
        revealed updates), and by the blocks waiting as `unverifiable` (never best, so not in that state)."""
        def read() -> list[bytes]:
            store, blobs = self.chain.store, self.chain.blobs
            named = set(runtime_api.active_task_blobs(store.state_view(store.best_hash)))
            for block_hash in store.waiting_blocks():
                status = store.verification_status(block_hash)
                if status is not None and status.state == UNVERIFIABLE:
                    named.update(status.missing)
            return sorted(h for h in named if any(h) and blobs.info(h) is None)
        return await self.chain.call(read)

    # --- writes -----------------------------------------------------------------------

    async def import_block(self, block: Block) -> ImportOutcome:
        async with self._importing():
            return await self.chain.call(self._import_now, block)

    @contextlib.asynccontextmanager
    async def _importing(self):
        """Blocks go before gossiped transactions on the one chain thread (see submit_transactions)."""
        self._imports_in_flight += 1
        self._no_imports.clear()
        try:
            yield
        finally:
            self._imports_in_flight -= 1
            if not self._imports_in_flight:
                self._no_imports.set()

    def _import_now(self, block: Block) -> ImportOutcome:
        """On the chain thread: the chain's import entry point (consensus/import_queue.py), as an outcome."""
        return _outcome_of(self.chain.import_block_now(block))

    async def import_blocks(self, blocks: list[Block]) -> tuple[int, tuple[int, ImportOutcome] | None]:
        """Import a linked run in order in one trip to the chain thread; stop at the first that fails.
        Returns (how many were imported, (index, outcome) of the failure or None); known blocks are skipped."""
        if len(blocks) > 1 and self._verifier is None:
            # started here, not on the chain thread: spawning a process takes a second or two, a slot's worth
            self._verifier = await asyncio.to_thread(SignatureVerifier)

        def run() -> tuple[int, tuple[int, ImportOutcome] | None]:
            imported = 0
            results = (self.chain.import_run_now(blocks, self._verifier) if len(blocks) > 1
                       else (self.chain.import_block_now(block) for block in blocks))
            with contextlib.closing(results):  # a run stopped at a failure still ends its bookkeeping now
                for index, result in enumerate(results):
                    outcome = _outcome_of(result)
                    if outcome.kind == "imported":
                        imported += 1
                    elif outcome.kind != "known":
                        return imported, (index, outcome)
            return imported, None
        async with self._importing():
            return await self.chain.call(run)

    async def submit_transactions(self, extrinsics: list[Extrinsic]) -> list:
        """Into the pool; one result per extrinsic: (hash, status) or the error that refused it.

        In chunks, each waiting for the blocks being imported: the chain thread runs jobs in turn, and a
        block stuck behind a thousand transactions' validation is a block that propagates late."""
        results: list = []
        for start in range(0, len(extrinsics), SUBMIT_CHUNK):
            await self._no_imports.wait()
            results.extend(await self.chain.submit_many(extrinsics[start:start + SUBMIT_CHUNK]))
        return results

    async def set_changes_to_prove(self) -> list[tuple[bytes, int]]:
        """(hash, number) of the set-change blocks above finality whose justifications sync fetches first."""
        return [] if self.finality is None else await self.finality.set_changes_to_prove()

    async def import_justification(self, data: bytes, block_hash: bytes) -> bool:
        """A peer's justification of `block_hash`: True if it moved finality; BadJustification if it does not
        verify here (or is of another block)."""
        return False if self.finality is None else await self.finality.import_justification(data, block_hash)

    async def put_blob(self, blob_hash: bytes, data: bytes) -> bool:
        def store() -> bool:
            return self.chain.blobs.put(blob_hash, data, now_block=self.chain.store.best_header().number)
        return await self.chain.call(store)

    async def blob_arrived(self, blob_hash: bytes) -> list[bytes]:
        """Tell the chain a blob arrived: the unverifiable blocks that waited on it are checked again."""
        return await self.chain.blob_arrived(blob_hash)

    async def close(self) -> None:
        """Stop the signature process (after any import in hand: it runs on the chain thread too)."""
        def close() -> None:
            if self._verifier is not None:
                self._verifier.close()
                self._verifier = None
        await self.chain.call(close)

    # --- notifications (callbacks run on the chain thread: hand them to a loop at once) ----

    def on_blocks(self, callback: Callable[[Block, str], None]) -> None:
        """callback(block, "authored" | "imported") for every block this node adds."""
        self.chain.block_listeners.append(callback)

    def on_unverifiable(self, callback: Callable[[tuple[bytes, ...]], None]) -> None:
        """callback(missing blob hashes) when a block is found unverifiable for want of them."""
        def on_status(block_hash: bytes, status) -> None:
            if status.state == UNVERIFIABLE:
                callback(status.missing)
        self.chain.status_listeners.append(on_status)

    def on_retracted_transactions(self, callback: Callable[[list[Extrinsic]], None]) -> None:
        """callback(extrinsics) when a re-org handed these back to the pool (they are in it again)."""
        self.chain.retracted_listeners.append(callback)

    def on_admitted_transactions(self, callback: Callable[[Extrinsic], None]) -> None:
        """callback(extrinsic) once the pool admitted it (ready or future)."""
        pool = self.chain.pool

        def on_status(transaction_hash: bytes, status: str, info) -> None:
            if status in ("ready", "future"):
                extrinsic = pool.get(transaction_hash)
                if extrinsic is not None:
                    callback(extrinsic)
        pool.subscribe(on_status)


def stored_block_bytes(store, block_hash: bytes) -> bytes | None:
    """encode_block(store.block(block_hash)), without decoding and encoding again: the codec encodes a
    struct as an array of its fields' encodings, so a block's bytes are the array of its header's and its
    body's, the two values the store keeps (tests/test_sync_serving.py holds the two equal)."""
    header = store.db.get(schema.header_key(block_hash))
    body = store.db.get(schema.body_key(block_hash)) if header is not None else None
    return None if header is None or body is None else codec.join_array([header, body])
