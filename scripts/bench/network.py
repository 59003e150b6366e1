#!/usr/bin/env python3
"""Benchmark: four validators networked over 127.0.0.1, and a fresh node syncing a chain.

Part 1: four validator processes on this machine (a generated spec, 1 s slots);
signed transfers are submitted round-robin to all four (each sender's to one
node, in nonce order; one client thread per node, batches of BATCH) at --rate
for --seconds. Figures: transfers included per
second of the window, transfers lost (accepted by a node, never included),
block propagation (author's log time of "authored block" to each other node's
"imported block") p50/p99, and bytes sent per second per node (Prometheus).

Part 2: a chain of --sync-blocks blocks of transfers is built offline and served
by one node; a fresh node syncs it over the network. Figures: blocks/s and
transfers/s, beside import_transfers.py's one-core transfers_per_s in the same run
(the goal: syncing at >= 0.5 x that).

    python scripts/bench/network.py [--seconds 60] [--rate 1000] [--sync-blocks 10000] [--sync-per-block 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runtime.executive import sign_extrinsic  # noqa: E402
from runtime.genesis import build_genesis_state, parse_genesis  # noqa: E402
from runtime.pallets import balances  # noqa: E402
from node.testnet.processes import Cluster, NodeProcess, free_port, wait_until, write_spec  # noqa: E402
from scripts.bench.import_transfers import author_blocks, bench_keypairs  # noqa: E402
from scripts.bench.import_transfers import run as import_transfers  # noqa: E402
from scripts.bench.report import print_figures  # noqa: E402

BATCH = 100  # transfers per JSON-RPC batch request
SLOT_MS = 1000
DRAIN_PATIENCE_S = 30  # after the window: give up once inclusion made no progress for this long


POOL_FULL = 1016  # author_submitExtrinsic's "the pool is full: retry later"
RETRY_FOR_S = 30  # after the window, how long a client keeps retrying what a full pool refused


def post_batch(url: str, encoded: list[str]) -> tuple[int, list[str]]:
    """Submit a batch of extrinsics: (how many the node accepted, those a full pool refused, in order)."""
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": [x]}
                       for i, x in enumerate(encoded)]).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answers = sorted(json.loads(response.read()), key=lambda a: a["id"])
    refused = [encoded[a["id"]] for a in answers if a.get("error", {}).get("code") == POOL_FULL]
    return sum(1 for a in answers if "result" in a), refused


def submit_paced(url: str, encoded: list[str], rate: float, started: float, seconds: float) -> tuple[int, int]:
    """Submit in batches of BATCH at `rate` per second from `started`, as a wallet would: what a full pool
    refused ("retry later") goes first in the next batch, since a sender's later nonces wait on it. Gives
    up RETRY_FOR_S after the window. Returns (accepted, refused or never sent when the client gave up)."""
    accepted, retry, sent = 0, [], 0
    give_up = started + seconds + RETRY_FOR_S
    while (sent < len(encoded) or retry) and time.time() < give_up:
        if retry:
            time.sleep(0.2)  # the pool was full a moment ago
        pause = started + sent / rate - time.time()
        if pause > 0:
            time.sleep(pause)
        fresh = encoded[sent:sent + max(0, BATCH - len(retry))]
        sent += len(fresh)
        taken, retry = post_batch(url, retry + fresh)
        accepted += taken
    return accepted, len(retry) + len(encoded) - sent


def metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:  # the node died: "nodes_alive" says so
        return 0.0
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def cpu_seconds(pids: list[int | None]) -> float:
    """User + system CPU time consumed so far by these processes (Linux /proc): a figure that the other
    load on a shared machine does not distort the way it distorts rates."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def count_log_events(nodes: list[NodeProcess], *events: str) -> dict[str, int]:
    counts = dict.fromkeys(events, 0)
    for node in nodes:
        text = node.log_path.read_text(errors="replace")
        for event in events:
            counts[event] += text.count(f'"{event}')
    return counts


def log_times(node: NodeProcess, event: str) -> dict[str, float]:
    times = {}
    for line in node.log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        times[entry["hash"]] = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    return times


def followed_blocks(nodes: list[NodeProcess]) -> dict:
    """How peers' blocks reached each node (node/network/sync.py's "followed block" lines): whole by gossip
    (no fetch) or fetched after an announcement, and how long the fetch and the import took."""
    fetches, imports, whole = [], [], 0
    for node in nodes:
        for line in node.log_path.read_text(errors="replace").splitlines():
            if '"followed block"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            whole += entry["fetch_ms"] == 0
            fetches.append(entry["fetch_ms"])
            imports.append(entry["import_ms"])

    def p(values: list[float], q: float) -> float | None:
        return round(sorted(values)[min(len(values) - 1, int(len(values) * q))]) if values else None
    return {"followed_blocks": len(fetches), "followed_whole": whole, "follow_fetch_p50_ms": p(fetches, 0.5),
            "follow_import_p50_ms": p(imports, 0.5), "follow_import_p90_ms": p(imports, 0.9)}


