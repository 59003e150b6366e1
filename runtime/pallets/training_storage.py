"""training's storage, events and errors (the pallet's declarations; runtime/pallets/training.py has
its calls and the module docstring that explains the protocol, training_rewards.py the round close)."""

from __future__ import annotations

from runtime import codec
from runtime.dispatch import DispatchFailure, Pallet
from runtime.pallets.training_types import (
    DEFAULT_LIMITS, ModelVersion, Reveal, RoundSummary, Task, TrainingLimits, UpdateRecord,
)
from runtime.state import StorageMap, StorageValue
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
Limits = StorageValue(pallet, "Limits", TrainingLimits, DEFAULT_LIMITS,
                      "The chain's bounds on every task: least commit bond, largest sample cap (genesis).")

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


@pallet.event(8)
class BondForfeited:
    """A committed update was never revealed, or was a near-copy: its bond joined the round's reward."""

    task: codec.U64
    round: codec.U32
    who: AccountId
    amount: Balance


@pallet.event(9)
class CancelScheduled:
    """The creator cancelled during a round that trainers had entered: it finishes and pays, then the task ends."""

    task: codec.U64
    round: codec.U32
    refunded: Balance


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


@pallet.error(13)
class WindowTooLong(DispatchFailure):
    """commit_blocks + reveal_blocks must be at most MAX_WINDOW_BLOCKS (the pruning window, less the seed block)."""


@pallet.error(14)
class BondTooSmall(DispatchFailure):
    """The task's bond per commit is below the chain's minimum (TrainingLimits.min_commit_bond)."""


@pallet.error(15)
class SampleCapTooHigh(DispatchFailure):
    """max_samples must be 1..TrainingLimits.max_samples_per_update and max_share_ppm 1..1000000."""


@pallet.error(16)
class BadCopyDistance(DispatchFailure):
    """copy_distance_ppm is a sine in parts per million (at most 1000000)."""


@pallet.error(17)
class TaskTooCostly(DispatchFailure):
    """Parameters x (max updates + 2) x held-out subset exceed the chain's useful-work budget (max_task_work)."""


@pallet.error(18)
class BlockWorkExceeded(DispatchFailure):
    """The block's useful-work reports weigh more than the block's weight limit allows."""

