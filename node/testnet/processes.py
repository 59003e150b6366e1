"""Real `gradchain` node processes on 127.0.0.1: one node, a group on one spec, a generated N-validator testnet.

The one place that starts node processes: `gradchain testnet` and the network demo
(through it), the multi-node tests, the fault harness and the network benchmarks.

  * `NodeProcess`: one node's files, ports and (while running) its process.
  * `Cluster`: named nodes on one spec (by default the repository's four validators,
    `spec.write_spec`), each started with the others as bootnodes.
  * `LocalTestnet`: a `Cluster` whose spec, keys and ports are generated once and saved,
    so a stopped testnet starts again on the same chain, keys and ports. Its base path:

        spec.json                 the chain spec: N validators, dev accounts endowed
        testnet.json              names, ports and peer ids of the nodes
        <name>/validator.json     the validator's session key (0600)
        <name>/node_key           the libp2p node key (0600): its peer id is known before start
        <name>/data/              the node's --base-path
        <name>/node.log           stdout and stderr of every run, appended

Every process is started in its own session (a Ctrl-C in the terminal reaches whoever
started it, which stops the nodes) and stopped by its pid, never by name. Waits poll a
condition under a deadline, fail as soon as a node dies, and carry the log tails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from node.keystore import write_key_file
from node.network.config import node_peer_id, write_node_key
from node.testnet.spec import (  # noqa: F401 - the names the harness and tests import from here
    DEV_NAMES, ENDOWMENT, LOAD_ACCOUNTS, STAKE, make_spec, validator_names, write_spec,
)
from rpc.client import Client
from runtime.errors import GradchainError

ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = ("Alice", "Bob", "Charlie", "Dave")  # the repository spec's validators
EXTRA: list[str] = []  # arguments added to every node's command line (a benchmark's switch)
T = TypeVar("T")


class TestnetError(GradchainError):
    code = "testnet"

    __test__ = False  # not a pytest class


_LOWEST_PORT = 10_000
_handed_out: set[int] = set()  # ports this process gave out already: never twice


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a process started later to bind. Chosen below the kernel's
    ephemeral range: a port handed out by bind(0) is an ephemeral one, which any outgoing connection (a
    node dialling its peers) may take before the node binds it ("address already in use", seen in CI)."""
    low, _ = _ephemeral_range()
    if low - _LOWEST_PORT >= 1_000:
        for _ in range(200):
            port = random.randrange(_LOWEST_PORT, low)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class NodeProcess:
    """One node: its base path (keys made on first use), ports and, while running, its process."""

    __test__ = False  # imported as TestnetNode into test modules: not a pytest class

    name: str
    base: Path
    spec: Path
    p2p_port: int = field(default_factory=free_port)
    rpc_port: int = field(default_factory=free_port)
    prometheus_port: int | None = None  # None: --no-prometheus
    peer_id: str = ""  # of the node key; read (or made) at construction when not given
    validator: bool = True
    rpc_timeout: float = 20
    process: subprocess.Popen | None = None
    stopped_on_purpose: bool = False

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            write_key_file(self.key_file, f"//{self.name}", 42)
        seed = self.node_key.read_bytes() if self.node_key.exists() else write_node_key(self.node_key)
        self.peer_id = self.peer_id or node_peer_id(seed)
        self.client = Client(self.rpc_url, timeout=self.rpc_timeout)

    @property
    def key_file(self) -> Path:
        return self.base / "validator.json"

    @property
    def node_key(self) -> Path:
        return self.base / "node_key"

    @property
    def log_path(self) -> Path:
        return self.base / "node.log"

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def call(self, method: str, *params, timeout: float | None = None):
        client = self.client if timeout is None else Client(self.rpc_url, timeout=timeout)
        return client.call(method, *params)

    def best(self) -> int:
        return int(self.call("chain_getHeader")["number"], 16)

    def peers(self) -> int:
        return self.call("system_health")["peers"]

    def command(self, bootnodes: Iterable[str] = (), extra: Iterable[str] = (), *, use_node_key: bool = True) -> list[str]:
        bootnodes = list(bootnodes)
        return [sys.executable, "-m", "node.cli", "--chain", str(self.spec), "--base-path", str(self.base / "data"),
                "--name", self.name, *(["--validator", "--key-file", str(self.key_file)] if self.validator else []),
                *(["--node-key-file", str(self.node_key)] if use_node_key else []),
                "--p2p-host", "127.0.0.1", "--p2p-port", str(self.p2p_port), "--rpc-port", str(self.rpc_port),
                *(["--prometheus-port", str(self.prometheus_port)] if self.prometheus_port else ["--no-prometheus"]),
                "--log-format", "json", *(["--bootnodes", *bootnodes] if bootnodes else []), *extra, *EXTRA]

    def start(self, bootnodes: Iterable[str] = (), *extra: str, use_node_key: bool = True,
              prometheus_port: int | None = None, entry: list[str] | None = None) -> "NodeProcess":
        """Start the node (`entry` replaces `python -m node.cli`, e.g. a test's byzantine wrapper; without
        `use_node_key` the node makes, or reuses, its own key under its base path)."""
        if prometheus_port is not None:
            self.prometheus_port = prometheus_port
        command = self.command(bootnodes, extra, use_node_key=use_node_key)
        if entry is not None:
            command = [*entry, *command[3:]]
        self.stopped_on_purpose = False
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def has_died(self) -> bool:
        """Exited without being stopped through this object."""
        return self.process is not None and not self.stopped_on_purpose and self.exit_code() is not None

    def send(self, signum: int) -> None:
        if self.is_running():
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop by pid: the signal, then SIGKILL after `timeout`; waits until the process is gone."""
        if self.process is None:
            return
        self.stopped_on_purpose = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen node cannot handle SIGTERM
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        """kill -9: no clean shutdown."""
        self.stop(signal.SIGKILL)

    def answers_rpc(self) -> bool:
        try:
            self.call("system_health", timeout=3)
            return True
        except GradchainError:
            return False

    def wait_rpc(self, timeout: float = 60) -> None:
        wait_until(self.answers_rpc, timeout, f"{self.name} to answer RPC", [self])

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def describe(self) -> dict:
        return {"name": self.name, "pid": self.pid, "p2p_port": self.p2p_port, "rpc_port": self.rpc_port,
                "prometheus_port": self.prometheus_port, "peer_id": self.peer_id, "address": self.address,
                "rpc": self.rpc_url, "base_path": str(self.base / "data"), "log": str(self.log_path)}


TestnetNode = NodeProcess  # the fault harness's name for it


class NodeDied(TestnetError):
    code = "testnet_node_died"

    def __init__(self, node: NodeProcess) -> None:
        super().__init__(f"node {node.name} (pid {node.pid}) exited with code {node.exit_code()}; "
                         f"the last lines of {node.log_path}:\n{node.tail()}")
        self.node = node


def tails(nodes: Iterable[NodeProcess], lines: int = 25) -> str:
    return "\n".join(f"--- {n.name} ({n.log_path}) ---\n{n.tail(lines)}" for n in nodes)


def wait_until(condition: Callable[[], T], timeout: float, what: str, nodes: Sequence[NodeProcess] = (),
               interval: float = 0.2) -> T:
    """Poll `condition` until truthy. A node of `nodes` dying raises NodeDied at once; the deadline passing
    raises TestnetError with the nodes' log tails. A node busy or restarting (an RPC error) is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        for node in nodes:
            if node.has_died():
                raise NodeDied(node)
        try:
            value = condition()
        except GradchainError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestnetError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails(nodes)}")
        time.sleep(interval)


