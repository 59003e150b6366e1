"""Finality lag on a real network: four validators as subprocesses on 127.0.0.1, with a training round in flight.

    .venv/bin/python scripts/bench/finality.py [--seconds 90] [--slot-ms 2000] [--no-training] [--json]

Every node's finalized heads are followed over WebSocket; for every block number n the lag is
(the time a node first reports a finalized head >= n - the start of n's slot) / slot, for each
node. Votes' bytes/s per node is the growth of gradchain_finality_gossip_bytes (Prometheus)
over the measured window. With a training round in flight (default), a task is created and two
trainers submit updates, so the validators re-measure useful work while they vote.

`--json` prints one object: lag_p50_slots, lag_p99_slots, vote_bytes_per_s_per_node, blocks,
nodes, slot_ms, seconds. Goal: p50 <= 2 slots, p99 <= 6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from rpc.client import Client  # noqa: E402

TRAINERS = ("//Eve", "//Ferdie")


def gossip_bytes(prometheus_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/metrics", timeout=5).read().decode()
    found = re.search(r"^gradchain_finality_gossip_bytes_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def follow_finality(node, slot_ms: int, seconds: float, lags: list[float]) -> None:
    """Lag (in slots) of every block number, the first time this node reports it final."""
    client = node.client
    reached = client.header(client.finalized_hash()).number
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        socket_ = await session.ws_connect(f"ws://127.0.0.1:{node.rpc_port}")
        await socket_.send_json({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeFinalizedHeads", "params": []})
        await socket_.receive_json(timeout=10)
        while time.monotonic() < deadline:
            try:
                note = await socket_.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            now_ms = time.time() * 1000
            number = int(note["params"]["result"]["number"], 16)
            for n in range(reached + 1, number + 1):
                header = client.header(client.block_hash(n))
                lags.append((now_ms - header.digest.slot * slot_ms) / slot_ms)
            reached = max(reached, number)
        await socket_.close()


def start_training(node) -> list[subprocess.Popen]:
    """A task (created by Eve) and two trainers submitting updates: a round in flight while we measure."""
    from consensus.useful_work import ModelSpec, build_model, state_of
    from runtime import crypto
    from scripts._tasks import ChainAccount, TaskOptions, demo_data, publish_task

    client = Client(f"http://127.0.0.1:{node.rpc_port}", timeout=30)
    split, _, _ = demo_data("digits", len(TRAINERS))
    spec = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
    initial = state_of(build_model(spec, 0))
    creator = ChainAccount(client, crypto.keypair_from_uri("//Eve"))
    task_id = publish_task(creator, spec, initial, split.held_out_features, split.held_out_labels,
                           TaskOptions(rounds=50, commit_blocks=4, reveal_blocks=2))
    trainers = []
    for i, uri in enumerate(TRAINERS):
        trainers.append(subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "trainer.py"), "--url", f"http://127.0.0.1:{node.rpc_port}", "--uri", uri,
             "--task", str(task_id), "--shard", f"{i}/{len(TRAINERS)}", "--state", str(node.base / f"trainer{i}.json")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return trainers


def run(args) -> dict:
    from node.testnet.processes import Cluster, free_port, wait_until  # the network (issue 13)

    base = Path(tempfile.mkdtemp(prefix="gradchain-finality-bench-"))
    cluster = Cluster(base, slot_ms=args.slot_ms)
    prometheus = {n.name: free_port() for n in cluster.nodes}
    trainers: list[subprocess.Popen] = []
    try:
        for node in cluster.nodes:
            node.start([n.address for n in cluster.nodes if n is not node], prometheus_port=prometheus[node.name])
        for node in cluster.nodes:
            node.wait_rpc()
        wait_until(lambda: all(n.peers() >= len(cluster.nodes) - 1 for n in cluster.nodes), 90,
                   "every node to see its peers", cluster.nodes)
        wait_until(lambda: all(n.client.header(n.client.finalized_hash()).number >= 2 for n in cluster.nodes), 120,
                   "first finality", cluster.nodes)
        if args.training:
            trainers = start_training(cluster.nodes[0])
        before = [gossip_bytes(prometheus[n.name]) for n in cluster.nodes]
        started = time.monotonic()
        lags: list[float] = []

        async def follow_all():
            await asyncio.gather(*(follow_finality(n, args.slot_ms, args.seconds, lags) for n in cluster.nodes))
        asyncio.run(follow_all())
        elapsed = time.monotonic() - started
        after = [gossip_bytes(prometheus[n.name]) for n in cluster.nodes]
        nodes = len(cluster.nodes)
    finally:
        for trainer in trainers:
            trainer.terminate()
            trainer.wait(10)
        cluster.stop()
    lags.sort()
    if not lags:
        raise SystemExit("no block was finalized while measuring")
    return {
        "lag_p50_slots": round(lags[len(lags) // 2], 2),
        "lag_p99_slots": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
        "vote_bytes_per_s_per_node": round(sum(a - b for a, b in zip(after, before)) / nodes / elapsed, 1),
        "blocks": len(lags) // nodes, "nodes": nodes, "slot_ms": args.slot_ms,
        "seconds": round(elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90, help="how long to measure (default 90)")
    parser.add_argument("--slot-ms", type=int, default=2000, help="slot duration (default 2000, as genesis.json)")
    parser.add_argument("--no-training", dest="training", action="store_false", help="no training round in flight")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'finality lag p50':<28}{result['lag_p50_slots']:>10} slots   (goal <= 2)")
        print(f"{'finality lag p99':<28}{result['lag_p99_slots']:>10} slots   (goal <= 6)")
        print(f"{'finality gossip per node':<28}{result['vote_bytes_per_s_per_node']:>10} bytes/s")
        print(f"{'blocks measured':<28}{result['blocks']:>10}   ({result['nodes']} nodes, "
              f"{result['slot_ms']} ms slots, {result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
