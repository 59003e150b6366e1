#!/usr/bin/env python3
"""Benchmark: a dev node with a 1 s slot, fed signed transfers as fast as its pool takes them.

The node runs in this process exactly as `gradchain --dev` wires it (chain
service on its own thread, authorship on the slot clock, real LevelDB under a
temporary base path). A feeder submits pre-signed transfers from many accounts
in batches, keeping the pool topped up, for `--seconds`. It prints transfers
included per second (sustained over the whole run), the pool's admission rate,
block build-and-commit ms p50/p99, missed slots and peak RSS.

    python scripts/bench/node_throughput.py [--seconds 60] [--accounts 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from hashlib import blake2b
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from node.authorship import AuthorshipService  # noqa: E402
from node.chain_service import ChainService  # noqa: E402
from node.chain_setup import ChainPaths, dev_spec, load_chain_spec  # noqa: E402
from node.clock import SystemClock  # noqa: E402
from node import logs  # noqa: E402
from node.service import ServiceTree  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.executive import sign_extrinsic  # noqa: E402
from runtime.genesis import build_genesis_state, parse_genesis  # noqa: E402
from storage.chainstore import ChainStore  # noqa: E402
from scripts.bench.report import print_figures  # noqa: E402
from runtime.pallets import balances  # noqa: E402

POOL_HIGH_WATER = 6000
BATCH = 250


def bench_chain(accounts: list[crypto.Keypair]):
    spec = dev_spec(load_chain_spec(None, dev=False).spec)
    spec["endowed"] = spec["endowed"] + [{"account": "0x" + k.public.hex(), "balance": 10**16} for k in accounts]
    return parse_genesis(spec, "bench chain")


def genesis_hash_of(config, base: Path) -> bytes:
    store = ChainStore.open(base / "genesis-only")
    try:
        return store.initialize(build_genesis_state(config))
    finally:
        store.close()


def sign_transfers(keys: list[crypto.Keypair], count: int, genesis_hash: bytes) -> list:
    """Signed before the node starts, so signing never competes with the node for the CPU."""
    transactions = []
    for n in range(count // len(keys) + 1):
        for i, key in enumerate(keys):
            transaction = sign_extrinsic(key, balances.transfer(keys[(i + 1) % len(keys)].public, 10**10 + n),
                                         nonce=n, genesis_hash=genesis_hash)
            transaction.encoded  # encode once, as the network would deliver bytes
            transactions.append(transaction)
    return transactions[:count]


async def run(seconds: float, account_count: int, rate_guess: int, base: Path) -> dict:
    keys = [crypto.Keypair.from_seed(blake2b(b"node-bench%d" % i, digest_size=32).digest())
            for i in range(account_count)]
    config = bench_chain(keys)
    print(f"signing {int(seconds * rate_guess)} transfers...", file=sys.stderr)
    transactions = sign_transfers(keys, int(seconds * rate_guess), genesis_hash_of(config, base))
    clock = SystemClock()
    chain = ChainService(config, ChainPaths(base, config.chain_id), clock=clock, finalize_own_blocks=True)
    authorship = AuthorshipService(chain, crypto.dev_keypair("Alice"), clock)
    included = [0]

    def on_block(block, how):
        included[0] += sum(1 for extrinsic in block.extrinsics if extrinsic.signed is not None)  # inherents aside
    chain.block_listeners.append(on_block)

    stop = asyncio.Event()
    tree = asyncio.create_task(ServiceTree([chain, authorship]).run(stop))
    while chain.pool is None:
        await asyncio.sleep(0.01)
    submitted = accepted = 0
    submit_seconds = 0.0
    included[0] = 0
    start_authored = authorship.authored
    start_missed = authorship.missed_slots
    started = time.perf_counter()
    while time.perf_counter() - started < seconds and submitted < len(transactions):
        if chain.pool.ready_count + chain.pool.future_count >= POOL_HIGH_WATER:
            await asyncio.sleep(0.02)
            continue
        batch = transactions[submitted:submitted + BATCH]
        t0 = time.perf_counter()
        results = await chain.submit_many(batch)
        submit_seconds += time.perf_counter() - t0
        accepted += sum(1 for r in results if isinstance(r, tuple))
        submitted += len(batch)
    if submitted >= len(transactions):
        print("warning: ran out of signed transfers before the time was up; raise --rate-guess", file=sys.stderr)
    elapsed = time.perf_counter() - started
    total_included = included[0]
    blocks = authorship.authored - start_authored
    stop.set()
    await tree
    return {
        "seconds": round(elapsed, 1),
        "blocks": blocks,
        "included_per_s": round(total_included / elapsed),
        "submitted": submitted,
        "admission_per_s": round(accepted / submit_seconds) if submit_seconds else 0,
        "block_ms_p50": round(statistics.median(chain.block_ms), 1) if chain.block_ms else None,
        "block_ms_p99": round(_percentile(chain.block_ms, 99), 1) if chain.block_ms else None,
        "missed_slots": authorship.missed_slots - start_missed,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "goal_met": total_included / elapsed >= 1000 and authorship.missed_slots == start_missed,
    }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--rate-guess", type=int, default=8000, help="transfers signed per second of the run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.seconds <= 0 or args.accounts < 2:
        parser.error("--seconds must be positive and --accounts at least 2")
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="gradchain-node-bench-") as tmp:
        figures = asyncio.run(run(args.seconds, args.accounts, args.rate_guess, Path(tmp)))
    print_figures("node_throughput", figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
