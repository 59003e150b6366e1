"""training: federated learning tasks, commit-reveal update submission, scores and rewards.

A round of a task runs in three windows counted in blocks from its start:

    commit  [start, start + commit_blocks)             commit_update(hash(update, submitter, salt)), bond reserved
    reveal  [.. , .. + reveal_blocks)                  reveal_update(update hash, salt, samples, data commitment)
    report  from the end of the reveal window          the block author's report_useful_work inherent

The runtime never runs a model. The author's inherent carries integer scores
(accuracy and cross-entropy in parts per million), measured on a held-out subset
whose seed is the hash of the block that closed the commit window:

    base        the round's base model
    candidate   the aggregate of every sound update of the round
    without_i   for each sound update i, the aggregate of all the others (the base when i is alone)
    new model   the aggregate of the accepted updates: its hash and score

An update's contribution is how much worse the round's aggregate gets without it,
value(candidate) - value(without_i), in the task's metric (value = -loss or
accuracy). This leave-one-out rule pays for what an update adds to the global
model, so an honest trainer whose private data covers only a few classes (whose
update alone would make the model worse on the balanced held-out set) still
earns, while noise, sign-flipped or scaled updates make the aggregate worse and
earn nothing. An update is accepted if its contribution reaches the task's
minimum; the new model is adopted if it beats the base, and then the accepted
updates share the round's reward in proportion to their contributions, with a
validators' share for the validator set. Validators re-measure every integer
before they finalize the block (consensus/useful_work); the runtime checks that
the report is complete and consistent, then records it. Bonds come back for
honest updates (accepted or not) and are burned for updates whose blob was
missing, malformed or out of bounds.

Copying does not pay: a reveal must match an earlier commit by the same account
to hash(update, submitter, salt), and an update hash revealed once in a task
cannot be revealed again, in this round or a later one (a stale resubmission).

Balances: the reward pool is reserved from the creator; each round's reward
moves to the pot account when it is paid out, and claim_rewards pays an
account's accrued rewards from the pot, so total issuance never changes.
"""

from __future__ import annotations

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, DispatchFailure, Pallet
from runtime.pallets import balances, system, validators
from runtime.pallets.training_types import (  # noqa: F401  (re-exported: training.X is the public name)
    POT_ACCOUNT, VALIDATOR_SHARE_PPM, MAX_SEALED_KEYS, MAX_UPDATES_PER_ROUND, AGGREGATIONS, METRIC_LOSS,
    METRIC_ACCURACY, METRICS, MAX_LOSS_PPM, MAX_SUBSET, STATUS_ACTIVE, STATUS_FINISHED, STATUS_CANCELLED, UPDATE_OK,
    UPDATE_MISSING, UPDATE_MALFORMED, TASK_WEIGHT, SUBMIT_WEIGHT, ModelSpec, SealedKey, TaskConfig, Score, Task,
    Reveal, UpdateScore, RoundReport, UpdateRecord, RoundSummary, ModelVersion, update_commitment, round_windows,
    metric_value, contributions, accepted_updates,
)
from runtime.state import StorageMap, StorageValue, changed_map_keys
from runtime.types import AccountId, Balance, Hash

pallet = Pallet(6, "training", "Federated learning tasks, commit-reveal updates, useful-work reports and rewards.")

# Config, record types and the acceptance rule live in runtime/pallets/training_types.py.

# --- storage ----------------------------------------------------------------

NextTaskId = StorageValue(pallet, "NextTaskId", codec.U64, 0, "The id the next task gets.")
Tasks = StorageMap(pallet, "Tasks", codec.U64, Task, None, "Every task, by id.")
Commits = StorageMap(pallet, "Commits", tuple[codec.U64, codec.U32, AccountId], Hash, None,
                     "Commitments of a round: (task, round, account) -> hash(update, account, salt).")
Committers = StorageMap(pallet, "Committers", tuple[codec.U64, codec.U32], tuple[AccountId, ...], (),
                        "Accounts that committed in a round (their bonds are reserved).")
