"""The training pallet's defences as specifications: each attack of issue 16, and what it gets (a refusal
or nothing). Chain-level cases run on a real LevelDB; the useful-work cases with real updates are in
tests/test_training_attacks_work.py. Every test_invalid_* case leaves the state untouched."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.import_queue import expected_author
from runtime.errors import InvalidBlock
from runtime.executive import Executive
from runtime.hashing import blake2b_256
from runtime.pallets import randomness, system, training
from runtime.pallets.training import RoundReport, Score, TaskConfig, UpdateScore
from runtime.types import Digest, Extrinsic, Header, Seal
from runtime.validity import InvalidTransaction
from tests.helpers.chain import DEV_KEYS, TestChain
from tests.helpers.training import BOND, REWARD, H, task_config

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))
BASE = Score(500_000, 1_500_000)


def config(**changes) -> TaskConfig:
    """The training pallet tests' task (tests.helpers.training), with three rounds."""
    return task_config(**{"rounds": 3, **changes})


def failed(built) -> str | None:
    last = built.outcomes[-1]
    return None if last.success else last.error.name


def task(chain):
    return training.Tasks.get(chain.overlay(), 0)


def commit(chain, who, update, round=0):
    return chain.sign(who, training.commit_update(0, round, training.update_commitment(update, who.public, b"\1" * 32)))


def reveal(chain, who, update, round=0, samples=100):
    return chain.sign(who, training.reveal_update(0, round, update, b"\1" * 32, samples, H("data")))


def snapshot(chain) -> dict:
    """Every value an attack could move: the task, the round's records, the accounts and the pot."""
    overlay = chain.overlay()
    accounts = [k.public for k in DEV_KEYS.values()] + [training.POT_ACCOUNT]
    return {"task": training.Tasks.get(overlay, 0), "next": training.NextTaskId.get(overlay),
            "committers": training.Committers.get(overlay, (0, 0)),
            "reveals": training.RoundReveals.get(overlay, (0, 0)),
            # reserves hold pools and bonds; free balances move with fees (the signer's, the block author's)
            "reserved": {who: a.reserved if (a := system.Account.get(overlay, who)) else None for who in accounts},
            "pot": system.Account.get(overlay, training.POT_ACCOUNT)}


def to_reveal_window(chain, *, committers=(BOB, DAVE), updates=None):
    """Task 0 by Eve (round 0 starts at block 1); `committers` commit in block 2; blocks up to 4 (reveal opens)."""
    updates = updates or [H(f"update-{i}") for i in range(len(committers))]
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    chain.author_block([commit(chain, who, u) for who, u in zip(committers, updates)])
    chain.author_block()
    return updates


def report_for(chain, scores, candidate=None, new_model=None, new_score=None, round=0):
    seed = training.round_windows(task(chain))[2]
    return RoundReport(0, round, randomness.History.get(chain.overlay(), seed), BASE, candidate, tuple(scores),
                       new_model, new_score)


def loss(ppm: int) -> Score:
    return Score(600_000, ppm)


# --- 2. cancelling after the reveals ---------------------------------------------


def test_a_cancel_after_the_reveals_still_pays_the_round_and_returns_only_the_untouched_pool(chain):
    bob_update, dave_update = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, bob_update), reveal(chain, DAVE, dave_update)])  # block 4
    eve_reserved = chain.account(EVE.public).reserved
    built = chain.author_block([chain.sign(EVE, training.cancel_task(0))])                 # block 5
    assert failed(built) is None
    # the two rounds nobody entered come back now; this round's reward stays for its trainers
    assert chain.account(EVE.public).reserved == eve_reserved - 2 * REWARD
    assert task(chain).status == training.STATUS_ACTIVE and task(chain).cancelled
    chain.author_block()                                                                    # block 6
    chain.author_block()                                                                    # block 7: seed block
    ok = training.UPDATE_OK
    chain.author_block(useful_work=(report_for(chain, [UpdateScore(bob_update, ok, loss(1_500_000)),
                                                       UpdateScore(dave_update, ok, loss(1_300_000))],
                                               loss(1_200_000), H("model-1"), loss(1_200_000)),))
    overlay = chain.overlay()
    assert training.Updates.get(overlay, (0, 0, bob_update)).reward > 0
    assert training.Updates.get(overlay, (0, 0, dave_update)).reward > 0
    assert training.Rounds.get(overlay, (0, 0)).paid == REWARD
    assert task(chain).status == training.STATUS_CANCELLED and chain.account(EVE.public).reserved == 0


