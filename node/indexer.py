"""Indexes the node keeps beside the chain so that every RPC read is bounded work.

Why in the node's own LevelDB columns (storage/schema.py) and not in runtime storage:
these are read models for RPC users, not consensus data. In runtime storage every
validator would pay for them in every block (trie writes, a larger state root to
update, proofs nobody asks for), they would grow the state forever, and changing
one would need a runtime upgrade. Here a node builds them from what it already
has (blocks, events, states), can drop and rebuild them, and they never change a
state root. Consensus-relevant lists (the active tasks an author must report) are
in runtime storage instead (training.ActiveTasks), because they must be read at
any block's state.

Two kinds:
- Derived from the best state (key order, leaderboards, pins of ended tasks'
  blobs): a function of that one state, so they move with it by the state diff
  between the state they describe (meta `index_head`) and the new best, written
  in one batch with the new head. A re-org or a restart is just a larger diff; an
  index whose state was pruned is rebuilt from the best state.
- The account history: one entry per (account, block) for every block imported,
  forks included; a read keeps the entries whose block is canonical.

Everything here runs on the chain thread (ChainService calls it after commits).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import msgpack
import structlog

from runtime import api as runtime_api
from runtime.types import Block
from storage import schema
from storage.chainstore import ChainStore, StatePruned
from storage.state_diff import diff_states
from storage.trie import MissingTrieNode

log = structlog.get_logger("indexer")

MAX_PAGE = 1000
MAX_DIFF_KEYS = 100_000  # a state further than this from the best is not paged by key (ask at the best block)


class IndexUnavailable(Exception):
    """The index cannot answer for this block (too far from the best state, or pruned)."""


class ChainIndexer:
    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.db = store.db

    # --- keeping up ----------------------------------------------------------------

    @property
    def head(self) -> bytes | None:
        return self.db.get(schema.meta_key(schema.META_INDEX_HEAD))

    def follow_best(self) -> None:
        """Move the state-derived indexes to the best state (no-op if they describe it already)."""
        best = self.store.best_hash
        head = self.head
        if head == best:
            return
        old = self.store.stored_state(head) if head is not None else None
        new = self.store.stored_state(best)
        if old is None or self.store.is_state_pruned(old):
            self.rebuild()
            return
        try:
            changes = list(diff_states(self.store.trie, old.ref, new.ref))
        except MissingTrieNode:
            self.rebuild()
            return
        self._apply(changes, best)

    def rebuild(self) -> None:
        """Drop the state-derived indexes and build them from the best state (a walk of the whole state),
        in batches. The head pointer goes first and comes back last: a crash half-way means a rebuild."""
        best = self.store.best_hash
        stored = self.store.stored_state(best)
        self.db.write({}, [schema.meta_key(schema.META_INDEX_HEAD)])
        for prefix in (schema.STATE_KEYS, schema.LEADERBOARD, schema.TASK_EARNED, schema.TASK_RANKING):
            for batch in _batches(self.db.keys_with_prefix(prefix)):
                self.db.write({}, batch)
        items = self.store.trie.iter_items(stored.ref)
        for batch in _batches((key, None, value) for key, value in items):
            self._apply(batch, best, move_head=False)
        self._apply([], best)
        log.info("rebuilt the state indexes", best=stored.number)

    def _apply(self, changes: Iterable[tuple[bytes, bytes | None, bytes | None]], best: bytes, *,
               move_head: bool = True) -> None:
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        task_deltas: dict[tuple[int, bytes], int] = {}
        ended: list[int] = []
        for key, before, after in changes:
            if after is None:
                deletes.append(schema.state_key_index_key(key))
            elif before is None:
                puts[schema.state_key_index_key(key)] = b""
            if key.startswith(runtime_api.EARNED_PREFIX):
                self._move_earned(key, before, after, puts, deletes)
            elif key.startswith(runtime_api.UPDATES_PREFIX):
                for raw, sign in ((before, -1), (after, 1)):
                    if raw is not None:
                        task_id, who, reward = runtime_api.decode_update(key, raw)
                        if reward:
                            task_deltas[(task_id, who)] = task_deltas.get((task_id, who), 0) + sign * reward
            elif key.startswith(runtime_api.TASKS_PREFIX) and after is not None:
                task_id, active = runtime_api.decode_task(key, after)
                if not active:
                    ended.append(task_id)
        for (task_id, who), delta in task_deltas.items():
            if delta:
                self._move_task_earned(task_id, who, delta, puts, deletes)
        if ended:  # the audit trail of an ended task stays: its blobs are never collected
            state = self.store.state_view(best)
            for task_id in ended:
                for blob_hash in runtime_api.task_blobs(state, task_id):
                    puts[schema.pinned_blob_key(blob_hash)] = b""
        if move_head:
            puts[schema.meta_key(schema.META_INDEX_HEAD)] = best
        self.db.write({}, deletes, more_puts=(puts,))  # deletes first: a re-put of a moved key wins

    @staticmethod
    def _move_earned(key: bytes, before: bytes | None, after: bytes | None, puts: dict, deletes: list) -> None:
        if before is not None:
            who, amount = runtime_api.decode_earned(key, before)
            deletes.append(schema.leaderboard_key(amount, who))
            puts.pop(schema.leaderboard_key(amount, who), None)
        if after is not None:
            who, amount = runtime_api.decode_earned(key, after)
            puts[schema.leaderboard_key(amount, who)] = b""

    def _move_task_earned(self, task_id: int, who: bytes, delta: int, puts: dict, deletes: list) -> None:
        total_key = schema.task_earned_key(task_id, who)
        raw = self.db.get(total_key)
        old = 0 if raw is None else int.from_bytes(raw, "big")
        new = max(0, old + delta)
        if old:
            deletes.append(schema.task_ranking_key(task_id, old, who))
        if new:
            puts[total_key] = new.to_bytes(16, "big")
            puts[schema.task_ranking_key(task_id, new, who)] = b""
        else:
            deletes.append(total_key)

    def record_block(self, block: Block) -> None:
        """The account history of one imported block: who signed which extrinsic, and who each event names."""
        involved: dict[bytes, tuple[list[int], list[int]]] = {}
        for index, extrinsic in enumerate(block.extrinsics):
            if extrinsic.signed is not None:
                involved.setdefault(bytes(extrinsic.signed.signer), ([], []))[0].append(index)
        try:
            named = runtime_api.accounts_named_by_events(self.store.state_view(block.hash))
        except StatePruned:  # an old block indexed late: its signers only
            named = []
        for index, accounts in enumerate(named):
            for who in accounts:
                entry = involved.get(who)
                if entry is None:
                    entry = involved[who] = ([], [])
                if not entry[1] or entry[1][-1] != index:
                    entry[1].append(index)
        number, block_hash = block.header.number, block.hash
        puts = {schema.account_history_key(who, number, block_hash): msgpack.packb(list(entry))
                for who, entry in involved.items()}
        if number > self.history_number:
            puts[schema.meta_key(schema.META_HISTORY_NUMBER)] = number.to_bytes(8, "big")
        self.db.write(puts)

    @property
    def history_number(self) -> int:
        """The highest block number whose history is recorded (-1 before any)."""
        raw = self.db.get(schema.meta_key(schema.META_HISTORY_NUMBER))
        return -1 if raw is None else int.from_bytes(raw, "big")

    def catch_up(self) -> None:
        """After a start: record the history of canonical blocks added while the node did not index
        (import-blocks), and bring the state indexes to the best block."""
        best = self.store.best_header().number
        for number in range(self.history_number + 1, best + 1):
            self.record_block(self.store.block(self.store.hash_at(number)))
        self.follow_best()

    # --- reads (bounded: each walks at most one page of its own index) --------------------

    def keys_page(self, at: bytes, prefix: bytes, start_key: bytes | None, count: int) -> list[bytes]:
        """Up to `count` keys of the state of block `at` with `prefix`, in key order, after `start_key`.

        The index describes the best state; for another block, the keys whose presence
        differs (a diff of the two states, at most MAX_DIFF_KEYS) correct it."""
        count = min(count, MAX_PAGE)
        differs: dict[bytes, bool] = {}
        head = self.head
        if at != head:
            differs = self._presence_at(at, head, prefix)
        begin = prefix if start_key is None or start_key < prefix else start_key + b"\x00"
        stop = _prefix_end(schema.state_key_index_key(prefix))
        found: list[bytes] = []
        extra = sorted(k for k, present in differs.items() if present and k >= begin)
        index_keys = (k[1:] for k in self.db.keys_between(schema.state_key_index_key(begin), stop))
        for key in _merge(index_keys, extra):
            if differs.get(key, True):
                found.append(key)
                if len(found) == count:
                    break
        return found

    def _presence_at(self, at: bytes, head: bytes | None, prefix: bytes) -> dict[bytes, bool]:
        store = self.store
        want, have = store.stored_state(at), store.stored_state(head) if head is not None else None
        if want is None or have is None or store.is_state_pruned(want):
            raise IndexUnavailable("that block's state is not available here")
        differs: dict[bytes, bool] = {}
        for seen, (key, before, after) in enumerate(diff_states(store.trie, have.ref, want.ref)):
            if seen >= MAX_DIFF_KEYS:
                raise IndexUnavailable(f"the state of that block differs from the best in over {MAX_DIFF_KEYS} "
                                       "keys; list keys at a recent block")
            if key.startswith(prefix) and (before is None) != (after is None):
                differs[key] = after is not None
        return differs

    def leaderboard(self, count: int) -> list[tuple[bytes, int]]:
        """(account, all rewards earned), the largest first; ties by account."""
        keys = self.db.keys_between(schema.LEADERBOARD, _prefix_end(schema.LEADERBOARD))
        return [schema.account_from_leaderboard_key(k) for k in _take(keys, min(count, MAX_PAGE))]

    def task_leaderboard(self, task_id: int, count: int) -> list[tuple[bytes, int]]:
        """(trainer, rewards earned in this task), the largest first."""
        prefix = schema.task_ranking_prefix(task_id)
        keys = self.db.keys_between(prefix, _prefix_end(prefix))
        return [schema.account_from_task_ranking_key(k) for k in _take(keys, min(count, MAX_PAGE))]

    def account_history(self, account: bytes, before: int | None, count: int) -> list[tuple[int, bytes, list, list]]:
        """(number, block hash, extrinsic indices, event indices) of canonical blocks below `before` that
        involve `account`, newest first. Entries of blocks that left the canonical chain are skipped."""
        prefix = schema.account_history_prefix(account)
        stop = prefix + (before.to_bytes(8, "big") if before is not None else b"\xff" * 41)
        found = []
        for key, raw in self.db.items_between(prefix, stop, reverse=True):
            number, block_hash = schema.history_entry_block(key)
            if self.store.hash_at(number) != block_hash:
                continue
            extrinsics, events = msgpack.unpackb(raw)
            found.append((number, block_hash, extrinsics, events))
            if len(found) >= min(count, MAX_PAGE):
                break
        return found

    def pinned_blobs(self) -> set[bytes]:
        return {k[len(schema.PINNED_BLOB):] for k in self.db.keys_with_prefix(schema.PINNED_BLOB)}


def _batches(items: Iterable, size: int = 50_000) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes((stripped[-1] + 1,)) if stripped else b"\xff" * 64


def _take(keys: Iterator[bytes], count: int) -> list[bytes]:
    """The first `count` keys, reading no further."""
    taken: list[bytes] = []
    for key in keys:
        taken.append(key)
        if len(taken) == count:
            break
    return taken


def _merge(first: Iterator[bytes], second: list[bytes]) -> Iterator[bytes]:
    """Two ascending key streams as one, each key once."""
    position = 0
    for key in first:
        while position < len(second) and second[position] < key:
            yield second[position]
            position += 1
        if position < len(second) and second[position] == key:
            position += 1
        yield key
    yield from second[position:]