Reveals = StorageMap(pallet, "Reveals", tuple[codec.U64, codec.U32, Hash], Reveal, None,
                     "Revealed updates of a round, by update hash.")
RoundReveals = StorageMap(pallet, "RoundReveals", tuple[codec.U64, codec.U32], tuple[Hash, ...], (),
                          "Update hashes revealed in a round, in order of reveal.")
Updates = StorageMap(pallet, "Updates", tuple[codec.U64, codec.U32, Hash], UpdateRecord, None,
                     "Scores, fates and rewards of scored updates (the audit trail).")
SeenUpdates = StorageMap(pallet, "SeenUpdates", tuple[codec.U64, Hash], codec.U32, None,
                         "Every update hash revealed in a task, with its round (a hash is revealed once per task).")
Rounds = StorageMap(pallet, "Rounds", tuple[codec.U64, codec.U32], RoundSummary, None, "How each round closed.")
ModelVersions = StorageMap(pallet, "ModelVersions", tuple[codec.U64, codec.U32], ModelVersion, None,
                           "The global model after each round that improved it.")
Accrued = StorageMap(pallet, "Accrued", AccountId, Balance, 0, "Rewards an account can claim.")
Earned = StorageMap(pallet, "Earned", AccountId, Balance, 0, "All rewards an account ever earned (leaderboard).")
ActiveTasks = StorageValue(pallet, "ActiveTasks", tuple[codec.U64, ...], (),
                           "Ids of the active tasks, ascending (kept by on_finalize): reports and blob GC read these "
                           "instead of every task ever created.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class TaskCreated:
    """A task was created and its reward pool reserved."""

    task: codec.U64
    creator: AccountId
    pool: Balance


@pallet.event(1)
class UpdateCommitted:
    """A trainer committed to an update (its bond is reserved)."""

    task: codec.U64
    round: codec.U32
    who: AccountId


@pallet.event(2)
class UpdateRevealed:
    """A trainer revealed the update it committed to."""

    task: codec.U64
    round: codec.U32
    who: AccountId
    update: Hash


@pallet.event(3)
class UpdateScored:
    """An update's measured score and fate."""

    task: codec.U64
    round: codec.U32
    update: Hash
    contribution_ppm: codec.U64
    accepted: bool
    reward: Balance


@pallet.event(4)
class RoundClosed:
    """A round ended; `model` is the global model after it (new if one was adopted)."""

    task: codec.U64
    round: codec.U32
    model: Hash
    adopted: bool
    paid: Balance


@pallet.event(5)
class BondSlashed:
    """A trainer's bond was burned: its revealed update's blob was missing, malformed or too large."""

    task: codec.U64
    who: AccountId
    amount: Balance


@pallet.event(6)
class RewardsClaimed:
    """Accrued rewards were paid out."""

    who: AccountId
    amount: Balance


@pallet.event(7)
class TaskEnded:
    """A task finished its rounds or was cancelled; the unspent pool went back to its creator."""

    task: codec.U64
    refunded: Balance
    cancelled: bool


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class UnknownTask(DispatchFailure):
    """No task has this id."""


@pallet.error(1)
class TaskNotActive(DispatchFailure):
    """The task has finished or was cancelled."""


@pallet.error(2)
class WrongRound(DispatchFailure):
    """That is not the task's current round."""


@pallet.error(3)
class OutsideWindow(DispatchFailure):
    """The call is not allowed in this part of the round (commit, reveal or report window)."""


@pallet.error(4)
class AlreadyCommitted(DispatchFailure):
    """This account already committed in this round."""


@pallet.error(5)
class CommitmentMismatch(DispatchFailure):
    """The reveal does not match an earlier commit by the same account."""


@pallet.error(6)
class UpdateAlreadyRevealed(DispatchFailure):
    """This update hash was already revealed in this task (by someone else, or in an earlier round)."""


@pallet.error(7)
class InvalidTaskConfig(DispatchFailure):
    """The task's parameters are inconsistent (the message says which)."""


@pallet.error(8)
class BadReport(DispatchFailure):
    """The useful-work report does not fit the round (the message says what)."""


@pallet.error(9)
class NotCreator(DispatchFailure):
    """Only the task's creator may do this."""


@pallet.error(10)
class NothingToClaim(DispatchFailure):
    """No rewards have accrued to this account."""


@pallet.error(11)
class RoundFull(DispatchFailure):
    """The round has as many updates as it can score."""


@pallet.error(12)
class NoSamples(DispatchFailure):
    """An update must say how many samples it was trained on (at least one)."""


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    """Keep ActiveTasks in step with the Tasks written in this block (created, ended, cancelled).

    A sweep of the block's own writes, so the calls need not know about the index."""
    changed = [Tasks.key_from_storage_key(k) for k in changed_map_keys(ctx.state, Tasks)]
    if not changed:
        return
    active = set(ActiveTasks.get(ctx.state))
    before = len(active), frozenset(active)
    for task_id in changed:
        task = Tasks.get(ctx.state, task_id)
        if task is not None and task.status == STATUS_ACTIVE:
            active.add(task_id)
        else:
            active.discard(task_id)
    if (len(active), frozenset(active)) != before:
        ActiveTasks.put(ctx.state, tuple(sorted(active)))


# --- functions other code uses ------------------------------------------------

def reports_due(state, number: int) -> list[tuple[int, Task]]:
    """Active tasks whose current round's reveal window has closed by block `number` (the author reports them)."""
    due = []
    for task_id in ActiveTasks.get(state):
        task = Tasks.get(state, task_id)
        if task is not None and task.status == STATUS_ACTIVE and number >= round_windows(task)[1]:
            due.append((task_id, task))
    return due


def task_blobs(state, task_id: int) -> set[bytes]:
    """Every blob hash one task refers to: models, held-out set and revealed updates (its audit trail)."""
    task = Tasks.get(state, task_id)
    if task is None:
        return set()
    referenced = {bytes(task.config.initial_model), bytes(task.model), bytes(task.config.held_out)}
    for round_number in range(task.round + 1):
        referenced.update(bytes(h) for h in RoundReveals.get(state, (task_id, round_number)))
        version = ModelVersions.get(state, (task_id, round_number))
        if version is not None:
            referenced.add(bytes(version.model))
    return referenced


def referenced_blobs(state) -> set[bytes]:
    """Every blob hash the active tasks refer to. The node keeps these, and those of tasks it saw end
    (node/indexer.py pins them), and collects the rest after a grace period."""
    referenced: set[bytes] = set()
    for task_id in ActiveTasks.get(state):
        referenced |= task_blobs(state, task_id)
    return referenced


def _task(ctx: BlockContext, task_id: int) -> Task:
    task = Tasks.get(ctx.state, task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id}")
    if task.status != STATUS_ACTIVE:
        raise TaskNotActive(f"task {task_id} is not active")
    return task


def _check_config(config: TaskConfig) -> None:
    problems = []
    if config.rounds < 1 or config.commit_blocks < 1 or config.reveal_blocks < 1:
        problems.append("rounds, commit_blocks and reveal_blocks must be at least 1")
    if config.aggregation not in AGGREGATIONS:
        problems.append(f"aggregation must be one of {sorted(AGGREGATIONS)}")
    if config.metric not in METRICS:
        problems.append(f"metric must be one of {sorted(METRICS)}")
    if not 0 < len(config.sealed_keys) <= MAX_SEALED_KEYS or any(len(k.sealed) > 256 for k in config.sealed_keys):
        problems.append(f"between 1 and {MAX_SEALED_KEYS} sealed keys of at most 256 bytes")
    if config.reward_per_round == 0 or config.max_update_bytes == 0 or config.held_out_size == 0:
        problems.append("reward_per_round, max_update_bytes and held_out_size must be positive")
    if config.min_improvement_ppm > 1_000_000 or config.min_relative_ppm > 1_000_000:
        problems.append("min_improvement_ppm and min_relative_ppm are parts per million (at most 1000000)")
    if not 0 < config.held_out_subset <= MAX_SUBSET or config.max_update_norm == 0:
        problems.append(f"held_out_subset must be 1..{MAX_SUBSET} and max_update_norm positive")
    if config.trim and config.aggregation != 1:
        problems.append("trim is used by trimmed_mean (aggregation 1) only")
    if problems:
        raise InvalidTaskConfig("; ".join(problems))


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=TASK_WEIGHT)
def create_task(ctx: BlockContext, origin: AccountId, config: TaskConfig) -> None:
    """Create a task and reserve its whole reward pool (reward_per_round x rounds) from the creator."""
    _check_config(config)
    pool = config.reward_per_round * config.rounds
    balances.reserve(ctx, origin, pool)
    task_id = NextTaskId.get(ctx.state)
    NextTaskId.put(ctx.state, task_id + 1)
    Tasks.insert(ctx.state, task_id, Task(origin, config, 0, ctx.number, config.initial_model, None, pool,
                                          STATUS_ACTIVE))
    ctx.deposit_event(TaskCreated(task_id, origin, pool))