def test_invalid_second_cancel_changes_nothing(chain):
    bob_update, dave_update = to_reveal_window(chain)
    chain.author_block([chain.sign(EVE, training.cancel_task(0))])
    before = snapshot(chain)
    assert failed(chain.author_block([chain.sign(EVE, training.cancel_task(0))])) == "TaskNotActive"
    assert snapshot(chain) == before


# --- 4. commit griefing ---------------------------------------------------------


def test_sybil_commits_never_revealed_forfeit_their_bonds_into_the_rounds_reward(chain):
    sybils = (CHARLIE, ALICE)
    updates = to_reveal_window(chain, committers=(BOB, *sybils))
    chain.author_block([reveal(chain, BOB, updates[0])])
    reserved = {who.public: chain.account(who.public).reserved for who in sybils}
    for _ in range(3):
        chain.author_block()
    chain.author_block(useful_work=(report_for(chain, [UpdateScore(updates[0], training.UPDATE_OK, BASE)],
                                               loss(1_200_000), H("model-1"), loss(1_200_000)),))
    for who in sybils:
        assert chain.account(who.public).reserved == reserved[who.public] - BOND
    assert training.Rounds.get(chain.overlay(), (0, 0)).paid == REWARD + 2 * BOND  # Bob's round got their bonds


def test_invalid_task_with_a_bond_below_the_chains_minimum_is_refused(chain):
    before = snapshot(chain)
    minimum = training.Limits.get(chain.overlay()).min_commit_bond
    built = chain.author_block([chain.sign(EVE, training.create_task(config(bond=minimum - 1)))])
    assert failed(built) == "BondTooSmall" and snapshot(chain) == before


def test_invalid_second_commit_by_one_account_in_a_round_changes_nothing(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    chain.author_block([commit(chain, BOB, H("first"))])
    before = snapshot(chain)
    assert failed(chain.author_block([commit(chain, BOB, H("second"))])) == "AlreadyCommitted"
    assert snapshot(chain) == before


# --- 5. the subset seed --------------------------------------------------------------


def test_the_subset_seed_is_unknown_until_the_reveal_window_has_closed(chain):
    updates = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, updates[0])])  # block 4
    last_reveal_block = chain.author_block()               # block 6 is the last of the window [4, 7)
    last_reveal_block = chain.author_block()
    assert last_reveal_block.block.header.number == 6
    seed_block = training.round_windows(task(chain))[2]
    assert seed_block == 7 and randomness.History.get(chain.overlay(), seed_block) is None
    chain.author_block()
    seed = randomness.History.get(chain.overlay(), seed_block)
    # the seed folds the signature of block 7's author, which nobody else can make
    accumulator_before = randomness.History.get(chain.overlay(), 6)
    header = chain.chain.best_header()
    signature = randomness.slot_signature(next(k for k in DEV_KEYS.values() if k.public == header.digest.author),
                                          chain.genesis_hash, header.digest.slot)
    assert seed == blake2b_256(accumulator_before + signature)


def test_invalid_report_with_the_old_block_hash_seed_is_refused(chain):
    bob_update, dave_update = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, bob_update)])
    for _ in range(3):
        chain.author_block()
    stale = dataclasses.replace(report_for(chain, [UpdateScore(bob_update, training.UPDATE_OK, BASE)],
                                           loss(1_200_000), H("m"), loss(1_200_000)),
                                subset_seed=chain.chain.hash_at(4))  # the old rule: the block closing the commits
    with pytest.raises(InvalidTransaction, match="randomness"):
        chain.build(useful_work=(stale,))


