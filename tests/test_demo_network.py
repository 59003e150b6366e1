"""`make run`'s demo on a local network of four validators (`gradchain testnet`), at a tiny size.

Each test runs scripts/demo.py as a user does (a real testnet of four node processes on
127.0.0.1, trainers through different validators) under a deadline, and checks that every
process it started is gone afterwards: at the end, after Ctrl-C, and after a validator died.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.processes import LineReader, stop_process

ROOT = Path(__file__).resolve().parent.parent
VALIDATORS = ["Alice", "Bob", "Charlie", "Dave"]
ROUND_LINE = re.compile(r"^digits_mlp honest\s+(\d+)\s.*finalized #(\d+) with precommits of (\d)/4 validators "
                        r"\(([\d.]+)% of stake\) ([\d.]+) s after$")
PID_LINE = re.compile(r"^\s+(Alice|Bob|Charlie|Dave)\s+pid (\d+)\s")
TESTNET_PID = re.compile(r"`gradchain testnet` pid (\d+)")

pytestmark = pytest.mark.slow


def demo_command(base: Path, *extra: str) -> list[str]:
    return [sys.executable, "scripts/demo.py", "--tasks", "digits_mlp", "--trainers", "4", "--base-path", str(base),
            *extra]


def started_pids(lines: list[str]) -> list[int]:
    """The four validators' pids and the testnet's, as the demo printed them."""
    nodes = [int(m.group(2)) for m in map(PID_LINE.match, lines) if m]
    testnet = [int(m.group(1)) for m in map(TESTNET_PID.search, lines) if m]
    return nodes + testnet[:1]


def assert_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _exists(pid)]
        time.sleep(0.2)
    assert not alive, f"still running: {alive}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting to be reaped is gone for us
        return stat.read().split(") ")[-1][0] != "Z"


def test_each_round_is_shown_final_with_its_stake_and_every_validator_verified_it(tmp_path):
    html = tmp_path / "demo.html"
    result = subprocess.run(demo_command(tmp_path / "base", "--rounds", "2", "--html", str(html), "--json"),
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    lines = result.stdout.splitlines()
    figures = json.loads(lines[-1])
    assert figures["network"] == {"mode": "testnet", "validators": VALIDATORS, "slot_ms": 1000}
    rows = figures["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    printed = {int(m.group(1)): m for m in map(ROUND_LINE.match, lines) if m}
    assert sorted(printed) == [0, 1], "\n".join(lines)
    for row in rows:
        finality = row["finality"]
        # more than 2/3 of the (equal) stake signed the justification of the round's block, or of a later one
        assert finality["block"] == row["closed_at"] and finality["justified"] >= row["closed_at"]
        assert set(finality["signers"]) <= set(VALIDATORS) and len(finality["signers"]) >= 3
        assert finality["validators"] == 4 and finality["stake_percent"] == 25 * len(finality["signers"])
        assert 0 <= finality["after_s"] < 60
        line = printed[row["round"]]
        assert int(line.group(2)) == row["closed_at"] and int(line.group(3)) == len(finality["signers"])
        assert float(line.group(4)) == finality["stake_percent"] and float(line.group(5)) == finality["after_s"]
        # no validator votes for a block it has not verified: all four re-measured the round
        assert row["verified_by"] == dict.fromkeys(VALIDATORS, "verified")
    page = html.read_text()
    rounds_table = page[page.index("<table class=rounds>"):]
    rounds_table = rounds_table[:rounds_table.index("</table>")]
    assert "<th>verified by</th>" in rounds_table and "<th>finalized</th>" in rounds_table
    for row in rows:
        assert f"#{row['closed_at']}, precommits of {len(row['finality']['signers'])}/4" in rounds_table
    assert all(rounds_table.count(f"{name}: verified") == 2 for name in VALIDATORS), rounds_table
    pids = started_pids(lines)
    assert len(pids) == 5, lines[:12]
    assert_gone(pids)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_testnet_and_every_validator(tmp_path, signum):
    demo = subprocess.Popen(demo_command(tmp_path / "base", "--rounds", "5", "--html", ""), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = LineReader(demo.stdout)
    try:
        lines = reader.read_until("running on a network", timeout=240)
        pids = started_pids(lines)
        assert len(pids) == 5, lines
        demo.send_signal(signum)
        assert demo.wait(120) == 130, reader.tail()
        reader.drain()
        assert_gone(pids)
    finally:
        stop_process(demo)


def test_a_validator_that_dies_ends_the_demo_naming_it(tmp_path):
    demo = subprocess.Popen(demo_command(tmp_path / "base", "--rounds", "20", "--html", ""), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = LineReader(demo.stdout)
    try:
        lines = reader.read_until("running on a network", timeout=240)
        pids = started_pids(lines)
        bob = next(int(m.group(2)) for m in map(PID_LINE.match, lines) if m and m.group(1) == "Bob")
        os.kill(bob, signal.SIGKILL)
        assert demo.wait(180) == 1, reader.tail()
        reader.drain()
        assert any(f"validator Bob (pid {bob}) died" in line for line in reader.lines), reader.tail(40)
        assert_gone(pids)
    finally:
        stop_process(demo)
