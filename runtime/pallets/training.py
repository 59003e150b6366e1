"""training: federated learning tasks, commit-reveal update submission, scores and rewards.

A round of a task runs in three windows counted in blocks from its start:

    commit  [start, start + commit_blocks)             commit_update(hash(update, submitter, salt)), bond reserved
    reveal  [.. , .. + reveal_blocks)                  reveal_update(update hash, salt, samples, data commitment)
    seed    the first block after the reveal window    its author's slot signature enters the randomness
    report  from the block after that                  the block author's report_useful_work inherent

The two windows together are at most MAX_WINDOW_BLOCKS long (WindowTooLong
otherwise), so every block of a round is still in the nodes' pruning window
when it is reported.
The runtime never runs a model. The author's inherent carries integer scores
(accuracy and cross-entropy in parts per million), measured on a held-out subset
whose seed is the randomness accumulator after the seed block
(runtime/pallets/randomness.py): it folds in every block author's deterministic
signature over its slot, so nobody knows it while reveals are open and no single
author can choose it (only withhold its block):

    base        the round's base model
    candidate   the aggregate of every sound update of the round, each weighing the same
    without_i   for each sound update i, the candidate with i's delta zeroed (the base when i is alone)
    second pass when some contribution (below) does not reach min_improvement_ppm (an update that drags
                the aggregate down or adds nothing, such as a free rider's zero update), those updates
                are excluded and the same is measured over the kept ones: kept_candidate and
                kept_i; contributions, acceptance and rewards then read the second pass
                (excluded_updates, deciding_pass)
    new model   the aggregate of the updates whose contribution reaches min_improvement_ppm (the accepted
                ones and those under the relative bar: aggregated_updates), weighted by
                aggregation_weights: its hash and score

Declared sample counts: an update's fedavg weight in the new model is capped by
the task (max_samples, itself bounded by the genesis TrainingLimits) and no update
holds more than max_share_ppm of the round's weight. Contributions are measured
with equal weights, so declaring more samples never raises a contribution: it
can only pull the new model, within those caps, toward an update that the
others' leave-one-out already judged useful.

An update's contribution is how much worse the round's aggregate gets without it,
value(candidate) - value(without_i), in the task's metric (value = -loss or
accuracy). This leave-one-out rule pays for what an update adds to the global
model, so an honest trainer whose private data covers only a few classes (whose
update alone would make the model worse on the balanced held-out set) still
earns, while noise, sign-flipped or scaled updates make the aggregate worse and
earn nothing. An update is accepted (paid) if its contribution reaches the task's
minimum and its share of the best one (min_relative_ppm); the new model is adopted if it beats the base, and then the accepted
updates share the round's reward in proportion to their contributions, with a
validators' share for the validator set. Validators re-measure every integer
before they finalize the block (consensus/useful_work); the runtime checks that
the report is complete and consistent, then records it. Bonds come back for
honest updates (accepted or not) and are burned for updates whose blob was
missing, malformed or out of bounds, and forfeited into the round's reward for
commits never revealed and for near-copies (training_rewards.py). A commit needs
at least the genesis minimum bond, one per account per round.

Copying does not pay: a reveal must match an earlier commit by the same account
to hash(update, submitter, salt), and an update hash revealed once in a task
cannot be revealed again, in this round or a later one (a stale resubmission).
A near-copy (a new hash, nearly the same direction as an update revealed earlier
in the task or as an earlier public model step) is refused by the validators'
measurement (UPDATE_COPY, consensus/useful_work/similarity.py): the earlier wins.

A creator who cancels during a round that trainers entered cannot take their
revealed updates for free: that round finishes and pays as if nothing happened,
and only the pool of the rounds nobody touched goes back at once.

Balances: the reward pool is reserved from the creator; each round's reward
moves to the pot account when it is paid out, and claim_rewards pays an
account's accrued rewards from the pot, so total issuance never changes. The pot
is a pallet account: never reaped, whatever it holds, so rewards below the
existential deposit accrue there and a small round still closes.
"""

from __future__ import annotations

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT
from runtime.pallets import balances, randomness
from runtime.pallets.training_rewards import close_round, end_task
from runtime.pallets.training_storage import *  # noqa: F401,F403  (re-exported: training.X is the public name)
from runtime.pallets.training_storage import (
    Accrued, ActiveTasks, AlreadyCommitted, BadCopyDistance, BlockWorkExceeded, BondTooSmall, CancelScheduled,
    CommitmentMismatch,
    Committers, Commits, InvalidTaskConfig, Limits, ModelVersions, NextTaskId, NoSamples, NotCreator, NothingToClaim,
    OutsideWindow, Reveals, RewardsClaimed, RoundFull, RoundReveals, SampleCapTooHigh, SeenUpdates, TaskCreated,
    TaskNotActive, TaskTooCostly, Tasks, UnknownTask, UpdateAlreadyRevealed, UpdateCommitted, UpdateRevealed,
    WindowTooLong,
    WrongRound, pallet,
)
from runtime.pallets.training_types import *  # noqa: F401,F403  (re-exported)
from runtime.pallets.training_acceptance import *  # noqa: F401,F403  (re-exported)
from runtime.pallets.training_types import (
    AGGREGATIONS, MAX_SEALED_KEYS, MAX_SUBSET, MAX_UPDATES_PER_ROUND, MAX_WINDOW_BLOCKS, METRICS, POT_ACCOUNT,
    STATUS_ACTIVE, SUBMIT_WEIGHT, TASK_WEIGHT, Reveal, RoundReport, Task, TaskConfig, parameter_count,
    report_start, report_work_weight, round_windows, task_work, update_commitment,
)
from runtime.state import changed_map_keys
from runtime.types import AccountId, Hash

