"""The explorer CLI against a real dev node: a block's extrinsics with their events, an account's
history, statistics, live blocks, and the self-contained HTML page with its plots."""

from __future__ import annotations

import re
import time

import pytest

from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from scripts import explorer
from tests.helpers.chain import DEV_KEYS

CHARLIE, EVE = DEV_KEYS["Charlie"], DEV_KEYS["Eve"]
GRAD = 10**12
WINDOW = 4  # blocks in the HTML window; the fixture waits until each has a parent with a timestamp


def address(public: bytes) -> str:
    return crypto.encode_address(public, 42)


@pytest.fixture(scope="module")
def chain(node):
    """The shared dev node once its chain holds one transfer Charlie -> Eve; (node, its block number, transfer)."""
    client = node.client
    transfer = sign_extrinsic(CHARLIE, balances.transfer_keep_alive(EVE.public, 7 * GRAD), nonce=0,
                              genesis_hash=client.genesis_hash())
    client.submit(transfer)
    number, deadline = None, time.monotonic() + 20
    while number is None and time.monotonic() < deadline:
        time.sleep(0.2)
        for n in range(1, client.header().number + 1):
            if any(x.hash == transfer.hash for x in client.block(client.block_hash(n)).extrinsics):
                number = n
    assert number is not None, "the transfer was not included"
    node.wait_for_block(WINDOW + 1)
    return node, number, transfer


def timestamp_ms(node, number: int) -> int:
    """Block `number`'s time, from its timestamp inherent."""
    inherent = node.client.block(node.client.block_hash(number)).extrinsics[0]
    assert inherent.call.name == "timestamp.set"
    return inherent.call.args[0]


