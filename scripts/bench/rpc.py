#!/usr/bin/env python3
"""Benchmark: JSON-RPC throughput and latency of a `gradchain --dev` node while it authors blocks.

Starts the node as a subprocess (its own process, as operators run it), then from
this process drives 50 concurrent HTTP connections at chain_getHeader,
state_getStorage and author_submitExtrinsic, and fans new-head notifications out
to 500 WebSocket subscribers. Prints requests/s and p50/p99 latency per method and
the fan-out delay; `--json` prints one JSON object.

    python scripts/bench/rpc.py [--seconds 10] [--connections 50] [--subscribers 500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from runtime import crypto  # noqa: E402
from runtime.executive import sign_extrinsic  # noqa: E402
from runtime.pallets import balances, system  # noqa: E402


def start_node(base: Path) -> tuple[subprocess.Popen, int]:
    """The node logs JSON lines to a file (a pipe nobody drains would stall it); its RPC port comes from there."""
    log_path = base / "node.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "--dev", "--base-path", str(base), "--rpc-port", "0",
         "--no-prometheus", "--log-format", "json"],
        stderr=open(log_path, "w"), stdout=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for line in log_path.read_text().splitlines():
            if '"rpc listening"' in line:
                return process, json.loads(line)["port"]
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the node did not start; see {log_path}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def hammer(url: str, bodies, seconds: float, connections: int) -> dict:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                body = bodies(next(counter))
                if body is None:
                    return
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    answer = await response.json(content_type=None)
                latencies.append((time.perf_counter() - started) * 1000)
                if "error" in answer:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests_per_s": round(len(latencies) / elapsed), "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "requests": len(latencies), "errors": errors}


async def fan_out(url: str, subscribers: int, heads: int) -> dict:
    ws_url = url.replace("http://", "ws://")
    arrivals: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:  # 500 sockets at once
        sockets = []
        for _ in range(subscribers):
            socket = await session.ws_connect(ws_url)
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads"})
            await socket.receive_json()
            sockets.append(socket)

        async def listen(socket) -> None:
            for _ in range(heads):
                message = await socket.receive_json(timeout=30)
                number = message["params"]["result"]["number"]
                arrivals.setdefault(number, []).append(time.perf_counter())

        await asyncio.gather(*(listen(s) for s in sockets))
        for socket in sockets:
            await socket.close()
    spreads = [(max(t) - min(t)) * 1000 for t in arrivals.values() if len(t) == subscribers]
    return {"subscribers": subscribers, "heads_delivered_to_all": len(spreads),
            "fanout_ms_p50": round(statistics.median(spreads), 1) if spreads else None,
            "fanout_ms_max": round(max(spreads), 1) if spreads else None}


def wrk_load(url: str, body: bytes, seconds: float, connections: int, workdir: Path) -> dict | None:
    """Drive a fixed request with wrk (a C load generator) when it is installed: the Python client
    would use as much CPU as the node it measures. None when wrk is absent."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body.decode())}\n")
    output = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
                             "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60).stdout
    figures = {"requests_per_s": None, "p50_ms": None, "p99_ms": None, "errors": 0, "load": "wrk"}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["requests_per_s"] = round(float(parts[1]))
        elif parts[:1] in (["50%"], ["99%"]):
            figures["p50_ms" if parts[0] == "50%" else "p99_ms"] = _to_ms(parts[1])
        elif line.strip().startswith("Non-2xx"):
            figures["errors"] = int(parts[-1])
    return figures


def _to_ms(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * scale, 2)
    return float(text)


def rpc_body(method: str, *params) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()


async def run(seconds: float, connections: int, subscribers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="gradchain-rpc-bench-") as tmp:
        process, port = start_node(Path(tmp))
        url = f"http://127.0.0.1:{port}"
        try:
            await asyncio.sleep(2)  # a few blocks first
            results = {}
            header = rpc_body("chain_getHeader")
            key = "0x" + system.Account.key_of(crypto.dev_keypair("Alice").public).hex()
            storage = rpc_body("state_getStorage", key)
            for method, body in (("chain_getHeader", header), ("state_getStorage", storage)):
                results[method] = wrk_load(url, body, seconds, connections, Path(tmp)) or \
                    await hammer(url, lambda i, body=body: body, seconds, connections)
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=rpc_body("chain_getBlockHash", 0),
                                        headers={"Content-Type": "application/json"}) as response:
                    genesis = bytes.fromhex((await response.json())["result"][2:])
            signers = [crypto.dev_keypair(n) for n in ("Bob", "Charlie", "Dave", "Eve")]
            per_signer = 1500
            transfers = [rpc_body("author_submitExtrinsic", "0x" + sign_extrinsic(
                signers[i % 4], balances.transfer(signers[(i + 1) % 4].public, 10**10), nonce=i // 4,
                genesis_hash=genesis).encoded.hex()) for i in range(4 * per_signer)]
            results["author_submitExtrinsic"] = await hammer(
                url, lambda i: transfers[i] if i < len(transfers) else None, seconds, connections)
            results["websocket_fanout"] = await fan_out(url, subscribers, heads=3)
        finally:
            process.terminate()
            process.wait(30)
    header = results["chain_getHeader"]
    results["goal_met"] = header["requests_per_s"] >= 5000 and header["p99_ms"] < 50
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.seconds <= 0 or args.connections < 1 or args.subscribers < 1:
        parser.error("--seconds, --connections and --subscribers must be positive")
    figures = asyncio.run(run(args.seconds, args.connections, args.subscribers))
    if args.json:
        print(json.dumps(figures))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rpc")
    for column in ("method", "requests/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method in ("chain_getHeader", "state_getStorage", "author_submitExtrinsic"):
        f = figures[method]
        table.add_row(method, str(f["requests_per_s"]), str(f["p50_ms"]), str(f["p99_ms"]), str(f["errors"]))
    console = Console()
    console.print(table)
    console.print(f"WebSocket fan-out: {figures['websocket_fanout']}")
    console.print(f"goal (chain_getHeader >= 5000/s, p99 < 50 ms): {figures['goal_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
