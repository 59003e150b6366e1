"""The training pallet as a specification: tasks, commit-reveal, reports, rewards, and every error."""

from __future__ import annotations

import pytest

from runtime.hashing import blake2b_256
from runtime.pallets import balances, system, training
from runtime.pallets.training import ModelSpec, RoundReport, SealedKey, TaskConfig, UpdateScore
from runtime.validity import InvalidTransaction
from tests.builders import DEV_KEYS, TestChain

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))
REWARD, BOND = 10**12, 10**11


def H(text: str) -> bytes:
    return blake2b_256(text.encode())


def config(**changes) -> TaskConfig:
    values = dict(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=H("model-0"), initial_score_ppm=500_000,
                  metric=0, held_out=H("held-out"), held_out_size=300,
                  sealed_keys=(SealedKey(ALICE.public, b"k" * 80),), reward_per_round=REWARD, rounds=2,
                  commit_blocks=3, reveal_blocks=3, min_improvement_ppm=1_000, max_update_bytes=10**6, bond=BOND,
                  aggregation=0)
    values.update(changes)
    return TaskConfig(**values)


@pytest.fixture
def chain(tmp_path):
    test_chain = TestChain(tmp_path / "db")
    yield test_chain
    test_chain.close()


def outcome(built):
    return built.outcomes[-1]


def task_state(chain):
    return training.Tasks.get(chain.overlay(), 0)


def all_balances(chain) -> int:
    overlay = chain.overlay()
    accounts = [k.public for k in DEV_KEYS.values()] + [training.POT_ACCOUNT]
    return sum(a.free + a.reserved for a in (system.Account.get(overlay, w) for w in accounts) if a)


def commit(chain, who, update, salt=b"\x01" * 32, round=0):
    return chain.sign(who, training.commit_update(0, round, training.update_commitment(update, who.public, salt)))


def reveal(chain, who, update, salt=b"\x01" * 32, round=0):
    return chain.sign(who, training.reveal_update(0, round, update, salt, 100, H(f"data-{who.public.hex()}")))


def test_create_task_reserves_the_whole_pool(chain):
    reserved = chain.account(EVE.public).reserved
    assert outcome(chain.author_block([chain.sign(EVE, training.create_task(config()))])).success
    assert chain.account(EVE.public).reserved == reserved + 2 * REWARD
    assert task_state(chain).remaining_pool == 2 * REWARD and task_state(chain).round == 0


@pytest.mark.parametrize("changes,error", [
    (dict(rounds=0), "InvalidTaskConfig"), (dict(aggregation=7), "InvalidTaskConfig"),
    (dict(sealed_keys=()), "InvalidTaskConfig"), (dict(reward_per_round=10**30), "InsufficientBalance"),
])
def test_a_bad_task_is_a_dispatch_error_that_creates_nothing(chain, changes, error):
    built = chain.author_block([chain.sign(EVE, training.create_task(config(**changes)))])
    assert outcome(built).error.name == error
    assert training.NextTaskId.get(chain.overlay()) == 0 and chain.account(EVE.public).reserved == 0


def run_round_to_report(chain):
    """Task 0 by Eve; Bob and Dave commit and reveal; Charlie copies Bob's update; returns the updates."""
    bob_update, dave_update = H("bob-update"), H("dave-update")
    chain.author_block([chain.sign(EVE, training.create_task(config()))])               # block 1: round starts
    chain.author_block([commit(chain, BOB, bob_update), commit(chain, DAVE, dave_update),
                        commit(chain, CHARLIE, bob_update, salt=b"\x02" * 32)])            # block 2
    chain.author_block()                                                                # block 3
    built = chain.author_block([reveal(chain, BOB, bob_update), reveal(chain, DAVE, dave_update)])  # block 4
    assert all(o.success for o in built.outcomes)
    copied = chain.author_block([reveal(chain, CHARLIE, bob_update, salt=b"\x02" * 32)])  # block 5
    assert outcome(copied).error.name == "UpdateAlreadyRevealed"
    chain.author_block()                                                                # block 6
    return bob_update, dave_update


def report(chain, scores, new_model=None, new_score=0, round=0):
    seed = chain.chain.hash_at(4)  # the block that closed the commit window (start 1 + 3)
    return RoundReport(0, round, seed, tuple(scores), new_model, new_score)


