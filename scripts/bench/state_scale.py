#!/usr/bin/env python3
"""Benchmark: how block import and RPC reads scale with the number of accounts in state.

For each size N (`--sizes`, default 10,000, 100,000 and 1,000,000 accounts) a genesis
state holds N endowed accounts; an author database builds `--blocks` blocks of
`--per-block` signed transfers, each from an account of its own to a random existing
account, and a fresh copy of the genesis database imports them through the full
pipeline (seal, signatures, execution, state root, atomic commit). The importer opens
its database as a restarted node does (its head cache filled from the flat table of the
best state, up to its cap of 1.5 million entries: storage/flat_state.py), imports
`--warmup-blocks` blocks untimed (a running node's caches are warm), and then the timed
blocks.

At the largest size the database is then served by a real node (chain service and the
aiohttp JSON-RPC server on 127.0.0.1, no authorship) after `--tasks` tasks were created
on chain by real create_task extrinsics, and the latencies of `chain_getHeader`,
`state_getStorage` (random accounts), `explorer_account`, `explorer_accountHistory` (an
account that sent transfers), `training_tasks`, `training_leaderboard` and
`training_taskLeaderboard` are measured over `--samples` calls each. (A chain of 100,000
blocks is out of reach of a bench that must finish: the history is read over the blocks
the run imported; `blocks` says how many.)

    python scripts/bench/state_scale.py [--sizes 10000,100000,1000000] [--blocks 10] [--per-block 2000]
                                        [--warmup-blocks 2] [--warmup-reads 200000] [--repeats 3]
                                        [--tasks 10000] [--samples 200] [--json]

Every size is prepared first; then each is imported `--repeats` times, the sizes taking
turns, and the best run counts, in transfers per second of the importing thread's CPU
time (wall-clock beside it): a shared machine's load would otherwise decide the ratio.
Before its timed blocks the importer serves `--warmup-reads` random account reads, the
same traffic at every size, as a running node has.

`--json` prints one object: transfers_per_s_<label> per size (10k, 100k, 1m),
db_bytes_per_account, peak_rss_mb (of the whole run: building, importing, serving), the RPC p99s at the largest size (rpc_<method>_p99_ms), and
scale_ratio = the largest size's rate over the smallest's (goal: at least 0.7; every
RPC p99 under 50 ms). A quick run: --sizes 2000,20000 --tasks 200 --samples 50.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from hashlib import blake2b
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from consensus.authorship import build_block  # noqa: E402
from consensus.import_queue import ImportQueue, expected_author  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.executive import Executive, sign_extrinsic  # noqa: E402
from runtime.genesis import build_genesis_state, parse_genesis  # noqa: E402
from runtime.pallets import balances, system, training  # noqa: E402
from runtime.types import decode_block, encode_block  # noqa: E402
from scripts.bench.import_transfers import bench_keypairs, directory_bytes  # noqa: E402
from scripts.bench.report import print_figures  # noqa: E402
from storage.chainstore import ChainStore  # noqa: E402

ENDOWMENT = 10**15
TASKS_PER_BLOCK = 500


def label(size: int) -> str:
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)


def filler_account(index: int) -> bytes:
    """An account nobody signs for: state to scale against (a real transfer's destination)."""
    return blake2b(b"filler%d" % index, digest_size=32).digest()


def bench_config(accounts: int, senders: list[crypto.Keypair]):
    spec = json.loads((ROOT / "genesis.json").read_text())
    spec["endowed"] = spec["endowed"] + [{"account": "0x" + k.public.hex(), "balance": ENDOWMENT} for k in senders]
    config = parse_genesis(spec, "bench genesis")
    filler = tuple((filler_account(i), ENDOWMENT) for i in range(max(0, accounts - len(senders))))
    return dataclasses.replace(config, endowed=config.endowed + filler)


def open_cold(path: Path) -> ChainStore:
    """A chain database opened as a restarted node opens it (ChainStore.initialize on an existing chain): the
    head cache at the best state, filled from the flat table as far as it holds (a million accounts fit), and
    that state's internal trie nodes loaded."""
    store = ChainStore.open(path, pruning=None)
    store.warm_caches()
    return store


class Author:
    """Builds blocks on its own copy of the database (what the network would deliver)."""

    def __init__(self, path: Path, slot_duration_ms: int) -> None:
        self.store = open_cold(path)
        self.executive = Executive(self.store.genesis_hash)
        self.queue = ImportQueue(self.store, self.executive, slot_duration_ms=slot_duration_ms)
        self.slot_ms = slot_duration_ms
        self.validators = {kp.public: kp for kp in map(crypto.dev_keypair, crypto.DEV_ACCOUNT_NAMES)}
        self.slot = self.store.header(self.store.best_hash).digest.slot + 1

    def build(self, transactions: list) -> bytes:
        parent = self.store.best_hash
        authorities = self.executive.authorities(self.store.state_view(parent))
        built = build_block(self.store, self.executive, parent,
                            author=self.validators[expected_author(authorities, self.slot)], slot=self.slot,
                            timestamp_ms=self.slot * self.slot_ms, transactions=transactions)
        taken = sum(1 for x in built.block.extrinsics if x.signed is not None)  # beside the inherents
        if taken != len(transactions):
            raise SystemExit(f"a block took {taken} of {len(transactions)} extrinsics "
                             f"({len(built.invalid)} invalid); lower --per-block")
        self.queue.import_block(built.block, authored=built.state).raise_for_error()
        self.store.set_finalized(built.block.hash)
        self.slot += 1
        return encode_block(built.block)


def transfer_blocks(author: Author, senders: list[crypto.Keypair], accounts: int, blocks: int,
                    per_block: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    genesis_hash = author.store.genesis_hash
    wire = []
    for b in range(blocks):
        batch = []
        for i in range(per_block):
            n = b * per_block + i
            sender, nonce = senders[n % len(senders)], n // len(senders)
            index = rng.randrange(accounts)
            dest = senders[index].public if index < len(senders) else filler_account(index - len(senders))
            if dest == sender.public:
                dest = filler_account(0)
            batch.append(sign_extrinsic(sender, balances.transfer(dest, 1_000_000 + i), nonce=nonce,
                                        genesis_hash=genesis_hash))
        wire.append(author.build(batch))
        print(f"built block {b + 1}/{blocks}", file=sys.stderr, end="\r")
    return wire


def serve_reads(store: ChainStore, accounts: int, senders: int, reads: int) -> None:
    """Read `reads` random accounts of the best state, as a node that has been serving traffic has done:
    its caches hold what such reads leave there (untimed)."""
    view = store.state_view(store.best_hash)
    rng = random.Random(1)
    for _ in range(reads):
        index = rng.randrange(accounts)
        view.get(system.Account.key_of(filler_account(index - senders) if index >= senders else b"\0" * 32))


class Importer:
    """The node's import pipeline on one database; every imported block is finalized (one validator's chain)."""

    def __init__(self, store: ChainStore, slot_duration_ms: int) -> None:
        self.store = store
        self.queue = ImportQueue(store, Executive(store.genesis_hash), slot_duration_ms=slot_duration_ms)

    def import_block(self, block) -> None:
        self.queue.import_block(block).raise_for_error()
        self.store.set_finalized(block.hash)


def timed_import(path: Path, wire: list[bytes], slot_duration_ms: int, warmup: int, *, accounts: int = 0,
                 senders: int = 0, warmup_reads: int = 0) -> tuple[float, list[float]]:
    """CPU seconds of the importing thread for the blocks after the first `warmup`, on a cold copy of the
    genesis database, and each timed block's wall-clock ms.

    CPU time, not wall time: on a shared machine other processes take the cores for
    tens of percent of a run, which says nothing about the import; its own thread's
    CPU time does (LevelDB's background compaction, a thread of its own, is left out,
    as it runs beside the import on a machine with a core to spare)."""
    received = [decode_block(raw) for raw in wire]
    target = open_cold(path)
    importer = Importer(target, slot_duration_ms)
    serve_reads(target, accounts, senders, warmup_reads)
    for block in received[:warmup]:
        importer.import_block(block)
    received = received[warmup:]
    gc.collect()
    elapsed, block_ms = 0.0, []
    for block in received:
        started, cpu_started = time.perf_counter(), time.thread_time()
        importer.import_block(block)
        elapsed += time.thread_time() - cpu_started
        block_ms.append((time.perf_counter() - started) * 1000)
    target.close()
    return elapsed, block_ms


def task_config(creator: bytes, index: int):
    spec = training.ModelSpec("mlp", (64, 32, 10))
    digest = blake2b(b"task%d" % index, digest_size=32).digest()
    return training.TaskConfig(
        spec=spec, initial_model=digest, metric=training.METRIC_LOSS, held_out=digest, held_out_size=300,
        held_out_subset=100, sealed_keys=(training.SealedKey(creator, b"k" * 80),), reward_per_round=10**9,
        rounds=100, commit_blocks=1000, reveal_blocks=1000, min_improvement_ppm=1_000, min_relative_ppm=0,
        max_update_bytes=10**6, max_update_norm=2**26, bond=10**9, aggregation=0, trim=0)


def create_tasks(author: Author, creators: list[crypto.Keypair], tasks: int, transfers: int) -> list[bytes]:
    """Blocks of real create_task extrinsics, one task per creator account (after its `transfers` share)."""
    wire = []
    genesis_hash = author.store.genesis_hash

    def sign(i: int):
        nonce = len(range(i, transfers, len(creators)))  # the transfers it sent before
        return sign_extrinsic(creators[i], training.create_task(task_config(creators[i].public, i)), nonce=nonce,
                              genesis_hash=genesis_hash)

    for start in range(0, tasks, TASKS_PER_BLOCK):
        batch = [sign(i) for i in range(start, min(tasks, start + TASKS_PER_BLOCK))]
        wire.append(author.build(batch))
        print(f"built task block {len(wire)}", file=sys.stderr, end="\r")
    return wire


# --- RPC latency on a real node -------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rpc_latencies(base: Path, config, senders: list[crypto.Keypair], accounts: int, samples: int) -> dict:
    from node.chain_service import ChainService
    from node.chain_setup import ChainPaths
    from node.clock import SystemClock
    from node.rpc_facade import ChainFacade, RpcService
    from node.service import LoopThread, ServiceTree

    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout holds the figures only
    chain = ChainService(config, ChainPaths(base, config.chain_id), clock=SystemClock(), pruning=None)
    rpc = RpcService(ChainFacade(chain, node_name="bench", chain_type="Development"), host="127.0.0.1", port=0,
                     unsafe_methods=False, cors=[])
    thread = LoopThread("bench-node")
    thread.start()
    stop = {}

    async def serve():
        import asyncio

        stop["event"] = asyncio.Event()
        tree = ServiceTree([chain, rpc])
        stop["tree"] = tree
        await tree.run(stop["event"])

    future = thread.submit(serve())
    deadline = time.monotonic() + 600
    # every service has started (the RPC port is bound and known) once the tree says so
    while not ("tree" in stop and stop["tree"].started.is_set()) and time.monotonic() < deadline \
            and not future.done():
        time.sleep(0.05)
    if future.done():
        future.result()
    url = f"http://127.0.0.1:{rpc.server.port}"

    def call(method: str, *params) -> tuple[float, object]:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        elapsed = (time.perf_counter() - started) * 1000
        if "error" in answer:
            raise SystemExit(f"{method} failed: {answer['error']}")
        return elapsed, answer["result"]

    rng = random.Random(7)

    def account_key(index: int) -> str:
        who = senders[index].public if index < len(senders) else filler_account(index - len(senders))
        return "0x" + system.Account.key_of(who).hex()

    def address(index: int) -> str:
        who = senders[index].public if index < len(senders) else filler_account(index - len(senders))
        return crypto.encode_address(who, config.ss58_prefix)

    try:
        best = int(call("chain_getHeader")[1]["number"], 16)
        tasks = int(call("training_tasks", 1)[1][0]["id"]) + 1 if call("training_tasks", 1)[1] else 0
        figures = {}
        measured = {
            "chain_getHeader": lambda: call("chain_getHeader")[0],
            "state_getStorage": lambda: call("state_getStorage", account_key(rng.randrange(accounts)))[0],
            "explorer_account": lambda: call("explorer_account", address(rng.randrange(accounts)))[0],
            # the history of an account that sent transfers (the senders are the first accounts)
            "explorer_accountHistory": lambda: call("explorer_accountHistory",
                                                    address(rng.randrange(len(senders))))[0],
            "training_taskLeaderboard": lambda: call("training_taskLeaderboard", rng.randrange(max(1, tasks)))[0],
            "training_tasks": lambda: call("training_tasks")[0],
            "training_leaderboard": lambda: call("training_leaderboard")[0],
        }
        slow = {"training_tasks", "training_leaderboard"}
        for name, sample in measured.items():
            count = max(3, samples // 20) if name in slow else samples
            times, spent = [], time.monotonic()
            for _ in range(count):
                times.append(sample())
                if name in slow and time.monotonic() - spent > 120:
                    break  # bounded time: a few calls tell a whole-state walk
            figures[f"rpc_{name}_p99_ms"] = round(percentile(times, 0.99), 2)
        figures["blocks"] = best
        return figures
    finally:
        thread.loop.call_soon_threadsafe(stop["event"].set)
        future.result(timeout=120)
        thread.stop()


# --- the run ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Prepared:
    """One size, ready to import: its genesis database, its blocks, who sent them."""

    accounts: int
    base: Path
    config: object
    senders: list
    wire: list[bytes]
    task_wire: list[bytes]
    genesis_s: float
    db_bytes: int


def prepare(accounts: int, blocks: int, per_block: int, warmup: int, base: Path, tasks: int) -> Prepared:
    if accounts < max(per_block, tasks, 2):
        raise SystemExit(f"--sizes {accounts} is below the {max(per_block, tasks)} accounts a block or the tasks need")
    senders = bench_keypairs(min(accounts, max((blocks + warmup) * per_block, tasks)))
    config = bench_config(accounts, senders)
    started = time.perf_counter()
    genesis = ChainStore.open(base / "genesis")
    genesis.initialize(build_genesis_state(config))
    genesis.close()
    genesis_s = time.perf_counter() - started
    db_bytes = directory_bytes(base / "genesis")
    shutil.copytree(base / "genesis", base / "author")
    author = Author(base / "author", config.slot_duration_ms)
    wire = transfer_blocks(author, senders, accounts, blocks + warmup, per_block, seed=accounts)
    task_wire = create_tasks(author, senders, tasks, (blocks + warmup) * per_block) if tasks else []
    author.store.close()
    shutil.rmtree(base / "author")
    return Prepared(accounts, base, config, senders, wire, task_wire, genesis_s, db_bytes)


def import_once(size: Prepared, warmup: int, warmup_reads: int, keep: Path | None = None) -> tuple[float, float]:
    """(transfers per CPU second, per wall second) of one import on a fresh copy of the genesis database."""
    target = keep or size.base / "target"
    shutil.copytree(size.base / "genesis", target)
    cpu_s, block_ms = timed_import(target, size.wire, size.config.slot_duration_ms, warmup, accounts=size.accounts,
                                   senders=len(size.senders), warmup_reads=min(warmup_reads, size.accounts * 20))
    if keep is None:
        shutil.rmtree(target)
    transfers = (len(size.wire) - warmup) * sum(1 for x in decode_block(size.wire[-1]).extrinsics if x.signed)
    return transfers / cpu_s, transfers / (sum(block_ms) / 1000)


def serve_largest(size: Prepared, warmup: int, warmup_reads: int, samples: int) -> dict:
    """Import once more, keep that database, add the tasks, and measure the RPC on a real node."""
    database = size.base / "node" / "chains" / size.config.chain_id / "db"
    database.parent.mkdir(parents=True)
    import_once(size, warmup, warmup_reads, keep=database)
    if size.task_wire:
        store = open_cold(database)
        importer = Importer(store, size.config.slot_duration_ms)
        for raw in size.task_wire:
            importer.import_block(decode_block(raw))
        store.close()
    return rpc_latencies(size.base / "node", size.config, size.senders, size.accounts, samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="accounts in state, comma separated")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=2_000)
    parser.add_argument("--warmup-blocks", type=int, default=2, help="blocks imported untimed first (default 2)")
    parser.add_argument("--warmup-reads", type=int, default=200_000,
                        help="random account reads before the import, the traffic a running node has served")
    parser.add_argument("--repeats", type=int, default=3, help="timed imports per size, interleaved; the best counts")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks on chain for the RPC figures")
    parser.add_argument("--samples", type=int, default=200, help="calls per RPC method")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes takes whole numbers separated by commas")
    if not sizes or sizes[0] < 2 or min(args.blocks, args.per_block, args.samples, args.repeats) < 1 or \
            min(args.tasks, args.warmup_blocks, args.warmup_reads) < 0:
        parser.error("--sizes must be at least 2; --blocks, --per-block, --samples and --repeats at least 1")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="gradchain-scale-") as tmp:
        prepared = []
        for size in sizes:
            base = Path(tmp) / str(size)
            base.mkdir()
            prepared.append(prepare(size, args.blocks, args.per_block, args.warmup_blocks, base,
                                    args.tasks if size == sizes[-1] else 0))
            print(f"prepared {size} accounts", file=sys.stderr)
        rates: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
        for repeat in range(args.repeats):  # interleaved: a busy minute of the machine hits every size alike
            for size in prepared:
                rates[size.accounts].append(import_once(size, args.warmup_blocks, args.warmup_reads))
                print(f"{size.accounts} accounts, run {repeat + 1}: {rates[size.accounts][-1][0]:.0f} transfers per "
                      f"CPU second", file=sys.stderr)
        for size in prepared:
            name = label(size.accounts)
            figures[f"transfers_per_s_{name}"] = round(max(cpu for cpu, _ in rates[size.accounts]))
            figures[f"transfers_per_wall_s_{name}"] = round(max(wall for _, wall in rates[size.accounts]))
            figures[f"genesis_s_{name}"] = round(size.genesis_s, 1)
        largest = prepared[-1]
        figures["db_bytes_per_account"] = round(largest.db_bytes / largest.accounts)
        figures["tasks"] = args.tasks
        figures.update(serve_largest(largest, args.warmup_blocks, args.warmup_reads, args.samples))
    smallest, biggest = label(sizes[0]), label(sizes[-1])
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # the whole run's peak
    figures["scale_ratio"] = round(figures[f"transfers_per_s_{biggest}"] / figures[f"transfers_per_s_{smallest}"], 3)
    figures["goal_met"] = figures["scale_ratio"] >= 0.7 and all(
        v < 50 for k, v in figures.items() if k.startswith("rpc_"))
    print_figures("state_scale", figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
