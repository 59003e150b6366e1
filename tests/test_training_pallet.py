"""The training pallet as a specification: tasks, commit-reveal, reports, rewards, and every error."""

from __future__ import annotations

import pytest

from runtime.pallets import balances, randomness, system, training
from runtime.pallets.training import RoundReport, Score, UpdateScore
from runtime.validity import InvalidTransaction
from tests.helpers.chain import DEV_KEYS
from tests.helpers.training import BOND, REWARD, H, commit, outcome
from tests.helpers.training import task_config as config

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))


def task_state(chain):
    return training.Tasks.get(chain.overlay(), 0)


def all_balances(chain) -> int:
    overlay = chain.overlay()
    accounts = [k.public for k in DEV_KEYS.values()] + [training.POT_ACCOUNT]
    return sum(a.free + a.reserved for a in (system.Account.get(overlay, w) for w in accounts) if a)


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
    chain.author_block()                                                                # block 7: the seed block
    return bob_update, dave_update


BASE = Score(500_000, 1_500_000)


def loss(ppm: int) -> Score:
    return Score(600_000, ppm)


def report(chain, scores, candidate=None, new_model=None, new_score=None, round=0, base=BASE):
    seed = randomness.History.get(chain.overlay(), 7)  # the randomness after the block past the reveal window
    return RoundReport(0, round, seed, base, candidate, tuple(scores), new_model, new_score)


def test_a_round_pays_accepted_updates_returns_honest_bonds_and_slashes_missing_blobs(chain):
    bob_update, dave_update = run_round_to_report(chain)
    issuance, total = chain.total_issuance(), all_balances(chain)
    assert total == issuance
    dave_reserved = chain.account(DAVE.public).reserved
    # Bob's is the only sound update: it is measured against the base, and the candidate is the new model
    built = chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, training.UPDATE_OK, BASE),
                                                           UpdateScore(dave_update, training.UPDATE_MISSING, None)],
                                                   loss(1_200_000), H("model-1"), loss(1_200_000)),))
    assert all(o.success for o in built.outcomes)
    record = training.Updates.get(chain.overlay(), (0, 0, bob_update))
    # Charlie never revealed (his copy was refused): his bond joins this round's reward
    paid = REWARD + BOND
    validator_share = paid * training.VALIDATOR_SHARE_PPM // 1_000_000
    assert record.accepted and record.reward == paid - validator_share
    validators = len(chain.config.validators)  # Bob is also one of the validators: he gets a share for that too
    assert training.Accrued.get(chain.overlay(), BOB.public) == paid - validator_share + validator_share // validators
    assert training.Accrued.get(chain.overlay(), EVE.public) == 0
    assert chain.account(DAVE.public).reserved == dave_reserved - BOND  # slashed
    assert chain.account(CHARLIE.public).reserved == 100_000 * 10**12  # the copier's bond is gone (stake only)
    task = task_state(chain)
    assert (task.round, task.model, task.model_score) == (1, H("model-1"), loss(1_200_000))
    assert record.contribution_ppm == 300_000 and record.num_samples == 100
    summary = training.Rounds.get(chain.overlay(), (0, 0))
    assert (summary.adopted, summary.revealed, summary.accepted, summary.paid) == (True, 2, 1, paid)
    assert training.ModelVersions.get(chain.overlay(), (0, 0)).contributors == (BOB.public,)
    # issuance: only the slashed bond and burned fees left it; every reward sits in the pot
    assert all_balances(chain) == chain.total_issuance()
    paid = chain.author_block([chain.sign(BOB, training.claim_rewards())])
    assert outcome(paid).success and training.Accrued.get(chain.overlay(), BOB.public) == 0
    assert all_balances(chain) == chain.total_issuance()


def test_an_incomplete_or_inconsistent_report_makes_the_block_invalid(chain):
    bob_update, dave_update = run_round_to_report(chain)
    ok = training.UPDATE_OK
    two = [UpdateScore(bob_update, ok, loss(1_400_000)), UpdateScore(dave_update, ok, loss(1_300_000))]
    incomplete = report(chain, two[:1], loss(1_200_000), H("m"), loss(1_200_000))
    wrong_seed = RoundReport(0, 0, H("not the seed"), BASE, loss(1_200_000), tuple(two), H("m"), loss(1_000_000))
    no_model = report(chain, two, loss(1_200_000))  # both contribute, so a new model must be reported
    model_without_gain = report(chain, [UpdateScore(bob_update, ok, loss(1_100_000)),
                                        UpdateScore(dave_update, ok, loss(1_100_000))], loss(1_200_000),
                                H("m"), loss(1_000_000))  # nobody contributes, so there is no new model
    no_candidate = report(chain, two, None, H("m"), loss(1_000_000))
    lone_against_other = report(chain, [UpdateScore(bob_update, ok, loss(1_400_000)),
                                        UpdateScore(dave_update, training.UPDATE_MALFORMED, None)],
                                loss(1_200_000), H("m"), loss(1_200_000))
    unusable_with_score = report(chain, [two[0], UpdateScore(dave_update, training.UPDATE_MISSING, BASE)],
                                 loss(1_200_000), H("m"), loss(1_200_000))
    out_of_range = report(chain, two, Score(1_000_001, 0), H("m"), loss(1_000_000))
    for bad in (incomplete, wrong_seed, no_model, model_without_gain, no_candidate, lone_against_other,
                unusable_with_score, out_of_range):
        with pytest.raises(InvalidTransaction, match="failed"):
            chain.build(useful_work=(bad,))


