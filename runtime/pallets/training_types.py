"""training's types and pure rules: what the pallet stores, and the arithmetic that the runtime,
the block author and every verifying validator must share (training.py has the calls and hooks,
training_storage.py the storage, events and errors, training_rewards.py the round close;
consensus/useful_work/rounds.py measures what these rules read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime import codec
from runtime.hashing import blake2b_256
from runtime.pallets.system import WORK_PER_WEIGHT
from runtime.types import AccountId, Balance, BlockNumber, Hash, PartsPerMillion

# --- config -----------------------------------------------------------------

POT_ACCOUNT = AccountId(blake2b_256(b"gradchain/training/pot"))
VALIDATOR_SHARE_PPM = 100_000  # of each round's reward, split among the validators that verified it
MAX_SEALED_KEYS = 100
MAX_UPDATES_PER_ROUND = 256
AGGREGATIONS = {0: "fedavg", 1: "trimmed_mean", 2: "median"}
METRIC_LOSS, METRIC_ACCURACY = 0, 1
METRICS = {METRIC_LOSS: "loss", METRIC_ACCURACY: "accuracy"}  # what contributions are measured in
MAX_LOSS_PPM = 10**12
# Published losses are multiples of this (0.0001 nats): what validators can check (the genesis loss
# tolerance is 100 ppm) and no finer, so that a round's report tells a prober no more about the
# held-out set than the chain's own decisions need. Coarser would move those decisions: acceptance
# reads differences of these numbers against thresholds of a few hundred ppm (a 1000 ppm quantum let
# a lucky noise update pass the relative bar in the demo). Accuracies are counts of a subset already.
LOSS_QUANTUM_PPM = 100
MAX_SUBSET = 1 << 20
STATUS_ACTIVE, STATUS_FINISHED, STATUS_CANCELLED = 0, 1, 2
UPDATE_OK, UPDATE_MISSING, UPDATE_MALFORMED, UPDATE_COPY = 0, 1, 2, 3
UPDATE_STATUSES = (UPDATE_OK, UPDATE_MISSING, UPDATE_MALFORMED, UPDATE_COPY)
# Every block of a round, from its start to its seed block, must still be in the nodes' state
# pruning window (storage.chainstore.DEFAULT_PRUNING, 256) when the round is reported: the commit and
# reveal windows together are at most MAX_WINDOW_BLOCKS, and the report is due SEED_DELAY_BLOCKS later.
SEED_DELAY_BLOCKS = 1
MAX_WINDOW_BLOCKS = 256 - SEED_DELAY_BLOCKS
DEFAULT_MAX_SAMPLES = 10_000  # a task's default cap on one update's aggregation weight
DEFAULT_MAX_SHARE_PPM = 500_000  # ... and on its share of the round's weight
DEFAULT_COPY_DISTANCE_PPM = 50_000  # an update within 5% (sine of the angle) of an earlier one is a copy
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
    metric: codec.U8  # METRIC_LOSS or METRIC_ACCURACY
    held_out: Hash  # hash of the encrypted held-out blob
    held_out_size: codec.U32  # bytes of the encrypted held-out blob
    held_out_subset: codec.U32  # examples each round is scored on
    sealed_keys: tuple[SealedKey, ...]
    reward_per_round: Balance
    rounds: codec.U32
    commit_blocks: BlockNumber
    reveal_blocks: BlockNumber
    min_improvement_ppm: PartsPerMillion  # least contribution an accepted update makes, in the metric's ppm
    min_relative_ppm: PartsPerMillion  # ... and at least this share of the round's largest contribution
    max_update_bytes: codec.U32
    max_update_norm: codec.U64  # L2 bound of an update in fixed point (2**24 is 1.0)
    bond: Balance
    aggregation: codec.U8
    trim: codec.U8  # updates dropped at each end by trimmed_mean
    # what a declared sample count can buy: an update's fedavg weight is min(num_samples, max_samples),
    # lowered further so that no update holds more than max_share_ppm of the round's weight
    # (aggregation_weights); max_samples is bounded by the genesis TrainingLimits
    max_samples: codec.U32 = DEFAULT_MAX_SAMPLES
    max_share_ppm: PartsPerMillion = DEFAULT_MAX_SHARE_PPM
    # an update whose direction is within this sine (ppm) of an update revealed earlier in the task, or
    # of an earlier public model step, is refused as a copy (consensus/useful_work/similarity.py)
    copy_distance_ppm: PartsPerMillion = DEFAULT_COPY_DISTANCE_PPM
    # FedAvgM and the compute budget
    max_updates: codec.U32 = MAX_UPDATES_PER_ROUND  # reveals a round takes (the compute budget counts them)
    server_lr_ppm: codec.U32 = 1_000_000  # FedAvgM: the step is lr x (aggregate + momentum x last step)
    server_momentum_ppm: codec.U32 = 0  # 0 is plain FedAvg


@dataclass(frozen=True)
class TrainingLimits:
    """The chain's bounds on every task (genesis `training`, else the defaults below)."""

    min_commit_bond: Balance  # Sybil commits that fill a round cost this much each, forfeited if unrevealed
    max_samples_per_update: codec.U32  # the largest per-task cap on an update's aggregation weight


