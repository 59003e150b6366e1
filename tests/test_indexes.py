"""Node-side indexes (node/indexer.py) and training.ActiveTasks: right answers, and bounded work.

Each index is checked against its slow, obviously correct twin (a walk of the whole
state or of every block), and each read is shown to touch a page of its own index,
however many unrelated keys, accounts or tasks the chain holds.
"""

from __future__ import annotations

import pytest

from node.indexer import MAX_PAGE, ChainIndexer
from runtime import api as runtime_api
from runtime.hashing import blake2b_256
from runtime.pallets import system, training
from runtime.pallets.training import ModelSpec, RoundReport, Score, SealedKey, TaskConfig, UpdateScore
from tests.helpers.chain import DEV_KEYS, TestChain

ALICE, BOB, CHARLIE, DAVE, EVE = (DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie", "Dave", "Eve"))
ACCOUNTS = system.Account.prefix
REWARD = 10**12


def H(text: str) -> bytes:
    return blake2b_256(text.encode())


class CountingDatabase:
    """The node's Database, counting the index keys its range reads hand out."""

    def __init__(self, db) -> None:
        self._db = db
        self.keys_read = 0

    def __getattr__(self, name):
        return getattr(self._db, name)

    def _count(self, iterator):
        for item in iterator:
            self.keys_read += 1
            yield item

    def keys_between(self, *args, **kwargs):
        return self._count(self._db.keys_between(*args, **kwargs))

    def items_between(self, *args, **kwargs):
        return self._count(self._db.items_between(*args, **kwargs))


class Indexed:
    """A TestChain whose indexer follows every committed block, as ChainService does."""

    def __init__(self, path, **kwargs) -> None:
        self.chain = TestChain(path, **kwargs)
        self.store = self.chain.chain
        self.indexer = ChainIndexer(self.store)
        self.indexer.catch_up()

    def author(self, transactions=(), **kwargs):
        built = self.chain.author_block(transactions, **kwargs)
        self.indexer.record_block(built.block)
        self.indexer.follow_best()
        return built

    def fork(self, parent: bytes, transactions=(), slot: int | None = None):
        """A block on `parent` committed as the importer would: best if longer, indexed like any block."""
        built = self.chain.build(transactions, parent=parent, slot=slot)
        self.chain.importer.import_block(built.block, authored=built.state).raise_for_error()  # fork choice decides
        self.indexer.record_block(built.block)
        self.indexer.follow_best()
        return built

    def transfers_to_new_accounts(self, count: int, tag: str):
        nonce = self.chain.nonce(ALICE.public)
        return [self.chain.transfer(ALICE, H(f"{tag}-{i}"), 10**15, nonce=nonce + i) for i in range(count)]

    def counting(self) -> CountingDatabase:
        counting = CountingDatabase(self.indexer.db)
        self.indexer.db = counting
        return counting

    def close(self) -> None:
        self.chain.close()


@pytest.fixture
def indexed(tmp_path):
    chain = Indexed(tmp_path / "db", pruning=None, finalize=False)  # its forks re-org below the head
    yield chain
    chain.close()


def keys_in_state(store, block_hash: bytes, prefix: bytes) -> list[bytes]:
    """The slow twin of the key index: every key of the state, sorted."""
    stored = store.stored_state(block_hash)
    return sorted(k for k, _ in store.trie.iter_items(stored.ref) if k.startswith(prefix))


def all_pages(indexer, at: bytes, prefix: bytes, count: int) -> list[bytes]:
    keys, start = [], None
    while True:
        page = indexer.keys_page(at, prefix, start, count)
        keys += page
        if len(page) < count:
            return keys
        start = page[-1]


# --- state keys in key order -------------------------------------------------------------


def test_paging_keys_by_prefix_returns_the_states_keys_in_key_order(indexed):
    indexed.author(indexed.transfers_to_new_accounts(30, "a"))
    best = indexed.store.best_hash
    expected = keys_in_state(indexed.store, best, ACCOUNTS)
    assert len(expected) > 30
    assert all_pages(indexed.indexer, best, ACCOUNTS, 7) == expected
    start = expected[10]
    assert indexed.indexer.keys_page(best, ACCOUNTS, start, 5) == expected[11:16]
    assert indexed.indexer.keys_page(best, b"", None, 3) == keys_in_state(indexed.store, best, b"")[:3]


def test_keys_at_an_older_block_and_after_a_reorg_match_that_state(indexed):
    first = indexed.author(indexed.transfers_to_new_accounts(5, "a")).block
    indexed.author(indexed.transfers_to_new_accounts(8, "b"))
    old = first.hash
    assert all_pages(indexed.indexer, old, ACCOUNTS, 4) == keys_in_state(indexed.store, old, ACCOUNTS)
    # a longer fork from the first block becomes best: the index follows it
    fork = indexed.fork(old, indexed.transfers_to_new_accounts(3, "c"), slot=50).block
    fork = indexed.fork(fork.hash, slot=51).block
    fork = indexed.fork(fork.hash, slot=52).block
    assert indexed.store.best_hash == fork.hash
    assert all_pages(indexed.indexer, fork.hash, ACCOUNTS, 4) == keys_in_state(indexed.store, fork.hash, ACCOUNTS)
    assert H("b-0") not in {k[-32:] for k in all_pages(indexed.indexer, fork.hash, ACCOUNTS, 100)}


def test_a_rebuilt_index_equals_the_one_that_followed_the_chain(indexed):
    indexed.author(indexed.transfers_to_new_accounts(12, "a"))
    followed = all_pages(indexed.indexer, indexed.store.best_hash, b"", 50)
    indexed.indexer.rebuild()
    assert all_pages(indexed.indexer, indexed.store.best_hash, b"", 50) == followed


def test_a_page_of_keys_reads_a_page_of_the_index_however_many_other_keys_exist(indexed):
    small_counts = []
    for batch in (5, 300):
        indexed.author(indexed.transfers_to_new_accounts(batch, f"n{batch}"))
        counting = indexed.counting()
        best = indexed.store.best_hash
        page = indexed.indexer.keys_page(best, system.Params.key, None, 10)
        assert page == keys_in_state(indexed.store, best, system.Params.key) == [system.Params.key]
        indexed.indexer.keys_page(best, ACCOUNTS, None, 10)
        small_counts.append(counting.keys_read)
    # the same few index entries with 10 or 300 more accounts in the state
    assert small_counts[0] == small_counts[1] == 1 + 10


def test_a_page_is_capped_whatever_count_is_asked(indexed):
    indexed.author(indexed.transfers_to_new_accounts(20, "a"))
    assert len(indexed.indexer.keys_page(indexed.store.best_hash, b"", None, 10**9)) <= MAX_PAGE


# --- account history -----------------------------------------------------------------------


def history_by_scan(store, who: bytes) -> list[int]:
    """The slow twin: every canonical block whose extrinsics or events name the account."""
    found = []
    for number in range(store.best_header().number, 0, -1):
        block_hash = store.hash_at(number)
        block = store.block(block_hash)
        signers = {x.signed.signer for x in block.extrinsics if x.signed}
        named = {a for r in runtime_api.events(store.state_view(block_hash))
                 for a in runtime_api.accounts_of_event(r.event)}
        if who in signers | named:
            found.append(number)
    return found


def test_account_history_lists_the_blocks_that_involve_the_account_newest_first(indexed):
    chain = indexed.chain
    indexed.author([chain.transfer(ALICE, BOB.public, 10**15)])
    indexed.author([chain.transfer(CHARLIE, DAVE.public, 10**15)])
    indexed.author([chain.transfer(BOB, CHARLIE.public, 10**15)])
    history = indexed.indexer.account_history(BOB.public, None, 10)
    assert [h[0] for h in history] == [3, 1] == history_by_scan(indexed.store, BOB.public)
    number, block_hash, extrinsics, events = history[0]
    assert block_hash == indexed.store.hash_at(3) and extrinsics == [2]  # after the two inherents
    assert events  # the transfer, the fee, ...
    assert [h[0] for h in indexed.indexer.account_history(BOB.public, 3, 10)] == [1]  # page on below #3
    assert [h[0] for h in indexed.indexer.account_history(CHARLIE.public, None, 1)] == [3]


def test_account_history_leaves_out_blocks_of_a_retracted_fork(indexed):
    chain = indexed.chain
    base = indexed.author().block
    indexed.author([chain.transfer(ALICE, EVE.public, 10**15)])  # #2, soon retracted
    fork = indexed.fork(base.hash, slot=40).block
    fork = indexed.fork(fork.hash, slot=41).block
    assert indexed.store.best_header().number == 3 and indexed.store.best_hash == fork.hash
    assert indexed.indexer.account_history(EVE.public, None, 10) == []


def test_account_history_reads_one_page_however_long_the_accounts_past(indexed):
    chain = indexed.chain
    reads = []
    for blocks in (3, 30):
        for _ in range(blocks):
            indexed.author([chain.transfer(ALICE, BOB.public, 10**12)])
        counting = indexed.counting()
        assert len(indexed.indexer.account_history(BOB.public, None, 2)) == 2
        reads.append(counting.keys_read)
    assert reads[0] == reads[1] == 2


# --- training: active tasks, leaderboards, pinned blobs -------------------------------------


def task_config(**changes) -> TaskConfig:
    values = dict(spec=ModelSpec("mlp", (64, 32, 10)), initial_model=H("model-0"), metric=training.METRIC_LOSS,
                  held_out=H("held-out"), held_out_size=300, held_out_subset=100,
                  sealed_keys=(SealedKey(ALICE.public, b"k" * 80),), reward_per_round=REWARD, rounds=1,
                  commit_blocks=2, reveal_blocks=2, min_improvement_ppm=1_000, min_relative_ppm=0,
                  max_update_bytes=10**6, max_update_norm=2**26, bond=10**11, aggregation=0, trim=0)
    values.update(changes)
    return TaskConfig(**values)


def run_one_round(indexed, task_id: int, trainer) -> bytes:
    """Task `task_id` (one round) by Eve, one update by `trainer`, reported sound and adopted."""
    chain = indexed.chain
    update, salt = H(f"update-{task_id}"), b"\x01" * 32
    created = indexed.author([chain.sign(EVE, training.create_task(task_config()))])
    start = created.block.header.number
    indexed.author([chain.sign(trainer, training.commit_update(
        task_id, 0, training.update_commitment(update, trainer.public, salt)))])
    while indexed.store.best_header().number < start + 1:
        indexed.author()
    indexed.author([chain.sign(trainer, training.reveal_update(task_id, 0, update, salt, 100, H("data")))])
    while indexed.store.best_header().number < start + 4:  # up to the seed block, the first past the reveals
        indexed.author()
    base, better = Score(500_000, 1_500_000), Score(600_000, 1_200_000)
    seed = runtime_api.round_seed(chain.overlay(), training.Tasks.get(chain.overlay(), task_id))
    report = RoundReport(task_id, 0, seed, base, better,
                         (UpdateScore(update, training.UPDATE_OK, base),), H(f"model-{task_id}"), better)
    built = indexed.author(useful_work=(report,))
    assert all(o.success for o in built.outcomes)
    return update


def test_active_tasks_follow_creation_and_end_and_bound_the_reports_due(indexed):
    chain = indexed.chain
    nonce = chain.nonce(EVE.public)
    indexed.author([chain.sign(EVE, training.create_task(task_config(rounds=3)), nonce=nonce + i) for i in range(3)])
    assert runtime_api.active_task_ids(chain.overlay()) == (0, 1, 2)
    indexed.author([chain.sign(EVE, training.cancel_task(1))])
    assert runtime_api.active_task_ids(chain.overlay()) == (0, 2)
    assert training.Tasks.get(chain.overlay(), 1).status == training.STATUS_CANCELLED
    number = indexed.store.best_header().number + 10
    assert [task_id for task_id, _ in runtime_api.rounds_due(chain.overlay(), number)] == [0, 2]


def test_leaderboards_rank_by_rewards_and_ended_tasks_blobs_are_pinned(indexed):
    update = run_one_round(indexed, 0, BOB)
    run_one_round(indexed, 1, DAVE)
    overlay = indexed.chain.overlay()
    earned = {who: training.Earned.get(overlay, who) for who in (BOB.public, DAVE.public, ALICE.public)}
    board = indexed.indexer.leaderboard(10)
    assert board == sorted(board, key=lambda row: (-row[1], row[0]))
    assert {who: amount for who, amount in board if who in earned} == {w: a for w, a in earned.items() if a}
    task_board = indexed.indexer.task_leaderboard(0, 10)
    assert task_board == [(BOB.public, training.Updates.get(overlay, (0, 0, update)).reward)]
    assert indexed.indexer.task_leaderboard(1, 10)[0][0] == DAVE.public
    # both tasks ended after their one round: their audit trail is kept from blob GC
    assert runtime_api.active_task_ids(overlay) == ()
    assert {H("model-0"), H("held-out"), update, H("model-0")} <= indexed.indexer.pinned_blobs()
    # a rebuilt index agrees
    indexed.indexer.rebuild()
    assert indexed.indexer.leaderboard(10) == board and indexed.indexer.task_leaderboard(0, 10) == task_board


def test_tasks_are_read_a_page_at_a_time(indexed):
    chain = indexed.chain
    nonce = chain.nonce(EVE.public)
    indexed.author([chain.sign(EVE, training.create_task(task_config(rounds=3)), nonce=nonce + i) for i in range(5)])
    overlay = chain.overlay()
    assert [i for i, _ in runtime_api.tasks_page(overlay, before=None, count=2)] == [3, 4]
    assert [i for i, _ in runtime_api.tasks_page(overlay, before=3, count=2)] == [1, 2]
    assert [i for i, _ in runtime_api.tasks_page(overlay, before=1, count=2)] == [0]
    with pytest.raises(ValueError):
        runtime_api.tasks_page(overlay, before=None, count=runtime_api.MAX_PAGE + 1)



class CountingBackend:
    """A state backend that counts reads (what a runtime API call costs)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.reads = 0

    def get(self, key: bytes):
        self.reads += 1
        return self.backend.get(key)

    def compute_state(self, changes):
        return self.backend.compute_state(changes)


def test_rounds_due_and_gc_read_the_active_tasks_only_however_many_tasks_ended(indexed):
    chain = indexed.chain
    reads = []
    for ended in (2, 20):
        nonce = chain.nonce(EVE.public)
        first = runtime_api.task_count(chain.overlay())
        indexed.author([chain.sign(EVE, training.create_task(task_config(rounds=3)), nonce=nonce + i)
                        for i in range(ended)])
        indexed.author([chain.sign(EVE, training.cancel_task(first + i), nonce=nonce + ended + i)
                        for i in range(ended)])
        if not runtime_api.active_task_ids(chain.overlay()):
            indexed.author([chain.sign(EVE, training.create_task(task_config(rounds=3)), nonce=nonce + 2 * ended)])
        assert len(runtime_api.active_task_ids(chain.overlay())) == 1
        counting = CountingBackend(indexed.store.state_view(indexed.store.best_hash))
        number = indexed.store.best_header().number + 100
        assert len(runtime_api.rounds_due(counting, number)) == 1
        runtime_api.active_task_blobs(counting)
        reads.append(counting.reads)
    assert reads[0] == reads[1]  # 2 or 20 ended tasks: the same reads


def test_the_leaderboard_reads_one_page_however_many_accounts_earned(indexed):
    from runtime.state import EmptyBackend, Overlay

    reads = []
    for accounts in (10, 400):
        changes = Overlay(EmptyBackend())
        for i in range(accounts):
            training.Earned.insert(changes, H(f"earner-{accounts}-{i}"), 10**9 + i)
        indexed.indexer._apply([(k, None, v) for k, v in changes.changes.items()], indexed.store.best_hash)
        counting = indexed.counting()
        top = indexed.indexer.leaderboard(5)
        assert [amount for _, amount in top] == sorted((amount for _, amount in top), reverse=True)
        assert top[0] == (H(f"earner-{accounts}-{accounts - 1}"), 10**9 + accounts - 1)
        reads.append(counting.keys_read)
        indexed.indexer.db = counting._db
    assert reads == [5, 5]


def test_blocks_committed_while_the_indexer_did_not_run_are_indexed_at_the_next_start(indexed):
    chain = indexed.chain
    indexed.author([chain.transfer(ALICE, BOB.public, 10**12)])
    for _ in range(3):  # as import-blocks does: committed, never indexed
        chain.author_block([chain.transfer(ALICE, EVE.public, 10**12)] + indexed.transfers_to_new_accounts(2, "x"))
    restarted = ChainIndexer(indexed.store)
    restarted.catch_up()
    best = indexed.store.best_hash
    assert all_pages(restarted, best, ACCOUNTS, 50) == keys_in_state(indexed.store, best, ACCOUNTS)
    assert [h[0] for h in restarted.account_history(EVE.public, None, 10)] == history_by_scan(indexed.store,
                                                                                              EVE.public)


def test_an_index_left_half_rebuilt_is_rebuilt_whole(indexed):
    from storage import schema

    indexed.author(indexed.transfers_to_new_accounts(20, "a"))
    best = indexed.store.best_hash
    # a crash during a rebuild: the head pointer is gone and only some keys are indexed
    doomed = list(indexed.store.db.keys_with_prefix(schema.STATE_KEYS))[::2]
    indexed.store.db.write({}, doomed + [schema.meta_key(schema.META_INDEX_HEAD)])
    indexed.indexer.follow_best()
    assert all_pages(indexed.indexer, best, b"", 100) == keys_in_state(indexed.store, best, b"")
