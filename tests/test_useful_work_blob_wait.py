"""An author waits for the blobs of revealed updates before it measures the round.

On a network a trainer uploads its update to its own validator and the others fetch it; an author
that measured at once would call an update it has not fetched yet missing, the validators that
have it would dispute the block, and the honest trainer would lose its bond. The author waits up
to UPDATE_BLOB_WAIT_BLOCKS past the report's first block, then reports what it has.
"""

from __future__ import annotations

from consensus.useful_work import encode_tensors
from consensus.useful_work.rounds import UPDATE_BLOB_WAIT_BLOCKS, reports_in
from runtime import crypto
from runtime.pallets import balances, training
from tests.helpers.chain_nodes import ALICE, author_and_import
from tests.helpers.useful_work import MLP, trained_deltas
from tests.helpers.useful_work_chain import held_out_task, publish, sealed_held_out

TRAINERS = [crypto.keypair_from_uri(f"//BlobWait//{i}") for i in range(3)]
SALT = b"\x07" * 32


def revealed_round(author, follower, *, author_lacks: int):
    """A task sealed to Alice, three real updates revealed, up to the seed block; the author's blob store
    lacks update `author_lacks` (the follower has them all). Returns (the updates, their hashes, a step)."""
    ciphertext, sealed = sealed_held_out((author, follower))

    def step(transactions=()):
        return author_and_import(author, follower, transactions)

    step([(ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS])
    step([(ALICE, training.create_task(held_out_task(ciphertext, sealed, rounds=1)))])  # round 0 from block 2
    updates = [encode_tensors(delta) for delta in trained_deltas(MLP)[:len(TRAINERS)]]
    hashes = publish((follower,), *updates, now_block=2)
    publish((author,), *(u for index, u in enumerate(updates) if index != author_lacks), now_block=2)
    step([(t, training.commit_update(0, 0, training.update_commitment(h, t.public, SALT)))
          for t, h in zip(TRAINERS, hashes)])                                      # block 3
    step()                                                                         # block 4
    step([(t, training.reveal_update(0, 0, h, SALT, 288, b"\x00" * 32)) for t, h in zip(TRAINERS, hashes)])
    step()                                                                         # block 6: the seed block
    return updates, hashes, step


def test_the_author_waits_for_a_revealed_blob_and_then_scores_the_update(nodes):
    author, follower = nodes
    updates, hashes, step = revealed_round(author, follower, author_lacks=0)
    waiting = [step() for _ in range(3)]  # blocks 7..9: the report is due, the blob is not here
    assert not any(reports_in(block) for block in waiting)
    author.service.blobs.put(hashes[0], updates[0], now_block=9)  # fetched at last
    # measured from the next new best block on (off the slot), in a block soon after
    (report,) = next(reports for reports in (reports_in(step()) for _ in range(3)) if reports)
    assert {bytes(s.update): s.status for s in report.scores} == dict.fromkeys(hashes, training.UPDATE_OK)
    assert follower.store.verification_status(follower.store.best_hash).state == "verified"


def test_a_blob_still_missing_after_the_wait_is_reported_missing(nodes):
    author, follower = nodes
    updates, hashes, step = revealed_round(author, follower, author_lacks=1)
    blocks = [step() for _ in range(UPDATE_BLOB_WAIT_BLOCKS + 1)]
    with_report = [block for block in blocks if reports_in(block)]
    assert with_report, "the author reports once the wait is over"
    first = with_report[0]
    assert first.header.number == 7 + UPDATE_BLOB_WAIT_BLOCKS  # block 7 is the report's first block
    (report,) = reports_in(first)
    assert {bytes(s.update): s.status for s in report.scores}[hashes[1]] == training.UPDATE_MISSING
