"""Stage 7 of import: the useful-work verification of committed blocks, off the chain thread.

A block without useful-work reports is `verified` when imported; so is this node's
own block (it measured the reports itself). Any other block with reports is
committed `pending`; then, on the chain thread, everything the check needs is
gathered (parent state, blobs, the opened held-out set) and the measurement (torch)
runs on a worker (`runner`), one round at a time, each round before its deadline.
The verdict comes back to the chain thread (`deliver`) and is written, with the
head it moves, by ImportQueue.set_status:

    a mismatch                                     -> disputed (the reasons)
    a blob it needs is absent here                 -> unverifiable (the blobs, since the highest block seen)
    not checked before the deadline / a checker bug -> stays pending (checked again at restart)
    otherwise                                      -> verified (rounds it has no key for are listed)

An unverifiable block is checked again when its missing blobs arrive (`blob_arrived`,
which networking calls), and becomes disputed ("data unavailable") once the chain
(the highest block seen, which goes on even where this node's best cannot) is
`deadline_blocks` past `since` (`expire`, after every new block).

`RoundMeasurements` is the author's side: once a round's reveal window has closed it
measures the round on the same worker, and authorship takes the finished reports
(`ready`) into its next block; no slot waits for torch.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Callable

import structlog

from runtime import api as runtime_api
from runtime.pallets import training
from runtime.state import Overlay
from runtime.types import Block, Header
from storage.block_status import (
    DATA_UNAVAILABLE, DISPUTED, PENDING, STATUS_PENDING, STATUS_VERIFIED, UNVERIFIABLE, VERIFIED, VerificationStatus,
)
from storage.chainstore import ChainStore

if TYPE_CHECKING:
    from consensus.import_queue import ImportQueue
    from consensus.useful_work.rounds import RoundWork

log = structlog.get_logger("verification")

# A round whose measurement has not started this long after its inputs were gathered (the worker is
# backed up) is left: its block stays pending and is checked again at restart.
ROUND_DEADLINE_S = 600.0
Deliver = Callable[[Callable[[], None]], None]  # runs a function on the chain thread


class InlineRunner:
    """Runs a job at once on the calling thread (tools that wait for each verdict, hand-driven tests)."""

    def submit(self, function: Callable, *args):
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:  # delivered to the verdict, which logs it and leaves the block pending
            future.set_exception(exc)
        return future


def run_now(function: Callable[[], None]) -> None:
    """`deliver` for an inline runner: the result is already on the right thread."""
    function()


def has_reports(block: Block) -> bool:
    """Does the block carry a report_useful_work inherent?"""
    return any(x.signed is None and x.call.pallet_index == training.pallet.index
               and x.call.call_index == training.report_useful_work.index for x in block.extrinsics)


class NoUsefulWorkCheck:
    """For tools that do not check useful work: a block with reports stays `pending` (never final)."""

    def status_at_import(self, block: Block, *, own: bool) -> VerificationStatus:
        return STATUS_VERIFIED if own or not has_reports(block) else STATUS_PENDING

    def start(self, block: Block) -> None:
        pass


class UsefulWorkCheck:
    """Stage 7 for a node that checks useful work (see the module's docstring)."""

    def __init__(self, store: ChainStore, work: "RoundWork", *, runner: Executor, deliver: Deliver,
                 deadline_blocks: int, round_deadline_s: float = ROUND_DEADLINE_S) -> None:
        self.store = store
        self.work = work
        self.runner = runner
        self.deliver = deliver
        self.deadline_blocks = deadline_blocks
        self.round_deadline_s = round_deadline_s
        self.queue: "ImportQueue | None" = None  # set by attach: verdicts are written through it
        self.in_flight: set[bytes] = set()
        self._unverifiable: dict[bytes, VerificationStatus] = {}
        self.highest = 0  # the highest block number seen: the clock of the availability deadline

    def attach(self, queue: "ImportQueue") -> None:
        self.queue = queue
        queue.useful_work = self

    # --- import ---------------------------------------------------------------

    def status_at_import(self, block: Block, *, own: bool) -> VerificationStatus:
        return STATUS_VERIFIED if own or not has_reports(block) else STATUS_PENDING

    def start(self, block: Block) -> None:
        """Gather the block's checks here (the chain thread) and measure them on the runner."""
        if block.hash in self.in_flight:
            return
        parent = self.store.header(block.header.parent_hash)
        try:
            gathered = self.work.gather_block(Overlay(self.store.state_view(parent.hash)), block)
        except Exception:  # a bug in gathering must not fail the import that already committed
            log.exception("useful work could not be gathered; the block stays pending", number=block.header.number)
            return
        self.in_flight.add(block.hash)
        deadline = time.monotonic() + self.round_deadline_s
        block_hash, number = block.hash, block.header.number
        future = self.runner.submit(self._measure, gathered, deadline)
        future.add_done_callback(lambda done: self.deliver(lambda: self._finish(block_hash, number, done)))

    def _measure(self, gathered: list, deadline: float):
        """On the runner: one round at a time, each started only before its deadline."""
        self.work.deferred = models = []
        verdicts, late = [], []
        try:
            for round_check in gathered:
                if time.monotonic() > deadline:
                    late.append(round_check.name)
                    continue
                verdicts.append(self.work.check_gathered([round_check]))
        finally:
            self.work.deferred = None
        return verdicts, late, models

    def _finish(self, block_hash: bytes, number: int, done) -> None:
        """On the chain thread: store what was computed and write the verdict."""
        self.in_flight.discard(block_hash)
        try:
            verdicts, late, models = done.result()
        except Exception:
            log.exception("checking useful work failed; the block stays pending", number=number)
            return
        self.work.store_deferred(models, now_block=self.store.best_header().number)
        status = self._status_of(verdicts, late)
        if status.state == UNVERIFIABLE and self._all_stored(status.missing):
            # Every blob it lacked arrived while the check ran: `blob_arrived` found no unverifiable block to
            # wake then (this one was in flight), and nothing would wake it later. Check it again now.
            block = self.store.block(block_hash)
            if block is not None:
                self.start(block)
                return
        if status.state == PENDING:
            log.warning("useful work not checked before the deadline; the block stays pending", number=number,
                        rounds=late)
            return
        if self.store.header(block_hash) is None:
            return
        self.set_status(block_hash, status)

    def _status_of(self, verdicts: list, late: list[str]) -> VerificationStatus:
        reasons = [r for v in verdicts for r in v.reasons]
        skipped = tuple(s for v in verdicts for s in v.skipped)
        missing = tuple(dict.fromkeys(m for v in verdicts for m in v.missing))
        if reasons:
            return VerificationStatus(DISPUTED, tuple(reasons), missing, None, skipped)
        if missing:  # the deadline runs from the highest block seen, as in `expire`
            since = max(self.highest, self.store.best_header().number)
            return VerificationStatus(UNVERIFIABLE, (), missing, since, skipped)
        if late:
            return VerificationStatus(PENDING, (), (), None, tuple(f"{name}: past its deadline" for name in late))
        return VerificationStatus(VERIFIED, (), (), None, skipped)

    def set_status(self, block_hash: bytes, status: VerificationStatus) -> None:
        if status.state == UNVERIFIABLE:
            self._unverifiable[block_hash] = status
        else:
            self._unverifiable.pop(block_hash, None)
        self.queue.set_status(block_hash, status)

    # --- restart, blobs and the deadline ------------------------------------------

    def resume(self) -> int:
        """After a restart: check every pending block again; remember the unverifiable ones."""
        self.highest = max(self.highest, self.store.best_header().number)
        resumed = 0
        for block_hash in self.store.waiting_blocks():
            status = self.store.verification_status(block_hash)
            block = self.store.block(block_hash)
            if status is None or block is None:
                continue
            if status.state == UNVERIFIABLE:
                self._unverifiable[block_hash] = status
            elif status.state == PENDING:
                self.start(block)
                resumed += 1
        return resumed

    def _all_stored(self, blob_hashes) -> bool:
        """Whether every blob is here, from its small info record (written in the same batch as the blob):
        blobs are up to 16 MiB and are not read just to learn that they exist."""
        return all(self.work.blobs.info(m) is not None for m in blob_hashes)

    def blob_arrived(self, blob_hash: bytes) -> list[bytes]:
        """A blob arrived (networking, an upload): re-check the unverifiable blocks that waited only for it.
        Returns the blocks whose check started again."""
        restarted = []
        for block_hash, status in list(self._unverifiable.items()):
            if blob_hash not in status.missing:
                continue
            if not self._all_stored(status.missing):
                continue  # still waiting for another one
            block = self.store.block(block_hash)
            if block is None:
                continue
            self.set_status(block_hash, STATUS_PENDING)
            self.start(block)
            restarted.append(block_hash)
        return restarted

    def expire(self, number: int) -> list[bytes]:
        """Unverifiable blocks past the deadline become disputed: their data stayed unavailable.

        `number`: the highest block this node has seen (the chain goes on beyond an excluded block
        even when this node's best cannot)."""
        self.highest = highest = max(self.highest, number)
        expired = []
        for block_hash, status in list(self._unverifiable.items()):
            if highest < status.since + self.deadline_blocks:
                continue
            reasons = (f"{DATA_UNAVAILABLE}: " + ", ".join("0x" + m.hex() for m in status.missing)
                       + f" still missing {highest - status.since} blocks after block #{status.since}",)
            self.set_status(block_hash, VerificationStatus(DISPUTED, reasons, status.missing, status.since,
                                                           status.unchecked))
            expired.append(block_hash)
        return expired


class RoundMeasurements:
    """The author's measurements: started once a round's reveal window closes, taken when ready."""

    def __init__(self, work: "RoundWork", *, runner: Executor, deliver: Deliver,
                 round_deadline_s: float = ROUND_DEADLINE_S) -> None:
        self.work = work
        self.runner = runner
        self.deliver = deliver
        self.round_deadline_s = round_deadline_s
        self.in_flight: set[tuple[int, int]] = set()
        self.due: set[tuple[int, int]] = set()  # rounds due after the best block (read by the worker)
        self.ready_reports: dict[tuple[int, int], training.RoundReport] = {}

    def refresh(self, best_state, best: Header) -> int:
        """On the chain thread, after each new best block: start measuring every newly due round."""
        if self.work.keypair is None:
            return 0
        self.due = {(task_id, task.round) for task_id, task in runtime_api.rounds_due(best_state, best.number + 1)}
        skip = self.in_flight | set(self.ready_reports)
        started = 0
        for inputs in self.work.due_inputs(best_state, best, skip=skip):
            key = (inputs.task_id, inputs.task.round)
            self.in_flight.add(key)
            future = self.runner.submit(self._measure, key, inputs, time.monotonic() + self.round_deadline_s)
            future.add_done_callback(lambda done, key=key: self.deliver(lambda: self._finish(key, done)))
            started += 1
        return started

    def _measure(self, key: tuple[int, int], inputs, deadline: float):
        if time.monotonic() > deadline or key not in self.due:  # late, or another author reported it meanwhile
            return None, []
        self.work.deferred = models = []
        try:
            return self.work.measure(inputs), models
        finally:
            self.work.deferred = None

    def _finish(self, key: tuple[int, int], done) -> None:
        self.in_flight.discard(key)
        try:
            report, models = done.result()
        except Exception:
            log.exception("measuring a round failed", task=key[0], round=key[1])
            return
        if report is None:
            if key in self.due:
                log.warning("round not measured before its deadline", task=key[0], round=key[1])
            return
        self.work.store_deferred(models, now_block=self.work._block_number)
        self.ready_reports[key] = report

    def discard(self, reports) -> None:
        """Drop reports the runtime refused: their rounds are measured again at the next new best block."""
        for report in reports:
            for key in [k for k, r in self.ready_reports.items() if r is report]:
                del self.ready_reports[key]

    def ready(self, parent_state, parent: Header) -> tuple[training.RoundReport, ...]:
        """The finished reports of rounds still due in the block after `parent`."""
        due = {(task_id, task.round) for task_id, task in runtime_api.rounds_due(parent_state, parent.number + 1)}
        for key in [k for k in self.ready_reports if k not in due and k[1] < self._current_round(parent_state, k[0])]:
            del self.ready_reports[key]  # reported by someone (or cancelled): no longer ours to report
        return tuple(report for key, report in sorted(self.ready_reports.items()) if key in due)

    @staticmethod
    def _current_round(state, task_id: int) -> int:
        task = runtime_api.task(state, task_id)
        return 1 << 62 if task is None or task.status != training.STATUS_ACTIVE else task.round
