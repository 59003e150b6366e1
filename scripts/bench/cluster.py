"""Real gradchain nodes as subprocesses on 127.0.0.1, networked: for the multi-node tests and the network bench.

Each node gets its own base path, validator key file, node key (so its peer id is
known before it starts), free P2P and RPC ports, and a log file. Everything
started is stopped by pid; `tails()` gives the last log lines for a failure message.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.chain_setup import DEFAULT_CHAIN
from node.keystore import write_key_file
from node.network.config import node_peer_id, write_node_key
from rpc.client import Client

ROOT = Path(__file__).resolve().parents[2]
EXTRA: list[str] = []
VALIDATORS = ("Alice", "Bob", "Charlie", "Dave")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_spec(path: Path, *, slot_ms: int = 1000, chain_id: str = "gradchain_nettest", extra_endowed=(),
               **changes) -> Path:
    """The repository's spec (four validators: Alice, Bob, Charlie, Dave) with a short slot and its own id."""
    spec = json.loads(DEFAULT_CHAIN.read_text())
    spec.update(name="Network Test", id=chain_id, slot_duration_ms=slot_ms, **changes)
    spec["endowed"] = spec["endowed"] + list(extra_endowed)
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=slot_ms // 2)
    path.write_text(json.dumps(spec, indent=2))
    return path


@dataclass
class NodeProcess:
    name: str
    base: Path
    spec: Path
    p2p_port: int = field(default_factory=free_port)
    rpc_port: int = field(default_factory=free_port)
    validator: bool = True
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.key_file = self.base / "validator.json"
        self.node_key = self.base / "node_key"
        if not self.key_file.exists():
            write_key_file(self.key_file, f"//{self.name}", 42)
        seed = self.node_key.read_bytes() if self.node_key.exists() else write_node_key(self.node_key)
        self.peer_id = node_peer_id(seed)
        self.log_path = self.base / "node.log"
        self.client = Client(f"http://127.0.0.1:{self.rpc_port}", timeout=20)

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    def start(self, bootnodes: list[str] = (), *extra: str, use_node_key: bool = True,
              prometheus_port: int | None = None) -> "NodeProcess":
        """Start the node; without `use_node_key` it makes (or reuses) its own under its base path."""
        command = [sys.executable, "-m", "node.cli", "--chain", str(self.spec), "--base-path", str(self.base / "data"),
                   "--name", self.name, *(["--node-key-file", str(self.node_key)] if use_node_key else []),
                   "--p2p-host", "127.0.0.1",
                   "--p2p-port", str(self.p2p_port), "--rpc-port", str(self.rpc_port),
                   *(["--prometheus-port", str(prometheus_port)] if prometheus_port else ["--no-prometheus"]),
                   "--log-format", "json", *extra, *EXTRA]
        if self.validator:
            command += ["--validator", "--key-file", str(self.key_file)]
        if bootnodes:
            command += ["--bootnodes", *bootnodes]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        return self

    def wait_rpc(self, timeout: float = 60) -> None:
        wait_until(lambda: self._answers(), timeout, f"{self.name} RPC", [self])

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
        try:
            self.client.call("system_health")
            return True
        except Exception:
            return False

    def call(self, method: str, *params):
        return self.client.call(method, *params)

    def best(self) -> int:
        return int(self.call("chain_getHeader")["number"], 16)

    def peers(self) -> int:
        return self.call("system_health")["peers"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def wait_until(condition, timeout: float, what: str, nodes: list[NodeProcess] = (), interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n" + tails(nodes))


def tails(nodes) -> str:
    return "\n".join(f"--- {n.name} ({n.log_path}) ---\n{n.tail()}" for n in nodes)


class Cluster:
    def __init__(self, base: Path, names=VALIDATORS, *, slot_ms: int = 1000, spec: Path | None = None,
                 validators: bool = True) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.spec = spec or write_spec(base / "spec.json", slot_ms=slot_ms)
        self.nodes = [NodeProcess(name, base / name.lower(), self.spec, validator=validators) for name in names]

    def start(self, nodes=None, *extra: str) -> None:
        for node in nodes if nodes is not None else self.nodes:
            others = [n.address for n in self.nodes if n is not node]
            node.start(others, *extra)
        for node in nodes if nodes is not None else self.nodes:
            node.wait_rpc()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def tails(self) -> str:
        return tails(self.nodes)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