def test_a_round_pays_accepted_updates_returns_honest_bonds_and_slashes_missing_blobs(chain):
    bob_update, dave_update = run_round_to_report(chain)
    issuance, total = chain.total_issuance(), all_balances(chain)
    assert total == issuance
    dave_reserved = chain.account(DAVE.public).reserved
    built = chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, 600_000, training.UPDATE_OK),
                                                           UpdateScore(dave_update, 0, training.UPDATE_MISSING)],
                                                   H("model-1"), 600_000),))
    assert all(o.success for o in built.outcomes)
    record = training.Updates.get(chain.overlay(), (0, 0, bob_update))
    validator_share = REWARD * training.VALIDATOR_SHARE_PPM // 1_000_000
    assert record.accepted and record.reward == REWARD - validator_share
    validators = len(chain.config.validators)  # Bob is also one of the validators: he gets a share for that too
    assert training.Accrued.get(chain.overlay(), BOB.public) == REWARD - validator_share + validator_share // validators
    assert training.Accrued.get(chain.overlay(), EVE.public) == 0
    assert chain.account(DAVE.public).reserved == dave_reserved - BOND  # slashed
    assert chain.account(CHARLIE.public).reserved == 100_000 * 10**12  # copier's bond came back (stake only)
    task = task_state(chain)
    assert (task.round, task.model, task.model_score_ppm) == (1, H("model-1"), 600_000)
    assert training.ModelVersions.get(chain.overlay(), (0, 0)).contributors == (BOB.public,)
    # issuance: only the slashed bond and burned fees left it; every reward sits in the pot
    assert all_balances(chain) == chain.total_issuance()
    paid = chain.author_block([chain.sign(BOB, training.claim_rewards())])
    assert outcome(paid).success and training.Accrued.get(chain.overlay(), BOB.public) == 0
    assert all_balances(chain) == chain.total_issuance()


def test_an_incomplete_or_inconsistent_report_makes_the_block_invalid(chain):
    bob_update, dave_update = run_round_to_report(chain)
    incomplete = report(chain, [UpdateScore(bob_update, 600_000, training.UPDATE_OK)], H("m"), 600_000)
    wrong_seed = RoundReport(0, 0, H("not the seed"), (UpdateScore(bob_update, 1, 0), UpdateScore(dave_update, 1, 0)),
                             None, 0)
    no_model = report(chain, [UpdateScore(bob_update, 700_000, 0), UpdateScore(dave_update, 1, 0)])
    for bad in (incomplete, wrong_seed, no_model):
        with pytest.raises(InvalidTransaction, match="failed"):
            chain.build(useful_work=(bad,))


def test_a_report_before_the_reveal_window_closes_is_refused(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    with pytest.raises(InvalidTransaction):
        chain.build(useful_work=(RoundReport(0, 0, bytes(32), (), None, 0),))


@pytest.mark.parametrize("case", ["wrong_window", "double_commit", "reveal_mismatch", "unknown_task", "wrong_round",
                                  "no_samples"])
def test_submission_errors_leave_the_round_untouched(chain, case):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    chain.author_block([commit(chain, BOB, H("u"))])
    before = (training.Committers.get(chain.overlay(), (0, 0)), training.RoundReveals.get(chain.overlay(), (0, 0)),
              chain.account(BOB.public).reserved)
    if case == "wrong_window":
        call, name = reveal(chain, BOB, H("u")), "OutsideWindow"  # still in the commit window
    elif case == "double_commit":
        call, name = commit(chain, BOB, H("other")), "AlreadyCommitted"
    elif case == "reveal_mismatch":
        chain.author_block()
        chain.author_block()
        call, name = reveal(chain, BOB, H("u"), salt=b"\x09" * 32), "CommitmentMismatch"
    elif case == "no_samples":
        chain.author_block()
        chain.author_block()
        call = chain.sign(BOB, training.reveal_update(0, 0, H("u"), b"\x01" * 32, 0, H("data")))
        name = "NoSamples"
    elif case == "unknown_task":
        call, name = chain.sign(BOB, training.commit_update(5, 0, bytes(32))), "UnknownTask"
    else:
        call, name = commit(chain, CHARLIE, H("u"), round=1), "WrongRound"
    assert outcome(chain.author_block([call])).error.name == name
    after = (training.Committers.get(chain.overlay(), (0, 0)), training.RoundReveals.get(chain.overlay(), (0, 0)),
             chain.account(BOB.public).reserved)
    assert after == before


def test_cancel_returns_the_unspent_pool_and_bonds(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    chain.author_block([commit(chain, BOB, H("u"))])
    bob_reserved = chain.account(BOB.public).reserved
    assert outcome(chain.author_block([chain.sign(BOB, training.cancel_task(0))])).error.name == "NotCreator"
    assert outcome(chain.author_block([chain.sign(EVE, training.cancel_task(0))])).success
    assert chain.account(EVE.public).reserved == 0
    assert chain.account(BOB.public).reserved == bob_reserved - BOND
    assert task_state(chain).status == training.STATUS_CANCELLED


def test_a_round_without_accepted_updates_pays_nothing_and_moves_on(chain):
    bob_update, dave_update = run_round_to_report(chain)
    eve_reserved = chain.account(EVE.public).reserved
    chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, 500_500, training.UPDATE_OK),
                                                   UpdateScore(dave_update, 400_000, training.UPDATE_OK)]),))
    assert chain.account(EVE.public).reserved == eve_reserved
    assert task_state(chain).round == 1 and task_state(chain).model == H("model-0")
    assert balances.TotalIssuance.get(chain.overlay()) == all_balances(chain)
