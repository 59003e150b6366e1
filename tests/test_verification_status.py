"""Useful-work verification status through the node: unverifiable until the data arrives (or disputed at the
deadline), a verdict that survives kill -9, import-blocks stopping at a falsified report, and authorship that
never waits for torch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.useful_work.rounds import RoundWork, reports_in
from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths
from node.clock import FakeClock
from runtime import codec
from runtime.types import encode_block
from tests.helpers.processes import LineReader
from tests.helpers.chain_nodes import ALICE, Node
from tests.helpers.forgeries import inflate_first_score
from tests.helpers.useful_work_chain import run_round

ROOT = Path(__file__).resolve().parent.parent
GRADCHAIN = [sys.executable, "-m", "node.cli"]


def copy_blobs(source: Node, target: Node, hashes) -> None:
    for blob_hash in hashes:
        target.service.blobs.put(blob_hash, source.service.blobs.get(blob_hash), now_block=0)


def round_blobs(node: Node, report_block) -> list[bytes]:
    from runtime.pallets import training
    from runtime.state import Overlay
    parent = node.store.header(report_block.header.parent_hash)
    task = training.Tasks.get(Overlay(node.store.state_view(parent.hash)), 0)
    (report,) = reports_in(report_block)
    return [bytes(task.config.held_out), bytes(task.model)] + [bytes(s.update) for s in report.scores]


def test_a_report_calling_a_missing_update_sound_is_unverifiable_then_disputed_at_the_deadline(nodes, tmp_path):
    author, follower = nodes
    report_block, blocks, updates = run_round(author, follower)
    lacking = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        blobs = round_blobs(follower, report_block)
        copy_blobs(follower, lacking, [b for b in blobs if b != updates[0]])  # all but one update
        for block in blocks:
            assert lacking.service.import_block_now(block).outcome == "imported"
        status = lacking.store.verification_status(report_block.hash)
        assert status.state == "unverifiable" and status.missing == (updates[0],)
        assert status.since == report_block.header.number
        assert lacking.store.best_hash == blocks[-2].hash  # never best: cannot-check is not checked
        deadline = lacking.config.useful_work_availability_blocks
        for _ in range(deadline):  # the author's chain goes on; the lacking node builds its own view
            block = author.author()
            lacking.service.import_block_now(block)
        status = lacking.store.verification_status(report_block.hash)
        assert status.state == "disputed" and status.reasons[0].startswith("data unavailable")
        assert lacking.store.header(lacking.store.best_hash).number < report_block.header.number
        assert lacking.service.metrics.verification.labels(status="disputed")._value.get() == 1
    finally:
        lacking.close()


def test_a_blob_arriving_re_checks_the_block_and_it_becomes_verified_and_best(nodes, tmp_path):
    author, follower = nodes
    report_block, blocks, updates = run_round(author, follower)
    lacking = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        copy_blobs(follower, lacking, [b for b in round_blobs(follower, report_block) if b != updates[0]])
        for block in blocks:
            lacking.service.import_block_now(block)
        assert lacking.store.verification_status(report_block.hash).state == "unverifiable"
        heard = []
        lacking.service.status_listeners.append(lambda block_hash, status: heard.append(status.state))
        copy_blobs(follower, lacking, [updates[0]])
        assert lacking.service.blob_arrived_now(updates[0]) == [report_block.hash]
        assert lacking.store.verification_status(report_block.hash).state == "verified"
        assert heard == ["pending", "verified"]
        assert lacking.store.best_hash == report_block.hash
    finally:
        lacking.close()


def test_a_blob_arriving_while_the_check_runs_is_not_lost(nodes, tmp_path):
    """The blob arrives after the check found it missing but before its verdict is written (the network fetched
    it meanwhile): blob_arrived finds no unverifiable block to wake, so the verdict must look again itself. Seen
    in the 2|2 partition scenario: a block stayed unverifiable for good and finality stalled below it."""
    author, follower = nodes
    report_block, blocks, updates = run_round(author, follower)
    lacking = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        copy_blobs(follower, lacking, [b for b in round_blobs(follower, report_block) if b != updates[0]])
        work = lacking.service.verification.work
        check, woken = work.check_gathered, []

        def check_then_the_blob_arrives(gathered):
            verdict = check(gathered)
            if verdict.missing and not woken:
                copy_blobs(follower, lacking, [updates[0]])
                woken.append(lacking.service.blob_arrived_now(updates[0]))
            return verdict
        work.check_gathered = check_then_the_blob_arrives
        for block in blocks:
            lacking.service.import_block_now(block)
        assert woken == [[]]  # nothing was unverifiable yet: the block was still being checked
        assert lacking.store.verification_status(report_block.hash).state == "verified"
        assert lacking.store.best_hash == report_block.hash
    finally:
        lacking.close()


@pytest.mark.slow
def test_kill_9_between_commit_and_verdict_then_the_restart_verifies_the_block(nodes, tmp_path):
    author, follower = nodes
    report_block, blocks, _ = run_round(author, follower)
    target = Node(tmp_path / "c", author.clock, finalize=False)
    copy_blobs(follower, target, round_blobs(follower, report_block))
    target.close()
    blocks_file = tmp_path / "blocks.msgpack"
    blocks_file.write_bytes(codec.pack([encode_block(b) for b in blocks]))
    child = subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "crash_verifier.py"),
                              str(tmp_path / "c"), str(blocks_file)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        output, line = LineReader(child.stdout), ""
        deadline = time.monotonic() + 120
        while line is not None and not line.startswith("committed"):
            line = output.readline(deadline - time.monotonic())  # TimeoutError past the deadline
        assert line is not None and line.split() == ["committed", report_block.hash.hex(), "pending"], output.tail()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
    restarted = Node(tmp_path / "c", author.clock, finalize=False)  # re-queues the pending block at open
    try:
        assert restarted.store.verification_status(report_block.hash).state == "verified"
        assert restarted.store.best_hash == report_block.hash
    finally:
        restarted.close()


@pytest.mark.slow
def test_import_blocks_stops_at_a_falsified_report_with_exit_2_naming_it(nodes, tmp_path):
    author, follower = nodes
    report_block, blocks, _ = run_round(author, follower, tamper=inflate_first_score)
    target = Node(tmp_path / "c", author.clock, finalize=False)
    copy_blobs(follower, target, round_blobs(follower, report_block))
    target.close()
    blocks_file = tmp_path / "blocks.bin"
    from node.commands import BLOCK_FILE_MAGIC
    with open(blocks_file, "wb") as out:
        out.write(BLOCK_FILE_MAGIC)
        for block in blocks + [author.author()]:
            encoded = encode_block(block)
            out.write(len(encoded).to_bytes(4, "big") + encoded)
    result = subprocess.run([*GRADCHAIN, "import-blocks", "--dev", "--base-path", str(tmp_path / "c"),
                             str(blocks_file)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"block #{report_block.header.number} 0x{report_block.hash.hex()} is disputed" in result.stderr
    reopened = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        assert reopened.store.finalized_header().number == report_block.header.number - 1
        assert reopened.store.header(report_block.hash) is not None  # imported, disputed, never final
    finally:
        reopened.close()


class SlowWork(RoundWork):
    """A verifier that takes seconds per round (torch on a big model, say), on its worker thread."""

    def check_gathered(self, gathered):
        time.sleep(3.0)
        return super().check_gathered(gathered)

    def measure(self, inputs):
        time.sleep(3.0)
        return super().measure(inputs)


@pytest.mark.slow
def test_a_slow_verifier_never_costs_a_slot_and_reads_keep_answering(nodes, tmp_path):
    author, follower = nodes
    report_block, blocks, _ = run_round(author, follower)  # real blocks with a real report
    config = follower.config
    clock = FakeClock(start_ms=author.clock.now_ms())
    service = ChainService(config, ChainPaths(tmp_path / "slow", config.chain_id), clock=clock,
                           validator_key=ALICE, work=SlowWork(None, ALICE))
    read_ms: list[float] = []

    async def scenario():
        await service.start()
        try:
            copy_blobs(follower, type("N", (), {"service": service})(), round_blobs(follower, report_block))
            started = time.monotonic()
            for block in blocks:
                assert (await service.import_block(block)).outcome == "imported"
            assert service.store.verification_status(report_block.hash).state == "pending"
            # authorship goes on at once on the pending block while its check sleeps on the worker
            clock.time_ms = (report_block.header.digest.slot + 1) * config.slot_duration_ms
            authorship = AuthorshipService(service, ALICE, clock, max_blocks=5)
            for _ in range(20):
                before = time.perf_counter()
                await service.call(lambda: service.store.best_header())
                read_ms.append((time.perf_counter() - before) * 1000)
            await authorship.run()
            assert authorship.authored == 5 and authorship.missed_slots == 0
            assert time.monotonic() - started < 3.0, "authorship waited for the verifier"
            while service.store.verification_status(report_block.hash).state == "pending":
                assert time.monotonic() - started < 60
                await asyncio.sleep(0.05)
        finally:
            await service.stop()

    asyncio.run(scenario())
    assert max(read_ms) < 500


def test_chain_get_block_verification_over_rpc(tmp_path):
    from tests.helpers.dev_node import RunningNode
    node = RunningNode(tmp_path / "rpc")
    try:
        node.wait_for_block(1)
        best = node.client.call("chain_getBlockHash", 1)
        status = node.client.call("chain_getBlockVerification", best)
        assert status == {"hash": best, "status": "verified", "reasons": [], "missing": [], "since": None,
                          "unchecked": []}
        assert node.client.call("chain_getBlockVerification", "0x" + "00" * 32) is None
        assert node.client.call("chain_getBlockVerification")["status"] == "verified"  # the best block
        text = node.chain.metrics.render().decode()
        assert 'gradchain_block_verification_total{status="verified"}' in text
    finally:
        node.close()


def test_when_the_best_turns_disputed_the_node_reorgs_and_its_transactions_return_to_the_pool(nodes):
    from runtime.pallets import balances
    from storage.block_status import VerificationStatus
    from tests.helpers.useful_work_chain import TRAINERS
    _, author = nodes  # the one that does not finalize its own blocks
    author.author()
    author.send(ALICE, balances.transfer(TRAINERS[0].public, 10**12))
    block = author.author()
    transfer = block.extrinsics[-1]
    assert author.service.pool.get(transfer.hash) is None  # included: out of the pool
    moved = author.service.importer.set_status(block.hash, VerificationStatus("disputed", ("test: disputed",)))
    assert moved.retracted[0].hash == block.hash and author.store.best_hash == block.header.parent_hash
    assert author.service.pool.get(transfer.hash) is not None  # back in the pool, for the next block
    again = author.author()
    assert again.header.parent_hash == block.header.parent_hash and transfer in again.extrinsics


def test_an_author_measures_off_the_slot_and_reports_in_the_first_block_after_the_result_is_ready(nodes, tmp_path):
    author, follower = nodes
    _, blocks, _ = run_round(author, follower)
    config = follower.config
    clock = FakeClock(start_ms=author.clock.now_ms())
    service = ChainService(config, ChainPaths(tmp_path / "threaded", config.chain_id), clock=clock,
                           validator_key=ALICE, work=SlowWork(None, ALICE))

    async def scenario():
        await service.start()
        try:
            copy_blobs(follower, type("N", (), {"service": service})(), round_blobs(follower, blocks[-1]))
            for block in blocks[:-1]:  # up to the reveals: the round is due from the next block on
                assert (await service.import_block(block)).outcome == "imported"
            slot = blocks[-2].header.digest.slot + 1
            started = time.monotonic()
            early = await service.author(slot, ALICE, deadline_ms=clock.now_ms() + 60_000)
            assert time.monotonic() - started < 2.0, "the slot waited for the measurement"
            assert reports_in(early.block) == []  # still being measured on the useful-work thread
            while not service.measurements.ready_reports:
                assert time.monotonic() - started < 60
                await asyncio.sleep(0.05)
            later = await service.author(slot + 1, ALICE, deadline_ms=clock.now_ms() + 60_000)
            assert later.block.header.parent_hash == early.block.hash
            (report,) = reports_in(later.block)
            assert report.task == 0 and report.round == 0
            assert service.store.verification_status(later.block.hash).state == "verified"  # its own measurement
        finally:
            await service.stop()

    asyncio.run(scenario())
