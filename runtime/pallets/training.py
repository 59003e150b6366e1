"""training: federated learning tasks, commit-reveal update submission, scores and rewards.

A round of a task runs in three windows counted in blocks from its start:

    commit  [start, start + commit_blocks)             commit_update(hash(update, submitter, salt)), bond reserved
    reveal  [.. , .. + reveal_blocks)                  reveal_update(update hash, salt, samples, data commitment)
    report  from the end of the reveal window          the block author's report_useful_work inherent

The runtime never runs a model. The author's inherent carries integer scores
(parts per million) of every revealed update, measured on a held-out subset whose
seed is the hash of the block that closed the commit window, and the hash and
score of the aggregated model. Validators re-measure before they finalize the
block (consensus/useful_work); the runtime checks that the report is complete
and consistent, then records it: an update whose improvement over the round's
base model reaches the task's minimum is accepted and shares the round's reward
in proportion to its improvement; a validators' share goes to the validator set.
Bonds come back for honest updates (accepted or not) and are burned for updates
whose blob was missing, malformed or too large.

Copying does not pay: a reveal must match an earlier commit by the same account
to hash(update, submitter, salt), and an update hash revealed once cannot be
revealed again in the round.

Balances: the reward pool is reserved from the creator; each round's reward
moves to the pot account when it is paid out, and claim_rewards pays an
account's accrued rewards from the pot, so total issuance never changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, DispatchFailure, Pallet
from runtime.hashing import blake2b_256
from runtime.pallets import balances, system, validators
from runtime.state import StorageMap, StorageValue
from runtime.types import AccountId, Balance, BlockNumber, Hash, PartsPerMillion

pallet = Pallet(6, "training", "Federated learning tasks, commit-reveal updates, useful-work reports and rewards.")

# --- config -----------------------------------------------------------------

POT_ACCOUNT = AccountId(blake2b_256(b"gradchain/training/pot"))
VALIDATOR_SHARE_PPM = 100_000  # of each round's reward, split among the validators that verified it
MAX_SEALED_KEYS = 100
MAX_UPDATES_PER_ROUND = 256
AGGREGATIONS = {0: "fedavg", 1: "trimmed_mean", 2: "median"}
METRICS = {0: "accuracy"}  # higher is better, in parts per million
STATUS_ACTIVE, STATUS_FINISHED, STATUS_CANCELLED = 0, 1, 2
UPDATE_OK, UPDATE_MISSING, UPDATE_MALFORMED = 0, 1, 2
TASK_WEIGHT = 200_000
SUBMIT_WEIGHT = 100_000


@dataclass(frozen=True)
class ModelSpec:
    architecture: codec.Text
    params: tuple[codec.U32, ...]


@dataclass(frozen=True)
class SealedKey:
    validator: AccountId
    sealed: bytes


@dataclass(frozen=True)
class TaskConfig:
    spec: ModelSpec
    initial_model: Hash
    initial_score_ppm: PartsPerMillion
    metric: codec.U8
    held_out: Hash  # hash of the encrypted held-out blob
    held_out_size: codec.U32
    sealed_keys: tuple[SealedKey, ...]
    reward_per_round: Balance
    rounds: codec.U32
    commit_blocks: BlockNumber
    reveal_blocks: BlockNumber
    min_improvement_ppm: PartsPerMillion
    max_update_bytes: codec.U32
    bond: Balance
    aggregation: codec.U8


@dataclass(frozen=True)
class Task:
    creator: AccountId
    config: TaskConfig
    round: codec.U32
    round_start: BlockNumber
    model: Hash
    model_score_ppm: PartsPerMillion
    remaining_pool: Balance
    status: codec.U8


@dataclass(frozen=True)
class Reveal:
    submitter: AccountId
    num_samples: codec.U32
    data_commitment: Hash


@dataclass(frozen=True)
class UpdateScore:
    update: Hash
    score_ppm: PartsPerMillion
    status: codec.U8


@dataclass(frozen=True)
class RoundReport:
    task: codec.U64
    round: codec.U32
    subset_seed: Hash
    scores: tuple[UpdateScore, ...]
    new_model: Hash | None  # the aggregate of the accepted updates; None when none was accepted
    new_model_score_ppm: PartsPerMillion


@dataclass(frozen=True)
class UpdateRecord:
    """The audit trail of one revealed update."""

    submitter: AccountId
    score_ppm: PartsPerMillion
    status: codec.U8
    accepted: bool
    reward: Balance
    data_commitment: Hash


@dataclass(frozen=True)
class ModelVersion:
    model: Hash
    score_ppm: PartsPerMillion
    round: codec.U32
    contributors: tuple[AccountId, ...]


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
ModelVersions = StorageMap(pallet, "ModelVersions", tuple[codec.U64, codec.U32], ModelVersion, None,
                           "The global model after each round that improved it.")
Accrued = StorageMap(pallet, "Accrued", AccountId, Balance, 0, "Rewards an account can claim.")
Earned = StorageMap(pallet, "Earned", AccountId, Balance, 0, "All rewards an account ever earned (leaderboard).")

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
    score_ppm: PartsPerMillion
    accepted: bool
    reward: Balance


@pallet.event(4)
class RoundClosed:
    """A round ended; `model` is the new global model if any update was accepted."""

    task: codec.U64
    round: codec.U32
    model: Hash
    score_ppm: PartsPerMillion
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
    """Someone already revealed this update hash in this round."""


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


# --- functions other code uses ------------------------------------------------


def update_commitment(update: bytes, submitter: bytes, salt: bytes) -> bytes:
    """What a trainer commits to: blake2b-256(update hash ++ submitter ++ salt)."""
    return blake2b_256(update + submitter + salt)


def round_windows(task: Task) -> tuple[int, int, int]:
    """(commit end, reveal end = report start, subset seed block) of the task's current round."""
    commit_end = task.round_start + task.config.commit_blocks
    return commit_end, commit_end + task.config.reveal_blocks, commit_end