@pallet.call(1, weight=SUBMIT_WEIGHT)
def commit_update(ctx: BlockContext, origin: AccountId, task: codec.U64, round: codec.U32,
                  commitment: Hash) -> None:
    """Commit to an update during the commit window; the task's bond is reserved."""
    current = _task(ctx, task)
    if round != current.round:
        raise WrongRound(f"task {task} is in round {current.round}")
    if ctx.number >= round_windows(current)[0]:
        raise OutsideWindow("the commit window of this round has closed")
    if Commits.contains(ctx.state, (task, round, origin)):
        raise AlreadyCommitted()
    committers = Committers.get(ctx.state, (task, round))
    if len(committers) >= MAX_UPDATES_PER_ROUND:
        raise RoundFull()
    balances.reserve(ctx, origin, current.config.bond)
    Commits.insert(ctx.state, (task, round, origin), commitment)
    Committers.insert(ctx.state, (task, round), committers + (origin,))
    ctx.deposit_event(UpdateCommitted(task, round, origin))


@pallet.call(2, weight=SUBMIT_WEIGHT)
def reveal_update(ctx: BlockContext, origin: AccountId, task: codec.U64, round: codec.U32, update: Hash,
                  salt: Hash, num_samples: codec.U32, data_commitment: Hash) -> None:
    """Reveal the committed update during the reveal window."""
    current = _task(ctx, task)
    if round != current.round:
        raise WrongRound(f"task {task} is in round {current.round}")
    commit_end, reveal_end, _ = round_windows(current)
    if not commit_end <= ctx.number < reveal_end:
        raise OutsideWindow("not in the reveal window of this round")
    if num_samples == 0:
        raise NoSamples()
    if Commits.get(ctx.state, (task, round, origin)) != update_commitment(update, origin, salt):
        raise CommitmentMismatch()
    seen = SeenUpdates.get(ctx.state, (task, update))
    if seen is not None:
        raise UpdateAlreadyRevealed(f"update 0x{bytes(update).hex()} was revealed in round {seen}")
    SeenUpdates.insert(ctx.state, (task, update), round)
    Reveals.insert(ctx.state, (task, round, update), Reveal(origin, num_samples, data_commitment))
    RoundReveals.insert(ctx.state, (task, round), RoundReveals.get(ctx.state, (task, round)) + (update,))
    ctx.deposit_event(UpdateRevealed(task, round, origin, update))


