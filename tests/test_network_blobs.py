"""Blob availability across four validators: a task and an update uploaded to node A only are fetched
by B, C and D from their peers, hash-checked, and the round's useful work is checked by all of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from consensus.useful_work import ModelSpec, build_model, state_of
from consensus.useful_work.data import load_dataset, split_held_out
from runtime import crypto
from runtime.pallets import balances
from scripts._tasks import ChainAccount, TaskOptions, get_task, publish_task, unhex
from node.testnet.processes import ROOT, Cluster, wait_until

pytestmark = pytest.mark.slow
SPEC = ModelSpec("mlp", input_dim=64, hidden=16, classes=10)


def _report_blocks(node) -> list[bytes]:
    """Hashes of the node's best-chain blocks that carry a useful-work report (the author's inherent)."""
    found = []
    for number in range(1, node.best() + 1):
        block_hash = node.client.block_hash(number)
        block = node.client.block(block_hash)
        if any(x.signed is None and x.call.definition.name == "report_useful_work" for x in block.extrinsics):
            found.append(block_hash)
    return found


def _verified_everywhere(nodes, block_hash: bytes) -> bool:
    statuses = [n.call("chain_getBlockVerification", "0x" + block_hash.hex()) for n in nodes]
    return all(s is not None and s["status"] == "verified" for s in statuses)


def test_an_update_uploaded_only_to_one_node_reaches_and_is_checked_by_all_four(tmp_path):
    with Cluster(tmp_path) as cluster:
        alice_node = cluster.nodes[0]
        trainer = None
        try:
            cluster.start()
            wait_until(lambda: all(n.peers() == 3 for n in cluster.nodes), 60, "a full mesh", cluster.nodes)
            alice = ChainAccount(alice_node.client, crypto.dev_keypair("Alice"))
            worker = crypto.keypair_from_uri("//NetTrainer")
            alice.send(balances.transfer(worker.public, 1000 * 10**12))
            split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)
            task_id = publish_task(alice, SPEC, state_of(build_model(SPEC, 0)), split.held_out_features,
                                   split.held_out_labels, TaskOptions(rounds=1, commit_blocks=25, reveal_blocks=8,
                                                                      min_improvement_ppm=0, min_relative_ppm=0))
            # the trainer starts at once (loading torch takes seconds on a busy machine) and talks to A only
            trainer = subprocess.Popen([sys.executable, "scripts/trainer.py", "--url", alice_node.client.url,
                                        "--uri", "//NetTrainer", "--task", str(task_id), "--shard", "1/1",
                                        "--state", str(tmp_path / "trainer.json")],
                                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            task = get_task(alice_node.client, task_id)
            named = [unhex(task.config["initial_model"]), unhex(task.config["held_out"])]
            others = cluster.nodes[1:]
            wait_until(lambda: all(n.client.get_blob(h) is not None for n in others for h in named), 60,
                       "the task's blobs on B, C and D", cluster.nodes)
            out, _ = trainer.communicate(timeout=240)
            assert trainer.returncode == 0, out
            updates = alice_node.call("training_updates", task_id, 0)
            assert updates, out
            update = unhex(updates[0]["update"])
            wait_until(lambda: all(n.client.get_blob(update) is not None for n in others), 60,
                       "the update blob on B, C and D", cluster.nodes)
            # the author of the report measured it; the three others re-measure it from their own copies
            # of the blobs: the block is `verified` on all four (cannot-check would be `unverifiable`)
            reports = wait_until(lambda: _report_blocks(alice_node), 120, "a block with the round's report",
                                 cluster.nodes)
            wait_until(lambda: _verified_everywhere(cluster.nodes, reports[0]), 120,
                       "the report's block verified by all four", cluster.nodes)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{exc!r}\n{cluster.tails()}") from exc
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.kill()
                trainer.wait(10)