def reports_due(state, number: int) -> list[tuple[int, Task]]:
    """Tasks whose current round's reveal window has closed by block `number` (the author reports them)."""
    due = []
    for task_id in range(NextTaskId.get(state)):
        task = Tasks.get(state, task_id)
        if task is not None and task.status == STATUS_ACTIVE and number >= round_windows(task)[1]:
            due.append((task_id, task))
    return due


def accepted_updates(task: Task, scores) -> list[UpdateScore]:
    """The acceptance rule, shared by the runtime, the author and every verifying validator:
    a sound update whose score beats the round's base model by at least the task's minimum."""
    minimum = task.model_score_ppm + max(task.config.min_improvement_ppm, 1)
    return [s for s in scores if s.status == UPDATE_OK and s.score_ppm >= minimum]


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
    if config.initial_score_ppm > 1_000_000 or config.min_improvement_ppm > 1_000_000:
        problems.append("scores are parts per million (at most 1000000)")
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
    Tasks.insert(ctx.state, task_id, Task(origin, config, 0, ctx.number, config.initial_model,
                                          config.initial_score_ppm, pool, STATUS_ACTIVE))
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
    if Reveals.contains(ctx.state, (task, round, update)):
        raise UpdateAlreadyRevealed()
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
    revealed = RoundReveals.get(ctx.state, (report.task, report.round))
    if sorted(s.update for s in report.scores) != sorted(revealed):
        raise BadReport("the report must score every revealed update exactly once")
    if any(s.status not in (UPDATE_OK, UPDATE_MISSING, UPDATE_MALFORMED) or s.score_ppm > 1_000_000
           for s in report.scores):
        raise BadReport("a score is out of range or has an unknown status")
    accepted = accepted_updates(task, report.scores)
    accepted_hashes = {s.update for s in accepted}
    if accepted and (report.new_model is None or report.new_model_score_ppm > 1_000_000):
        raise BadReport("accepted updates need the aggregated model's hash and score")
    if not accepted and report.new_model is not None:
        raise BadReport("no update was accepted, so there is no new model")

    rewards, validator_rewards = _split_rewards(ctx, task, accepted)
    paid = sum(rewards.values()) + sum(validator_rewards.values())
    if paid:
        balances.unreserve(ctx, task.creator, paid)
        balances.do_transfer(ctx, task.creator, POT_ACCOUNT, paid, keep_alive=False)
    for score in report.scores:
        reveal = Reveals.get(ctx.state, (report.task, report.round, score.update))
        reward = rewards.get(score.update, 0)
        if score.status == UPDATE_OK:
            balances.unreserve(ctx, reveal.submitter, task.config.bond)
        else:
            burned = balances.slash_reserved(ctx, reveal.submitter, task.config.bond)
            ctx.deposit_event(BondSlashed(report.task, reveal.submitter, burned))
        Updates.insert(ctx.state, (report.task, report.round, score.update),
                       UpdateRecord(reveal.submitter, score.score_ppm, score.status, score.update in accepted_hashes, reward,
                                    reveal.data_commitment))
        if reward:
            _accrue(ctx, reveal.submitter, reward)
        ctx.deposit_event(UpdateScored(report.task, report.round, score.update, score.score_ppm,
                                       score.update in accepted_hashes, reward))
    revealers = {Reveals.get(ctx.state, (report.task, report.round, h)).submitter for h in revealed}
    for who in Committers.get(ctx.state, (report.task, report.round)):
        if who not in revealers:  # committed but never revealed: the bond comes back, nothing else
            balances.unreserve(ctx, who, task.config.bond)
    for validator, share in validator_rewards.items():
        _accrue(ctx, validator, share)
    model, score = task.model, task.model_score_ppm
    if accepted:
        model, score = report.new_model, report.new_model_score_ppm
        contributors = tuple(Reveals.get(ctx.state, (report.task, report.round, s.update)).submitter
                             for s in accepted)
        ModelVersions.insert(ctx.state, (report.task, report.round), ModelVersion(model, score, report.round,
                                                                                   contributors))
    ctx.deposit_event(RoundClosed(report.task, report.round, model, score, paid))
    next_task = Task(task.creator, task.config, task.round + 1, ctx.number + 1, model, score,
                     task.remaining_pool - paid, STATUS_ACTIVE)
    if next_task.round >= task.config.rounds:
        _end_task(ctx, report.task, next_task, cancelled=False)
    else:
        Tasks.insert(ctx.state, report.task, next_task)


def _split_rewards(ctx: BlockContext, task: Task,
                   accepted: list[UpdateScore]) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(update hash -> reward, validator -> share) of one round. Rewards follow the improvement
    over the round's base model; integer division leftovers stay in the creator's pool."""
    if not accepted:
        return {}, {}
    pot = min(task.config.reward_per_round, task.remaining_pool)
    validator_pot = pot * VALIDATOR_SHARE_PPM // 1_000_000
    trainer_pot = pot - validator_pot
    improvements = {s.update: s.score_ppm - task.model_score_ppm for s in accepted}
    total = sum(improvements.values())
    rewards = {update: trainer_pot * gain // total for update, gain in improvements.items()}
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
                                          task.model_score_ppm, 0,
                                          STATUS_CANCELLED if cancelled else STATUS_FINISHED))
    ctx.deposit_event(TaskEnded(task_id, refund, cancelled))
