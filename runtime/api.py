"""The runtime API: every question the node, consensus and RPC ask of a chain state.

Substrate answers these through runtime APIs (AccountNonceApi, TransactionPaymentApi,
...) so that the client never learns how pallets lay out their storage. Same here:
node/, consensus/ and rpc/ call these functions and never read a pallet's storage
item themselves, so a pallet can change its layout (add an index, split a map)
by changing this module alone.

Every function takes `state`, a StateBackend (storage's StateView of a block) or an
Overlay, reads it and writes nothing. Lists that can grow with the chain are read a
page at a time (`count` at most MAX_PAGE), so no answer walks the whole state.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, NamedTuple

from runtime import codec
from runtime.dispatch import PALLETS
from runtime.pallets import payment, randomness, system, training, validators
from runtime.pallets.system import AccountInfo
from runtime.pallets.training import ModelVersion, Reveal, RoundSummary, Task, UpdateRecord
from runtime.state import Overlay, StateBackend, StorageMap
from runtime.types import AccountId, EventRecord, Extrinsic

MAX_PAGE = 1000


class FeeInfo(NamedTuple):
    """What a signed extrinsic pays, tip excluded (Substrate's RuntimeDispatchInfo)."""

    weight: int
    partial_fee: int


def _overlay(state: StateBackend | Overlay) -> Overlay:
    return state if isinstance(state, Overlay) else Overlay(state)


def _page(count: int) -> int:
    if not 1 <= count <= MAX_PAGE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE} entries, not {count}")
    return count


# --- accounts, fees, events, validators ----------------------------------------------


def account(state: StateBackend | Overlay, who: bytes) -> AccountInfo | None:
    return system.Account.get(_overlay(state), who)


def account_nonce(state: StateBackend | Overlay, who: bytes) -> int:
    """The nonce the account's next transaction must carry, by the chain alone (the pool adds its own).

    0 for an account that does not exist: nothing it signs can pay, and once created its nonce is its
    position in the chain (system.new_account_nonce), so ask again after it is funded."""
    info = system.Account.get(_overlay(state), who)
    return info.nonce if info is not None else 0


def query_fee(state: StateBackend | Overlay, extrinsic: Extrinsic) -> FeeInfo:
    """The weight and fee `extrinsic` would be charged in the block after `state`, by the executive's rule."""
    params = system.Params.get(_overlay(state))
    weight = payment.compute_extrinsic_weight(extrinsic.call)
    return FeeInfo(weight, payment.compute_fee(params, len(extrinsic.encoded), weight, 0))


def events(state: StateBackend | Overlay) -> tuple[EventRecord, ...]:
    """The events of the block whose state this is."""
    return system.Events.get(_overlay(state))


def validator_set(state: StateBackend | Overlay) -> tuple[Any, ...]:
    """The validators (account, stake) in authoring order."""
    return validators.Validators.get(_overlay(state))


def parameters(state: StateBackend | Overlay) -> system.Parameters:
    """The runtime parameters in force (block weight limit, useful-work budget, fees...)."""
    return system.Params.get(_overlay(state))


def recent_block_hash(state: StateBackend | Overlay, number: int) -> bytes | None:
    """The hash of block `number` if it is among the recent ones the runtime remembers, else None."""
    found = system.BlockHashes.get(_overlay(state), number)
    return None if found is None else bytes(found)


_ACCOUNT_FIELDS: dict[type, tuple[int, ...]] = {}  # event class -> positions of its AccountId fields


def _account_fields(cls: type) -> tuple[int, ...]:
    positions = _ACCOUNT_FIELDS.get(cls)
    if positions is None:
        hints = typing.get_type_hints(cls)
        positions = _ACCOUNT_FIELDS[cls] = tuple(
            i for i, f in enumerate(dataclasses.fields(cls)) if hints.get(f.name) is AccountId)
    return positions


def accounts_of_event(event: Any) -> tuple[bytes, ...]:
    """The accounts an event names (its AccountId fields): whose history it belongs to."""
    fields = dataclasses.fields(event)
    return tuple(bytes(getattr(event, fields[i].name)) for i in _account_fields(type(event)))


def accounts_named_by_events(state: StateBackend | Overlay) -> list[tuple[bytes, ...]]:
    """For each event of the block whose state this is, in order, the accounts it names.

    The same answer as accounts_of_event over events(state), read from the stored
    encoding without building the events: an event is [pallet, index, [fields]], so
    the account fields are picked by position (a block of transfers has thousands)."""
    raw = _overlay(state).get(system.Events.key)
    if raw is None:
        return []
    named = []
    positions_of: dict[tuple[int, int], tuple[int, ...]] = {}
    for _, (pallet_index, event_index, fields) in codec.unpack_trusted(raw):
        positions = positions_of.get((pallet_index, event_index))
        if positions is None:
            positions = positions_of[(pallet_index, event_index)] = _account_fields(
                PALLETS[pallet_index].events[event_index])
        named.append(tuple(fields[i] for i in positions))
    return named


# --- training ------------------------------------------------------------------------


def task(state: StateBackend | Overlay, task_id: int) -> Task | None:
    return training.Tasks.get(_overlay(state), task_id)


def task_count(state: StateBackend | Overlay) -> int:
    """Tasks ever created; ids run 0 .. task_count - 1."""
    return training.NextTaskId.get(_overlay(state))