@pytest.fixture
def run(chain, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "320")  # rich reads the width here; no cell is folded in the tests

    def run(*argv: str) -> tuple[int, str, str]:
        code = explorer.main(["--url", chain[0].url, *argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_block_renders_its_extrinsics_with_their_events(chain, run):
    node, number, transfer = chain
    code, out, err = run("block", str(number))
    assert code == 0, err
    assert f"Block #{number}" in out and "finalized" in out
    assert re.search(r"useful work +│ verified", out)  # this node re-checked the block (no rounds in it)
    assert "timestamp.set" in out and "balances.transfer_keep_alive" in out
    assert f"dest={address(EVE.public)}, value=7 GRAD" in out
    assert address(CHARLIE.public) in out
    for event in ("balances.Transfer", "system.ExtrinsicSuccess", "payment.FeesDistributed"):
        assert event in out
    # the transfer follows the two inherents (timestamp.set, randomness.note_slot_signature)
    assert re.search(r"│ 2 +│ balances\.Transfer +│ sender=" + address(CHARLIE.public), out)


def test_block_by_hash_is_the_same_block(chain, run):
    node, number, _ = chain
    block_hash = "0x" + node.client.block_hash(number).hex()
    code, out, _ = run("block", block_hash)
    assert code == 0 and f"Block #{number}" in out and block_hash in out


def test_account_history_shows_the_transfer(chain, run):
    _, number, _ = chain
    code, out, err = run("account", address(EVE.public), "--depth", "100")
    assert code == 0, err
    assert "1,000,007 GRAD" in out  # Eve's genesis endowment plus the transfer
    row = next(line for line in out.splitlines() if re.match(rf"│ {number} +│", line))
    assert "balances.transfer_keep_alive" in row and "named" in row and "balances.Transfer(" in row
    code, out, _ = run("account", "//Charlie")
    assert re.search(rf"│ {number} +│.*balances\.transfer_keep_alive.*│ signer", out)


@pytest.mark.parametrize("command", ["blocks", "stats"])
def test_html_page_is_self_contained_with_the_block_table_and_both_plots(chain, run, tmp_path, command):
    page_path = tmp_path / "chain.html"
    code, out, err = run(command, "--count", str(WINDOW), "--html", str(page_path))
    assert code == 0, err
    assert f"wrote {page_path}" in out
    page = page_path.read_text()

    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 2
    table = re.search(r'<table class=blocks id=blocks>.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    numbers = [int(n) for n in re.findall(r"<tr><td class=n>(\d+)</td>", table)]
    assert len(numbers) == WINDOW and numbers == sorted(numbers, reverse=True)
    plots = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(plots) == 2 and "Block time" in plots[0] and "Transactions per block" in plots[1]
    for plot in plots:
        points = re.findall(r'<circle class="point"[^>]*data-block="(\d+)"', plot)
        assert sorted(int(n) for n in points) == sorted(numbers)
    assert not re.search(r"https?://|<script|<link|<img|@import|url\(|src=", page, re.I)


def test_stats_shows_heights_and_averages(chain, run):
    node, _, _ = chain
    node.wait_for_block(6)  # so the window's oldest block has a parent with a timestamp
    code, out, err = run("stats", "--count", "5")
    assert code == 0, err
    best = int(re.search(r"best block\s+│ #(\d+)", out).group(1))
    finalized = int(re.search(r"finalized block\s+│ #(\d+)", out).group(1))
    assert finalized <= best <= node.client.header().number
    assert re.search(r"blocks in window\s+│ 5\b", out)
    times = [timestamp_ms(node, n) for n in range(best - 5, best + 1)]  # the window and the parent of its first
    intervals = [later - earlier for earlier, later in zip(times, times[1:])]
    assert re.search(rf"average block time\s+│ {sum(intervals) / 5 / 1000:.3f} s", out), out
    assert re.search(rf"min / max block time\s+│ {min(intervals) / 1000:.3f} s / {max(intervals) / 1000:.3f} s", out)


def test_blocks_lists_the_latest_first(chain, run):
    code, out, _ = run("blocks", "--count", "3")
    numbers = [int(n) for n in re.findall(r"^│\s+(\d+) │", out, re.M)]
    assert code == 0 and len(numbers) == 3 and numbers == sorted(numbers, reverse=True)


def test_validators_lists_alice_with_her_stake(run):
    code, out, _ = run("validators")
    assert code == 0 and address(DEV_KEYS["Alice"].public) in out and "100,000 GRAD" in out and "100.0%" in out


def test_follow_prints_consecutive_new_blocks(chain, run):
    code, out, err = run("follow", "--limit", "2")
    assert code == 0, err
    numbers = [int(n) for n in re.findall(r"^#(\d+)", out, re.M)]
    assert len(numbers) == 2 and numbers[1] == numbers[0] + 1


def test_errors_are_one_line_with_exit_code_2(run):
    for argv, fragment in ((["block", "99999999"], "no block #99999999"), (["block", "x"], "bad block"),
                           (["account", "nope"], "bad address"), (["blocks", "--count", "0"], "--count")):
        code, _, err = run(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)
    code = explorer.main(["--url", "http://127.0.0.1:1", "blocks"])
    assert code == 2


@pytest.mark.parametrize("status, shown", [
    (None, "(unknown to this node)"),
    ({"status": "pending", "reasons": [], "missing": [], "since": None, "unchecked": []}, "pending"),
    ({"status": "disputed", "reasons": ["task 0 round 1: data unavailable"], "missing": [], "since": None,
      "unchecked": []}, "disputed: task 0 round 1: data unavailable"),
    ({"status": "unverifiable", "reasons": [], "missing": ["0x01", "0x02"], "since": 40, "unchecked": []},
     "unverifiable: 2 blob(s) missing since block #40"),
    ({"status": "verified", "reasons": [], "missing": [], "since": None, "unchecked": ["task 3: no key"]},
     "verified, except rounds this node cannot check: task 3: no key"),
])
def test_block_view_says_this_nodes_useful_work_verdict(status, shown):
    assert explorer.describe_verification(status) == shown
