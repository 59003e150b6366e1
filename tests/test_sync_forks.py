"""Two nodes that grew forks of the same height while apart converge once they meet.

After a 2|2 partition each side often holds a fork as long as the other's; sync used to ask only
peers strictly ahead, so neither side fetched the other's fork and the split lasted until one
side's fork grew (the partition fault scenario recovered in 12-25 s). Now a peer whose best block
is as high as ours but unknown here is synced from too: both nodes import both forks and fork
choice's tie rule (consensus/fork_choice.tie_key) picks the same head on both.
Real LevelDB, real py-libp2p hosts on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from consensus.fork_choice import tie_key
from node.chain_setup import ChainPaths
from runtime.pallets import system
from tests.helpers.chain import DEV_KEYS, TestChain, dev_genesis
from tests.helpers.network_node import InProcessNode, wait_for

HEIGHT = 4


def grow_fork(base, config, slots: list[int], remark: bytes) -> bytes:
    chain = TestChain(ChainPaths(base, config.chain_id).database, config, finalize=False)
    try:
        for slot in slots:
            chain.author_block([chain.sign(DEV_KEYS["Ferdie"], system.remark(remark + bytes([slot])))], slot=slot)
        assert chain.chain.best_header().number == len(slots)
        return chain.chain.best_header().hash
    finally:
        chain.close()


def test_forks_of_equal_height_are_exchanged_and_both_nodes_pick_the_same_head(tmp_path):
    config = dev_genesis()
    best_a = grow_fork(tmp_path / "a", config, [1, 2, 3, 4], b"a")
    best_b = grow_fork(tmp_path / "b", config, [1, 2, 3, 5], b"b")
    assert best_a != best_b
    a = InProcessNode(tmp_path / "a", config, seed=b"\x0a" * 32)
    b = None
    try:
        b = InProcessNode(tmp_path / "b", config, seed=b"\x0b" * 32, bootnodes=[a.address])
        assert a.best() == b.best() == HEIGHT

        def both_have_both() -> bool:
            return all(node.chain.store.header(h) is not None for node in (a, b) for h in (best_a, best_b))
        wait_for(both_have_both, 30, "each node to fetch the other's fork of equal height")
        heads = [a.chain.store.header(best_a), a.chain.store.header(best_b)]
        expected = min(heads, key=tie_key).hash
        wait_for(lambda: a.chain.store.best_header().hash == b.chain.store.best_header().hash == expected, 10,
                 "both nodes on the tie rule's head")
    finally:
        if b is not None:
            b.close()
        a.close()