def gossip_part(base: Path, seconds: float, rate: int, accounts: int) -> dict:
    keys = bench_keypairs(accounts)
    base.mkdir(parents=True, exist_ok=True)
    spec = write_spec(base / "spec.json", slot_ms=SLOT_MS,
                      extra_endowed=[{"account": "0x" + k.public.hex(), "balance": 10**18} for k in keys])
    cluster = Cluster(base / "validators", spec=spec)
    ports = [free_port() for _ in cluster.nodes]
    try:
        for node, port in zip(cluster.nodes, ports):
            node.start([n.address for n in cluster.nodes if n is not node], prometheus_port=port)
        for node in cluster.nodes:
            node.wait_rpc()
        wait_until(lambda: all(n.peers() == 3 for n in cluster.nodes), 90, "a full mesh", cluster.nodes)
        genesis = bytes.fromhex(cluster.nodes[0].call("chain_getBlockHash", 0)[2:])
        total = int(rate * seconds)
        print(f"signing {total} transfers", file=sys.stderr)
        per_node: list[list[str]] = [[] for _ in cluster.nodes]
        for i in range(total):
            sender = i % accounts
            extrinsic = sign_extrinsic(keys[sender], balances.transfer(keys[(sender + 1) % accounts].public, 10**10),
                                       nonce=i // accounts, genesis_hash=genesis)
            per_node[sender % len(cluster.nodes)].append("0x" + extrinsic.encoded.hex())
        urls = [f"http://127.0.0.1:{n.rpc_port}" for n in cluster.nodes]
        start_best = cluster.nodes[0].best()
        pids = [n.pid for n in cluster.nodes]
        cpu_before = cpu_seconds(pids)
        client_cpu_before = time.process_time()
        started = time.time()
        # one client thread per node, each at its share of the rate: a node slow to answer a batch
        # delays only its own submissions, as with independent wallets
        with ThreadPoolExecutor(max_workers=len(urls)) as clients:
            outcomes = list(clients.map(lambda k: submit_paced(urls[k], per_node[k], rate / len(urls), started,
                                                               seconds), range(len(urls))))
        accepted, refused = sum(a for a, _ in outcomes), sum(r for _, r in outcomes)  # refused: never accepted
        window_end = time.time()
        client_cpu = time.process_time() - client_cpu_before
        print(f"submitted {total} ({accepted} accepted) in {window_end - started:.1f} s; draining", file=sys.stderr)
        alice = cluster.nodes[0]

        counted: dict[bytes, int] = {}  # block hash -> transfers: a block is fetched once, not every second

        def included_so_far() -> int:
            total = 0
            for number in range(start_best + 1, alice.best() + 1):
                block_hash = alice.client.block_hash(number)
                if block_hash not in counted:
                    block = alice.client.block(block_hash)
                    counted[block_hash] = 0 if block is None else sum(1 for x in block.extrinsics if x.signed)
                total += counted[block_hash]
            return total
        last, stalled_since = -1, time.time()
        # a cluster that forked under the load takes a while to settle: lost means never included after it
        while time.time() - stalled_since < DRAIN_PATIENCE_S:
            count = included_so_far()
            if count >= accepted:
                break
            if count != last:
                last, stalled_since = count, time.time()
            time.sleep(1)
        cluster_cpu = cpu_seconds(pids) - cpu_before
        pending = [(int(metric(port, "gradchain_txpool_ready")), int(metric(port, "gradchain_txpool_future")))
                   for port in ports]  # (ready, future) left in each node's pool
        in_window = 0
        included = 0
        for number in range(start_best + 1, alice.best() + 1):
            block = alice.client.block(alice.client.block_hash(number))
            transfers = sum(1 for x in block.extrinsics if x.signed)
            included += transfers
            if block.header.digest.slot * SLOT_MS / 1000 <= window_end:
                in_window += transfers
        elapsed = time.time() - started
        propagation = []
        authored = {}
        for node in cluster.nodes:
            authored.update(log_times(node, "authored block"))
        for node in cluster.nodes:
            for block_hash, at in log_times(node, "imported block").items():
                if block_hash in authored:
                    propagation.append((at - authored[block_hash]) * 1000)
        sent_bytes = [metric(port, "gradchain_p2p_bytes_out") for port in ports]
        dropped = sum(metric(port, "gradchain_p2p_messages_dropped") for port in ports)
        propagation.sort()
        events = count_log_events(cluster.nodes, "re-org", "peer stopped answering pings", "authored block",
                                  "waited for an earlier slot's block", "slot skipped: blocks of a longer chain")
        return {
            "submitted": total, "accepted": accepted, "refused_pool_full": refused, "included": included,
            "included_per_s": round(in_window / (window_end - started)),
            "lost": accepted - included,
            "propagation_p50_ms": round(statistics.median(propagation)) if propagation else None,
            "propagation_p99_ms": round(propagation[min(len(propagation) - 1, int(len(propagation) * 0.99))])
            if propagation else None,
            "gossip_bytes_per_s_per_node": round(statistics.mean(sent_bytes) / elapsed),
            "messages_dropped": int(dropped),
            "cluster_cpu_ms_per_included": round(cluster_cpu * 1000 / max(included, 1), 3),
            "client_cpu_ms_per_submitted": round(client_cpu * 1000 / max(total, 1), 3),
            "pool_ready_future_at_end": pending,
            "nodes_alive": sum(1 for n in cluster.nodes if n.is_running()),
            "blocks_authored": events["authored block"],
            "reorgs": events["re-org"],
            "ping_disconnects": events["peer stopped answering pings"],
            "author_waits": events["waited for an earlier slot's block"],
            "slots_skipped_behind": events["slot skipped: blocks of a longer chain"],
            **followed_blocks(cluster.nodes),
        }
    finally:
        cluster.stop()


def sync_part(base: Path, blocks: int, per_block: int, accounts: int) -> dict:
    spec_data = json.loads((ROOT / "genesis.json").read_text())
    keys = bench_keypairs(accounts)
    spec_data["endowed"] = spec_data["endowed"] + [{"account": "0x" + k.public.hex(), "balance": 10**15}
                                                   for k in keys]
    base.mkdir(parents=True, exist_ok=True)
    spec_path = base / "sync-spec.json"
    spec_path.write_text(json.dumps(spec_data))
    config = parse_genesis(spec_data, "bench genesis")
    print(f"building {blocks} blocks of {per_block} transfers", file=sys.stderr)
    author_blocks(accounts, blocks, per_block, base / "built", build_genesis_state(config), config.slot_duration_ms,
                  keys)
    server = NodeProcess("Server", base / "server", spec_path, validator=False)
    fresh = NodeProcess("Fresh", base / "fresh", spec_path, validator=False)
    database = server.base / "data" / "chains" / config.chain_id / "db"
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(base / "built" / "author"), str(database))
    try:
        server.start()
        server.wait_rpc()
        fresh.start([server.address])
        fresh.wait_rpc()
        wait_until(lambda: fresh.best() > 0, 120, "the sync to start", [server, fresh], interval=0.05)
        started = time.time()
        cpu_before = cpu_seconds([fresh.pid])
        first = fresh.best()
        wait_until(lambda: fresh.best() >= blocks, 3600, "the sync to finish", [server, fresh], interval=0.2)
        elapsed = time.time() - started
        cpu = cpu_seconds([fresh.pid]) - cpu_before  # the syncing node's main process (its verifier aside)
        synced = blocks - first
        return {"sync_blocks": blocks, "sync_blocks_per_s": round(synced / elapsed, 1),
                "sync_transfers_per_s": round(synced * per_block / elapsed),
                "sync_transfers_per_cpu_s": round(synced * per_block / max(cpu, 1e-9))}
    finally:
        fresh.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=1000, help="transfers submitted per second, all nodes together")
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--sync-blocks", type=int, default=10_000)
    parser.add_argument("--sync-per-block", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--keep", help="run in this directory and keep it (node logs), instead of a temporary one")
    parser.add_argument("--skip-sync", action="store_true", help="only the four-validator part (development runs)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.rate < 1 or args.accounts < 8 or args.sync_blocks < 1 or args.sync_per_block < 1:
        parser.error("--seconds, --rate, --sync-blocks and --sync-per-block must be positive, --accounts >= 8")
    with tempfile.TemporaryDirectory(prefix="gradchain-bench-net-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        load_before = os.getloadavg()[0]
        gossip = gossip_part(base / "gossip", args.seconds, args.rate, args.accounts)
        if args.skip_sync:
            sync, one_core = {"sync_transfers_per_s": 0}, {"transfers_per_s": 1}
        else:
            sync = sync_part(base / "sync", args.sync_blocks, args.sync_per_block, 2_000)
            one_core = import_transfers(2_000, 4, 1_000, base / "import")
        load_after = os.getloadavg()[0]
    figures = {**gossip, **sync, "import_transfers_per_s": one_core["transfers_per_s"],
               "sync_ratio": round(sync["sync_transfers_per_s"] / one_core["transfers_per_s"], 3),
               "load_average_1min": f"{load_before:.1f} -> {load_after:.1f}"}
    if args.json:
        keys = ("included_per_s", "lost", "propagation_p99_ms", "sync_transfers_per_s", "import_transfers_per_s")
        print_figures("network", {k: figures[k] for k in keys}, as_json=True)
        print(json.dumps(figures), file=sys.stderr)  # every figure, off stdout
    else:
        print_figures("network", figures, as_json=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
