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
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from node.chain_setup import DEFAULT_CHAIN  # noqa: E402
from node.keystore import write_key_file  # noqa: E402
from rpc.client import Client  # noqa: E402

VALIDATORS = ("Alice", "Bob", "Charlie", "Dave")
TRAINERS = ("//Eve", "//Ferdie")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchNode:
    def __init__(self, name: str, base: Path, spec: Path) -> None:
        from node.network.config import node_peer_id, write_node_key  # the network (issue 13)

        self.name, self.base, self.spec = name, base, spec
        base.mkdir(parents=True)
        self.key_file = base / "validator.json"
        write_key_file(self.key_file, f"//{name}", 42)
        self.node_key = base / "node_key"
        self.peer_id = node_peer_id(write_node_key(self.node_key))
        self.p2p, self.rpc, self.prometheus = free_port(), free_port(), free_port()
        self.log = base / "node.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p}/p2p/{self.peer_id}"

    def start(self, bootnodes: list[str]) -> None:
        command = [sys.executable, "-m", "node.cli", "--chain", str(self.spec), "--base-path", str(self.base / "data"),
                   "--name", self.name, "--node-key-file", str(self.node_key), "--p2p-host", "127.0.0.1",
                   "--p2p-port", str(self.p2p), "--rpc-port", str(self.rpc), "--prometheus-port", str(self.prometheus),
                   "--log-format", "json", "--validator", "--key-file", str(self.key_file), "--bootnodes", *bootnodes]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def gossip_bytes(self) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus}/metrics", timeout=5).read().decode()
        found = re.search(r"^gradchain_finality_gossip_bytes_total ([0-9.e+]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


def wait_until(condition, timeout: float, what: str, nodes) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - a node still starting
            pass
        time.sleep(0.25)
    tails = "\n".join(f"--- {n.name}\n" + "\n".join(n.log.read_text(errors="replace").splitlines()[-15:])
                      for n in nodes)
    raise SystemExit(f"timed out waiting for {what}\n{tails}")


async def follow_finality(node: BenchNode, slot_ms: int, seconds: float, lags: list[float]) -> None:
    """Lag (in slots) of every block number, the first time this node reports it final."""
    client = Client(f"http://127.0.0.1:{node.rpc}", timeout=10)
    reached = client.header(client.finalized_hash()).number
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        socket_ = await session.ws_connect(f"ws://127.0.0.1:{node.rpc}")
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


def start_training(node: BenchNode) -> list[subprocess.Popen]:
    """A task (created by Eve) and two trainers submitting updates: a round in flight while we measure."""
    from consensus.useful_work import ModelSpec, build_model, state_of
    from runtime import crypto
    from scripts._tasks import ChainAccount, TaskOptions, demo_data, publish_task

    client = Client(f"http://127.0.0.1:{node.rpc}", timeout=30)
    split, _, _ = demo_data("digits", len(TRAINERS))
    spec = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
    initial = state_of(build_model(spec, 0))
    creator = ChainAccount(client, crypto.keypair_from_uri("//Eve"))
    task_id = publish_task(creator, spec, initial, split.held_out_features, split.held_out_labels,
                           TaskOptions(rounds=50, commit_blocks=4, reveal_blocks=2))
    trainers = []
    for i, uri in enumerate(TRAINERS):
        trainers.append(subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "trainer.py"), "--url", f"http://127.0.0.1:{node.rpc}", "--uri", uri,
             "--task", str(task_id), "--shard", f"{i}/{len(TRAINERS)}", "--state", str(node.base / f"trainer{i}.json")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return trainers


def run(args) -> dict:
    base = Path(tempfile.mkdtemp(prefix="gradchain-finality-bench-"))
    spec = json.loads(DEFAULT_CHAIN.read_text())
    spec.update(name="Finality Bench", id="gradchain_finality_bench", slot_duration_ms=args.slot_ms)
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=args.slot_ms // 2)
    spec_path = base / "spec.json"
    spec_path.write_text(json.dumps(spec))
    nodes = [BenchNode(name, base / name.lower(), spec_path) for name in VALIDATORS]
    trainers: list[subprocess.Popen] = []
    try:
        for node in nodes:
            node.start([n.address for n in nodes if n is not node])
        clients = [Client(f"http://127.0.0.1:{n.rpc}", timeout=10) for n in nodes]
        wait_until(lambda: all(c.call("system_health")["peers"] >= len(nodes) - 1 for c in clients), 90,
                   "every node to see its peers", nodes)
        wait_until(lambda: all(c.header(c.finalized_hash()).number >= 2 for c in clients), 120,
                   "first finality", nodes)
        if args.training:
            trainers = start_training(nodes[0])
        before = [n.gossip_bytes() for n in nodes]
        started = time.monotonic()
        lags: list[float] = []

        async def follow_all():
            await asyncio.gather(*(follow_finality(n, args.slot_ms, args.seconds, lags) for n in nodes))
        asyncio.run(follow_all())
        elapsed = time.monotonic() - started
        after = [n.gossip_bytes() for n in nodes]
    finally:
        for trainer in trainers:
            trainer.terminate()
            trainer.wait(10)
        for node in nodes:
            node.stop()
    lags.sort()
    if not lags:
        raise SystemExit("no block was finalized while measuring")
    return {
        "lag_p50_slots": round(lags[len(lags) // 2], 2),
        "lag_p99_slots": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
        "vote_bytes_per_s_per_node": round(sum(a - b for a, b in zip(after, before)) / len(nodes) / elapsed, 1),
        "blocks": len(lags) // len(nodes), "nodes": len(nodes), "slot_ms": args.slot_ms,
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
