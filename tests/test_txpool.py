"""The transaction pool, specified by example against a fake runtime of nonces, and held
equal to a slow reference pool (the same rules stated directly) by a hypothesis state machine."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from functools import cached_property

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.txpool import (
    AlreadyImported, PoolError, PoolFull, PoolLimits, TemporarilyBanned, TooLowPriority, TransactionPool,
)
from runtime.validity import InvalidReason, InvalidTransaction, UnknownTransaction, ValidTransaction

# --- a fake runtime: accounts with nonces, a block height and a clock ---------------------


@dataclass(frozen=True)
class Tx:
    signer: str
    nonce: int
    tip: int
    size: int
    valid_till: int  # the last block that may include it

    @cached_property
    def hash(self) -> bytes:
        return hashlib.blake2b(repr(self).encode(), digest_size=32).digest()


def tag(signer: str, nonce: int) -> bytes:
    return f"{signer}/{nonce}".encode()


class FakeChain:
    def __init__(self) -> None:
        self.nonces: dict[str, int] = {}
        self.height = 0
        self.now = 1000.0

    def validate(self, tx: Tx) -> ValidTransaction:
        chain_nonce = self.nonces.get(tx.signer, 0)
        if tx.nonce < chain_nonce:
            raise InvalidTransaction(InvalidReason.STALE)
        if tx.valid_till <= self.height:
            raise InvalidTransaction(InvalidReason.ANCIENT_BIRTH_BLOCK)
        requires = (tag(tx.signer, tx.nonce - 1),) if tx.nonce > chain_nonce else ()
        return ValidTransaction(priority=tx.tip, requires=requires, provides=(tag(tx.signer, tx.nonce),),
                                longevity=tx.valid_till - self.height)

    def pool(self, **limits) -> TransactionPool:
        return TransactionPool(self.validate, lambda tx: tx.hash, lambda tx: tx.size, PoolLimits(**limits),
                               clock=lambda: self.now)

    def tx(self, signer: str, nonce: int, tip: int = 1, size: int = 100, lifetime: int = 1000) -> Tx:
        return Tx(signer, nonce, tip, size, self.height + lifetime)

    def import_block(self, pool: TransactionPool, txs=(), *, retracted=()):
        """The next block, including `txs` (in order); the pool hears of it."""
        for tx in txs:
            assert tx.nonce == self.nonces.get(tx.signer, 0)
            self.nonces[tx.signer] = tx.nonce + 1
        self.height += 1
        return pool.on_block_imported(number=self.height, included=[t.hash for t in txs], retracted=retracted)


class Watcher:
    def __init__(self, pool: TransactionPool) -> None:
        self.events: list[tuple[bytes, str, object]] = []
        self.unsubscribe = pool.subscribe(lambda h, status, info: self.events.append((h, status, info)))

    def of(self, tx: Tx) -> list[str]:
        return [status for h, status, _ in self.events if h == tx.hash]


def nonces(txs) -> list[tuple[str, int]]:
    return [(t.signer, t.nonce) for t in txs]


def snapshot(pool: TransactionPool):
    return [t.hash for t in pool.ready()], [t.hash for t in pool.future()], pool.status()


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


# --- ready and future ----------------------------------------------------------------------


def test_a_nonce_gap_waits_in_future_then_fills_in_order(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    a1, a2, a0 = chain.tx("a", 1), chain.tx("a", 2), chain.tx("a", 0)
    assert pool.submit(a2, at_block=0) == (a2.hash, "future")
    assert pool.submit(a1, at_block=0) == (a1.hash, "future")
    assert list(pool.ready()) == [] and (pool.ready_count, pool.future_count) == (0, 2)
    assert pool.submit(a0, at_block=0) == (a0.hash, "ready")
    assert list(pool.ready()) == [a0, a1, a2] and (pool.ready_count, pool.future_count) == (3, 0)
    assert [(h, s) for h, s, _ in watcher.events] == [
        (a2.hash, "future"), (a1.hash, "future"), (a0.hash, "ready"), (a1.hash, "ready"), (a2.hash, "ready")]


def test_ready_yields_the_highest_priority_first_but_never_before_a_lower_nonce(chain):
    pool = chain.pool()
    for tx in (chain.tx("a", 0, tip=1), chain.tx("a", 1, tip=9), chain.tx("b", 0, tip=5), chain.tx("c", 0, tip=7)):
        pool.submit(tx, at_block=0)
    assert nonces(pool.ready()) == [("c", 0), ("b", 0), ("a", 0), ("a", 1)]


def test_equal_priorities_keep_arrival_order_and_taking_does_not_remove(chain):
    pool = chain.pool()
    txs = [chain.tx(signer, 0, tip=3) for signer in "qwerty"]
    pool.submit_many(txs, at_block=0)
    assert list(pool.ready()) == txs
    assert list(itertools.islice(pool.ready(), 2)) == txs[:2] and list(pool.ready()) == txs


def test_a_replacement_needs_strictly_higher_priority_and_usurps_the_incumbent(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    incumbent, successor = chain.tx("a", 0, tip=5), chain.tx("a", 1, tip=1)
    pool.submit_many([incumbent, successor], at_block=0)
    before = snapshot(pool)
    with pytest.raises(TooLowPriority) as refused:
        pool.submit(chain.tx("a", 0, tip=5, size=7), at_block=0)
    assert refused.value.rpc_code == 1014 and refused.value.code == "too_low_priority"
    assert snapshot(pool) == before
    usurper = chain.tx("a", 0, tip=6)
    assert pool.submit(usurper, at_block=0) == (usurper.hash, "ready")
    assert incumbent.hash not in pool and list(pool.ready()) == [usurper, successor]
    assert (incumbent.hash, "usurped", usurper.hash) in watcher.events
    assert watcher.of(successor) == ["ready"]  # it stayed ready throughout: no flicker to future and back


def test_a_duplicate_is_already_imported(chain):
    pool = chain.pool()
    tx = chain.tx("a", 0)
    pool.submit(tx, at_block=0)
    with pytest.raises(AlreadyImported) as duplicate:
        pool.submit(tx, at_block=0)
    assert duplicate.value.rpc_code == 1013 and len(pool) == 1


# --- bans ----------------------------------------------------------------------------------


def test_an_invalid_submission_is_banned_until_the_ban_expires(chain):
    pool = chain.pool(ban_seconds=60)
    chain.nonces["a"] = 3
    stale = chain.tx("a", 1)
    with pytest.raises(InvalidTransaction) as invalid:
        pool.submit(stale, at_block=0)
    assert invalid.value.reason is InvalidReason.STALE
    chain.nonces["a"] = 0  # even if it became valid, it is refused while banned
    chain.now += 59
    with pytest.raises(TemporarilyBanned) as banned:
        pool.submit(stale, at_block=0)
    assert banned.value.rpc_code == 1012
    chain.now += 1
    assert pool.submit(stale, at_block=0)[1] == "future"


def test_remove_invalid_drops_dependants_and_bans_only_the_named(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    a0, a1, a2, b0 = chain.tx("a", 0), chain.tx("a", 1), chain.tx("a", 2), chain.tx("b", 0)
    pool.submit_many([a0, a1, a2, b0], at_block=0)
    assert set(pool.remove_invalid([a1.hash])) == {a1.hash, a2.hash}
    assert list(pool.ready()) == [a0, b0]
    assert watcher.of(a1)[-1] == "invalid" and watcher.of(a2)[-1] == "dropped"
    with pytest.raises(TemporarilyBanned):
        pool.submit(a1, at_block=0)
    assert pool.submit(a2, at_block=0)[1] == "future"  # not banned: it waits for a new nonce 1


# --- limits --------------------------------------------------------------------------------


def test_over_the_future_limit_the_lowest_priority_future_goes_first_newest_among_equals(chain):
    pool = chain.pool(future_count=2)
    watcher = Watcher(pool)
    old, new, high = chain.tx("a", 5, tip=1), chain.tx("b", 5, tip=1), chain.tx("c", 5, tip=2)
    pool.submit_many([old, new], at_block=0)
    pool.submit(high, at_block=0)
    assert [t for t in pool.future()] == [old, high] and watcher.of(new)[-1] == "dropped"


def test_over_the_ready_limit_the_lowest_priority_goes_with_its_dependants(chain):
    pool = chain.pool(ready_count=3)
    low0, low1, mid = chain.tx("a", 0, tip=1), chain.tx("a", 1, tip=8), chain.tx("b", 0, tip=4)
    pool.submit_many([low0, low1, mid], at_block=0)
    high = chain.tx("c", 0, tip=2)
    assert pool.submit(high, at_block=0)[1] == "ready"
    assert list(pool.ready()) == [mid, high]  # a1 needed a0: it left with it
    assert (pool.ready_count, pool.future_count) == (2, 0)


def test_a_newcomer_that_would_be_evicted_is_refused_and_changes_nothing(chain):
    pool = chain.pool(ready_count=2, future_count=5)
    pool.submit_many([chain.tx("x", 0, tip=5), chain.tx("y", 0, tip=5)], at_block=0)
    pool.submit_many([chain.tx("a", 1, tip=9), chain.tx("a", 2, tip=9)], at_block=0)
    before = snapshot(pool)
    watcher = Watcher(pool)
    for hopeless in (chain.tx("z", 0, tip=5),  # equal priority: the newest goes first
                     chain.tx("a", 0, tip=1)):  # would promote a1 and a2, then be evicted with them
        with pytest.raises(PoolFull) as full:
            pool.submit(hopeless, at_block=0)
        assert full.value.rpc_code == 1016
        assert snapshot(pool) == before and watcher.events == []


def test_a_usurper_that_would_be_evicted_leaves_the_incumbent_in_place(chain):
    pool = chain.pool(ready_bytes=300)
    pool.submit_many([chain.tx("x", 0, tip=10, size=100), chain.tx("a", 0, tip=2, size=100)], at_block=0)
    before = snapshot(pool)
    with pytest.raises(PoolFull):
        pool.submit(chain.tx("a", 0, tip=3, size=250), at_block=0)
    assert snapshot(pool) == before


def test_byte_limits_evict_like_count_limits(chain):
    pool = chain.pool(ready_bytes=250, future_bytes=100)
    pool.submit_many([chain.tx("a", 0, tip=3, size=100), chain.tx("b", 0, tip=1, size=100)], at_block=0)
    pool.submit(chain.tx("c", 0, tip=2, size=100), at_block=0)
    assert [(t.signer, t.tip) for t in pool.ready()] == [("a", 3), ("c", 2)] and pool.ready_bytes == 200
    with pytest.raises(PoolFull):
        pool.submit(chain.tx("d", 4, size=101), at_block=0)  # alone over the future byte limit
    assert pool.future_count == 0


# --- after a block -------------------------------------------------------------------------


def test_longevity_runs_out_after_the_last_block_that_may_include_it(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    chain.height = 10
    mortal = chain.tx("a", 0, lifetime=3)  # may be in blocks 11, 12 and 13
    pool.submit(mortal, at_block=10)
    chain.import_block(pool)
    chain.import_block(pool)
    assert mortal.hash in pool
    report = chain.import_block(pool)  # block 13 did not include it: no later block may
    assert report.expired == 1 and mortal.hash not in pool and watcher.of(mortal)[-1] == "invalid"
    assert pool.is_banned(mortal.hash)


def test_included_transactions_leave_and_release_the_next_nonce(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    a0, a1, a2 = chain.tx("a", 0), chain.tx("a", 1), chain.tx("a", 2)
    pool.submit_many([a0, a1, a2], at_block=0)
    report = chain.import_block(pool, [a0, a1])
    assert report.included == 2 and list(pool.ready()) == [a2] and len(pool) == 1
    assert watcher.of(a0) == ["ready"]  # inclusion is announced by the RPC layer, not as a drop


def test_revalidation_drops_the_stale_and_promotes_futures_the_chain_filled(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    a0, a1, b1, b2 = chain.tx("a", 0), chain.tx("a", 1), chain.tx("b", 1), chain.tx("b", 2)
    pool.submit_many([a0, a1, b1, b2], at_block=0)
    assert nonces(pool.future()) == [("b", 1), ("b", 2)]
    chain.nonces.update(a=1, b=1)  # a block from elsewhere used a's nonce 0 and b's nonce 0
    report = chain.import_block(pool)
    assert report.invalid == 1 and report.promoted == 2
    assert list(pool.ready()) == [a1, b1, b2] and pool.future_count == 0
    assert watcher.of(a0)[-1] == "invalid" and pool.is_banned(a0.hash)
    assert watcher.of(a1) == ["ready"] and watcher.of(b1) == ["future", "ready"]


def test_revalidation_moves_ready_back_to_future_when_its_requirement_is_gone(chain):
    pool = chain.pool()
    a0, a1 = chain.tx("a", 0), chain.tx("a", 1)
    pool.submit(a0, at_block=0)
    chain.import_block(pool, [a0])
    pool.submit(a1, at_block=1)
    watcher = Watcher(pool)
    chain.nonces["a"] = 0  # a re-org to a fork without a0, and a0 was not handed back
    report = pool.on_block_imported(number=1, included=[])
    assert report.demoted == 1 and list(pool.future()) == [a1] and watcher.of(a1) == ["future"]


def test_retracted_transactions_come_back(chain):
    pool = chain.pool()
    a0, a1 = chain.tx("a", 0, tip=2), chain.tx("a", 1, tip=2)
    pool.submit_many([a0, a1], at_block=0)
    chain.import_block(pool, [a0, a1])
    assert len(pool) == 0
    chain.nonces["a"] = 0  # the fork that wins has neither
    report = pool.on_block_imported(number=1, included=[], retracted=[a0, a1])
    assert report.resubmitted == 2 and list(pool.ready()) == [a0, a1]


def test_a_reorg_under_a_full_pool_evicts_nothing_and_orders_the_retracted_first(chain):
    pool = chain.pool(ready_count=2)
    a0, b0, c0 = chain.tx("a", 0), chain.tx("b", 0), chain.tx("c", 0)
    pool.submit(a0, at_block=0)
    chain.import_block(pool, [a0])
    pool.submit_many([b0, c0], at_block=1)  # the pool is full
    chain.nonces["a"] = 0  # the fork that wins lacks a0: it comes back, older than b0 and c0
    report = pool.on_block_imported(number=1, included=[], retracted=[a0])
    assert list(pool.ready()) == [a0, b0, c0] and report.dropped == 0  # over the limit until blocks drain it


def test_a_pool_left_over_its_limits_refuses_an_equal_newcomer_even_one_bound_for_the_future_queue(chain):
    pool = chain.pool(ready_count=2)
    a0, b0, c0 = chain.tx("a", 0), chain.tx("b", 0), chain.tx("c", 0)
    pool.submit(a0, at_block=0)
    chain.import_block(pool, [a0])
    pool.submit_many([b0, c0], at_block=1)
    chain.nonces["a"] = 0
    pool.on_block_imported(number=1, included=[], retracted=[a0])  # three ready: one over the limit
    with pytest.raises(PoolFull):
        pool.submit(chain.tx("d", 5), at_block=1)  # future: it would have evicted c0, which the pool accepted
    assert list(pool.ready()) == [a0, b0, c0] and pool.future_count == 0


def test_a_block_that_extends_the_chain_is_followed_without_validating_the_pool_again(chain):
    validations = []
    pool = TransactionPool(lambda tx: validations.append(tx) or chain.validate(tx), lambda tx: tx.hash,
                           lambda tx: tx.size)
    a = [chain.tx("a", n) for n in range(3)]
    b0 = chain.tx("b", 0)
    pool.submit_many([*a, b0], at_block=0)
    validations.clear()
    chain.nonces["a"] = 2
    chain.height += 1
    report = pool.on_block_imported(number=1, included=[a[0].hash, a[1].hash], revalidate=False)
    assert validations == [] and report.included == 2
    assert list(pool.ready()) == [a[2], b0]  # by arrival, a2 now requiring nothing
    assert pool.is_ready(a[2].hash) and list(pool.future()) == []


def test_promotions_after_a_block_evict_nothing_and_the_limits_hold_at_admission(chain):
    pool = chain.pool(ready_count=3, future_count=3)
    pool.submit_many([chain.tx("a", 0, tip=5), chain.tx("b", 0, tip=5), chain.tx("c", 0, tip=1)], at_block=0)
    pool.submit_many([chain.tx("d", 1, tip=9), chain.tx("d", 2, tip=9)], at_block=0)
    chain.nonces["d"] = 1  # d's nonce 0 arrived in a block from elsewhere: d1 and d2 are ready now
    report = chain.import_block(pool)
    # (behaviour changed on purpose: the pool no longer evicts transactions it accepted after a block)
    assert nonces(pool.ready()) == [("d", 1), ("d", 2), ("a", 0), ("b", 0), ("c", 0)] and report.dropped == 0
    with pytest.raises(PoolFull):
        pool.submit(chain.tx("e", 0, tip=5), at_block=1)  # an equal priority waits until blocks drain the pool
    pool.submit(chain.tx("e", 0, tip=6), at_block=1)  # a higher one evicts the lowest to fit the limit
    assert nonces(pool.ready()) == [("d", 1), ("d", 2), ("e", 0)]


def tag_pool(rules: dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]]):
    """A pool over a runtime of named transactions with given (priority, requires, provides)."""
    def validate(name):
        priority, requires, provides = rules[name]
        return ValidTransaction(priority, tuple(map(str.encode, requires)), tuple(map(str.encode, provides)), 100)

    return TransactionPool(validate, lambda name: name.encode().ljust(32, b"."), lambda name: 1), rules


def test_when_revalidation_gives_two_transactions_one_tag_the_higher_priority_keeps_it():
    pool, rules = tag_pool({"p": (1, (), ("t",)), "q": (5, (), ("s",)), "r": (1, ("s",), ("r",)),
                            "m": (5, (), ("u",)), "n": (1, (), ("w",))})
    pool.submit_many(["p", "q", "r", "m", "n"], at_block=0)
    watcher = Watcher(pool)
    rules["q"] = (5, (), ("t",))  # a new runtime: q now provides t (nothing provides s) ...
    rules["n"] = (1, (), ("u",))  # ... and n provides u
    report = pool.on_block_imported(number=1, included=[])
    assert list(pool.ready()) == ["q", "m"] and list(pool.future()) == ["r"] and report.dropped == 2
    p, q, m, n = (name.encode().ljust(32, b".") for name in "pqmn")
    assert (p, "usurped", q) in watcher.events and (n, "usurped", m) in watcher.events


def test_a_resubmitted_transaction_takes_its_new_place_in_arrival_order(chain):
    pool = chain.pool(ban_seconds=5)
    a0, b0 = chain.tx("a", 0), chain.tx("b", 0)
    pool.submit_many([a0, b0], at_block=0)
    pool.remove_invalid([a0.hash])
    chain.now += 5
    pool.submit(a0, at_block=0)
    assert list(pool.ready()) == [b0, a0]


def test_a_transaction_is_ready_only_when_every_tag_it_requires_is_ready():
    """Tags are the runtime's, not only nonces: a replacement that waits sends the incumbent's dependants
    back to future, and they come back only when all they require is ready again."""
    pool, _ = tag_pool({"x": (1, (), ("t",)), "v": (1, (), ("v",)), "y": (1, ("t", "v"), ("y",)),
                        "z": (2, ("u",), ("t",)), "v2": (2, (), ("v",)), "w": (1, (), ("u",))})
    watcher = Watcher(pool)
    pool.submit_many(["x", "v", "y"], at_block=0)
    assert list(pool.ready()) == ["x", "v", "y"]
    assert pool.submit("z", at_block=0)[1] == "future"  # usurps x, but waits for u
    x, y, z = (name.encode().ljust(32, b".") for name in "xyz")
    assert watcher.events[-3:] == [(x, "usurped", z), (y, "future", None), (z, "future", None)]
    pool.submit("v2", at_block=0)  # replaces the other tag y needs, ready at once: y must still wait for t
    assert list(pool.ready()) == ["v2"] and set(pool.future()) == {"z", "y"}
    pool.submit("w", at_block=0)
    assert list(pool.ready()) == ["v2", "w", "z", "y"]


# --- robustness and bookkeeping --------------------------------------------------------------


def test_submit_raises_only_pool_and_validity_errors(chain):
    def broken_validate(tx):
        raise KeyError("no such account")

    pool = TransactionPool(broken_validate, lambda tx: tx.hash, lambda tx: tx.size)
    with pytest.raises(UnknownTransaction):
        pool.submit(chain.tx("a", 0), at_block=0)
    with pytest.raises(UnknownTransaction):
        pool.submit(object(), at_block=0)  # no hash at all
    pool = chain.pool()
    pool.subscribe(lambda *event: 1 / 0)
    assert pool.submit(chain.tx("a", 0), at_block=0)[1] == "ready"  # a failing watcher is logged, not raised


def test_submit_many_returns_each_result_in_place(chain):
    pool = chain.pool()
    chain.nonces["b"] = 1
    good, stale = chain.tx("a", 0), chain.tx("b", 0)
    results = pool.submit_many([good, stale, good], at_block=0)
    assert results[0] == (good.hash, "ready")
    assert isinstance(results[1], InvalidTransaction) and isinstance(results[2], AlreadyImported)


def test_status_counts_bytes_and_unsubscribe(chain):
    pool = chain.pool()
    watcher = Watcher(pool)
    pool.submit_many([chain.tx("a", 0, size=10), chain.tx("a", 2, size=20), chain.tx("b", 0, size=30)], at_block=0)
    assert pool.status() == {"ready": 2, "future": 1, "ready_bytes": 40, "future_bytes": 20, "banned": 0}
    assert len(pool) == 3 and pool.provider(tag("a", 2)) == chain.tx("a", 2, size=20).hash
    watcher.unsubscribe()
    pool.submit(chain.tx("c", 0), at_block=0)
    assert len(watcher.events) == 3


# --- the slow reference pool and the state machine -----------------------------------------


@dataclass(eq=False)
class RefEntry:
    tx: Tx
    order: int
    valid: ValidTransaction
    valid_till: int = field(init=False)
    at_block: int = 0

    def __post_init__(self) -> None:
        self.valid_till = self.at_block + self.valid.longevity


class ReferencePool:
    """The pool's rules stated directly over a plain list; every answer is recomputed, O(n^2) or worse."""

    def __init__(self, chain: FakeChain, limits: PoolLimits) -> None:
        self.chain, self.limits = chain, limits
        self.entries: list[RefEntry] = []
        self.banned: dict[bytes, float] = {}
        self.orders = itertools.count()
        self.first_order = 0

    def hashes(self) -> set[bytes]:
        return {e.tx.hash for e in self.entries}

    def ready_set(self) -> set[bytes]:
        ready: set[bytes] = set()
        while True:
            provided = {t for e in self.entries if e.tx.hash in ready for t in e.valid.provides}
            more = {e.tx.hash for e in self.entries if all(t in provided for t in e.valid.requires)}
            if more == ready:
                return ready
            ready = more

    def ready_order(self) -> list[bytes]:
        ready, provided, order = self.ready_set(), set(), []
        left = [e for e in self.entries if e.tx.hash in ready]
        while left:
            best = max((e for e in left if set(e.valid.requires) <= provided), key=lambda e: (e.valid.priority, -e.order))
            order.append(best.tx.hash)
            provided |= set(best.valid.provides)
            left.remove(best)
        return order

    def with_dependants(self, hashes: set[bytes]) -> set[bytes]:
        found = set(hashes)
        while True:
            tags = {t for e in self.entries if e.tx.hash in found for t in e.valid.provides}
            more = found | {e.tx.hash for e in self.entries if tags & set(e.valid.requires)}
            if more == found:
                return found
            found = more

    def evict(self) -> set[bytes]:
        evicted: set[bytes] = set()
        self.worst = []  # the entries chosen for their priority
        for is_ready, max_count, max_bytes in ((False, self.limits.future_count, self.limits.future_bytes),
                                               (True, self.limits.ready_count, self.limits.ready_bytes)):
            while True:
                ready = self.ready_set()
                queue = [e for e in self.entries if (e.tx.hash in ready) == is_ready]
                if len(queue) <= max_count and sum(e.tx.size for e in queue) <= max_bytes:
                    break
                worst = min(queue, key=lambda e: (e.valid.priority, -e.order))
                self.worst.append(worst)
                gone = self.with_dependants({worst.tx.hash})
                evicted |= gone
                self.entries = [e for e in self.entries if e.tx.hash not in gone]
        return evicted

    def ban(self, tx_hash: bytes) -> None:
        self.banned[tx_hash] = self.chain.now + self.limits.ban_seconds

    def submit(self, tx: Tx, at_block: int) -> tuple[bytes, str]:
        if tx.hash in self.hashes():
            raise AlreadyImported("")
        if self.banned.get(tx.hash, float("-inf")) > self.chain.now:
            raise TemporarilyBanned("")
        try:
            valid = self.chain.validate(tx)
        except InvalidTransaction:
            self.ban(tx.hash)
            raise
        holders = [e for e in self.entries if set(e.valid.provides) & set(valid.provides)]
        if any(e.valid.priority >= valid.priority for e in holders):
            raise TooLowPriority("")
        before = list(self.entries)
        self.entries = [e for e in self.entries if e not in holders] + [RefEntry(tx, next(self.orders), valid, at_block)]
        evicted = self.evict()
        if tx.hash in evicted or any(e.valid.priority >= valid.priority for e in self.worst):
            self.entries = before
            raise PoolFull("")
        return tx.hash, "ready" if tx.hash in self.ready_set() else "future"

    def remove_invalid(self, hashes: list[bytes]) -> None:
        for tx_hash in hashes:
            self.ban(tx_hash)
        gone = self.with_dependants(set(hashes) & self.hashes())
        self.entries = [e for e in self.entries if e.tx.hash not in gone]

    def on_block_imported(self, number: int, included: set[bytes], retracted: list[Tx]) -> None:
        kept = []
        for e in self.entries:
            if e.tx.hash in included:
                continue
            if e.valid_till <= number:
                self.ban(e.tx.hash)
            else:
                kept.append((e.tx, e.order))
        seen = self.hashes() | included
        self.first_order -= len(retracted)  # retracted transactions are older than every pooled one
        for order, tx in enumerate(retracted, start=self.first_order):
            if tx.hash not in seen:
                seen.add(tx.hash)
                self.banned.pop(tx.hash, None)
                kept.append((tx, order))
        self.entries = []
        for tx, order in sorted(kept, key=lambda pair: pair[1]):
            try:
                entry = RefEntry(tx, order, self.chain.validate(tx), number)
            except InvalidTransaction:
                self.ban(tx.hash)
                continue
            holders = [e for e in self.entries if set(e.valid.provides) & set(entry.valid.provides)]
            if any(e.valid.priority >= entry.valid.priority for e in holders):
                continue
            self.entries = [e for e in self.entries if e not in holders] + [entry]
        # no eviction after a block: limits hold at admission


