"""The runtime's decode memo and storage-key cache stay bounded without forgetting their recent entries."""

from __future__ import annotations

from runtime import state as runtime_state
from runtime.pallets.balances import Account, AccountInfo
from runtime.state import Overlay, make_room


class Empty:
    def get(self, key: bytes) -> bytes | None:
        return None


def test_a_full_cache_drops_its_oldest_quarter_and_keeps_the_rest_in_order():
    cache = {n: str(n) for n in range(100)}
    make_room(cache)
    assert list(cache) == list(range(26, 100))


def test_the_account_memo_and_key_cache_keep_recent_accounts_when_full(monkeypatch):
    monkeypatch.setattr(runtime_state, "_KEY_CACHE_SIZE", 40)
    monkeypatch.setattr(Account, "_key_cache", {})
    memo = Account._decode.memo
    saved = dict(memo)
    memo.clear()
    try:
        overlay = Overlay(Empty())
        accounts = [bytes([n]) * 32 for n in range(100)]
        for n, who in enumerate(accounts):
            Account.insert(overlay, who, AccountInfo(n, 10**12 + n, 0))
        assert len(memo) <= 40 and len(Account._key_cache) <= 40
        # the most recent writes are still remembered (over the 20 a full clear at the 80th would leave)
        recent = accounts[-28:]
        for who in recent:
            assert overlay.changes[Account.key_of(who)] in memo
            assert who in Account._key_cache
        assert [Account.get(overlay, who).nonce for who in recent] == list(range(72, 100))
    finally:
        memo.clear()
        memo.update(saved)
