#!/usr/bin/env python3
"""Benchmark: slots a validator misses while it verifies a heavy useful-work round (goal: none).

An author node (in this process, fake clock) runs one round of a task whose model
has about 1M parameters (an MLP 64 -> --hidden -> 10 on digits) with --updates
trainers, and reports it. A second node, wired as `gradchain --dev` wires it
(chain thread, useful-work thread, authorship on the real slot clock), imports
those blocks: the report block is committed `pending` and re-measured on the
useful-work thread while the node keeps authoring a block every slot on top of
it. Reported: the round's size, how long verification took, the slots that passed
meanwhile, the slots missed (goal 0), the slowest read through the chain thread,
and the verdict.

    python scripts/bench/useful_work_slots.py [--updates 32] [--hidden 13500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from consensus.useful_work import ModelSpec, build_model, encode_tensors, state_of  # noqa: E402
from consensus.useful_work.data import load_dataset, split_held_out  # noqa: E402
from consensus.useful_work.fixed_point import norm_to_fixed  # noqa: E402
from consensus.useful_work.models import parameter_count  # noqa: E402
from consensus.useful_work.secrecy import encrypt_held_out  # noqa: E402
from consensus.useful_work.verifier import ModelVersion  # noqa: E402
from node import logs  # noqa: E402
from node.authorship import AuthorshipService  # noqa: E402
from node.chain_service import ChainService  # noqa: E402
from node.chain_setup import ChainPaths, load_chain_spec  # noqa: E402
from node.clock import FakeClock, SystemClock  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.executive import sign_extrinsic  # noqa: E402
from runtime.hashing import blake2b_256  # noqa: E402
from runtime.pallets import balances, system, training  # noqa: E402
from runtime.pallets.training import ModelSpec as ChainModelSpec, SealedKey, TaskConfig  # noqa: E402
from runtime.state import Overlay  # noqa: E402
from scripts.bench.report import print_figures  # noqa: E402

ALICE = crypto.dev_keypair("Alice")


class Author:
    """The node that runs the round, driven by hand with a fake clock (its useful work in line)."""

    def __init__(self, base: Path, config) -> None:
        self.config = config
        self.clock = FakeClock()
        self.service = ChainService(config, ChainPaths(base, config.chain_id), clock=self.clock,
                                    finalize_own_blocks=True, validator_key=ALICE, inline_useful_work=True)
        self.service._open()
        self.blocks = []

    def step(self, transactions=()) -> None:
        store = self.service.store
        sent: dict[bytes, int] = {}
        for keypair, call in transactions:
            account = system.Account.get(Overlay(store.state_view(store.best_hash)), keypair.public)
            nonce = (0 if account is None else account.nonce) + sent.get(keypair.public, 0)
            sent[keypair.public] = sent.get(keypair.public, 0) + 1
            self.service._submit(sign_extrinsic(keypair, call, nonce=nonce, genesis_hash=store.genesis_hash))
        slot = self.clock.now_ms() // self.config.slot_duration_ms + 1
        self.clock.time_ms = slot * self.config.slot_duration_ms
        self.blocks.append(self.service._author(slot, ALICE, self.clock.now_ms() + 600_000).block)


def make_round(author: Author, updates: int, hidden: int) -> tuple[dict[bytes, bytes], int]:
    """Task, commits, reveals and the report block; the blobs a validator needs, and the model's size."""
    spec = ModelSpec("mlp", input_dim=64, hidden=hidden, classes=10)
    features, labels = load_dataset("digits")
    split = split_held_out(features, labels, fraction=0.2, seed=0)
    ciphertext, sealed = encrypt_held_out(split.held_out_features, split.held_out_labels, [ALICE.public])
    base = ModelVersion.from_weights(spec, state_of(build_model(spec, 0)))
    generator = torch.Generator().manual_seed(1)
    deltas = [encode_tensors({name: torch.randn(w.shape, generator=generator) * 1e-3
                              for name, w in base.weights.items()}) for _ in range(updates)]
    blobs = {blake2b_256(data): data for data in [ciphertext, base.to_blob(), *deltas]}
    for blob_hash, data in blobs.items():
        author.service.blobs.put(blob_hash, data, now_block=0)
    trainers = [crypto.keypair_from_uri(f"//Bench//{i}") for i in range(updates)]
    config = TaskConfig(ChainModelSpec("mlp", (64, hidden, 10)), base.model_hash, training.METRIC_LOSS,
                        blake2b_256(ciphertext), len(ciphertext), 200,
                        (SealedKey(ALICE.public, sealed[ALICE.public]),), 10**15, 1, 2, 2, 1, 0,
                        max(len(d) for d in deltas) + 1024, norm_to_fixed(1e6), 10**12, 0, 0)
    salt = b"\x05" * 32
    author.step([(ALICE, balances.transfer(t.public, 10**16)) for t in trainers])
    author.step([(ALICE, training.create_task(config))])  # round 0: commit until +2, reveal until +4
    author.step([(t, training.commit_update(0, 0, training.update_commitment(blake2b_256(d), t.public, salt)))
                 for t, d in zip(trainers, deltas)])
    author.step()
    print(f"measuring the round as its author ({updates} updates, "
          f"{parameter_count(spec):,} parameters)...", file=sys.stderr)
    author.step([(t, training.reveal_update(0, 0, blake2b_256(d), salt, 100, b"\x00" * 32))
                 for t, d in zip(trainers, deltas)])
    author.step()  # the report block
    if not any(x.call.name.endswith("report_useful_work") for x in author.blocks[-1].extrinsics):
        raise SystemExit("the author did not report the round")
    return blobs, parameter_count(spec)


