"""`gradchain testnet`: the generated spec and keys, and the command run as a real process.

The process tests start real validators on 127.0.0.1 (marked slow), wait on
conditions read from the --json status lines, and stop everything by pid.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node.testnet.processes import LocalTestnet, TestnetError, make_spec, validator_names
from runtime.genesis import parse_genesis

ROOT = Path(__file__).resolve().parents[1]


def test_validator_names_are_the_dev_accounts_then_numbered():
    assert validator_names(4) == ["Alice", "Bob", "Charlie", "Dave"]
    assert validator_names(8)[6:] == ["Validator7", "Validator8"]


def test_the_spec_has_the_validators_with_equal_stake_and_the_load_accounts_endowed():
    config = parse_genesis(make_spec(validator_names(5), slot_ms=1000), "test")
    spec = config.spec
    assert [v["name"] for v in spec["validators"]] == ["Alice", "Bob", "Charlie", "Dave", "Eve"]
    assert len({v["stake"] for v in spec["validators"]}) == 1
    assert {"Sender1", "Ferdie", "Eve"} <= {e["name"] for e in spec["endowed"]}
    assert spec["slot_duration_ms"] == 1000


def test_a_testnet_base_path_is_made_once_and_reused(tmp_path):
    first = LocalTestnet(tmp_path, 3, slot_ms=1000)
    again = LocalTestnet(tmp_path, 3)
    assert [n.describe() for n in again.nodes] == [n.describe() for n in first.nodes]
    assert len({n.rpc_port for n in first.nodes} | {n.p2p_port for n in first.nodes}) == 6
    assert all(oct(n.key_file.stat().st_mode)[-3:] == "600" for n in first.nodes)
    with pytest.raises(TestnetError, match="3 validators, not 4"):
        LocalTestnet(tmp_path, 4)


def test_zero_validators_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "node.cli", "testnet", "--validators", "0", "--base-path",
                             str(tmp_path / "t")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --validators 0") and result.stderr.count("\n") == 1


class RunningTestnet:
    """`gradchain testnet --json` as a process; its status lines read on a thread."""

    def __init__(self, base: Path, validators: int) -> None:
        self.base = base
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "testnet", "--validators", str(validators), "--slot-ms", "1000",
             "--json", "--base-path", str(base)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.started = self.next_event("started", 120)
        self.pids = [n["pid"] for n in self.started["nodes"]]

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next_event(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if event["event"] == kind:
                return event
        raise AssertionError(f"no {kind!r} line within {timeout} s\n{self.tails()}")

    def wait_status(self, condition, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.next_event("status", max(1.0, deadline - time.monotonic()))
            if condition(status["nodes"]):
                return status
        raise AssertionError(f"timed out waiting for {what}\n{self.tails()}")

    def tails(self) -> str:
        return "\n".join(f"--- {n['name']} ---\n" + "\n".join(Path(n["log"]).read_text(errors="replace")
                                                               .splitlines()[-15:])
                         for n in getattr(self, "started", {"nodes": []})["nodes"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        for pid in getattr(self, "pids", []):  # never leave a node behind, even when the test failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_four_validators_connect_and_build_and_sigterm_stops_every_node(tmp_path):
    testnet = RunningTestnet(tmp_path / "net", 4)
    try:
        ports = [(n["p2p_port"], n["rpc_port"], n["prometheus_port"]) for n in testnet.started["nodes"]]
        assert len({p for triple in ports for p in triple}) == 12
        testnet.wait_status(lambda nodes: all(n["peers"] is not None and n["peers"] >= 3 and n["best"] >= 3
                                              for n in nodes), 120, "every node with 3 peers at best >= 3")
        testnet.process.send_signal(signal.SIGTERM)
        assert testnet.process.wait(60) == 0
        assert not [pid for pid in testnet.pids if _alive(pid)]
    finally:
        testnet.close()


@pytest.mark.slow
def test_a_dying_node_is_named_with_its_log_tail_and_the_others_are_stopped(tmp_path):
    testnet = RunningTestnet(tmp_path / "net", 2)
    try:
        testnet.wait_status(lambda nodes: all(n["best"] and n["best"] >= 2 for n in nodes), 90, "two blocks")
        bob = testnet.started["nodes"][1]
        os.kill(bob["pid"], signal.SIGKILL)
        died = testnet.next_event("node_died", 30)
        assert died["node"] == "Bob" and died["exit_code"] == -signal.SIGKILL
        assert testnet.process.wait(60) == 1
        stderr = testnet.process.stderr.read()
        assert stderr.startswith(f"Error: node Bob (pid {bob['pid']}) exited with code -9")
        assert '"event": "imported block"' in stderr or "authoring" in stderr  # the log tail follows
        assert not [pid for pid in testnet.pids if _alive(pid)]
    finally:
        testnet.close()


def test_the_status_table_shows_every_column_and_a_dash_for_what_an_unreachable_node_cannot_say():
    from rich.console import Console

    from node.testnet.status import NodeStatus, status_table

    console = Console(record=True, width=120)
    console.print(status_table([NodeStatus("Alice", 11, "running", 7, 5, 3, 2, 1, 4),
                                NodeStatus("Bob", 12, "unreachable")], "t"))
    text = console.export_text()
    for column in ("best", "finalized", "peers", "pool", "disputed", "rounds verified"):
        assert column in text
    alice = next(line for line in text.splitlines() if "Alice" in line)
    assert [cell.strip() for cell in alice.split("│") if cell.strip()] == ["Alice", "11", "running", "7", "5", "3",
                                                                          "2", "1", "4"]
    bob = next(line for line in text.splitlines() if "Bob" in line)
    assert "unreachable" in bob and bob.count("-") >= 4


PARENT = """
import subprocess, sys, time
out = open(sys.argv[1], "w")
child = subprocess.Popen([sys.executable, "-m", "node.cli", "testnet", "--validators", "2", "--slot-ms", "1000",
                          "--json", "--stop-with-parent", "--base-path", sys.argv[2]], stdout=out,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_stop_with_parent_stops_every_node_when_its_parent_is_killed(tmp_path):
    """The demo drives `gradchain testnet --stop-with-parent`: a kill -9 of the demo leaves no node behind."""
    lines = tmp_path / "testnet.jsonl"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(lines), str(tmp_path / "net")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pids: list[int] = []
    try:
        testnet_pid = int(parent.stdout.readline())
        pids.append(testnet_pid)
        deadline = time.monotonic() + 120
        while not (lines.exists() and '"started"' in lines.read_text()):
            assert time.monotonic() < deadline and _alive(testnet_pid), "the testnet never started"
            time.sleep(0.2)
        started = json.loads(lines.read_text().splitlines()[0])
        pids += [n["pid"] for n in started["nodes"]]
        assert all(_alive(pid) for pid in pids)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 60
        while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in pids if _alive(pid)], "a node outlived the testnet's parent"
        assert json.loads(lines.read_text().splitlines()[-1])["event"] == "stopped"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