DEFAULT_LIMITS = TrainingLimits(min_commit_bond=10**11, max_samples_per_update=1_000_000)


@dataclass(frozen=True)
class Score:
    """A model's measured scores on a round's held-out subset."""

    accuracy_ppm: PartsPerMillion
    loss_ppm: codec.U64  # mean cross-entropy x 1e6


@dataclass(frozen=True)
class Task:
    creator: AccountId
    config: TaskConfig
    round: codec.U32
    round_start: BlockNumber
    model: Hash
    model_score: Score | None  # measured on the subset of the round that produced it
    remaining_pool: Balance
    status: codec.U8
    cancelled: bool = False  # the creator cancelled during this round: it is the last, and is paid in full


@dataclass(frozen=True)
class Reveal:
    submitter: AccountId
    num_samples: codec.U32
    data_commitment: Hash


@dataclass(frozen=True)
class UpdateScore:
    update: Hash
    status: codec.U8  # UPDATE_OK, or why the update could not be used (UPDATE_COPY: a near-copy)
    without: Score | None  # sound updates: the aggregate of the round's other sound updates
    # the second pass (only when some sound update's first contribution was under the minimum: excluded_updates):
    # the aggregate of the kept updates without this one; None for an excluded or unusable update
    kept: Score | None = None


@dataclass(frozen=True)
class RoundReport:
    task: codec.U64
    round: codec.U32
    subset_seed: Hash
    base: Score  # the round's base model
    candidate: Score | None  # the aggregate of every sound update; None when there is none
    scores: tuple[UpdateScore, ...]
    new_model: Hash | None  # the aggregate of the accepted updates; None when none was accepted
    new_model_score: Score | None
    # the aggregate of the kept updates (the sound ones less excluded_updates), each weighing the same:
    # scored only when a second pass ran and kept some update, else None
    kept_candidate: Score | None = None


@dataclass(frozen=True)
class UpdateRecord:
    """The audit trail of one revealed update."""

    submitter: AccountId
    status: codec.U8
    without: Score | None
    contribution_ppm: codec.U64  # what it added to the round's aggregate (0 if it added nothing)
    accepted: bool
    reward: Balance
    data_commitment: Hash
    num_samples: codec.U32


@dataclass(frozen=True)
class RoundSummary:
    """How a round closed (for explorers and trainers)."""

    closed_at: BlockNumber
    subset_seed: Hash
    base: Score
    candidate: Score | None
    model: Hash  # the global model after the round
    model_score: Score | None  # the new model's score, when one was adopted
    adopted: bool
    revealed: codec.U32
    accepted: codec.U32
    paid: Balance


@dataclass(frozen=True)
class ModelVersion:
    model: Hash
    score: Score
    round: codec.U32
    contributors: tuple[AccountId, ...]


# --- rules ------------------------------------------------------------------