@pallet.call(3, weight=lambda reports: 50_000 + 20_000 * sum(len(r.scores) for r in reports),
             origin=ORIGIN_INHERENT)
def report_useful_work(ctx: BlockContext, origin: None, reports: tuple[RoundReport, ...]) -> None:
    """The block author's measurements of the rounds whose reveal window closed (inherent)."""
    for report in reports:
        _close_round(ctx, report)


@pallet.call(4, weight=SUBMIT_WEIGHT)
def claim_rewards(ctx: BlockContext, origin: AccountId) -> None:
    """Pay out everything accrued to the caller."""
    amount = Accrued.get(ctx.state, origin)
    if amount == 0:
        raise NothingToClaim()
    Accrued.remove(ctx.state, origin)
    balances.do_transfer(ctx, POT_ACCOUNT, origin, amount, keep_alive=False)
    ctx.deposit_event(RewardsClaimed(origin, amount))


@pallet.call(5, weight=TASK_WEIGHT)
def cancel_task(ctx: BlockContext, origin: AccountId, task: codec.U64) -> None:
    """End a task early: the unspent pool and this round's bonds are returned."""
    current = _task(ctx, task)
    if current.creator != origin:
        raise NotCreator()
    for who in Committers.get(ctx.state, (task, current.round)):
        balances.unreserve(ctx, who, current.config.bond)
    _end_task(ctx, task, current, cancelled=True)


