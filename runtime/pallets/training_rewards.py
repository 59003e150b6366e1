"""training's round close: check the author's report, then pay, refund and forfeit (what
report_useful_work does for each round; the calls are in runtime/pallets/training.py).

Where the money of a round goes, in order:

    bonds       sound and unusable-but-honest updates: back to the trainer; missing or malformed
                blobs: burned; never revealed, or refused as a near-copy: forfeited into the task's
                pool, and this round's reward grows by that much
    reward      min(reward_per_round + forfeited, remaining pool), moved from the creator's reserve
                to the pot and split by contribution among the accepted updates (10% to validators),
                only if the new model beats the base; trainers' shares are whole reward units
                (reward_unit) and the rounding dust goes to the validators' share (the closing
                block's author), so a round pays exactly its reward
    pool        what no round paid goes back to the creator when the task ends
"""

from __future__ import annotations

from runtime.context import BlockContext
from runtime.pallets import balances, randomness, validators
from runtime.pallets.training_storage import (
    Accrued, BadReport, BondForfeited, BondSlashed, Committers, Earned, ModelVersions, Reveals, RoundClosed,
    RoundReveals, Rounds, TaskEnded, TaskNotActive, Tasks, UnknownTask, Updates, UpdateScored,
)
from runtime.pallets.training_types import (
    LOSS_QUANTUM_PPM, MAX_LOSS_PPM, POT_ACCOUNT, STATUS_ACTIVE, STATUS_CANCELLED, STATUS_FINISHED, UPDATE_COPY,
    UPDATE_OK,
    UPDATE_STATUSES, VALIDATOR_SHARE_PPM, ModelVersion, RoundReport, RoundSummary, Score, Task, UpdateRecord,
    round_windows,
)
from runtime.pallets.training_acceptance import excluded_updates, metric_value, round_accepted, round_contributions
from runtime.types import AccountId


def close_round(ctx: BlockContext, report: RoundReport) -> None:
    """Check first (the report is complete and consistent), then mutate, then emit."""
    task = Tasks.get(ctx.state, report.task)
    if task is None:
        raise UnknownTask(f"no task {report.task}")
    if task.status != STATUS_ACTIVE:
        raise TaskNotActive(f"task {report.task} is not active")
    if report.round != task.round:
        raise BadReport(f"task {report.task} is in round {task.round}, the report is for {report.round}")
    seed_block = round_windows(task)[2]
    if ctx.number <= seed_block:
        raise BadReport("the round's subset seed is not known yet (the reveal window is open or just closed)")
    seed = randomness.History.get(ctx.state, seed_block)
    if seed is None or report.subset_seed != seed:
        raise BadReport(f"the held-out subset seed is not the randomness after block {seed_block}")
    key = (report.task, report.round)
    revealed = RoundReveals.get(ctx.state, key)
    accepted = check_report(task, report, revealed)
    metric = task.config.metric
    adopted = bool(accepted) and metric_value(metric, report.new_model_score) > metric_value(metric, report.base)
    gains = round_contributions(task.config, report)
    rewarded = {update: gains[update] for update in accepted} if adopted else {}
    reveals = {h: Reveals.get(ctx.state, (report.task, report.round, h)) for h in revealed}

    forfeited = _settle_bonds(ctx, task, report, reveals)
    pool = task.remaining_pool + forfeited
    rewards, validator_rewards = split_rewards(ctx, task, min(task.config.reward_per_round + forfeited, pool),
                                               rewarded)
    paid = sum(rewards.values()) + sum(validator_rewards.values())
    if paid:
        balances.unreserve(ctx, task.creator, paid)
        balances.do_transfer(ctx, task.creator, POT_ACCOUNT, paid, keep_alive=False)
    for score in report.scores:
        reveal = reveals[score.update]
        reward = rewards.get(score.update, 0)
        contribution = max(gains.get(score.update, 0), 0)
        is_accepted = score.update in rewarded
        Updates.insert(ctx.state, (report.task, report.round, score.update),
                       UpdateRecord(reveal.submitter, score.status, score.without, contribution, is_accepted, reward,
                                    reveal.data_commitment, reveal.num_samples))
        if reward:
            accrue(ctx, reveal.submitter, reward)
        ctx.deposit_event(UpdateScored(report.task, report.round, score.update, contribution, is_accepted, reward))
    for validator, share in validator_rewards.items():
        accrue(ctx, validator, share)
    model, score = task.model, task.model_score
    if adopted:
        model, score = report.new_model, report.new_model_score
        contributors = tuple(reveals[update].submitter for update in sorted(rewarded))
        ModelVersions.insert(ctx.state, key, ModelVersion(model, score, report.round, contributors))
    Rounds.insert(ctx.state, key, RoundSummary(ctx.number, report.subset_seed, report.base, report.candidate, model,
                                               report.new_model_score if adopted else None, adopted, len(revealed),
                                               len(rewarded), paid))
    ctx.deposit_event(RoundClosed(report.task, report.round, model, adopted, paid))
    next_task = Task(task.creator, task.config, task.round + 1, ctx.number + 1, model, score, pool - paid,
                     STATUS_ACTIVE, task.cancelled)
    if next_task.round >= task.config.rounds or task.cancelled:
        end_task(ctx, report.task, next_task)
    else:
        Tasks.insert(ctx.state, report.task, next_task)