def test_a_report_before_the_reveal_window_closes_is_refused(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    with pytest.raises(InvalidTransaction):
        chain.build(useful_work=(RoundReport(0, 0, bytes(32), BASE, None, (), None, None),))


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


def test_cancel_of_an_untouched_round_returns_the_whole_pool(chain):
    chain.author_block([chain.sign(EVE, training.create_task(config()))])
    assert outcome(chain.author_block([chain.sign(BOB, training.cancel_task(0))])).error.name == "NotCreator"
    assert outcome(chain.author_block([chain.sign(EVE, training.cancel_task(0))])).success
    assert chain.account(EVE.public).reserved == 0
    assert task_state(chain).status == training.STATUS_CANCELLED


def test_a_round_without_accepted_updates_pays_nothing_and_moves_on(chain):
    bob_update, dave_update = run_round_to_report(chain)
    eve_reserved = chain.account(EVE.public).reserved
    # both make the aggregate worse (the aggregate without each is better than with both)
    chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, training.UPDATE_OK, loss(1_100_000)),
                                                   UpdateScore(dave_update, training.UPDATE_OK, loss(1_300_000))],
                                           loss(1_350_000)),))
    assert chain.account(EVE.public).reserved == eve_reserved + BOND  # Charlie's forfeited bond joined the pool
    assert task_state(chain).round == 1 and task_state(chain).model == H("model-0")
    assert not training.Updates.get(chain.overlay(), (0, 0, bob_update)).accepted
    assert balances.TotalIssuance.get(chain.overlay()) == all_balances(chain)


def test_rewards_follow_contributions_and_a_worse_aggregate_pays_nobody(chain):
    bob_update, dave_update = run_round_to_report(chain)
    ok = training.UPDATE_OK
    # without Bob the aggregate's loss is 1.5, without Dave 1.3; with both 1.2: Bob adds 0.3, Dave 0.1
    built = chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, ok, loss(1_500_000)),
                                                           UpdateScore(dave_update, ok, loss(1_300_000))],
                                                   loss(1_200_000), H("model-1"), loss(1_200_000)),))
    assert all(o.success for o in built.outcomes)
    paid = REWARD + BOND  # with Charlie's forfeited bond
    trainer_pot = paid - paid * training.VALIDATOR_SHARE_PPM // 1_000_000
    bob = training.Updates.get(chain.overlay(), (0, 0, bob_update))
    dave = training.Updates.get(chain.overlay(), (0, 0, dave_update))
    assert (bob.contribution_ppm, dave.contribution_ppm) == (300_000, 100_000)
    assert (bob.reward, dave.reward) == (trainer_pot * 3 // 4, trainer_pot // 4)
    assert training.ModelVersions.get(chain.overlay(), (0, 0)).contributors == tuple(
        sorted([BOB.public, DAVE.public], key=lambda who: bob_update if who == BOB.public else dave_update))
    assert all_balances(chain) == chain.total_issuance()


def test_accepted_updates_whose_aggregate_is_worse_than_the_base_earn_nothing(chain):
    bob_update, dave_update = run_round_to_report(chain)
    ok = training.UPDATE_OK
    eve_reserved = chain.account(EVE.public).reserved
    worse = Score(400_000, 1_600_000)  # both contribute to the candidate, but it is worse than the base
    chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, ok, loss(1_700_000)),
                                                   UpdateScore(dave_update, ok, loss(1_700_000))],
                                           worse, H("model-1"), worse),))
    assert chain.account(EVE.public).reserved == eve_reserved + BOND and task_state(chain).model == H("model-0")
    assert training.Rounds.get(chain.overlay(), (0, 0)).adopted is False
    assert training.Earned.get(chain.overlay(), BOB.public) == 0


def test_an_update_revealed_in_an_earlier_round_cannot_be_revealed_again(chain):
    bob_update, dave_update = run_round_to_report(chain)
    ok = training.UPDATE_OK
    chain.author_block(useful_work=(report(chain, [UpdateScore(bob_update, ok, loss(1_500_000)),
                                                   UpdateScore(dave_update, ok, loss(1_300_000))],
                                           loss(1_200_000), H("model-1"), loss(1_200_000)),))  # block 8: round 1
    chain.author_block([commit(chain, BOB, bob_update, round=1)])
    chain.author_block()
    chain.author_block()
    built = chain.author_block([reveal(chain, BOB, bob_update, round=1)])  # block 12: reveal window of round 1
    assert outcome(built).error.name == "UpdateAlreadyRevealed"
    assert training.RoundReveals.get(chain.overlay(), (0, 1)) == ()


def test_an_update_far_below_the_rounds_best_contribution_is_not_accepted():
    ok = training.UPDATE_OK
    candidate = loss(1_000_000)
    scores = [UpdateScore(H(name), ok, loss(1_000_000 + gain))
              for name, gain in (("a", 100_000), ("b", 80_000), ("c", 31_000), ("lucky noise", 29_000))]
    relative = config(min_improvement_ppm=1, min_relative_ppm=300_000)  # 30% of the best (100,000)
    assert training.accepted_updates(relative, candidate, scores) == sorted([H("a"), H("b"), H("c")])
    absolute_only = config(min_improvement_ppm=1, min_relative_ppm=0)
    assert H("lucky noise") in training.accepted_updates(absolute_only, candidate, scores)