# --- round close ------------------------------------------------------------------


def _check_score(score: Score | None, what: str) -> None:
    if score is not None and (score.accuracy_ppm > 1_000_000 or score.loss_ppm > MAX_LOSS_PPM):
        raise BadReport(f"{what}: accuracy is at most 1000000 ppm and loss at most {MAX_LOSS_PPM} ppm")


def _check_report(task: Task, report: RoundReport, revealed: tuple[bytes, ...]) -> list[bytes]:
    """Raise `BadReport` unless the report is complete and consistent; the accepted updates' hashes."""
    if sorted(s.update for s in report.scores) != sorted(revealed):
        raise BadReport("the report must score every revealed update exactly once")
    _check_score(report.base, "base")
    _check_score(report.candidate, "candidate")
    _check_score(report.new_model_score, "new model")
    sound = [s for s in report.scores if s.status == UPDATE_OK]
    for s in report.scores:
        if s.status not in (UPDATE_OK, UPDATE_MISSING, UPDATE_MALFORMED):
            raise BadReport(f"update 0x{bytes(s.update).hex()} has an unknown status {s.status}")
        if (s.without is None) == (s.status == UPDATE_OK):
            raise BadReport("sound updates carry the score of the aggregate without them, unusable ones do not")
        _check_score(s.without, "update")
    if (report.candidate is None) != (not sound):
        raise BadReport("the candidate aggregate is scored exactly when some update is sound")
    if len(sound) == 1 and sound[0].without != report.base:
        raise BadReport("a round's only sound update is measured against the base model")
    accepted = accepted_updates(task.config, report.candidate, report.scores)
    has_model = report.new_model is not None
    if bool(accepted) != has_model or has_model != (report.new_model_score is not None):
        raise BadReport("the new model and its score are reported exactly when some update is accepted")
    if len(accepted) == len(sound) and accepted and report.new_model_score != report.candidate:
        raise BadReport("when every sound update is accepted the new model is the candidate")
    return accepted


