"""The chain service: the database, the runtime, the import pipeline and the pool.

Everything that touches the chain store or the pool runs on one dedicated
thread ("chain"), one job at a time, so LevelDB writes, the trie cache and the
pool never race, and the asyncio loop stays free for RPC and networking while a
block is built or imported. Other services call the async methods here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from consensus.authorship import BuiltBlock, build_block
from consensus.block_import import BlockImporter, ImportResult
from consensus.slots import block_timestamp_ms
from consensus.useful_work.rounds import RoundWork, reports_in
from node.chain_setup import ChainPaths, open_chain
from node.clock import SystemClock
from node.indexer import ChainIndexer
from node.metrics import NodeMetrics
from node.service import Service
from node.txpool import PoolLimits, TransactionPool
from runtime.crypto import Keypair
from runtime.executive import Executive
from runtime.genesis import GenesisConfig
from runtime import api as runtime_api
from runtime.state import Overlay
from runtime.types import Block, Extrinsic
from runtime.validity import InvalidTransaction
from storage.blobs import DEFAULT_GRACE_BLOCKS, BlobStore
from storage.chainstore import ChainStore

log = structlog.get_logger("chain")
BLOB_GC_INTERVAL = 50  # blocks


@dataclass(frozen=True)
class AuthoredBlock:
    block: Block
    import_ms: float
    invalid: int


class ChainService(Service):
    name = "chain"

    def __init__(self, config: GenesisConfig, paths: ChainPaths, *, pruning: int | None = 256,
                 metrics: NodeMetrics | None = None, clock: Any = None, finalize_own_blocks: bool = False,
                 pool_limits: PoolLimits | None = None, validator_key: Keypair | None = None,
                 blob_grace_blocks: int = DEFAULT_GRACE_BLOCKS) -> None:
        self.config = config
        self.paths = paths
        self.pruning = pruning
        self.metrics = metrics or NodeMetrics()
        self.clock = clock or SystemClock()
        self.finalize_own_blocks = finalize_own_blocks
        self.pool_limits = pool_limits or PoolLimits()
        self.validator_key = validator_key  # measures and checks useful work for the tasks sealed to it
        self.blob_grace_blocks = blob_grace_blocks  # unreferenced blobs older than this are collected
        self.work: RoundWork | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self.store: ChainStore | None = None
        self.executive: Executive | None = None
        self.importer: BlockImporter | None = None
        self.pool: TransactionPool | None = None
        self.blobs: BlobStore | None = None
        self.indexer: ChainIndexer | None = None
        self._validation: tuple[bytes, Any] | None = None  # (best hash, validation context)
        self._signature_verified: set[bytes] = set()
        self.block_listeners: list[Callable[[Block, str], None]] = []  # called on the chain thread
        self.block_ms: deque[float] = deque(maxlen=10_000)  # build-or-import time of recent blocks

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self._on_chain_thread(self._open)

    def _open(self) -> None:
        self.store = open_chain(self.paths, self.config, pruning=self.pruning)
        self.blobs = BlobStore(self.store.db)
        self.indexer = ChainIndexer(self.store)
        self.indexer.catch_up()
        self.block_listeners.append(self._index_block)
        self.work = RoundWork(self.blobs, self.validator_key, tolerance_ppm=self.config.useful_work_tolerance_ppm,
                              loss_tolerance_ppm=self.config.useful_work_loss_tolerance_ppm)
        self.executive = Executive(self.store.genesis_hash)
        self.importer = BlockImporter(self.store, self.executive, slot_duration_ms=self.config.slot_duration_ms,
                                      clock_ms=self.clock.now_ms)
        self.pool = TransactionPool(self._validate, lambda x: x.hash, lambda x: len(x.encoded),
                                    limits=self.pool_limits)
        best = self.store.best_header()
        self._update_gauges()
        log.info("chain opened", chain=self.config.chain_id, best=best.number, best_hash=best.hash.hex()[:16],
                 genesis=self.store.genesis_hash.hex()[:16], database=str(self.paths.database))

    async def stop(self) -> None:
        # Waits for the job in hand (a block being built or imported) to finish, then closes LevelDB.
        await self._on_chain_thread(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self.store is not None:
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
        # Re-validation after each block need not check an immortal transaction's signature again:
        # what it signs (genesis, runtime version) cannot change. A mortal one signs its birth block's
        # hash, which a re-org can change, so it is always checked.
        signed = extrinsic.signed
        known = signed is not None and signed.era.is_immortal and extrinsic.hash in self._signature_verified
        valid = self.executive.validate_transaction(self._validation[1], extrinsic, signature_checked=known)
        if not known and signed is not None and signed.era.is_immortal:
            if len(self._signature_verified) >= 200_000:
                self._signature_verified.clear()
            self._signature_verified.add(extrinsic.hash)
        return valid

    async def submit(self, extrinsic: Extrinsic) -> tuple[bytes, str]:
        return await self._on_chain_thread(self._submit, extrinsic)

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
        parent = self.store.best_header()
        if parent.number > 0 and parent.digest.slot >= slot:
            return None  # the best block already claims this slot or a later one
        timestamp = block_timestamp_ms(slot, self.config.slot_duration_ms)
        if self.work.keypair is None:
            self.work.keypair = keypair
        reports = self.work.measure_due(Overlay(self.store.state_view(parent.hash)), parent)

        def build(useful_work: tuple) -> BuiltBlock:
            return build_block(self.store, self.executive, parent.hash, author=keypair, slot=slot,
                               timestamp_ms=timestamp, transactions=self.pool.ready(), signatures_checked=True,
                               should_stop=lambda: self.clock.now_ms() >= deadline_ms, useful_work=useful_work)
        try:
            built = build(reports)
        except InvalidTransaction as error:
            if not reports:
                raise
            # the runtime refused our own measurements: a bug here must not halt the chain
            log.error("the runtime refused this node's useful-work report; authoring without it",
                      number=parent.number + 1, error=str(error))
            built = build(())
        self.store.commit_block(built.block, built.view, make_best=True, finalize=self.finalize_own_blocks)
        self._after_new_best(built.block, [x.hash for x, _ in built.invalid])
        elapsed = (time.perf_counter() - started) * 1000
        self.block_ms.append(elapsed)
        self.metrics.blocks_authored.inc()
        log.info("authored block", number=built.block.header.number, hash=built.block.hash.hex()[:16],
                 slot=slot, extrinsics=len(built.block.extrinsics), invalid=len(built.invalid), ms=round(elapsed, 1))
        if self.finalize_own_blocks:
            log.info("finalized block", number=built.block.header.number, hash=built.block.hash.hex()[:16])
        self._notify(built.block, "authored")
        return AuthoredBlock(built.block, elapsed, len(built.invalid))

    async def import_block(self, block: Block) -> ImportResult:
        return await self._on_chain_thread(self.import_block_now, block)

    def import_block_now(self, block: Block) -> ImportResult:
        """Import on the calling thread: for tools that own the chain (import-blocks), or the chain thread."""
        previous_best = self.store.best_hash
        result = self.importer.import_block(block)
        self._check_useful_work(block)
        self.metrics.import_seconds.observe(result.import_ms / 1000)
        self.block_ms.append(result.import_ms)
        if result.is_best:
            if block.header.parent_hash == previous_best:
                self._after_new_best(block, [])
            else:
                self._after_reorg(previous_best, block)
        log.info("imported block", number=result.number, hash=result.hash.hex()[:16],
                 extrinsics=len(block.extrinsics), ms=round(result.import_ms, 1), best=result.is_best)
        self._notify(block, "imported")
        return result

    def _check_useful_work(self, block: Block) -> None:
        """Re-measure the block's useful-work reports; a block that does not reproduce is disputed:
        never finalized here, with the reasons kept as evidence (finality votes and slashing build on it)."""
        if self.work.keypair is None or not reports_in(block):
            return
        parent = self.store.header(block.header.parent_hash)
        try:
            verdict = self.work.verify_block(Overlay(self.store.state_view(parent.hash)), parent, block)
        except Exception:  # a bug in checking must not fail an import that already committed
            log.exception("useful work could not be checked", number=block.header.number)
            return
        for skipped in verdict.skipped:
            log.info("useful work not checked", number=block.header.number, reason=skipped)
        if verdict.ok:
            if verdict.checked:
                log.info("useful work reproduced", number=block.header.number, rounds=verdict.checked)
            return
        evidence = json.dumps({"block": block.hash.hex(), "number": block.header.number,
                               "author": block.header.digest.author.hex(), "reasons": verdict.reasons})
        self.store.mark_disputed(block.hash, evidence.encode())
        self.metrics.disputed_blocks.inc()
        log.error("useful-work report does not reproduce: block will not be finalized",
                  number=block.header.number, hash=block.hash.hex()[:16], reasons=verdict.reasons)

    def _collect_blobs(self, block: Block) -> None:
        """Every GC_INTERVAL blocks, drop blobs no task refers to once they are past the grace period."""
        number = block.header.number
        if number % BLOB_GC_INTERVAL:
            return
        self.indexer.follow_best()  # pins the blobs of tasks that ended up to here
        referenced = runtime_api.active_task_blobs(self.store.state_view(block.hash)) | self.indexer.pinned_blobs()
        deleted = self.blobs.collect_garbage(referenced, now_block=number, grace_blocks=self.blob_grace_blocks)
        if deleted:
            log.info("collected unreferenced blobs", deleted=deleted, kept_bytes=self.blobs.total_bytes)

    def _after_new_best(self, block: Block, invalid: list[bytes]) -> None:
        self._collect_blobs(block)
        if invalid:
            self.pool.remove_invalid(invalid)
        self.pool.on_block_imported(number=block.header.number, included=[x.hash for x in block.extrinsics])
        self.metrics.extrinsics_included.inc(len(block.extrinsics))
        self._update_gauges()

    def _after_reorg(self, previous_best: bytes, block: Block) -> None:
        retracted, enacted = self._tree_route(previous_best, block.hash)
        log.info("re-org", retracted=len(retracted), enacted=len(enacted), best=block.header.number)
        for enacted_block in enacted:
            self.pool.on_block_imported(number=enacted_block.header.number,
                                        included=[x.hash for x in enacted_block.extrinsics],
                                        retracted=[x for b in retracted for x in b.extrinsics if x.signed]
                                        if enacted_block is enacted[0] else ())
        self.metrics.extrinsics_included.inc(len(block.extrinsics))
        self._update_gauges()

    def _tree_route(self, old: bytes, new: bytes) -> tuple[list[Block], list[Block]]:
        """Blocks leaving the best chain (newest first) and joining it (oldest first)."""
        store = self.store
        old_header, new_header = store.header(old), store.header(new)
        retracted: list[Block] = []
        enacted: list[Block] = []
        while old_header.hash != new_header.hash:
            if old_header.number >= new_header.number:
                retracted.append(store.block(old_header.hash))
                old_header = store.header(old_header.parent_hash)
            else:
                enacted.append(store.block(new_header.hash))
                new_header = store.header(new_header.parent_hash)
        return retracted, list(reversed(enacted))

    def _index_block(self, block: Block, how: str) -> None:
        """Keep the node-side indexes (node/indexer.py) up to date; a failure there never fails a block."""
        try:
            self.indexer.record_block(block)
            self.indexer.follow_best()
        except Exception:
            log.exception("indexing failed", number=block.header.number)

    def _notify(self, block: Block, how: str) -> None:
        for listener in self.block_listeners:
            listener(block, how)

    def _update_gauges(self) -> None:
        self.metrics.best_height.set(self.store.best_header().number)
        self.metrics.finalized_height.set(self.store.finalized_header().number)
        self.metrics.pool_ready.set(self.pool.ready_count)
        self.metrics.pool_future.set(self.pool.future_count)
