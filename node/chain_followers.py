"""What follows a block on the chain thread, a part of ChainService (node/chain_service.py): the pool
follows the head (and a re-org hands transactions back), verification verdicts are logged and counted,
blobs no task names are collected, the node's indexes and round measurements follow the best block,
listeners hear of new blocks, and the gauges are set. Over ChainService's own attributes."""

from __future__ import annotations

import structlog

from consensus.fork_choice import Route
from runtime import api as runtime_api
from runtime.state import Overlay
from runtime.types import Block
from storage.block_status import VerificationStatus

log = structlog.get_logger("chain")
BLOB_GC_INTERVAL = 50  # blocks
FULL_REVALIDATION_INTERVAL = 10  # blocks between validations of the whole pool against the best state


class ChainFollowers:
    """ChainService's reactions to the import pipeline's reports (head moved, verdicts) and to new blocks."""

    def _on_head_moved(self, moved: Route) -> None:
        """Fork choice moved the head (a new block, a re-org, a verdict): the pool follows."""
        def block_of(header) -> Block:  # the block just imported is in hand: no need to decode it again
            fresh = self._fresh
            if fresh is not None and fresh.hash == header.hash:
                return fresh
            in_run = None if self._run is None else self._run.blocks.get(header.hash)
            return in_run if in_run is not None else self.store.block(header.hash)
        if not moved.is_reorg:
            for header in moved.enacted:
                included = [x.hash for x in block_of(header).extrinsics if x.signed]  # inherents never pooled
                # validating the whole pool again costs O(pool) per block: pruning by tags does between
                # full passes (node/txpool.py); a re-org below always validates everything again
                self.pool.on_block_imported(number=header.number, included=included,
                                            revalidate=header.number % FULL_REVALIDATION_INTERVAL == 0)
        else:
            # oldest block first: the pool keeps the order it is given (node/txpool.py)
            retracted = [x for h in reversed(moved.retracted) for x in block_of(h).extrinsics if x.signed]
            log.info("re-org", retracted=len(moved.retracted), enacted=len(moved.enacted), best=moved.new_best.number)
            for index, header in enumerate(moved.enacted):
                block = block_of(header)
                self.pool.on_block_imported(number=header.number, included=[x.hash for x in block.extrinsics],
                                            retracted=retracted if index == 0 else ())
            if not moved.enacted:  # back to an ancestor: only the retracted transactions return
                self.pool.on_block_imported(number=moved.new_best.number, included=[], retracted=retracted)
            back = [x for x in retracted if x.hash in self.pool]
            for listener in self.retracted_listeners if back else ():
                listener(back)
            try:  # a verdict can move the head with no new block: the indexes follow it here
                self.indexer.follow_best()
            except Exception:
                log.exception("indexing failed after a re-org", best=moved.new_best.number)
        if self._run is None:  # a run of blocks does both once, at its end
            self._collect_blobs(moved.new_best)
            self._refresh_measurements()

    def _on_status(self, block_hash: bytes, status: VerificationStatus) -> None:
        self.metrics.verification.labels(status=status.state).inc()
        if status.state == "disputed":
            self.metrics.disputed_blocks.inc()
            log.error("useful-work report does not reproduce: block disputed, never best, never final",
                      hash=block_hash.hex()[:16], reasons=list(status.reasons))
        elif status.state == "unverifiable":
            log.warning("useful work cannot be checked here: data missing", hash=block_hash.hex()[:16],
                        missing=["0x" + m.hex()[:16] for m in status.missing], since=status.since)
        for listener in self.status_listeners:
            listener(block_hash, status)
        self._update_gauges()

    def _refresh_measurements(self) -> None:
        if self.measurements is None or self.work.keypair is None:
            return
        best = self.store.best_header()
        try:
            self.measurements.refresh(Overlay(self.store.state_view(best.hash)), best)
        except Exception:  # a bug in gathering must not stop the node
            log.exception("gathering due rounds failed", best=best.number)

    def _collect_blobs(self, header, *, now: bool = False) -> None:
        """Every GC_INTERVAL blocks (or `now`: at the end of a run of blocks), drop blobs no task refers to
        once they are past the grace period."""
        number = header.number
        if number % BLOB_GC_INTERVAL and not now:
            return
        self.indexer.follow_best()  # pins the blobs of tasks that ended up to here
        referenced = runtime_api.active_task_blobs(self.store.state_view(header.hash)) | self.indexer.pinned_blobs()
        deleted = self.blobs.collect_garbage(referenced, now_block=number, grace_blocks=self.blob_grace_blocks)
        if deleted:
            log.info("collected unreferenced blobs", deleted=deleted, kept_bytes=self.blobs.total_bytes)

    def _index_block(self, block: Block, how: str) -> None:
        """Keep the node-side indexes (node/indexer.py) up to date; a failure there never fails a block.

        The account history is recorded per block (it reads the block's events, whose state may be
        pruned later); the state indexes follow the best state once per run of blocks (_end_run):
        one diff across the run costs far less than one per block."""
        try:
            self.indexer.record_block(block)
            if self._run is None:
                self.indexer.follow_best()
        except Exception:
            log.exception("indexing failed", number=block.header.number)

    def _notify(self, block: Block, how: str) -> None:
        for listener in self.block_listeners:
            listener(block, how)

    def _update_gauges(self) -> None:
        if self._run is not None:
            return  # once at the run's end
        self.metrics.best_height.set(self.store.best_header().number)
        self.metrics.finalized_height.set(self.store.finalized_header().number)
        self.metrics.pool_ready.set(self.pool.ready_count)
        self.metrics.pool_future.set(self.pool.future_count)