def _close_round(ctx: BlockContext, report: RoundReport) -> None:
    """Check first (the report is complete and consistent), then mutate, then emit."""
    task = _task(ctx, report.task)
    if report.round != task.round:
        raise BadReport(f"task {report.task} is in round {task.round}, the report is for {report.round}")
    _, reveal_end, seed_block = round_windows(task)
    if ctx.number < reveal_end:
        raise BadReport("the reveal window of this round is still open")
    if report.subset_seed != system.BlockHashes.get(ctx.state, seed_block):
        raise BadReport("the held-out subset seed is not the hash of the block that closed the commit window")
    key = (report.task, report.round)
    revealed = RoundReveals.get(ctx.state, key)
    accepted = _check_report(task, report, revealed)
    metric = task.config.metric
    adopted = bool(accepted) and metric_value(metric, report.new_model_score) > metric_value(metric, report.base)
    gains = contributions(metric, report.candidate, report.scores)
    rewarded = {update: gains[update] for update in accepted} if adopted else {}

    rewards, validator_rewards = _split_rewards(ctx, task, rewarded)
    paid = sum(rewards.values()) + sum(validator_rewards.values())
    if paid:
        balances.unreserve(ctx, task.creator, paid)
        balances.do_transfer(ctx, task.creator, POT_ACCOUNT, paid, keep_alive=False)
    reveals = {h: Reveals.get(ctx.state, (report.task, report.round, h)) for h in revealed}
    for score in report.scores:
        reveal = reveals[score.update]
        reward = rewards.get(score.update, 0)
        if score.status == UPDATE_OK:
            balances.unreserve(ctx, reveal.submitter, task.config.bond)
        else:
            burned = balances.slash_reserved(ctx, reveal.submitter, task.config.bond)
            ctx.deposit_event(BondSlashed(report.task, reveal.submitter, burned))
        contribution = max(gains.get(score.update, 0), 0)
        is_accepted = score.update in rewarded
        Updates.insert(ctx.state, (report.task, report.round, score.update),
                       UpdateRecord(reveal.submitter, score.status, score.without, contribution, is_accepted, reward,
                                    reveal.data_commitment, reveal.num_samples))
        if reward:
            _accrue(ctx, reveal.submitter, reward)
        ctx.deposit_event(UpdateScored(report.task, report.round, score.update, contribution, is_accepted, reward))
    revealers = {reveal.submitter for reveal in reveals.values()}
    for who in Committers.get(ctx.state, key):
        if who not in revealers:  # committed but never revealed: the bond comes back, nothing else
            balances.unreserve(ctx, who, task.config.bond)
    for validator, share in validator_rewards.items():
        _accrue(ctx, validator, share)
    model, score = task.model, task.model_score
    if adopted:
        model, score = report.new_model, report.new_model_score
        contributors = tuple(reveals[update].submitter for update in sorted(rewarded))
        ModelVersions.insert(ctx.state, key, ModelVersion(model, score, report.round, contributors))
    Rounds.insert(ctx.state, key, RoundSummary(ctx.number, report.subset_seed, report.base, report.candidate, model,
                                               report.new_model_score if adopted else None, adopted, len(revealed),
                                               len(rewarded), paid))
    ctx.deposit_event(RoundClosed(report.task, report.round, model, adopted, paid))
    next_task = Task(task.creator, task.config, task.round + 1, ctx.number + 1, model, score,
                     task.remaining_pool - paid, STATUS_ACTIVE)
    if next_task.round >= task.config.rounds:
        _end_task(ctx, report.task, next_task, cancelled=False)
    else:
        Tasks.insert(ctx.state, report.task, next_task)


def _split_rewards(ctx: BlockContext, task: Task, gains: dict[bytes, int]) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(update hash -> reward, validator -> share) of one round. Rewards follow the contributions
    (all positive); integer division leftovers stay in the creator's pool."""
    if not gains:
        return {}, {}
    pot = min(task.config.reward_per_round, task.remaining_pool)
    validator_pot = pot * VALIDATOR_SHARE_PPM // 1_000_000
    trainer_pot = pot - validator_pot
    total = sum(gains.values())
    rewards = {update: trainer_pot * gain // total for update, gain in gains.items()}
    validator_set = [v.account for v in validators.Validators.get(ctx.state)]
    each = validator_pot // len(validator_set) if validator_set else 0
    return rewards, ({account: each for account in validator_set} if each else {})


def _accrue(ctx: BlockContext, who: AccountId, amount: int) -> None:
    Accrued.insert(ctx.state, who, Accrued.get(ctx.state, who) + amount)
    Earned.insert(ctx.state, who, Earned.get(ctx.state, who) + amount)


def _end_task(ctx: BlockContext, task_id: int, task: Task, *, cancelled: bool) -> None:
    refund = task.remaining_pool
    if refund:
        balances.unreserve(ctx, task.creator, refund)
    Tasks.insert(ctx.state, task_id, Task(task.creator, task.config, task.round, task.round_start, task.model,
                                          task.model_score, 0,
                                          STATUS_CANCELLED if cancelled else STATUS_FINISHED))
    ctx.deposit_event(TaskEnded(task_id, refund, cancelled))
