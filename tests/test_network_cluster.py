"""Four validators from a generated spec, as real `gradchain` processes networked over 127.0.0.1.

Bounded in time (every wait has a deadline), every process stopped by pid, log
tails printed on failure. Each test takes well over 20 s: marked slow.
"""

from __future__ import annotations

import pytest

from node.chain_setup import ChainPaths
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from storage.chainstore import ChainStore
from node.testnet.processes import Cluster, wait_until

pytestmark = pytest.mark.slow
EVE = crypto.dev_keypair("Eve")
FERDIE = crypto.dev_keypair("Ferdie")
NAME_OF = {crypto.dev_keypair(n).public: n for n in ("Alice", "Bob", "Charlie", "Dave")}


def _all_connected(cluster: Cluster, count: int) -> bool:
    return all(n.peers() >= count for n in cluster.nodes if n.process and n.process.poll() is None)


def _same_block_at(nodes, number: int) -> bool:
    hashes = {n.call("chain_getBlockHash", number) for n in nodes}
    return len(hashes) == 1 and None not in hashes


def test_transactions_sent_to_one_node_are_included_by_the_others(tmp_path):
    with Cluster(tmp_path) as cluster:
        alice = cluster.nodes[0]
        try:
            cluster.start()
            wait_until(lambda: _all_connected(cluster, 3), 60, "every node to have 3 peers", cluster.nodes)
            genesis = bytes.fromhex(alice.call("chain_getBlockHash", 0)[2:])
            submitted = []
            for nonce in range(24):  # spread over ~8 slots so that every author gets some
                extrinsic = sign_extrinsic(EVE, balances.transfer(FERDIE.public, 10**12), nonce=nonce,
                                           genesis_hash=genesis)
                alice.call("author_submitExtrinsic", "0x" + extrinsic.encoded.hex())
                submitted.append(extrinsic.hash)
                if nonce % 3 == 2:
                    start = alice.best()
                    wait_until(lambda: alice.best() > start, 20, "the next block", cluster.nodes)
            wait_until(lambda: all(n.call("system_accountNextIndex", "0x" + EVE.public.hex()) == 24
                                   for n in cluster.nodes), 60, "all 24 transfers on every node", cluster.nodes)
            common = min(n.best() for n in cluster.nodes) - 1
            wait_until(lambda: _same_block_at(cluster.nodes, common), 30, f"one block at #{common}", cluster.nodes)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{exc!r}\n{cluster.tails()}") from exc
        finally:
            cluster.stop()
        authors = _authors_of(alice, set(submitted))
        assert set(authors) == set(submitted)  # nothing lost
        assert {"Bob", "Charlie", "Dave"} <= set(authors.values()), authors


def _authors_of(node, wanted: set[bytes]) -> dict[bytes, str]:
    """{extrinsic hash: author name} for the wanted extrinsics on the node's best chain (read from its database)."""
    spec_id = "gradchain_nettest"
    store = ChainStore.open(ChainPaths(node.base / "data", spec_id).database)
    try:
        found = {}
        for block_hash in store.iter_canonical(1):
            block = store.block(block_hash)
            for extrinsic in block.extrinsics:
                if extrinsic.hash in wanted:
                    found[extrinsic.hash] = NAME_OF[block.header.digest.author]
        return found
    finally:
        store.close()


def test_a_late_node_syncs_and_follows_and_a_killed_node_catches_up(tmp_path):
    with Cluster(tmp_path) as cluster:
        alice, bob, charlie, dave = cluster.nodes
        try:
            cluster.start([alice, bob, charlie])
            wait_until(lambda: alice.best() >= 10, 60, "block 10 without Dave", cluster.nodes)
            cluster.start([dave])  # starts from genesis, 10+ blocks behind
            wait_until(lambda: dave.best() >= 10, 60, "Dave to sync", cluster.nodes)
            target = alice.best() + 3
            wait_until(lambda: dave.best() >= target, 30, "Dave to follow new blocks", cluster.nodes)
            wait_until(lambda: _same_block_at([alice, dave], 10), 20, "the same block #10", cluster.nodes)
            health = dave.call("system_health")
            assert health["peers"] == 3 and health["shouldHavePeers"] is True

            charlie.kill()  # kill -9: no clean shutdown
            behind = alice.best()
            wait_until(lambda: alice.best() >= behind + 4, 40, "the others to go on without Charlie", cluster.nodes)
            charlie.start([n.address for n in cluster.nodes if n is not charlie])
            charlie.wait_rpc()
            wait_until(lambda: charlie.best() >= alice.best() - 1, 60, "Charlie to catch up", cluster.nodes)
            # the others redial the restarted peer at once (py-libp2p alone would wait 60 s)
            wait_until(lambda: alice.peers() == 3 and charlie.peers() == 3, 20, "Charlie reconnected", cluster.nodes)
            state = charlie.call("system_syncState")
            assert state["currentBlock"] >= behind
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{exc!r}\n{cluster.tails()}") from exc