balances.register_pallet_account(POT_ACCOUNT)  # the pot is never reaped, whatever it holds



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
    """Active tasks whose current round can be reported in block `number` (its seed is known)."""
    due = []
    for task_id in ActiveTasks.get(state):
        task = Tasks.get(state, task_id)
        if task is not None and task.status == STATUS_ACTIVE and number >= report_start(task):
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


def _check_config(ctx: BlockContext, config: TaskConfig) -> None:
    """Each bound with a named error of its own, then the rest as InvalidTaskConfig (the message lists them)."""
    limits = Limits.get(ctx.state)
    if config.commit_blocks + config.reveal_blocks > MAX_WINDOW_BLOCKS:
        raise WindowTooLong(f"commit_blocks + reveal_blocks is {config.commit_blocks + config.reveal_blocks}, at most "
                            f"{MAX_WINDOW_BLOCKS}, or the round's first blocks leave the pruning window before its "
                            f"report")
    if config.bond < limits.min_commit_bond:
        raise BondTooSmall(f"bond {config.bond} is below the chain's minimum of {limits.min_commit_bond} per commit")
    if not 1 <= config.max_samples <= limits.max_samples_per_update or not 1 <= config.max_share_ppm <= 1_000_000:
        raise SampleCapTooHigh(f"max_samples must be 1..{limits.max_samples_per_update} (it is {config.max_samples})"
                               f" and max_share_ppm 1..1000000 (it is {config.max_share_ppm})")
    if config.copy_distance_ppm > 1_000_000:
        raise BadCopyDistance(f"copy_distance_ppm {config.copy_distance_ppm} is above 1000000")
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
    if not 1 <= config.max_updates <= MAX_UPDATES_PER_ROUND or parameter_count(config.spec) == 0:
        problems.append(f"max_updates must be 1..{MAX_UPDATES_PER_ROUND} and spec a known architecture")
    if not 0 < config.server_lr_ppm <= 10_000_000 or config.server_momentum_ppm >= 1_000_000:
        problems.append("server_lr_ppm must be 1..10000000 and server_momentum_ppm below 1000000")
    if problems:
        raise InvalidTaskConfig("; ".join(problems))


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=TASK_WEIGHT)
def create_task(ctx: BlockContext, origin: AccountId, config: TaskConfig) -> None:
    """Create a task and reserve its whole reward pool (reward_per_round x rounds) from the creator."""
    _check_config(ctx, config)
    work = task_work(config)
    if work > ctx.params.max_task_work:
        raise TaskTooCostly(f"a round may cost {work} multiply-adds (parameters x max_updates x held_out_subset), "
                            f"above the budget of {ctx.params.max_task_work}: lower max_updates or the subset")
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
    """Commit to an update during the commit window (one per account and round); the task's bond is reserved,
    and forfeited if the update is never revealed."""
    current = _task(ctx, task)
    if round != current.round:
        raise WrongRound(f"task {task} is in round {current.round}")
    if ctx.number >= round_windows(current)[0]:
        raise OutsideWindow("the commit window of this round has closed")
    if Commits.contains(ctx.state, (task, round, origin)):
        raise AlreadyCommitted()
    committers = Committers.get(ctx.state, (task, round))
    if len(committers) >= current.config.max_updates:
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
    """The block author's measurements of the rounds whose subset seed is known (inherent).
    Measuring them is the block's useful work: it counts against the block's weight limit."""
    work = 0
    for report in reports:
        task = Tasks.get(ctx.state, report.task)
        if task is not None:  # an unknown task is refused by close_round
            work += report_work_weight(task.config, report)
    if ctx.weight_used + work > ctx.params.block_weight_limit:
        raise BlockWorkExceeded(f"the reports weigh {work}; the block has "
                                f"{ctx.params.block_weight_limit - ctx.weight_used} left")
    for report in reports:
        close_round(ctx, report)
    ctx.weight_used += work


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
    """End a task early. A round nobody committed to ends now and the whole unspent pool comes back; a
    round that trainers entered finishes and pays as if no cancel had happened (its revealed updates are
    public, so the creator cannot take them for free), and only the other rounds' pool comes back now.
    A round that can no longer be reported (its seed left the randomness history) ends now, bonds returned."""
    current = _task(ctx, task)
    if current.creator != origin:
        raise NotCreator()
    committers = Committers.get(ctx.state, (task, current.round))
    seed_block = round_windows(current)[2]
    # a round nobody reported while its seed was kept can never be measured: it ends with the task
    expired = ctx.number > seed_block and randomness.History.get(ctx.state, seed_block) is None
    if not committers or expired:
        for who in committers:
            balances.unreserve(ctx, who, current.config.bond)
        end_task(ctx, task, Task(current.creator, current.config, current.round, current.round_start,
                                 current.model, current.model_score, current.remaining_pool, STATUS_ACTIVE, True))
        return
    if current.cancelled:
        raise TaskNotActive(f"task {task} is already cancelled; round {current.round} is its last")
    kept = min(current.config.reward_per_round, current.remaining_pool)
    refund = current.remaining_pool - kept
    if refund:
        balances.unreserve(ctx, origin, refund)
    Tasks.insert(ctx.state, task, Task(current.creator, current.config, current.round, current.round_start,
                                       current.model, current.model_score, kept, STATUS_ACTIVE, True))
    ctx.deposit_event(CancelScheduled(task, current.round, refund))
