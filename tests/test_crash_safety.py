"""A node killed at any instant restarts on its last whole block."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import codec
from runtime.types import encode_block
from storage.chainstore import ChainStore
from storage.trie import compute_root_reference
from tests.helpers.chain import DEV_KEYS, TestChain
from tests.helpers.processes import LineReader

CHILD = Path(__file__).resolve().parent / "helpers" / "crash_importer.py"
KILLS = 16  # each kill is a child process start (seconds); 16 still land at many points of an import


def build_blocks(path: Path, count: int, transfers: int) -> list[bytes]:
    chain = TestChain(path)
    try:
        keys = [DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve")]
        encoded = []
        for b in range(count):
            batch = [chain.transfer(keys[i % 5], bytes([b % 250 + 1, i % 250 + 1]) * 16, 10**11 + i,
                                    nonce=b * (transfers // 5) + i // 5) for i in range(transfers)]
            built = chain.author_block(batch)
            assert sum(1 for x in built.block.extrinsics if x.signed is not None) == transfers  # inherents aside
            encoded.append(encode_block(built.block))
        return encoded
    finally:
        chain.close()


def check_database(path: Path) -> int:
    """Reopen after a kill: the best block's state recomputes to its root, and nothing lies above it."""
    chain = ChainStore.open(path, pruning=None)
    try:
        best = chain.best_header()
        stored = chain.stored_state(best.hash)
        items = dict(chain.trie.iter_items(stored.ref))
        assert compute_root_reference(items) == best.state_root
        assert chain.body(best.hash) is not None
        assert chain.hash_at(best.number) == best.hash
        assert chain.hash_at(best.number + 1) is None
        for number in range(1, best.number + 1):  # the canonical chain links up
            header = chain.header(chain.hash_at(number))
            assert header.parent_hash == chain.hash_at(number - 1)
        return best.number
    finally:
        chain.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_the_last_committed_block_whole(tmp_path):
    blocks = build_blocks(tmp_path / "source", count=120, transfers=100)
    blocks_file = tmp_path / "blocks.bin"
    blocks_file.write_bytes(codec.pack(blocks))
    rnd = random.Random(1234)
    runs: list[list[int]] = [[]]  # per database: its best block after each kill
    db_path = tmp_path / "target-0"
    for _ in range(KILLS):
        child = subprocess.Popen([sys.executable, str(CHILD), str(db_path), str(blocks_file)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output = LineReader(child.stdout)
            assert output.readline(timeout=60) == "ready", output.tail()
            time.sleep(rnd.uniform(0.0, 0.6))  # the random moment of the kill
            child.kill()  # SIGKILL; if the import already finished, the kill is a no-op
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        runs[-1].append(check_database(db_path))
        if runs[-1][-1] == len(blocks):  # imported everything: start over on a new database
            runs.append([])
            db_path = tmp_path / f"target-{len(runs) - 1}"
    for heights in runs:  # a kill never takes back a block that was committed before it
        assert heights == sorted(heights), heights
    interrupted = [h for heights in runs for h in heights if h < len(blocks)]
    assert len(interrupted) >= KILLS // 2  # most kills landed inside an import, not after it finished
    assert len(set(interrupted)) > 5  # ... and at many different points of the import