def tasks_page(state: StateBackend | Overlay, *, before: int | None, count: int) -> list[tuple[int, Task]]:
    """The newest `count` tasks with ids below `before` (None: all ids), in ascending id order."""
    overlay = _overlay(state)
    end = training.NextTaskId.get(overlay)
    if before is not None:
        end = min(end, before)
    ids = range(max(0, end - _page(count)), end)
    return [(i, task) for i in ids if (task := training.Tasks.get(overlay, i)) is not None]


def active_task_ids(state: StateBackend | Overlay) -> tuple[int, ...]:
    return tuple(training.ActiveTasks.get(_overlay(state)))


def rounds_due(state: StateBackend | Overlay, number: int) -> list[tuple[int, Task]]:
    """Active tasks whose round an author must report in block `number` (the reveal window closed)."""
    return training.reports_due(_overlay(state), number)


def round_seed(state: StateBackend | Overlay, task: Task) -> bytes | None:
    """The held-out subset seed of the task's current round: the randomness after its seed block
    (None while that block is not past, or once it has left the randomness history)."""
    seed = randomness.History.get(_overlay(state), training.round_windows(task)[2])
    return None if seed is None else bytes(seed)


def round_reveals(state: StateBackend | Overlay, task_id: int, round_number: int) -> list[tuple[bytes, Reveal]]:
    """(update hash, Reveal) of a round, in order of reveal (at most MAX_UPDATES_PER_ROUND)."""
    overlay = _overlay(state)
    hashes = training.RoundReveals.get(overlay, (task_id, round_number))
    return [(bytes(h), training.Reveals.get(overlay, (task_id, round_number, h))) for h in hashes]


def round_updates(state: StateBackend | Overlay, task_id: int, round_number: int) -> list[tuple[bytes, Any]]:
    """(update hash, UpdateRecord once scored, else its Reveal) in order of reveal."""
    overlay = _overlay(state)
    return [(h, training.Updates.get(overlay, (task_id, round_number, h)) or reveal)
            for h, reveal in round_reveals(overlay, task_id, round_number)]


def previous_model(state: StateBackend | Overlay, task_id: int) -> bytes | None:
    """The model the task's current model replaced (the one adopted before it, or the initial model);
    None while the task still has its initial model. FedAvgM's momentum is their difference."""
    overlay = _overlay(state)
    task = training.Tasks.get(overlay, task_id)
    found_current = False
    for round_number in range(task.round - 1, -1, -1) if task is not None else ():
        if training.ModelVersions.get(overlay, (task_id, round_number)) is None:
            continue
        if found_current:
            return bytes(training.ModelVersions.get(overlay, (task_id, round_number)).model)
        found_current = True
    return bytes(task.config.initial_model) if found_current else None


def model_versions(state: StateBackend | Overlay, task_id: int, *, start: int = 0,
                   count: int = MAX_PAGE) -> list[tuple[int, ModelVersion]]:
    """(round, ModelVersion) of the rounds start .. start + count - 1 that adopted a model."""
    return _per_round(state, task_id, training.ModelVersions, start, count)


def round_summaries(state: StateBackend | Overlay, task_id: int, *, start: int = 0,
                    count: int = MAX_PAGE) -> list[tuple[int, RoundSummary]]:
    """(round, RoundSummary) of the closed rounds start .. start + count - 1."""
    return _per_round(state, task_id, training.Rounds, start, count)


def _per_round(state: StateBackend | Overlay, task_id: int, records: StorageMap, start: int,
               count: int) -> list[tuple[int, Any]]:
    overlay = _overlay(state)
    found = training.Tasks.get(overlay, task_id)
    if found is None:
        return []
    rounds = range(start, min(found.round + 1, start + _page(count)))
    return [(r, record) for r in rounds if (record := records.get(overlay, (task_id, r))) is not None]


def task_blobs(state: StateBackend | Overlay, task_id: int) -> set[bytes]:
    """Every blob one task refers to (models, held-out set, revealed updates)."""
    return training.task_blobs(_overlay(state), task_id)


def active_task_blobs(state: StateBackend | Overlay) -> set[bytes]:
    """Every blob the active tasks refer to (what blob GC must keep, beside ended tasks' pinned blobs)."""
    return training.referenced_blobs(_overlay(state))


# --- reading storage entries that node-side indexes follow ----------------------------
# The node keeps indexes (leaderboards, ended tasks) up to date from the state's changed
# keys; these say which keys matter and decode them, so it never names a storage item.

EARNED_PREFIX = training.Earned.prefix
UPDATES_PREFIX = training.Updates.prefix
TASKS_PREFIX = training.Tasks.prefix


def decode_earned(storage_key: bytes, raw: bytes) -> tuple[bytes, int]:
    """(account, all rewards it ever earned) from an Earned entry."""
    return bytes(training.Earned.key_from_storage_key(storage_key)), training.Earned.decode_value(raw)


def decode_update(storage_key: bytes, raw: bytes) -> tuple[int, bytes, int]:
    """(task id, submitter, reward) from a scored update's record."""
    task_id, _, _ = training.Updates.key_from_storage_key(storage_key)
    record: UpdateRecord = training.Updates.decode_value(raw)
    return task_id, bytes(record.submitter), record.reward


def decode_task(storage_key: bytes, raw: bytes) -> tuple[int, bool]:
    """(task id, whether it is active) from a Tasks entry."""
    found: Task = training.Tasks.decode_value(raw)
    return training.Tasks.key_from_storage_key(storage_key), found.status == training.STATUS_ACTIVE