def _settle_bonds(ctx: BlockContext, task: Task, report: RoundReport, reveals: dict) -> int:
    """Return, burn or forfeit every bond of the round; what was forfeited (now in the creator's reserve)."""
    bond, forfeited = task.config.bond, 0
    for score in report.scores:
        who = reveals[score.update].submitter
        if score.status == UPDATE_OK:
            balances.unreserve(ctx, who, bond)
        elif score.status == UPDATE_COPY:
            forfeited += _forfeit(ctx, task, report, who)
        else:
            burned = balances.slash_reserved(ctx, who, bond)
            ctx.deposit_event(BondSlashed(report.task, who, burned))
    revealers = {reveal.submitter for reveal in reveals.values()}
    for who in Committers.get(ctx.state, (report.task, report.round)):
        if who not in revealers:  # committed and never revealed: a commit slot held for nothing
            forfeited += _forfeit(ctx, task, report, who)
    return forfeited


def _forfeit(ctx: BlockContext, task: Task, report: RoundReport, who: AccountId) -> int:
    moved = balances.repatriate_reserved(ctx, who, task.creator, task.config.bond)
    ctx.deposit_event(BondForfeited(report.task, report.round, who, moved))
    return moved


def _check_score(score: Score | None, what: str) -> None:
    if score is not None and (score.accuracy_ppm > 1_000_000 or score.loss_ppm > MAX_LOSS_PPM):
        raise BadReport(f"{what}: accuracy is at most 1000000 ppm and loss at most {MAX_LOSS_PPM} ppm")
    if score is not None and score.loss_ppm % LOSS_QUANTUM_PPM:
        raise BadReport(f"{what}: losses are published in multiples of {LOSS_QUANTUM_PPM} ppm, no finer")


def check_report(task: Task, report: RoundReport, revealed: tuple[bytes, ...]) -> list[bytes]:
    """Raise `BadReport` unless the report is complete and consistent; the accepted updates' hashes.

    The candidate weighs every sound update the same (leave-one-out must not read declared sample
    counts) and the new model by `aggregation_weights`, so the two differ even when all are accepted.
    The second pass is scored exactly for the updates the first pass's integers keep (excluded_updates)."""
    if sorted(s.update for s in report.scores) != sorted(revealed):
        raise BadReport("the report must score every revealed update exactly once")
    _check_score(report.base, "base")
    _check_score(report.candidate, "candidate")
    _check_score(report.new_model_score, "new model")
    sound = [s for s in report.scores if s.status == UPDATE_OK]
    for s in report.scores:
        if s.status not in UPDATE_STATUSES:
            raise BadReport(f"update 0x{bytes(s.update).hex()} has an unknown status {s.status}")
        if (s.without is None) == (s.status == UPDATE_OK):
            raise BadReport("sound updates carry the score of the aggregate without them, unusable ones do not")
        _check_score(s.without, "update")
    if (report.candidate is None) != (not sound):
        raise BadReport("the candidate aggregate is scored exactly when some update is sound")
    if len(sound) == 1 and sound[0].without != report.base:
        raise BadReport("a round's only sound update is measured against the base model")
    _check_second_pass(task, report, sound)
    accepted = round_accepted(task.config, report)
    has_model = report.new_model is not None
    if bool(accepted) != has_model or has_model != (report.new_model_score is not None):
        raise BadReport("the new model and its score are reported exactly when some update is accepted")
    return accepted