def test_invalid_block_without_its_authors_slot_signature_or_with_another_is_refused(chain):
    parent = chain.chain.best_header()
    view = chain.chain.state_view(parent.hash)
    authorities = chain.executive.authorities(view)
    slot = parent.digest.slot + 1
    author = next(k for k in DEV_KEYS.values() if k.public == expected_author(authorities, slot))
    other = next(k for k in DEV_KEYS.values() if k.public != author.public)
    header = Header(parent.hash, parent.number + 1, bytes(32), bytes(32), Digest(slot, author.public, Seal(b"")))
    for signature, error in ((randomness.slot_signature(other, chain.genesis_hash, slot), "not the signature"),
                             (randomness.slot_signature(author, chain.genesis_hash, slot + 1), "not the signature")):
        ctx = chain.executive.initialize_block(view, header)
        with pytest.raises(InvalidTransaction, match=error):
            chain.executive.apply_extrinsic(ctx, Extrinsic(None, randomness.note_slot_signature(signature)))
    ctx = chain.executive.initialize_block(view, header)
    chain.executive.apply_extrinsic(ctx, Executive.inherent_extrinsics(slot * chain.slot_ms)[0])
    with pytest.raises(InvalidBlock, match="note_slot_signature"):
        chain.executive.finalize_block(ctx)


# --- 6. the pot is never reaped --------------------------------------------------------


def test_a_round_whose_reward_is_below_the_existential_deposit_closes_and_accrues(chain):
    deposit = chain.config.parameters.existential_deposit
    small = deposit // 10
    chain.author_block([chain.sign(EVE, training.create_task(config(reward_per_round=small, rounds=1)))])
    chain.author_block([commit(chain, BOB, H("b"))])
    chain.author_block()
    chain.author_block([reveal(chain, BOB, H("b"))])
    for _ in range(3):
        chain.author_block()
    assert system.Account.get(chain.overlay(), training.POT_ACCOUNT) is None
    built = chain.author_block(useful_work=(report_for(chain, [UpdateScore(H("b"), training.UPDATE_OK, BASE)],
                                                       loss(1_200_000), H("m"), loss(1_200_000)),))
    assert all(o.success for o in built.outcomes)
    pot = system.Account.get(chain.overlay(), training.POT_ACCOUNT)
    assert pot is not None and pot.free == small < deposit  # a pallet account: created below the deposit
    accrued = training.Accrued.get(chain.overlay(), BOB.public)
    assert 0 < accrued < deposit
    assert failed(chain.author_block([chain.sign(BOB, training.claim_rewards())])) is None
    pot = system.Account.get(chain.overlay(), training.POT_ACCOUNT)
    assert pot is not None and pot.free == small - accrued  # never reaped: the validators' shares are still there
    for name in ("Alice", "Bob", "Charlie", "Dave"):
        if training.Accrued.get(chain.overlay(), DEV_KEYS[name].public):
            assert failed(chain.author_block([chain.sign(DEV_KEYS[name], training.claim_rewards())])) is None
    assert chain.total_issuance() == sum(
        a.free + a.reserved for a in (system.Account.get(chain.overlay(), w)
                                      for w in [k.public for k in DEV_KEYS.values()] + [training.POT_ACCOUNT]) if a)


# --- 7. window bounds -------------------------------------------------------------------


@pytest.mark.parametrize("changes,error", [
    (dict(reveal_blocks=training.MAX_WINDOW_BLOCKS), "WindowTooLong"),
    (dict(commit_blocks=training.MAX_WINDOW_BLOCKS - 2), "WindowTooLong"),
    (dict(reveal_blocks=2**63), "WindowTooLong"),
    (dict(max_samples=0), "SampleCapTooHigh"),
    (dict(max_samples=training.DEFAULT_LIMITS.max_samples_per_update + 1), "SampleCapTooHigh"),
    (dict(max_share_ppm=0), "SampleCapTooHigh"),
    (dict(copy_distance_ppm=1_000_001), "BadCopyDistance"),
])
def test_invalid_task_config_is_refused_with_a_named_error_and_creates_nothing(chain, changes, error):
    before = snapshot(chain)
    assert failed(chain.author_block([chain.sign(EVE, training.create_task(config(**changes)))])) == error
    assert snapshot(chain) == before