def parameter_count(spec: ModelSpec) -> int:
    """The number of weights of a task's model (the same formulas as consensus's model registry; a
    test holds them equal). 0 for an architecture or shape the registry does not know."""
    params = tuple(spec.params)
    if spec.architecture == "logistic_regression" and len(params) == 2:
        inputs, classes = params
        return classes * inputs + classes
    if spec.architecture == "mlp" and len(params) == 3:
        inputs, hidden, classes = params
        return hidden * inputs + hidden + classes * hidden + classes
    if spec.architecture == "small_cnn" and len(params) == 3:
        inputs, channels, classes = params
        side = math.isqrt(inputs)  # integer square root: exact
        pooled = (side // 4) ** 2
        return channels * 9 + channels + 2 * channels * channels * 9 + 2 * channels + classes * 2 * channels * pooled \
            + classes
    return 0


def task_work(config: TaskConfig) -> int:
    """What one round of the task can cost a validator, in multiply-adds (about): the most its
    report can weigh (`round_work_weight` at max_updates sound updates, one of them excluded before a
    second pass over the rest) times WORK_PER_WEIGHT. The budget (max_task_work) keeps this inside
    half a block's weight."""
    updates = config.max_updates
    return _round_work(config, updates) + _second_pass_work(config, max(updates - 1, 0))


def round_work_weight(config: TaskConfig, updates: int, kept: int = 0) -> int:
    """The weight of measuring a round with `updates` sound updates (one unit per WORK_PER_WEIGHT
    multiply-adds): the base, the candidate and one aggregate per update, each scored on the subset
    (parameters x subset each). fedavg's leave-one-out costs O(updates x parameters) beside that;
    trimmed_mean and median sort a column of updates per aggregate, charged updates**2 x parameters.
    `kept`: the updates of a second pass (its candidate and one aggregate per kept update), 0 for none."""
    return (_round_work(config, updates) + _second_pass_work(config, kept)) // WORK_PER_WEIGHT


def report_work_weight(config: TaskConfig, report: RoundReport) -> int:
    """The weight of the measurements `report` carries (both passes)."""
    sound = [s for s in report.scores if s.status == UPDATE_OK]
    return round_work_weight(config, len(sound), sum(1 for s in sound if s.kept is not None))


def _round_work(config: TaskConfig, updates: int) -> int:
    parameters = parameter_count(config.spec)
    work = parameters * (updates + 2) * config.held_out_subset
    if AGGREGATIONS.get(config.aggregation) != "fedavg":
        work += parameters * updates * updates
    return work


def _second_pass_work(config: TaskConfig, kept: int) -> int:
    if kept == 0:
        return 0
    parameters = parameter_count(config.spec)
    work = parameters * (kept + 1) * config.held_out_subset
    if AGGREGATIONS.get(config.aggregation) != "fedavg":
        work += parameters * kept * kept
    return work


def update_commitment(update: bytes, submitter: bytes, salt: bytes) -> bytes:
    """What a trainer commits to: blake2b-256(update hash ++ submitter ++ salt)."""
    return blake2b_256(update + submitter + salt)


def round_windows(task: Task) -> tuple[int, int, int]:
    """(commit end, reveal end, subset seed block) of the task's current round. The seed is the
    randomness accumulator after the seed block (runtime/pallets/randomness.py), the first block past
    the reveal window: nobody knows it while reveals are open. The report is due after it."""
    commit_end = task.round_start + task.config.commit_blocks
    reveal_end = commit_end + task.config.reveal_blocks
    return commit_end, reveal_end, reveal_end + SEED_DELAY_BLOCKS - 1


def report_start(task: Task) -> int:
    """The first block that may carry the report of the task's current round."""
    return round_windows(task)[2] + 1


def aggregation_weights(config: TaskConfig, samples: list[int]) -> list[int]:
    """The fedavg weights of updates that declare `samples`: each min(samples, max_samples), then all
    capped at the largest T with T <= max_share x sum(min(weight, T)), so that no update holds more
    than max_share_ppm of the total (when the updates are too few for that, all weigh the same).

    sum(min(weight, T)) is concave in T, so the T that fit form one interval [1, T*]: bisection finds
    T*. Declaring more samples than the cap buys nothing, and a weight past T* buys nothing either."""
    capped = [max(1, min(count, config.max_samples)) for count in samples]
    if len(capped) < 2:
        return capped

    def fits(limit: int) -> bool:
        return limit * 1_000_000 <= config.max_share_ppm * sum(min(weight, limit) for weight in capped)

    low, high = 1, max(capped)
    if fits(high):
        return capped
    if not fits(low):
        return [1] * len(capped)
    while high - low > 1:  # invariant: fits(low), not fits(high)
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return [min(weight, low) for weight in capped]


def quantize_loss(loss_ppm: int) -> int:
    """A measured loss as the chain publishes it: the nearest multiple of LOSS_QUANTUM_PPM (halves up)."""
    return min((loss_ppm + LOSS_QUANTUM_PPM // 2) // LOSS_QUANTUM_PPM * LOSS_QUANTUM_PPM, MAX_LOSS_PPM)
