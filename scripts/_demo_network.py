"""Where the demo's chain runs: a local validator network (`gradchain testnet`) or one `--dev` node.

The network is `gradchain testnet --json` as a child process (scripts stay clients of the
node: they start its command and talk JSON-RPC, they import nothing of node/). Its first
status line names every validator's RPC port and pid; a node that dies ends the demo with
its name and log tail. Stopping the testnet (SIGTERM to its pid) stops every node it
started; if it does not stop in time it is killed, and then so is every node it named.

`FinalityWatch` notes, on the first validator, when each block became final, and reads
who finalized it (grandpa_justifiedBy) and which validators verified it
(chain_getBlockVerification on each node).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, IO

from rpc.client import Client, RpcClientError
from runtime import crypto
from scripts._tasks import TaskError

ROOT = Path(__file__).resolve().parents[1]
GRADCHAIN = [sys.executable, "-m", "node.cli"]
STOP_TIMEOUT_S = 60


@dataclass(frozen=True)
class Validator:
    name: str
    url: str
    pid: int | None
    log: str
    client: Client


def _stop_pid(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it stopped by itself."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


class DevNode:
    """One `gradchain --dev` node (Alice validates alone, 1 s slots); its log goes to <base>/node.log."""

    slot_ms = 1000

    def __init__(self, base: Path) -> None:
        # --rpc-port 0: the node binds a port the kernel picks and logs it ("rpc listening"), so no port is
        # probed here and then taken by someone else before the node binds it.
        self.log = base / "node.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [*GRADCHAIN, "--dev", "--base-path", str(base / "node"), "--rpc-port", "0", "--no-prometheus",
                 "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.validators: list[Validator] = []
        self.client: Client | None = None

    def describe(self) -> str:
        return f"a dev node on {self.client.url} (log {self.log})"

    def _logged_rpc_port(self) -> int | None:
        """The port of the node's "rpc listening" log line, once it has written it."""
        with open(self.log) as lines:
            for line in lines:
                if '"rpc listening"' not in line:
                    continue
                try:
                    return int(json.loads(line)["port"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None

    # 180 s as the testnet's: on a loaded machine (load average 15-25 on 2 cores) a dev node took over 60 s
    def wait_ready(self, say: Callable[[str], None], timeout: float = 180) -> None:
        def ready() -> bool:
            self.check()
            if self.client is None:
                port = self._logged_rpc_port()
                if port is None:
                    return False
                url = f"http://127.0.0.1:{port}"
                self.validators = [Validator("Alice", url, self.process.pid, str(self.log), Client(url, timeout=30))]
                self.client = self.validators[0].client
            try:
                return self.client.header().number >= 1
            except RpcClientError:
                return False
        _wait(ready, timeout, "the node to author its first block")

    def check(self, grace_s: float = 0) -> None:
        if self.process.poll() is not None:
            raise TaskError(f"the node exited with code {self.process.returncode}; see {self.log}")

    def stop(self) -> None:
        _stop_pid(self.process, 30)


class TestnetChain:
    """`gradchain testnet --json` with `count` validators under <base>/testnet; its stderr in <base>/testnet.log."""

    __test__ = False

    def __init__(self, base: Path, count: int, slot_ms: int) -> None:
        self.slot_ms = slot_ms
        self.log = base / "testnet.log"
        self._stderr = open(self.log, "w")
        # its own session: a Ctrl-C reaches the demo, which stops the testnet, which stops its nodes
        self.process = subprocess.Popen(
            [*GRADCHAIN, "testnet", "--validators", str(count), "--base-path", str(base / "testnet"), "--slot-ms",
             str(slot_ms), "--json", "--refresh", "2", "--stop-with-parent"], stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
            stdin=subprocess.DEVNULL, start_new_session=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.count = count
        self.validators: list[Validator] = []
        self.status: list[dict] = []
        self.died: dict | None = None
        self._started = threading.Event()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    @property
    def client(self) -> Client:
        return self.validators[0].client

    def describe(self) -> str:
        return (f"a network of {self.count} validators ({', '.join(v.name for v in self.validators)}; "
                f"`gradchain testnet` pid {self.process.pid}, logs under {Path(self.validators[0].log).parent.parent})")

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "started":
                self.validators = [Validator(n["name"], n["rpc"], n["pid"], n["log"], Client(n["rpc"], timeout=30))
                                   for n in event["nodes"]]
                self._started.set()
            elif event.get("event") == "status":
                self.status = event["nodes"]
            elif event.get("event") == "node_died":
                self.died = event

    def wait_ready(self, say: Callable[[str], None], timeout: float = 180) -> None:
        """Every validator up, connected to all the others, and block 1 final (so finality runs)."""
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.5):
            self.check()
            if time.monotonic() > deadline:
                raise TaskError(f"the testnet did not start its nodes within {timeout:.0f} s; see {self.log}")
        say(f"started {self.describe()}")
        for v in self.validators:
            say(f"  {v.name:<8} pid {v.pid:<7} rpc {v.url}  log {v.log}")
        last = [""]

        def ready() -> bool:
            self.check()
            peers = [s.get("peers") or 0 for s in self.status]
            finalized = [s.get("finalized") or 0 for s in self.status]
            line = f"  waiting for the validators: peers {peers}, finalized {finalized}"
            if line != last[0]:
                say(line)
                last[0] = line
            return len(peers) == self.count and min(peers) >= self.count - 1 and min(finalized) >= 1
        _wait(ready, max(1.0, deadline - time.monotonic()), "every validator to connect and finalize a block",
              poll=0.5)

    def check(self, grace_s: float = 0) -> None:
        """A node or the testnet itself gone ends the demo, naming it (`grace_s`: how long to wait for the
        testnet to notice, after an error that a dead node would explain)."""
        deadline = time.monotonic() + grace_s
        while self.died is None and self.process.poll() is None:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.25)
        time.sleep(0.5)  # the testnet's error (the node's log tail) is being written
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        who = f"validator {self.died['node']} (pid {self.died['pid']}) died" if self.died else \
            f"the testnet exited with code {self.process.poll()}"
        raise TaskError(f"{who}; {self.log}:\n{tail}")

    def stop(self) -> None:
        if not _stop_pid(self.process):
            for v in self.validators:  # the testnet was killed before stopping them: stop them by their pids
                _kill_pid(v.pid)
        self._stderr.close()


def _kill_pid(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TaskError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class FinalityWatch:
    """When each block became final on the first validator (polled on a thread), who finalized it, and which
    validators verified it."""

    def __init__(self, chain, poll_s: float = 0.25) -> None:
        self.chain = chain
        self.validators: list[Validator] = chain.validators
        self.names = {crypto.encode_address(crypto.keypair_from_uri(f"//{v.name}").public, 42): v.name
                      for v in self.validators}
        self.final_at: dict[int, float] = {}  # block number -> wall time it was first seen final
        self.finalized = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), daemon=True)
        self._thread.start()

    def _poll(self, poll_s: float) -> None:
        client = Client(self.validators[0].url, timeout=10)
        while not self._stop.wait(poll_s):
            try:
                number = client.header(client.finalized_hash()).number
            except RpcClientError:
                continue
            now = time.time()
            for height in range(self.finalized + 1, number + 1):
                self.final_at[height] = now
            self.finalized = max(self.finalized, number)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def finality_of(self, number: int) -> dict | None:
        """{block, signers, validators, stake_percent, after_s}, or None while the block is not final."""
        if number not in self.final_at:
            return None
        client = self.validators[0].client
        found = client.call("grandpa_justifiedBy", number)
        header = client.header(client.block_hash(number))
        if found is None or header is None:
            return None
        after = self.final_at[number] - header.digest.slot * self.chain.slot_ms / 1000
        return {"block": number, "justified": found["justified"]["number"],
                "signers": [self.names.get(s, s) for s in found["signers"]], "validators": found["voters"],
                "stake_percent": round(100 * int(found["signedWeight"]) / int(found["totalWeight"]), 1),
                "after_s": round(max(after, 0.0), 1)}

    def disputes(self, number: int) -> str:
        """How each validator judges the canonical block at `number` (why it may not be final)."""
        try:
            return _disputes_line(self.verified_by(number))
        except RpcClientError as error:
            return f"cannot ask: {error}"

    def verified_by(self, number: int) -> dict[str, str]:
        """{validator name: its verification status of the canonical block at `number`}."""
        block_hash = self.validators[0].client.call("chain_getBlockHash", number)
        found = {}
        for v in self.validators:
            try:
                status = v.client.call("chain_getBlockVerification", block_hash)
            except RpcClientError as error:
                status = {"status": f"unreachable ({error.code})"}
            found[v.name] = "unknown" if status is None else status["status"]
        return found


def _disputes_line(verified_by: dict[str, str]) -> str:
    return ", ".join(f"{name}: {status}" for name, status in verified_by.items())


def finality_text(finality: dict | None) -> str:
    """'finalized #123 with precommits of 3/4 validators (75% of stake) 2.1 s after', as the round's line ends.

    The count is the precommits in the block's justification: it stops at the first set over 2/3 of the
    stake, so a validator missing from it may have verified the block too (the "verified by" column says)."""
    if finality is None:
        return "not final yet"
    signed = f"{len(finality['signers'])}/{finality['validators']}"
    return (f"finalized #{finality['block']} with precommits of {signed} validators "
            f"({finality['stake_percent']:g}% of stake) {finality['after_s']:.1f} s after")
