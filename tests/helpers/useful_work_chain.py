"""A useful-work task on two chain services (tests.helpers.chain_nodes): held-out data sealed to Alice,
the task that names it, and a round of five trainers' real updates up to its report block (no tests here)."""

from __future__ import annotations

from consensus.useful_work import encode_tensors
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.secrecy import encrypt_held_out
from runtime import crypto
from runtime.hashing import blake2b_256
from runtime.pallets import balances, training
from runtime.pallets.training import ModelSpec, SealedKey, TaskConfig
from tests.helpers.chain_nodes import ALICE, Node, author_and_import
from tests.helpers.useful_work import MLP, base_model, digits_split, trained_deltas

TRAINERS = [crypto.keypair_from_uri(f"//UsefulWork//{i}") for i in range(5)]


def publish(nodes, *data: bytes, now_block: int = 0) -> list[bytes]:
    """Put blobs into every node's blob store; returns their hashes."""
    for node in nodes:
        for blob in data:
            node.service.blobs.put(blake2b_256(blob), blob, now_block=now_block)
    return [blake2b_256(blob) for blob in data]


def sealed_held_out(nodes) -> tuple[bytes, dict]:
    """The digits held-out set encrypted with its key sealed to Alice, published with the base model."""
    split = digits_split()
    ciphertext, sealed = encrypt_held_out(split.held_out_features, split.held_out_labels, [ALICE.public])
    publish(nodes, ciphertext, base_model(MLP).to_blob())
    return ciphertext, sealed


def held_out_task(ciphertext: bytes, sealed: dict, *, rounds: int, bond: int = 10**12, **extra) -> TaskConfig:
    """An MLP task on that held-out set: 2-block commit and reveal windows, a 10**15 reward per round."""
    return TaskConfig(ModelSpec("mlp", (64, 32, 10)), base_model(MLP).model_hash, training.METRIC_LOSS,
                      blake2b_256(ciphertext), len(ciphertext), 200, (SealedKey(ALICE.public, sealed[ALICE.public]),),
                      10**15, rounds, 2, 2, 1, 0, 1 << 20, norm_to_fixed(50.0), bond, 0, 0, **extra)


def run_round(author: Node, follower: Node, *, tamper=None) -> tuple:
    """A task whose held-out key is sealed to Alice, five trainers' real updates, up to the report block.

    Every block the author makes is imported by the follower. `tamper(report)` lets the author lie."""
    ciphertext, sealed = sealed_held_out((author, follower))
    config = held_out_task(ciphertext, sealed, rounds=1)
    blocks = []

    def step(transactions=()):
        block = author_and_import(author, follower, transactions)
        blocks.append(block)
        return block

    step([(ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS])
    step([(ALICE, training.create_task(config))])  # block 2: round 0 starts at 2, commit until 4, reveal until 6
    updates = [encode_tensors(delta) for delta in trained_deltas(MLP)]
    salt = b"\x05" * 32
    publish((author, follower), *updates, now_block=2)
    step([(t, training.commit_update(0, 0, training.update_commitment(blake2b_256(u), t.public, salt)))
          for t, u in zip(TRAINERS, updates)])                                     # block 3
    step()                                                                         # block 4: closes the commit window
    if tamper is not None:  # the author measures once the seed block is in, right after block 6
        real_measure = author.service.work.measure
        author.service.work.measure = lambda inputs: tamper(real_measure(inputs))
    step([(t, training.reveal_update(0, 0, blake2b_256(u), salt, 288, b"\x00" * 32))
          for t, u in zip(TRAINERS, updates)])                                     # block 5
    step()                                                                         # block 6: the seed block
    report_block = step()                                                          # block 7: the report
    return report_block, blocks, [blake2b_256(u) for u in updates]