def _check_second_pass(task: Task, report: RoundReport, sound: list) -> None:
    excluded = set(excluded_updates(task.config, report.candidate, report.scores))
    kept = [s for s in sound if s.update not in excluded] if excluded else []
    if any((s.kept is not None) != (s in kept) for s in report.scores):
        raise BadReport("the second pass scores exactly the sound updates whose first contribution reaches the "
                        "task's minimum, and only when some update's does not")
    if (report.kept_candidate is not None) != bool(kept):
        raise BadReport("the kept updates' aggregate is scored exactly when a second pass keeps some update")
    _check_score(report.kept_candidate, "kept candidate")
    for s in kept:
        _check_score(s.kept, "update (second pass)")
    if len(kept) == 1 and kept[0].kept != report.base:
        raise BadReport("a second pass's only update is measured against the base model")


def split_rewards(ctx: BlockContext, task: Task, pot: int,
                  gains: dict[bytes, int]) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(update hash -> reward, validator -> share) of a round paying `pot`: together exactly `pot`.

    Trainers' rewards follow the contributions (all positive), each rounded down to the round's
    `reward_unit`, so they read as round amounts. The validators get the rest: VALIDATOR_SHARE_PPM
    of the pot plus the trainers' rounding dust, shared equally in whole units; what is left of
    that division (less than one unit per validator) goes to the author of the block that closes
    the round. So all rounding dust ends in one stated place: the validators' share."""
    if not gains:
        return {}, {}
    unit = reward_unit(pot)
    validator_pot = pot * VALIDATOR_SHARE_PPM // 1_000_000
    trainer_pot = pot - validator_pot
    total = sum(gains.values())
    rewards = {update: trainer_pot * gain // total // unit * unit for update, gain in gains.items()}
    validator_set = [v.account for v in validators.Validators.get(ctx.state)]
    if not validator_set:  # no validator to pay (not a live chain): the validators' part stays in the pool
        return rewards, {}
    rest = pot - sum(rewards.values())
    each = rest // len(validator_set) // unit * unit
    shares = dict.fromkeys(validator_set, each)
    dust_to = ctx.author if ctx.author in shares else validator_set[0]
    shares[dust_to] += rest - each * len(validator_set)
    return rewards, {account: share for account, share in shares.items() if share}


def reward_unit(pot: int) -> int:
    """The power of ten that reward shares are whole multiples of: a millionth of the round's
    reward or less (1 planck for a reward under 10**7), so a share loses at most 1 ppm to rounding."""
    return 10 ** max(0, len(str(pot)) - 7)


def accrue(ctx: BlockContext, who: AccountId, amount: int) -> None:
    """Rewards accrue in the pot (which is never reaped), however small: claimable once worth an account."""
    Accrued.insert(ctx.state, who, Accrued.get(ctx.state, who) + amount)
    Earned.insert(ctx.state, who, Earned.get(ctx.state, who) + amount)


def end_task(ctx: BlockContext, task_id: int, task: Task) -> None:
    refund = task.remaining_pool
    if refund:
        balances.unreserve(ctx, task.creator, refund)
    Tasks.insert(ctx.state, task_id, Task(task.creator, task.config, task.round, task.round_start, task.model,
                                          task.model_score, 0,
                                          STATUS_CANCELLED if task.cancelled else STATUS_FINISHED, task.cancelled))
    ctx.deposit_event(TaskEnded(task_id, refund, task.cancelled))
