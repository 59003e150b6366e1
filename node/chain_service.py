"""The chain service: the database, the runtime, the import pipeline and the pool.

Everything that touches the chain store or the pool runs on one dedicated
thread ("chain"), one job at a time, so LevelDB writes, the trie cache and the
pool never race, and the asyncio loop stays free for RPC and networking while a
block is built or imported. Useful work (torch) runs on a second thread
("useful-work"): its inputs are gathered on the chain thread and its results come
back to it, so no slot and no RPC read ever waits on a model. Other services call
the async methods here.

The import pipeline itself (checks, execution, commit, verification status, fork
choice) lives in consensus/import_queue.py; this service supplies its threads and
reacts to what it reports (node/chain_followers.py): the pool follows the head,
listeners hear of blocks and of status changes, metrics count them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import structlog

from consensus.authorship import BuiltBlock, build_block
from consensus.import_queue import IMPORTED, ImportQueue, ImportResult
from consensus.slots import block_timestamp_ms
from consensus.useful_work.rounds import RoundWork
from consensus.verification import InlineRunner, RoundMeasurements, UsefulWorkCheck, run_now
from node.authoring_cap import AuthoringCap
from node.authoring_wait import BlocksInFlight
from node.chain_followers import BLOB_GC_INTERVAL, ChainFollowers
from node.chain_setup import ChainPaths, open_chain
from node.clock import SystemClock
from node.import_runs import HeapFreezer, ImportRun
from node.indexer import ChainIndexer
from node.metrics import NodeMetrics
from node.service import Service
from node.submissions import SubmissionQueue
from node.txpool import PoolLimits, TransactionPool
from node.verified_signatures import VerifiedSignatures
from runtime.crypto import Keypair
from runtime.executive import Executive
from runtime.genesis import GenesisConfig
from runtime.state import Overlay
from runtime.types import Block, Extrinsic
from runtime.validity import InvalidTransaction
from storage.block_status import VERIFIED, VerificationStatus
from storage.blobs import DEFAULT_GRACE_BLOCKS, BlobStore
from storage.chainstore import ChainStore

log = structlog.get_logger("chain")


@dataclass(frozen=True)
class AuthoredBlock:
    block: Block
    import_ms: float
    invalid: int


class ChainService(ChainFollowers, Service):
    name = "chain"

    def __init__(self, config: GenesisConfig, paths: ChainPaths, *, pruning: int | None = 256,
                 metrics: NodeMetrics | None = None, clock: Any = None, finalize_own_blocks: bool = False,
                 pool_limits: PoolLimits | None = None, validator_key: Keypair | None = None,
                 blob_grace_blocks: int = DEFAULT_GRACE_BLOCKS, work: RoundWork | None = None,
                 inline_useful_work: bool = False, authoring_cap: AuthoringCap = AuthoringCap()) -> None:
        self.config = config
        self.paths = paths
        self.pruning = pruning
        self.metrics = metrics or NodeMetrics()
        self.clock = clock or SystemClock()
        self.finalize_own_blocks = finalize_own_blocks
        self.pool_limits = pool_limits or PoolLimits()
        self.validator_key = validator_key  # measures and checks useful work for the tasks sealed to it
        self.blob_grace_blocks = blob_grace_blocks  # unreferenced blobs older than this are collected
        self.authoring_cap = authoring_cap
        self.work: RoundWork | None = work  # given: a test's (slow) verifier; else made at open
        # inline: measure and verify at once on the calling thread (a hand-driven test, a tool)
        self._runner = InlineRunner() if inline_useful_work else None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self._useful_work_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="useful-work")
        self.store: ChainStore | None = None
        self.executive: Executive | None = None
        self.importer: ImportQueue | None = None
        self.verification: UsefulWorkCheck | None = None
        self.measurements: RoundMeasurements | None = None
        self.pool: TransactionPool | None = None
        self.blobs: BlobStore | None = None
        self.indexer: ChainIndexer | None = None
        self._validation: tuple[bytes, Any] | None = None  # (best hash, validation context)
        self.verified_signatures = VerifiedSignatures()  # by the pool; a block's import skips them
        self.in_flight = BlocksInFlight()  # peers' blocks on their way here (the network notes them; event loop)
        self.block_listeners: list[Callable[[Block, str], None]] = []  # called on the chain thread
        self.status_listeners: list[Callable[[bytes, VerificationStatus], None]] = []  # on the chain thread
        # the transactions a re-org handed back to the pool (networking gossips them again): chain thread
        self.retracted_listeners: list[Callable[[list[Extrinsic]], None]] = []
        self.block_ms: deque[float] = deque(maxlen=10_000)  # build-or-import time of recent blocks
        self._closed = False
        self._fresh: Block | None = None  # the block being imported (head listeners read it, not the database)
        self._run: ImportRun | None = None  # the run of blocks being imported (import_run_now)
        self._submissions = SubmissionQueue(lambda extrinsics: self._on_chain_thread(self._submit_many, extrinsics))
        self._heap = HeapFreezer()

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self._on_chain_thread(self._open)

    def _open(self) -> None:
        self.store = open_chain(self.paths, self.config, pruning=self.pruning)
        self.blobs = BlobStore(self.store.db)
        self.indexer = ChainIndexer(self.store)
        self.indexer.catch_up()
        self.block_listeners.append(self._index_block)
        if self.work is None:
            self.work = RoundWork(self.blobs, self.validator_key)  # scores are exact: no tolerance
        else:
            self.work.blobs = self.blobs
        self.executive = Executive(self.store.genesis_hash)
        self.importer = ImportQueue(self.store, self.executive, slot_duration_ms=self.config.slot_duration_ms,
                                    clock_ms=self.clock.now_ms)
        runner, deliver = (self._runner, run_now) if self._runner else (self._useful_work_thread, self._deliver)
        self.verification = UsefulWorkCheck(self.store, self.work, runner=runner, deliver=deliver,
                                            deadline_blocks=self.config.useful_work_availability_blocks)
        self.verification.attach(self.importer)
        self.measurements = RoundMeasurements(self.work, runner=runner, deliver=deliver)
        self.importer.head_listeners.append(self._on_head_moved)
        self.importer.status_listeners.append(self._on_status)
        self.pool = TransactionPool(self._validate, lambda x: x.hash, lambda x: len(x.encoded),
                                    limits=self.pool_limits)
        best = self.store.best_header()
        resumed = self.verification.resume()  # a restart checks every pending block again
        self._refresh_measurements()
        self._update_gauges()
        log.info("chain opened", chain=self.config.chain_id, best=best.number, best_hash=best.hash.hex()[:16],
                 genesis=self.store.genesis_hash.hex()[:16], database=str(self.paths.database),
                 pending_checks=resumed)

    def _deliver(self, function: Callable[[], None]) -> None:
        """Run a useful-work result on the chain thread (the only writer of the database)."""
        if not self._closed:
            try:
                self._thread.submit(function)
            except RuntimeError:  # shut down meanwhile: a pending block is checked again at restart
                pass

    async def stop(self) -> None:
        # Waits for the job in hand (a block being built or imported) to finish, then closes LevelDB.
        # A useful-work check still running is dropped: its block stays pending and is re-checked at restart.
        self._closed = True
        self._useful_work_thread.shutdown(wait=False, cancel_futures=True)
        await self._on_chain_thread(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        self._closed = True
        self._heap.thaw()
        if self.store is not None and not self.store.db.closed:
            best = self.store.best_header()
            self.store.close()
            log.info("database closed", best=best.number)

    async def _on_chain_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run any read of the chain or pool on the chain thread (for RPC and tools)."""
        return await self._on_chain_thread(function, *args)

    # --- the pool -------------------------------------------------------------

    def _validate(self, extrinsic: Extrinsic):
        best_hash = self.store.best_hash
        if self._validation is None or self._validation[0] != best_hash:
            best = self.store.best_header()
            context = self.executive.validation_context(self.store.state_view(best_hash), best.number, best_hash)
            self._validation = (best_hash, context)
        # Re-validation after each block need not check an immortal transaction's signature again
        # (node/verified_signatures.py), nor need the import of a block that includes it.
        known = self.verified_signatures.is_known(extrinsic)
        valid = self.executive.validate_transaction(self._validation[1], extrinsic, signature_checked=known)
        if not known:
            self.verified_signatures.remember(extrinsic)
        return valid

    async def submit(self, extrinsic: Extrinsic) -> tuple[bytes, str]:
        """Into the pool: (hash, "ready" | "future"), or the pool's error raised. Submissions arriving
        together share trips to the chain thread (node/submissions.py)."""
        return await self._submissions.submit(extrinsic)

    def _submit(self, extrinsic: Extrinsic) -> tuple[bytes, str]:
        result = self.pool.submit(extrinsic, at_block=self.store.best_header().number)
        self._update_gauges()
        return result

    async def submit_many(self, extrinsics: list[Extrinsic]) -> list:
        return await self._on_chain_thread(self._submit_many, extrinsics)

    def _submit_many(self, extrinsics: list[Extrinsic]) -> list:
        results = self.pool.submit_many(extrinsics, at_block=self.store.best_header().number)
        self._update_gauges()
        return results

    # --- authorship and import -------------------------------------------------

    async def authorities(self) -> list[bytes]:
        return await self._on_chain_thread(lambda: self.executive.authorities(self.store.state_view(self.store.best_hash)))

    async def author(self, slot: int, keypair: Keypair, deadline_ms: int) -> AuthoredBlock | None:
        return await self._on_chain_thread(self._author, slot, keypair, deadline_ms)

    def _author(self, slot: int, keypair: Keypair, deadline_ms: int) -> AuthoredBlock | None:
        started = time.perf_counter()
        self._heap.thaw()
        parent = self.store.best_header()  # fork choice's best: never a disputed or unverifiable block
        if parent.number > 0 and parent.digest.slot >= slot:
            return None  # the best block already claims this slot or a later one
        timestamp = block_timestamp_ms(slot, self.config.slot_duration_ms)
        if self.work.keypair is None:
            self.work.keypair = keypair
            self._refresh_measurements()
        # reports measured off the slot, once ready; a round still being measured waits for a later block
        reports = self.measurements.ready(Overlay(self.store.state_view(parent.hash)), parent)
        cap = self.authoring_cap
        deadline_ms = cap.deadline_ms(deadline_ms, self.clock.now_ms(), self.config.slot_duration_ms)

        def build(useful_work: tuple) -> BuiltBlock:
            return build_block(self.store, self.executive, parent.hash, author=keypair, slot=slot,
                               timestamp_ms=timestamp, transactions=cap.transactions(self.pool.ready()),
                               signatures_checked=True, should_stop=lambda: self.clock.now_ms() >= deadline_ms,
                               useful_work=useful_work)
        try:
            built = build(reports)
        except InvalidTransaction as error:
            if not reports:
                raise
            # the runtime refused our own measurements: a bug here must not halt the chain
            log.error("the runtime refused this node's useful-work report; authoring without it",
                      number=parent.number + 1, error=str(error))
            self.measurements.discard(reports)  # measured again after this block
            built = build(())
        self._fresh = built.block
        result = self.importer.import_block(built.block, authored=built.state).raise_for_error()
        if built.invalid:
            self.pool.remove_invalid([x.hash for x, _ in built.invalid])
        self._after_import(built.block, result)
        elapsed = (time.perf_counter() - started) * 1000
        self.block_ms.append(elapsed)
        self.metrics.blocks_authored.inc()
        log.info("authored block", number=built.block.header.number, hash=built.block.hash.hex()[:16],
                 slot=slot, extrinsics=len(built.block.extrinsics), invalid=len(built.invalid), ms=round(elapsed, 1),
                 reports=len(reports))
        if self.finalize_own_blocks and result.is_best and result.status.state == VERIFIED:
            self.finalize_now(built.block.hash)
        self._notify(built.block, "authored")
        return AuthoredBlock(built.block, elapsed, len(built.invalid))

    async def import_block(self, block: Block) -> ImportResult:
        return await self._on_chain_thread(self.import_block_now, block)

    def import_block_now(self, block: Block) -> ImportResult:
        """Import on the calling thread: for tools that own the chain, or the chain thread."""
        self._heap.thaw()  # one block at a time: the node follows the chain, no longer catching up
        self._fresh = block
        checks = self.verified_signatures.block_checks(block, self.executive, self.store.header)
        return self._record(block, self.importer.import_block(block, signatures=checks))

    def import_run_now(self, blocks: list[Block], verifier) -> Iterator[ImportResult]:
        """import_block_now for a run of blocks (sync): while one block executes here, the next block's
        signatures are verified in `verifier`'s process (ImportQueue.import_run). Stop consuming to stop
        (then close the iterator: the run's deferred bookkeeping happens when it ends)."""
        run = self._run = ImportRun.of(blocks, self.store.best_header().number)
        try:
            for result in self.importer.import_run(blocks, verifier):
                yield self._record(run.blocks[result.hash], result)
        finally:
            self._run = None
            self._end_run(run)

    def _end_run(self, run: ImportRun) -> None:
        """The bookkeeping a run deferred (node/import_runs.py), once."""
        run.log_progress()
        try:
            self.indexer.follow_best()
            if run.best // BLOB_GC_INTERVAL > run.first // BLOB_GC_INTERVAL:  # the run crossed a collection
                self._collect_blobs(self.store.best_header(), now=True)
        except Exception:
            log.exception("indexing failed after a run of blocks", best=run.best)
        self._refresh_measurements()
        self._update_gauges()
        self._heap.freeze()

    def _record(self, block: Block, result: ImportResult) -> ImportResult:
        if result.outcome != IMPORTED:
            log.info("block not imported", number=result.number, hash=result.hash.hex()[:16], outcome=result.outcome,
                     error=None if result.error is None else result.error.message)
            return result
        self.metrics.import_seconds.observe(result.import_ms / 1000)
        self.block_ms.append(result.import_ms)
        self._after_import(block, result)
        run = self._run
        if run is None:
            log.info("imported block", number=result.number, hash=result.hash.hex()[:16],
                     extrinsics=len(block.extrinsics), ms=round(result.import_ms, 1), best=result.is_best,
                     verification=result.status.state)
        else:
            run.imported_block(result.number)
        self._notify(block, "imported")
        return result

    def finalize_now(self, block_hash: bytes) -> None:
        """Finalize a block (it and every block since the last final one must be `verified`: the store
        refuses otherwise), then let fork choice drop what no longer descends from it."""
        self.store.set_finalized(block_hash)
        self.importer.reconsider_head()
        self._update_gauges()
        log.info("finalized block", number=self.store.finalized_header().number, hash=block_hash.hex()[:16])

    def verification_status(self, block_hash: bytes) -> VerificationStatus | None:
        return self.store.verification_status(block_hash)

    async def blob_arrived(self, blob_hash: bytes) -> list[bytes]:
        """A blob arrived (networking fetched it, a trainer uploaded it): the unverifiable blocks that
        waited only for it are checked again. Returns their hashes."""
        return await self._on_chain_thread(self.blob_arrived_now, blob_hash)

    def blob_arrived_now(self, blob_hash: bytes) -> list[bytes]:
        """blob_arrived, on the calling thread (the chain thread, or a tool that owns the chain)."""
        return self.verification.blob_arrived(blob_hash)

    def _after_import(self, block: Block, result: ImportResult) -> None:
        self.metrics.extrinsics_included.inc(len(block.extrinsics))
        self.verification.expire(max(block.header.number, self.store.best_header().number))
        self._update_gauges()