LIMITS = PoolLimits(ready_count=6, ready_bytes=500, future_count=3, future_bytes=250, ban_seconds=10)
SIGNERS = ("a", "b", "c")


class PoolAgainstReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = FakeChain()
        self.pool = TransactionPool(self.chain.validate, lambda tx: tx.hash, lambda tx: tx.size, LIMITS,
                                    clock=lambda: self.chain.now)
        self.reference = ReferencePool(self.chain, LIMITS)
        self.seen: list[Tx] = []
        self.blocks: list[tuple[list[Tx], dict[str, int]]] = []  # for re-orgs: what a block included, nonces before
        self.told: dict[bytes, str] = {}  # what the events told a watcher of each transaction
        self.pool.subscribe(lambda h, status, info: self.told.__setitem__(h, status))

    def outcome(self, call):
        try:
            return call()
        except (PoolError, InvalidTransaction) as exc:
            return type(exc)

    def submit_both(self, tx: Tx) -> None:
        self.seen.append(tx)
        fast = self.outcome(lambda: self.pool.submit(tx, at_block=self.chain.height))
        slow = self.outcome(lambda: self.reference.submit(tx, self.chain.height))
        assert fast == slow

    @rule(signer=st.sampled_from(SIGNERS), offset=st.integers(-1, 3), tip=st.integers(0, 4),
          size=st.sampled_from([60, 100, 140]), lifetime=st.sampled_from([1, 2, 50]))
    def submit(self, signer, offset, tip, size, lifetime):
        nonce = max(0, self.chain.nonces.get(signer, 0) + offset)
        self.submit_both(self.chain.tx(signer, nonce, tip, size, lifetime))

    @precondition(lambda self: self.seen)
    @rule(data=st.data())
    def submit_again(self, data):
        self.submit_both(data.draw(st.sampled_from(self.seen)))

    def block(self, included: list[Tx], retracted: list[Tx] = ()) -> None:
        self.pool.on_block_imported(number=self.chain.height, included=[t.hash for t in included], retracted=retracted)
        self.reference.on_block_imported(self.chain.height, {t.hash for t in included}, list(retracted))
        for tx in included:
            self.told.pop(tx.hash, None)  # the RPC layer tells watchers of inclusion

    @rule(take=st.integers(0, 5))
    def import_a_block_of_the_first_ready(self, take):
        included = list(itertools.islice(self.pool.ready(), take))
        self.blocks.append((included, dict(self.chain.nonces)))
        for tx in included:
            self.chain.nonces[tx.signer] = tx.nonce + 1
        self.chain.height += 1
        self.block(included)

    @rule(signer=st.sampled_from(SIGNERS))
    def import_a_block_from_elsewhere(self, signer):
        self.blocks.append(([], dict(self.chain.nonces)))
        self.chain.nonces[signer] = self.chain.nonces.get(signer, 0) + 1
        self.chain.height += 1
        self.block([])

    @precondition(lambda self: self.blocks)
    @rule()
    def reorg_away_the_last_block(self):
        retracted, self.chain.nonces = self.blocks.pop()
        self.block([], retracted)  # an empty block of the same height wins

    @precondition(lambda self: len(self.pool) > 0)
    @rule(data=st.data())
    def remove_invalid(self, data):
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.reference.hashes())), min_size=1, max_size=2))
        self.pool.remove_invalid(chosen)
        self.reference.remove_invalid(chosen)

    @rule(seconds=st.sampled_from([1, 6, 11]))
    def time_passes(self, seconds):
        self.chain.now += seconds

    @invariant()
    def the_pool_equals_the_reference(self):
        ready = [t.hash for t in self.pool.ready()]
        assert ready == self.reference.ready_order()
        assert {t.hash for t in self.pool.future()} == self.reference.hashes() - set(ready)

    @invariant()
    def ready_goes_by_nonce_per_signer_without_gaps(self):
        expected = dict(self.chain.nonces)
        for tx in self.pool.ready():
            assert tx.nonce == expected.get(tx.signer, 0)
            expected[tx.signer] = tx.nonce + 1

    @invariant()
    def every_transaction_is_in_exactly_one_queue_and_the_counts_match(self):
        ready, future = list(self.pool.ready()), list(self.pool.future())
        assert not {t.hash for t in ready} & {t.hash for t in future}
        assert len(ready) + len(future) == len(self.pool) == len({t.hash for t in ready + future})
        assert (self.pool.ready_count, self.pool.future_count) == (len(ready), len(future))
        assert (self.pool.ready_bytes, self.pool.future_bytes) == (sum(t.size for t in ready), sum(t.size for t in future))
        assert all(self.pool.get(t.hash) == t for t in ready + future)

    @invariant()
    def no_banned_transaction_is_in_the_pool(self):
        for tx in self.seen:
            assert not (self.pool.is_banned(tx.hash) and tx.hash in self.pool)
            assert self.pool.is_banned(tx.hash) == (self.reference.banned.get(tx.hash, 0) > self.chain.now)

    @invariant()
    def the_events_told_each_watcher_the_truth(self):
        for tx_hash, status in self.told.items():
            if tx_hash in self.pool:
                assert status == ("ready" if self.pool.is_ready(tx_hash) else "future")
            else:
                assert status in ("dropped", "invalid", "usurped")


