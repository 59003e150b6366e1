"""A local validator network: a generated chain spec and keys, and N `gradchain` processes on 127.0.0.1.

`gradchain testnet`, the multi-node tests and the fault harness all start their
networks here. Layout of a testnet's base path (reused as it is when it exists, so
a stopped testnet starts again on the same chain, keys and ports):

    spec.json                 the chain spec: N validators, dev accounts endowed
    testnet.json              names, ports and peer ids of the nodes
    <name>/validator.json     the validator's session key (0600)
    <name>/node_key           the libp2p node key (0600): its peer id is known before start
    <name>/data/              the node's --base-path
    <name>/node.log           stdout and stderr of every run, appended

Every process started is stopped by its pid, never by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from node.chain_setup import DEFAULT_CHAIN
from node.keystore import write_key_file
from node.network.config import node_peer_id, write_node_key
from rpc.client import Client
from runtime import crypto
from runtime.errors import GradchainError
from runtime.genesis import parse_genesis

ROOT = Path(__file__).resolve().parents[2]
DEV_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
# accounts the harness and users send load from, endowed on every testnet (never validators)
LOAD_ACCOUNTS = ("Sender1", "Sender2", "Sender3", "Sender4")
ENDOWMENT = 10**18
STAKE = 10**17
T = TypeVar("T")


class TestnetError(GradchainError):
    code = "testnet"

    __test__ = False  # not a pytest class


def validator_names(count: int) -> list[str]:
    """Alice, Bob, ... as Substrate's dev accounts, then Validator7, Validator8, ..."""
    return [DEV_NAMES[i] if i < len(DEV_NAMES) else f"Validator{i + 1}" for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_spec(names: list[str], *, slot_ms: int, chain_id: str = "gradchain_testnet") -> dict:
    """The repository's spec with `names` as equal-stake validators (keys //Name) and a slot of `slot_ms`."""
    spec = json.loads(DEFAULT_CHAIN.read_text())
    prefix = spec["ss58_prefix"]

    def address(name: str) -> str:
        return crypto.encode_address(crypto.keypair_from_uri(f"//{name}").public, prefix)

    endowed = dict.fromkeys([*names, *DEV_NAMES, *LOAD_ACCOUNTS])
    spec.update(name=f"Local Testnet ({len(names)} validators)", id=chain_id, slot_duration_ms=slot_ms,
                validators=[{"name": n, "account": address(n), "stake": STAKE} for n in names],
                endowed=[{"name": n, "account": address(n), "balance": ENDOWMENT} for n in endowed])
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=slot_ms // 2)
    parse_genesis(spec, "testnet spec")  # a bad spec fails here, not in N nodes at once
    return spec


@dataclass
class TestnetNode:
    """One validator process: its files, ports and (while running) its process."""

    __test__ = False

    name: str
    base: Path
    spec: Path
    p2p_port: int
    rpc_port: int
    prometheus_port: int
    peer_id: str
    process: subprocess.Popen | None = None
    stopped_on_purpose: bool = False

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

    def client(self, timeout: float = 10) -> Client:
        return Client(self.rpc_url, timeout=timeout)

    def call(self, method: str, *params, timeout: float = 10):
        return self.client(timeout).call(method, *params)

    def command(self, bootnodes: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
        return [sys.executable, "-m", "node.cli", "--chain", str(self.spec), "--base-path", str(self.base / "data"),
                "--name", self.name, "--validator", "--key-file", str(self.key_file),
                "--node-key-file", str(self.node_key), "--p2p-host", "127.0.0.1", "--p2p-port", str(self.p2p_port),
                "--rpc-port", str(self.rpc_port), "--prometheus-port", str(self.prometheus_port),
                "--log-format", "json", *(["--bootnodes", *bootnodes] if bootnodes else []), *extra]

    def start(self, bootnodes: Iterable[str], extra: Iterable[str] = (), entry: list[str] | None = None) -> None:
        """Start the node (`entry` replaces `python -m node.cli`, e.g. a test's byzantine wrapper)."""
        command = self.command(list(bootnodes), extra)
        if entry is not None:
            command = [*entry, *command[3:]]
        self.stopped_on_purpose = False
        with open(self.log_path, "ab") as log:
            # its own session: a Ctrl-C in the testnet's terminal reaches the testnet, which stops the nodes
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

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

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def answers_rpc(self) -> bool:
        try:
            self.client(timeout=3).call("system_health")
            return True
        except GradchainError:
            return False

    def describe(self) -> dict:
        return {"name": self.name, "pid": self.pid, "p2p_port": self.p2p_port, "rpc_port": self.rpc_port,
                "prometheus_port": self.prometheus_port, "peer_id": self.peer_id, "address": self.address,
                "rpc": self.rpc_url, "base_path": str(self.base / "data"), "log": str(self.log_path)}


class NodeDied(TestnetError):
    code = "testnet_node_died"

    def __init__(self, node: TestnetNode) -> None:
        super().__init__(f"node {node.name} (pid {node.pid}) exited with code {node.exit_code()}; "
                         f"the last lines of {node.log_path}:\n{node.tail()}")
        self.node = node


class LocalTestnet:
    """N validators on 127.0.0.1 under one base path; made on first use, reused after."""

    def __init__(self, base: Path, validators: int = 4, *, slot_ms: int = 2000) -> None:
        if validators < 1:
            raise TestnetError(f"--validators {validators}: a testnet needs at least one validator")
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.spec_path = self.base / "spec.json"
        layout = self.base / "testnet.json"
        if layout.exists():
            self.nodes = self._load(layout)
            if len(self.nodes) != validators:
                raise TestnetError(f"{self.base} holds a testnet of {len(self.nodes)} validators, not {validators}; "
                                   "choose another --base-path")
        else:
            names = validator_names(validators)
            self.spec_path.write_text(json.dumps(make_spec(names, slot_ms=slot_ms), indent=2) + "\n")
            self.nodes = [self._make_node(name) for name in names]
            layout.write_text(json.dumps([n.describe() for n in self.nodes], indent=2) + "\n")
        self.slot_ms = json.loads(self.spec_path.read_text())["slot_duration_ms"]

    def _make_node(self, name: str) -> TestnetNode:
        base = self.base / name.lower()
        base.mkdir(parents=True, exist_ok=True)
        write_key_file(base / "validator.json", f"//{name}", 42)
        seed = write_node_key(base / "node_key")
        return TestnetNode(name, base, self.spec_path, free_port(), free_port(), free_port(), node_peer_id(seed))

    def _load(self, layout: Path) -> list[TestnetNode]:
        return [TestnetNode(d["name"], self.base / d["name"].lower(), self.spec_path, d["p2p_port"], d["rpc_port"],
                            d["prometheus_port"], d["peer_id"]) for d in json.loads(layout.read_text())]

    def node(self, name: str) -> TestnetNode:
        return next(n for n in self.nodes if n.name.lower() == name.lower())

    def bootnodes_for(self, node: TestnetNode) -> list[str]:
        return [n.address for n in self.nodes if n is not node]

    def start(self, timeout: float = 90, abort: Callable[[], bool] = lambda: False) -> bool:
        """Start every node, each with the others as bootnodes, and wait until each answers RPC
        (False if `abort` said so first: a Ctrl-C while the nodes start)."""
        for node in self.nodes:
            node.start(self.bootnodes_for(node))
        return self.wait_until(lambda: abort() or all(n.answers_rpc() for n in self.nodes), timeout,
                               "every node to answer RPC") is True and not abort()

    def restart(self, node: TestnetNode, timeout: float = 90, entry: list[str] | None = None) -> None:
        node.start(self.bootnodes_for(node), entry=entry)
        self.wait_until(node.answers_rpc, timeout, f"{node.name} to answer RPC again")

    def check_alive(self) -> None:
        """Raise NodeDied for the first node that exited without being stopped."""
        for node in self.nodes:
            if node.process is not None and not node.stopped_on_purpose and node.exit_code() is not None:
                raise NodeDied(node)

    def wait_until(self, condition: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
        """Poll `condition` until truthy; a node dying or the deadline passing raises, with the log tails."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                value = condition()
            except GradchainError:
                value = None  # a node busy or restarting: ask again
            if value:
                return value
            if time.monotonic() > deadline:
                raise TestnetError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tails()}")
            time.sleep(interval)

    def stop(self) -> None:
        for node in self.nodes:
            node.send(signal.SIGCONT)
            node.send(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]

    def tails(self, lines: int = 25) -> str:
        return "\n".join(f"--- {n.name} ({n.log_path}) ---\n{n.tail(lines)}" for n in self.nodes)

    def __enter__(self) -> "LocalTestnet":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
