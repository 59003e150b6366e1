"""Near-copies and a replayed model step through the node: two rounds of a task on a real chain, the
author measuring and a second node re-measuring every block. The copy verdicts come from the chain's
own records (earlier rounds' updates and model versions, read from state and the blob store)."""

from __future__ import annotations

from consensus.useful_work import encode_tensors
from consensus.useful_work.rounds import reports_in
from consensus.useful_work.train import train_local
from consensus.useful_work.verifier import ModelVersion
from runtime import crypto
from runtime.pallets import balances, system, training
from runtime.state import Overlay
from tests.helpers.chain_nodes import ALICE, author_and_import
from tests.helpers.forgeries import one_ulp
from tests.helpers.useful_work import MLP, base_model, digits_shards, trained_deltas
from tests.helpers.useful_work_chain import held_out_task, sealed_held_out
from tests.helpers.useful_work_chain import publish as publish_blobs

TRAINERS = [crypto.keypair_from_uri(f"//Attacks//{i}") for i in range(6)]
BOND = 10**12
SALT = b"\x05" * 32


def test_a_one_ulp_copy_and_a_replayed_model_step_are_refused_through_the_chain(nodes):
    author, follower = nodes
    ciphertext, sealed = sealed_held_out((author, follower))

    def publish(*data: bytes) -> list[bytes]:
        return publish_blobs((author, follower), *data)

    def step(transactions=()):
        block = author_and_import(author, follower, transactions)
        assert follower.store.dispute_evidence(block.hash) is None, "the follower disputed an honest block"
        return block

    def state():
        return Overlay(author.store.state_view(author.store.best_hash))

    config = held_out_task(ciphertext, sealed, rounds=2, bond=BOND)
    step([(ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS])      # block 1
    step([(ALICE, training.create_task(config))])                                 # block 2: round 0 starts
    round_zero = publish(*(encode_tensors(d) for d in trained_deltas(MLP)[:4]))
    commitments = [(t, training.commit_update(0, 0, training.update_commitment(u, t.public, SALT)))
                   for t, u in zip(TRAINERS, round_zero)]
    step(commitments)                                                             # block 3
    step([(t, training.reveal_update(0, 0, u, SALT, 288, bytes(32))) for t, u in zip(TRAINERS, round_zero)])  # 4
    step()                                                                        # block 5
    step()                                                                        # block 6: the seed block
    closing = step()                                                              # block 7: round 0's report
    assert len(reports_in(closing)) == 1
    model_one = training.Tasks.get(state(), 0).model
    assert model_one != base_model(MLP).model_hash  # round 0 adopted a model: its step is public

    # round 1: two honest trainers, a one-ulp copy of a round-0 update, and the replayed model step
    weights = ModelVersion.from_blob(MLP, author.service.blobs.get(model_one)).weights
    honest = [encode_tensors(train_local(MLP, weights, x, y, epochs=1, batch_size=32, lr=0.05, seed=20 + i))
              for i, (x, y) in enumerate(digits_shards()[:2])]
    copy = one_ulp(encode_tensors(trained_deltas(MLP)[2]))
    replay = encode_tensors({n: weights[n] - base_model(MLP).weights[n] for n in weights})
    round_one = publish(*honest, copy, replay)
    cheats = {TRAINERS[4].public: round_one[2], TRAINERS[5].public: round_one[3]}
    players = list(zip([TRAINERS[0], TRAINERS[1], TRAINERS[4], TRAINERS[5]], round_one))
    before = {t.public: system.Account.get(state(), t.public).reserved for t in TRAINERS}
    step([(t, training.commit_update(0, 1, training.update_commitment(u, t.public, SALT))) for t, u in players])
    step()                                                                        # block 9
    step([(t, training.reveal_update(0, 1, u, SALT, (1 << 32) - 1 if t is TRAINERS[5] else 288, bytes(32)))
          for t, u in players])                                                   # block 10: reveals
    step()                                                                        # block 11
    step()                                                                        # block 12: the seed block
    closing = step()                                                              # block 13: round 1's report
    (report,) = reports_in(closing)
    status = {bytes(s.update): s.status for s in report.scores}
    assert status[round_one[2]] == status[round_one[3]] == training.UPDATE_COPY
    assert status[round_one[0]] == status[round_one[1]] == training.UPDATE_OK
    for who, update in cheats.items():
        record = training.Updates.get(state(), (0, 1, update))
        assert record.reward == 0 and not record.accepted
        assert system.Account.get(state(), who).reserved == before[who]  # the bond is gone: forfeited
    summary = training.Rounds.get(state(), (0, 1))
    assert summary.revealed == 4 and summary.paid in (0, config.reward_per_round + 2 * BOND)
