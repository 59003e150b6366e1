"""`gradchain testnet`: N validators on 127.0.0.1, a live status table, every node stopped at the end.

With --json, stdout carries one JSON object per line: first {"event": "started", ...}
with every node's ports, pid, peer id and paths, then {"event": "status", ...} per
refresh, and last {"event": "stopped"} or {"event": "node_died", ...}. Exit codes:
0 after Ctrl-C or SIGTERM, 1 when a node died (its name and log tail on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from node.testnet.processes import LocalTestnet, NodeDied, TestnetError
from node.testnet.status import RoundsOfBlocks, StatusReader, status_table

EXIT_NODE_DIED = 1


def add_parser(commands) -> None:
    testnet = commands.add_parser("testnet", help="run N validators on 127.0.0.1 with a live status table")
    testnet.add_argument("--validators", type=int, default=4, metavar="N", help="number of validators (default 4)")
    testnet.add_argument("--base-path", type=Path, metavar="PATH",
                         help="where the spec, keys and node data live (default: a temporary directory, removed "
                              "at exit); an existing testnet there is started again")
    testnet.add_argument("--slot-ms", type=int, default=2000, metavar="MS", help="slot duration of a new spec")
    testnet.add_argument("--json", action="store_true", help="machine-readable status: one JSON object per line")
    testnet.add_argument("--refresh", type=float, default=1.0, metavar="S", help="seconds between refreshes")
    testnet.add_argument("--stop-with-parent", action="store_true",
                         help="stop every node when the process that started this one is gone (for a program "
                              "driving the testnet, e.g. the demo: even a kill -9 of it leaves no node behind)")


def run(args: argparse.Namespace) -> int:
    if args.slot_ms < 100:
        raise TestnetError(f"--slot-ms {args.slot_ms} is too short (at least 100)")
    temporary = args.base_path is None
    base = Path(tempfile.mkdtemp(prefix="gradchain-testnet-")) if temporary else args.base_path
    try:
        testnet = LocalTestnet(base, args.validators, slot_ms=args.slot_ms)
    except TestnetError:
        if temporary:
            shutil.rmtree(base, ignore_errors=True)
        raise
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    if args.stop_with_parent:
        _stop_when_orphaned(stop)
    emit = _JsonLines() if args.json else None
    try:
        if not testnet.start(abort=stop.is_set):
            return 0
        _announce(testnet, emit)
        return _watch(testnet, stop, args.refresh, emit)
    except NodeDied as died:
        if emit:
            emit(event="node_died", node=died.node.name, pid=died.node.pid, exit_code=died.node.exit_code())
        print(f"Error: {died.message}", file=sys.stderr)
        return EXIT_NODE_DIED
    finally:
        testnet.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if emit:
            emit(event="stopped", pids=testnet.pids())
        if temporary:
            shutil.rmtree(base, ignore_errors=True)


def _stop_when_orphaned(stop: threading.Event, every_s: float = 0.5) -> None:
    """Set `stop` once this process is re-parented: its parent died, however (no signal reaches us then)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(every_s):
            if os.getppid() != parent:
                print("Error: the process that started this testnet is gone; stopping every node", file=sys.stderr)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _announce(testnet: LocalTestnet, emit) -> None:
    if emit:
        emit(event="started", base_path=str(testnet.base), spec=str(testnet.spec_path),
             nodes=[n.describe() for n in testnet.nodes])
        return
    console = Console(stderr=True)
    console.print(f"[bold]testnet[/bold] of {len(testnet.nodes)} validators under {testnet.base} "
                  f"(spec {testnet.spec_path})")
    for n in testnet.nodes:
        console.print(f"  {n.name:<8} pid {n.pid:<7} p2p {n.p2p_port:<5} rpc {n.rpc_port:<5} "
                      f"prometheus {n.prometheus_port:<5} log {n.log_path}")
        console.print(f"           {n.address}")
    console.print("Ctrl-C stops every node.")


def _watch(testnet: LocalTestnet, stop: threading.Event, refresh: float, emit) -> int:
    rounds = RoundsOfBlocks()
    readers = [StatusReader(n, rounds) for n in testnet.nodes]
    started = time.monotonic()

    def title() -> str:
        return f"gradchain testnet: {len(testnet.nodes)} validators, up {time.monotonic() - started:.0f} s"

    if emit:
        while not stop.is_set():
            testnet.check_alive()
            emit(event="status", uptime_s=round(time.monotonic() - started, 1),
                 nodes=[r.read().to_json() for r in readers])
            stop.wait(refresh)
        return 0
    with Live(status_table([r.read() for r in readers], title()), refresh_per_second=4,
              console=Console(stderr=False)) as live:
        while not stop.is_set():
            testnet.check_alive()
            live.update(status_table([r.read() for r in readers], title()))
            stop.wait(refresh)
    return 0


class _JsonLines:
    def __call__(self, **fields) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()
