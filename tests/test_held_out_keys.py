"""Held-out keys re-sealed to validators elected later: the pallet's rules and the newcomer's check."""

from __future__ import annotations

import pytest
import torch

from consensus.useful_work.key_resealing import open_sealed_key, reseal_calls, seal_key, working_key
from consensus.useful_work.secrecy import encrypt_held_out, open_held_out
from runtime.dispatch import DispatchFailure
from runtime.hashing import blake2b_256
from runtime.pallets import held_out_keys
from runtime.pallets.training import SealedKey, create_task
from tests.helpers.chain import DEV_KEYS
from tests.helpers.chain import next_block_context as context
from tests.helpers.training import task_config

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))


@pytest.fixture
def task(chain):
    """Task 0, created by Eve with its held-out key sealed to Alice alone; returns (ciphertext, plaintext key)."""
    features, labels = torch.arange(12, dtype=torch.float32).reshape(4, 3), torch.tensor([0, 1, 0, 1])
    ciphertext, sealed = encrypt_held_out(features, labels, [ALICE.public])
    key = open_sealed_key(sealed[ALICE.public], ALICE)
    config = task_config(held_out=blake2b_256(ciphertext), held_out_size=len(ciphertext),
                         sealed_keys=(SealedKey(ALICE.public, sealed[ALICE.public]),))
    built = chain.author_block([chain.sign(EVE, create_task(config))])
    assert built.outcomes[-1].success, built.outcomes[-1].error
    return ciphertext, key


def submit(chain, who, call):
    built = chain.author_block([chain.sign(who, call)])
    return built.outcomes[-1]


def test_a_holder_reseals_and_the_newcomer_opens_the_held_out_set(chain, task):
    ciphertext, key = task
    assert working_key(chain.overlay(), 0, BOB, ciphertext) is None  # Bob waits: nothing sealed to him
    calls = reseal_calls(chain.overlay(), ALICE, {blake2b_256(ciphertext): ciphertext}.get)
    assert sorted(c.validator for c in calls) == sorted(k.public for k in (BOB, CHARLIE, DAVE))
    for reseal in calls:
        assert submit(chain, ALICE, reseal.call).success
    assert working_key(chain.overlay(), 0, BOB, ciphertext) == key
    sealed = held_out_keys.sealed_keys_for(chain.overlay(), 0, BOB.public)
    features, labels = open_held_out(ciphertext, sealed[0], BOB)
    assert features.shape == (4, 3) and labels.tolist() == [0, 1, 0, 1]
    assert reseal_calls(chain.overlay(), ALICE, {blake2b_256(ciphertext): ciphertext}.get) == []


def test_a_wrong_key_is_skipped_and_the_newcomer_waits_for_an_honest_sealer(chain, task):
    ciphertext, key = task
    assert submit(chain, ALICE, held_out_keys.reseal_held_out_key(0, BOB.public, seal_key(key, BOB.public))).success
    # Bob lies to Charlie: a key that is not the task's
    assert submit(chain, BOB, held_out_keys.reseal_held_out_key(0, CHARLIE.public,
                                                               seal_key(b"\x07" * 32, CHARLIE.public))).success
    assert working_key(chain.overlay(), 0, CHARLIE, ciphertext) is None
    assert submit(chain, ALICE, held_out_keys.reseal_held_out_key(0, CHARLIE.public,
                                                                 seal_key(key, CHARLIE.public))).success
    assert working_key(chain.overlay(), 0, CHARLIE, ciphertext) == key


def test_the_declared_plaintext_hash_binds_the_key_to_the_data(chain, task):
    ciphertext, key = task
    assert submit(chain, ALICE, held_out_keys.reseal_held_out_key(0, BOB.public, seal_key(key, BOB.public))).success
    assert submit(chain, EVE, held_out_keys.declare_held_out_plaintext(0, blake2b_256(b"other data"))).success
    assert working_key(chain.overlay(), 0, BOB, ciphertext) is None  # opens, but not to the declared data
    assert submit(chain, EVE, held_out_keys.declare_held_out_plaintext(0, blake2b_256(b"x"))).error.name == \
        "NotTheCreator"  # declared once only


@pytest.mark.parametrize("case,error", [
    ("unknown_task", held_out_keys.UnknownTask), ("empty", held_out_keys.BadSealedKey),
    ("outsider_sealer", held_out_keys.NotAValidator), ("outsider_recipient", held_out_keys.NotAValidator),
    ("sealer_without_key", held_out_keys.SealerHasNoKey), ("creator_sealed_already", held_out_keys.AlreadyHoldsKey),
])
def test_invalid_reseal_leaves_state_untouched(chain, task, case, error):
    _, key = task
    origin, task_id, recipient, sealed = ALICE.public, 0, BOB.public, seal_key(key, BOB.public)
    if case == "unknown_task":
        task_id = 5
    elif case == "empty":
        sealed = b""
    elif case == "outsider_sealer":
        origin = EVE.public
    elif case == "outsider_recipient":
        recipient = EVE.public
    elif case == "sealer_without_key":
        origin = CHARLIE.public
    elif case == "creator_sealed_already":
        recipient = ALICE.public
        origin = ALICE.public
    ctx = context(chain)
    with pytest.raises(error):
        held_out_keys.reseal_held_out_key.function(ctx, origin, task_id, recipient, sealed)
    assert ctx.state.changes == {} and ctx.state.events == []


def test_one_sealer_cannot_seal_twice_to_one_validator(chain, task):
    _, key = task
    call = held_out_keys.reseal_held_out_key(0, BOB.public, seal_key(key, BOB.public))
    assert submit(chain, ALICE, call).success
    assert submit(chain, ALICE, call).error.name == "AlreadyHoldsKey"
    assert isinstance(held_out_keys.AlreadyHoldsKey(), DispatchFailure)


def test_a_newcomer_measures_rounds_with_a_resealed_key_and_waits_without_one(chain, task, tmp_path):
    from consensus.useful_work.errors import UsefulWorkError
    from consensus.useful_work.rounds import RoundWork
    from runtime.pallets import training
    from storage.blobs import BlobStore
    from storage.database import Database

    ciphertext, key = task
    db = Database(tmp_path / "blobs")
    blobs = BlobStore(db)
    blobs.put(blake2b_256(ciphertext), ciphertext, now_block=1)
    work = RoundWork(blobs, BOB)
    state = chain.overlay()
    current = training.Tasks.get(state, 0)
    with pytest.raises(UsefulWorkError, match="not sealed"):
        work._open_held_out(state, 0, current)
    # a liar seals junk first; Alice then seals the real key: Bob skips the junk and opens the set
    assert submit(chain, ALICE, held_out_keys.reseal_held_out_key(0, CHARLIE.public,
                                                                 seal_key(key, CHARLIE.public))).success
    assert submit(chain, CHARLIE, held_out_keys.reseal_held_out_key(0, BOB.public,
                                                                   seal_key(b"\x01" * 32, BOB.public))).success
    assert submit(chain, ALICE, held_out_keys.reseal_held_out_key(0, BOB.public, seal_key(key, BOB.public))).success
    state = chain.overlay()
    held_out = work._open_held_out(state, 0, current)
    assert held_out is not None
    db.close()