async def verify_while_authoring(base: Path, config, blocks, blobs: dict[bytes, bytes]) -> dict:
    clock = SystemClock()
    node = ChainService(config, ChainPaths(base, config.chain_id), clock=clock, validator_key=ALICE)
    await node.start()
    try:
        for blob_hash, data in blobs.items():
            await node.call(lambda h=blob_hash, d=data: node.blobs.put(h, d, now_block=0))
        for block in blocks:
            (await node.import_block(block)).raise_for_error()
        started = time.perf_counter()
        report_hash = blocks[-1].hash
        authorship = AuthorshipService(node, ALICE, clock)
        authoring = asyncio.create_task(authorship.run())
        read_ms = []
        while (status := await node.call(node.store.verification_status, report_hash)).state == "pending":
            before = time.perf_counter()
            await node.call(node.store.best_header)
            read_ms.append((time.perf_counter() - before) * 1000)
            await asyncio.sleep(0.1)
        verify_s = time.perf_counter() - started
        authoring.cancel()
        try:
            await authoring
        except asyncio.CancelledError:
            pass
        return {"verify_s": round(verify_s, 1), "slots": round(verify_s * 1000 / config.slot_duration_ms),
                "authored": authorship.authored, "missed_slots": authorship.missed_slots,
                "read_ms_max": round(max(read_ms), 1) if read_ms else 0.0, "status": status.state}
    finally:
        await node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=13_500, help="hidden units (75 parameters each)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.updates < 1 or args.hidden < 1:
        parser.error("--updates and --hidden must be at least 1")
    logs.configure("warning")
    config = load_chain_spec(None, dev=True)
    with tempfile.TemporaryDirectory(prefix="gradchain-uw-slots-") as tmp:
        author = Author(Path(tmp) / "author", config)
        try:
            blobs, parameters = make_round(author, args.updates, args.hidden)
            blocks = list(author.blocks)
        finally:
            author.service._close()
        print("verifying on a node that keeps authoring...", file=sys.stderr)
        figures = asyncio.run(verify_while_authoring(Path(tmp) / "validator", config, blocks, blobs))
    figures = {"updates": args.updates, "parameters": parameters, **figures,
               "goal_met": figures["missed_slots"] == 0 and figures["status"] == "verified"}
    print_figures("useful_work_slots", figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