TestPoolAgainstReference = PoolAgainstReference.TestCase
TestPoolAgainstReference.settings = settings(max_examples=120, stateful_step_count=40, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])


class PrunedByTagsAgainstReference(PoolAgainstReference):
    """The same machine, but a block that includes only transactions the pool holds is followed by
    pruning by tags (revalidate=False), not by validating every entry again: the pool must still equal
    the reference, which validates everything."""

    def block(self, included: list[Tx], retracted: list[Tx] = ()) -> None:
        grew = len(self.blocks) > getattr(self, "_blocks_seen", 0)  # a new block, not a re-org
        self._blocks_seen = len(self.blocks)
        cheap = grew and not retracted and all(t.hash in self.pool for t in included) and \
            self.chain.nonces == self._nonces_after(included)
        self.pool.on_block_imported(number=self.chain.height, included=[t.hash for t in included],
                                    retracted=retracted, revalidate=not cheap)
        self.reference.on_block_imported(self.chain.height, {t.hash for t in included}, list(retracted))
        for tx in included:
            self.told.pop(tx.hash, None)

    def _nonces_after(self, included: list[Tx]) -> dict[str, int]:
        """The chain's nonces if the last block did nothing but include `included` (no other change)."""
        before = self.blocks[-1][1] if self.blocks else {}
        after = dict(before)
        for tx in included:
            after[tx.signer] = tx.nonce + 1
        return after


TestPrunedByTagsAgainstReference = PrunedByTagsAgainstReference.TestCase
TestPrunedByTagsAgainstReference.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                                     suppress_health_check=[HealthCheck.too_slow])