def test_the_longest_allowed_windows_still_close(chain):
    longest = config(commit_blocks=training.MAX_WINDOW_BLOCKS - 1, reveal_blocks=1)
    assert failed(chain.author_block([chain.sign(EVE, training.create_task(longest))])) is None
    seed_block = training.round_windows(task(chain))[2]
    # the report block's parent is the seed block: the round's first block is still in the pruning window
    assert seed_block - task(chain).round_start < chain.chain.pruning


# --- the genesis limits -------------------------------------------------------------------


def test_genesis_sets_the_chains_training_limits_and_names_a_bad_field(tmp_path):
    import json

    from runtime.errors import GenesisError
    from runtime.genesis import parse_genesis
    from tests.helpers.chain import GENESIS_PATH

    spec = json.loads(GENESIS_PATH.read_text())
    assert parse_genesis(spec).training is None  # absent: the pallet's defaults, and no genesis entry
    spec["training"] = {"min_commit_bond": 5 * 10**12, "max_samples_per_update": 500}
    limited = TestChain(tmp_path / "limited", parse_genesis(spec))
    try:
        assert training.Limits.get(limited.overlay()) == training.TrainingLimits(5 * 10**12, 500)
        built = limited.author_block([limited.sign(EVE, training.create_task(config(bond=10**12)))])
        assert failed(built) == "BondTooSmall"
    finally:
        limited.close()
    for field, value in (("min_commit_bond", 0), ("max_samples_per_update", 2**32), ("extra", 1)):
        broken = {**spec, "training": {**spec["training"], field: value}}
        with pytest.raises(GenesisError, match="training"):
            parse_genesis(broken)


def test_a_round_nobody_could_report_before_its_seed_expired_ends_on_cancel(chain, monkeypatch):
    monkeypatch.setattr(randomness, "HISTORY_BLOCKS", 4)  # keep 4 blocks of randomness instead of 2400
    updates = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, updates[0])])
    bob_reserved = chain.account(BOB.public).reserved
    for _ in range(8):  # nobody reports: the seed (after block 7) leaves the history
        chain.author_block()
    assert randomness.History.get(chain.overlay(), training.round_windows(task(chain))[2]) is None
    assert failed(chain.author_block([chain.sign(EVE, training.cancel_task(0))])) is None
    assert task(chain).status == training.STATUS_CANCELLED and chain.account(EVE.public).reserved == 0
    assert chain.account(BOB.public).reserved == bob_reserved - BOND  # bonds come back: nobody could measure


def test_a_cancelled_round_nobody_could_report_ends_on_a_second_cancel(chain, monkeypatch):
    monkeypatch.setattr(randomness, "HISTORY_BLOCKS", 4)
    updates = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, updates[0]), chain.sign(EVE, training.cancel_task(0))])
    assert task(chain).cancelled and task(chain).status == training.STATUS_ACTIVE
    for _ in range(8):
        chain.author_block()
    assert failed(chain.author_block([chain.sign(EVE, training.cancel_task(0))])) is None
    assert task(chain).status == training.STATUS_CANCELLED and chain.account(EVE.public).reserved == 0


def test_invalid_report_with_losses_finer_than_the_published_quantum_is_refused(chain):
    bob_update, _ = to_reveal_window(chain)
    chain.author_block([reveal(chain, BOB, bob_update)])
    for _ in range(3):
        chain.author_block()
    fine = report_for(chain, [UpdateScore(bob_update, training.UPDATE_OK, BASE)], loss(1_200_001), H("m"),
                      loss(1_200_001))
    with pytest.raises(InvalidTransaction, match="multiples of 100 ppm"):
        chain.build(useful_work=(fine,))
    assert training.Rounds.get(chain.overlay(), (0, 0)) is None
