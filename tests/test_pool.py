"""The transaction pool against a simple model of nonces (hypothesis state machine) and by example."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.txpool import AlreadyImported, PoolFull, PoolLimits, TemporarilyBanned, TooLowPriority, TransactionPool
from runtime.validity import InvalidReason, InvalidTransaction, ValidTransaction

SIGNERS = (b"a", b"b", b"c")


@dataclass(frozen=True)
class Tx:
    signer: bytes
    nonce: int
    tip: int
    size: int = 100
    longevity: int = 1000

    @property
    def hash(self) -> bytes:
        return b"%s:%d:%d:%d" % (self.signer, self.nonce, self.tip, self.longevity)


def tag(signer: bytes, nonce: int) -> bytes:
    return signer + nonce.to_bytes(8, "big")


class FakeRuntime:
    def __init__(self) -> None:
        self.nonces = {s: 0 for s in SIGNERS}
        self.now = 0.0

    def validate(self, tx: Tx) -> ValidTransaction:
        chain_nonce = self.nonces[tx.signer]
        if tx.nonce < chain_nonce:
            raise InvalidTransaction(InvalidReason.STALE)
        requires = (tag(tx.signer, tx.nonce - 1),) if tx.nonce > chain_nonce else ()
        return ValidTransaction(tx.tip, requires, (tag(tx.signer, tx.nonce),), tx.longevity)

    def pool(self, limits: PoolLimits = PoolLimits()) -> TransactionPool:
        return TransactionPool(self.validate, lambda t: t.hash, lambda t: t.size, limits, clock=lambda: self.now)


def test_a_nonce_gap_waits_in_future_then_fills_in_order():
    runtime = FakeRuntime()
    pool = runtime.pool()
    assert pool.submit(Tx(b"a", 2, 1), at_block=0)[1] == "future"
    assert pool.submit(Tx(b"a", 1, 1), at_block=0)[1] == "future"
    assert list(pool.ready()) == []
    assert pool.submit(Tx(b"a", 0, 1), at_block=0)[1] == "ready"
    assert [t.nonce for t in pool.ready()] == [0, 1, 2]
    assert (pool.ready_count, pool.future_count) == (3, 0)


def test_priority_orders_signers_and_replacement_needs_a_higher_tip():
    runtime = FakeRuntime()
    pool = runtime.pool()
    events = []
    pool.subscribe(lambda h, status, info: events.append((h, status)))
    low, high = Tx(b"a", 0, 1), Tx(b"b", 0, 5)
    pool.submit(low, at_block=0)
    pool.submit(high, at_block=0)
    assert list(pool.ready()) == [high, low]
    with pytest.raises(TooLowPriority):
        pool.submit(Tx(b"a", 0, 1, longevity=999), at_block=0)
    replacement = Tx(b"a", 0, 9)
    pool.submit(replacement, at_block=0)
    assert (low.hash, "usurped") in events and low.hash not in pool
    with pytest.raises(AlreadyImported):
        pool.submit(replacement, at_block=0)


def test_invalid_transactions_are_banned_until_the_ban_expires():
    runtime = FakeRuntime()
    runtime.nonces[b"a"] = 3
    pool = runtime.pool(PoolLimits(ban_seconds=60))
    stale = Tx(b"a", 1, 1)
    with pytest.raises(InvalidTransaction):
        pool.submit(stale, at_block=0)
    runtime.nonces[b"a"] = 0  # even if it became valid, it stays banned for a while
    with pytest.raises(TemporarilyBanned):
        pool.submit(stale, at_block=0)
    runtime.now = 61
    assert pool.submit(stale, at_block=0)[1] == "future"


def test_limits_evict_the_lowest_priority_and_a_hopeless_newcomer_changes_nothing():
    runtime = FakeRuntime()
    pool = runtime.pool(PoolLimits(ready_count=2, future_count=0, ready_bytes=10**6, future_bytes=10**6))
    pool.submit(Tx(b"a", 0, 5), at_block=0)
    pool.submit(Tx(b"b", 0, 3), at_block=0)
    before = set(t.hash for t in pool.ready())
    with pytest.raises(PoolFull):
        pool.submit(Tx(b"c", 0, 1), at_block=0)
    assert set(t.hash for t in pool.ready()) == before
    pool.submit(Tx(b"c", 0, 9), at_block=0)
    assert [t.tip for t in pool.ready()] == [9, 5]


def test_longevity_expires_transactions():
    # Submitted at block 10 with longevity 3: block 13 is the last that may include it.
    for imported, remaining in ((12, 1), (13, 0)):
        pool = FakeRuntime().pool()
        pool.submit(Tx(b"a", 0, 1, longevity=3), at_block=10)
        pool.on_block_imported(number=imported, included=[])
        assert len(pool) == remaining


def test_a_block_including_a_transaction_releases_the_next_nonce():
    runtime = FakeRuntime()
    pool = runtime.pool()
    first, second = Tx(b"a", 0, 1), Tx(b"a", 1, 1)
    pool.submit(first, at_block=0)
    pool.submit(second, at_block=0)
    runtime.nonces[b"a"] = 1
    pool.on_block_imported(number=1, included=[first.hash])
    assert list(pool.ready()) == [second]
    runtime.nonces[b"a"] = 2  # included elsewhere: re-validation finds it stale
    pool.on_block_imported(number=2, included=[])
    assert len(pool) == 0


class PoolMachine(RuleBasedStateMachine):
    """Invariants that hold after any sequence of submissions, blocks and bans."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime = FakeRuntime()
        self.pool = self.runtime.pool(PoolLimits(ready_count=12, future_count=6, ban_seconds=10))
        self.block = 0
        self.banned: set[bytes] = set()

    @rule(signer=st.sampled_from(SIGNERS), offset=st.integers(-1, 5), tip=st.integers(0, 4))
    def submit(self, signer, offset, tip):
        tx = Tx(signer, max(0, self.runtime.nonces[signer] + offset), tip)
        try:
            self.pool.submit(tx, at_block=self.block)
        except (AlreadyImported, TooLowPriority, PoolFull, TemporarilyBanned):
            pass
        except InvalidTransaction:
            self.banned.add(tx.hash)

    @rule(take=st.integers(0, 6))
    def import_block(self, take):
        included = list(self.pool.ready())[:take]
        for tx in included:
            assert tx.nonce == self.runtime.nonces[tx.signer], "ready() yielded a transaction out of nonce order"
            self.runtime.nonces[tx.signer] += 1
        self.block += 1
        self.pool.on_block_imported(number=self.block, included=[t.hash for t in included])

    @precondition(lambda self: len(self.pool) > 0)
    @rule(data=st.data())
    def ban_one(self, data):
        tx = data.draw(st.sampled_from([self.pool.get(h) for h in list(self.pool._entries)]))
        self.pool.remove_invalid([tx.hash])
        self.banned.add(tx.hash)

    @rule()
    def time_passes(self):
        self.runtime.now += 11
        self.banned.clear()

    @invariant()
    def ready_is_gapless_per_signer_from_the_chain_nonce(self):
        expected = dict(self.runtime.nonces)
        for tx in self.pool.ready():
            assert tx.nonce == expected[tx.signer]
            expected[tx.signer] += 1

    @invariant()
    def every_transaction_is_ready_or_future_and_counts_match(self):
        entries = list(self.pool._entries.values())
        ready = [e for e in entries if e.ready]
        assert len(list(self.pool.ready())) == len(ready) == self.pool.ready_count
        assert len(entries) - len(ready) == self.pool.future_count
        assert sum(e.size for e in ready) == self.pool.status()["ready_bytes"]
        assert len({(e.tx.signer, e.tx.nonce) for e in entries}) == len(entries)

    @invariant()
    def a_future_transaction_has_a_real_gap(self):
        ready_nonces = {(t.signer, t.nonce) for t in self.pool.ready()}
        for entry in self.pool._entries.values():
            if not entry.ready:
                tx = entry.tx
                assert any((tx.signer, n) not in ready_nonces for n in range(self.runtime.nonces[tx.signer], tx.nonce))

    @invariant()
    def no_banned_transaction_is_in_the_pool(self):
        assert not any(h in self.pool for h in self.banned)

    @invariant()
    def limits_hold(self):
        assert self.pool.ready_count <= 12 and self.pool.future_count <= 6


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