class Cluster:
    """Named nodes on one spec under one base path (the repository's four validators by default)."""

    def __init__(self, base: Path, names: Sequence[str] = VALIDATORS, *, slot_ms: int = 1000,
                 spec: Path | None = None, validators: bool = True) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.spec = self.spec_path = spec or write_spec(self.base / "spec.json", slot_ms=slot_ms)
        self.nodes = [NodeProcess(name, self.base / name.lower(), self.spec, validator=validators) for name in names]

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.nodes if n.name.lower() == name.lower())

    def bootnodes_for(self, node: NodeProcess) -> list[str]:
        return [n.address for n in self.nodes if n is not node]

    def start(self, nodes: Sequence[NodeProcess] | None = None, *extra: str, timeout: float = 90,
              abort: Callable[[], bool] = lambda: False) -> bool:
        """Start `nodes` (default all), each with every other node as a bootnode, and wait until each answers
        RPC; False if `abort` said so first (a Ctrl-C while the nodes start)."""
        chosen = list(self.nodes if nodes is None else nodes)
        for node in chosen:
            node.start(self.bootnodes_for(node), *extra)
        return self.wait_until(lambda: abort() or all(n.answers_rpc() for n in chosen), timeout,
                               "every node to answer RPC") is True and not abort()

    def restart(self, node: NodeProcess, timeout: float = 90, entry: list[str] | None = None) -> None:
        node.start(self.bootnodes_for(node), entry=entry)
        self.wait_until(node.answers_rpc, timeout, f"{node.name} to answer RPC again")

    def check_alive(self) -> None:
        """Raise NodeDied for the first node that exited without being stopped."""
        for node in self.nodes:
            if node.has_died():
                raise NodeDied(node)

    def wait_until(self, condition: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
        return wait_until(condition, timeout, what, self.nodes, interval)

    def stop(self) -> None:
        for node in self.nodes:  # every node told first: they shut down side by side
            node.send(signal.SIGCONT)
            node.send(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]

    def tails(self, lines: int = 25) -> str:
        return tails(self.nodes, lines)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalTestnet(Cluster):
    """N validators on 127.0.0.1 under one base path; made on first use (spec, keys, ports), reused after."""

    def __init__(self, base: Path, validators: int = 4, *, slot_ms: int = 2000) -> None:
        if validators < 1:
            raise TestnetError(f"--validators {validators}: a testnet needs at least one validator")
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.spec = self.spec_path = self.base / "spec.json"
        layout = self.base / "testnet.json"
        if layout.exists():
            self.nodes = [self._node(d["name"], d["p2p_port"], d["rpc_port"], d["prometheus_port"], d["peer_id"])
                          for d in json.loads(layout.read_text())]
            if len(self.nodes) != validators:
                raise TestnetError(f"{self.base} holds a testnet of {len(self.nodes)} validators, not {validators}; "
                                   "choose another --base-path")
        else:
            names = validator_names(validators)
            self.spec_path.write_text(json.dumps(make_spec(names, slot_ms=slot_ms), indent=2) + "\n")
            self.nodes = [self._node(name, free_port(), free_port(), free_port()) for name in names]
            layout.write_text(json.dumps([n.describe() for n in self.nodes], indent=2) + "\n")
        self.slot_ms = json.loads(self.spec_path.read_text())["slot_duration_ms"]

    def _node(self, name: str, p2p: int, rpc: int, prometheus: int, peer_id: str = "") -> NodeProcess:
        return NodeProcess(name, self.base / name.lower(), self.spec_path, p2p, rpc, prometheus, peer_id,
                           rpc_timeout=10)
