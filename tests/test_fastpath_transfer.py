"""The transfer fast path (runtime/fast_transfer.py) is the general path, only quicker.

Every case runs a block of transfers twice on the same pre-state: once with the
executive's fast paths on, once with them off (the general path: check, pay, open a
layer, dispatch balances.transfer, commit). Results (outcomes, or the invalid
transaction's reason and message), state changes, events, block counters and the
finalized state must be identical: failing checks (nonce, fee, era, room in the
block, signature), failing calls and reaped accounts included.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from runtime import codec
from runtime.executive import Executive, sign_extrinsic
from runtime.fast_transfer import apply_transfer
from runtime.genesis import build_genesis_state
from runtime.pallets import balances, payment, randomness
from runtime.pallets.system import EXTRINSIC_BASE_WEIGHT, Account, AccountInfo
from runtime.types import IMMORTAL, Digest, Era, Extrinsic, Header, SignedData
from runtime.validity import InvalidReason, InvalidTransaction
from tests.helpers.chain import DEV_KEYS, dev_genesis

GENESIS = dev_genesis()
GENESIS_STATE = build_genesis_state(GENESIS)
PARAMS = GENESIS.parameters
ED = PARAMS.existential_deposit
FEE = 10**9  # about the fee of a transfer at the dev parameters: balances are drawn around it
POOL = [bytes([i + 1]) * 32 for i in range(4)]  # accounts the cases draw from; some start absent
TIMESTAMP_MS = GENESIS.slot_duration_ms


class DictBackend:
    """A parent state held in a dict (the fast path never reaches the trie)."""

    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def compute_root(self, changes):
        raise NotImplementedError


def _backend(accounts: dict[bytes, AccountInfo]) -> DictBackend:
    values = {k: v for k, v in GENESIS_STATE.items() if v is not None}
    for who, info in accounts.items():
        values[Account.key_of(who)] = codec.encode(info, AccountInfo)
    return DictBackend(values)


def _run_block(executive: Executive, backend: DictBackend, extrinsics: list, *, signatures_checked: bool = True):
    """Apply extrinsics (or functions of the block so far that make one) and finalize."""
    author = DEV_KEYS["Alice"]  # every block carries its author's slot signature (runtime/pallets/randomness.py)
    header = Header(bytes(32), 1, bytes(32), bytes(32), Digest(1, author.public, b""))
    ctx = executive.initialize_block(backend, header)
    signature = randomness.slot_signature(author, executive.genesis_hash, 1)
    for inherent in executive.inherent_extrinsics(TIMESTAMP_MS, slot_signature=signature):
        executive.apply_extrinsic(ctx, inherent)
    results = []
    for extrinsic in extrinsics:
        if callable(extrinsic):
            extrinsic = extrinsic(ctx)
        try:
            results.append(executive.apply_extrinsic(ctx, extrinsic, signature_checked=signatures_checked))
        except InvalidTransaction as exc:
            results.append((exc.reason, exc.message))
    after_apply = (dict(ctx.state.changes), list(ctx.state.events),
                   ctx.weight_used, ctx.length_used, ctx.fees_collected, ctx.extrinsic_index)
    executive.finalize_block(ctx)
    return results, after_apply, list(ctx.state.changes.items())


def _both_paths(accounts: dict[bytes, AccountInfo], extrinsics: list, *, signatures_checked: bool = True):
    fast = _run_block(Executive(bytes(32)), _backend(accounts), extrinsics, signatures_checked=signatures_checked)
    general = _run_block(Executive(bytes(32), fast_paths=False), _backend(accounts), extrinsics,
                         signatures_checked=signatures_checked)
    return fast, general


def _transfer(sender: bytes, dest: bytes, value: int, nonce: int, *, tip: int = 0, keep_alive: bool = False,
              era: Era = IMMORTAL) -> Extrinsic:
    call = (balances.transfer_keep_alive if keep_alive else balances.transfer)(dest, value)
    return Extrinsic(SignedData(sender, bytes(64), era, nonce, tip), call)


def _fee_of(extrinsic: Extrinsic) -> int:
    return payment.compute_fee(PARAMS, len(extrinsic.encoded), EXTRINSIC_BASE_WEIGHT + balances.TRANSFER_WEIGHT,
                               extrinsic.signed.tip)


# --- strategies: balances around the edges that matter (the fee, the deposit, 2**64) ---

amounts = st.one_of(
    st.sampled_from([0, 1, ED - 1, ED, ED + 1, FEE, FEE + ED, 2 * FEE, 2**64 - 1, 2**64]),
    st.integers(0, 10**13),
    st.integers(0, 2**100),
)
rich = st.integers(10**13, 10**16)  # half the draws: the plain case, where the fast path runs
account_infos = st.builds(AccountInfo, st.integers(0, 3), st.one_of(rich, amounts),
                          st.sampled_from([0, 0, 1, ED, 10**12]))
pre_states = st.dictionaries(st.sampled_from(POOL), account_infos, min_size=2, max_size=len(POOL))
# A value is a number, or one relative to the sender's balance at that point in the block:
# ("keep", d) leaves the sender with the existential deposit + d, ("all", d) sends all but the fee, + d.
values = st.one_of(st.integers(1, 10**12), amounts,
                   st.tuples(st.sampled_from(["keep", "all"]), st.integers(-2, 2)))
moves = st.lists(st.tuples(
    st.integers(0, len(POOL) - 1),        # sender
    st.integers(0, len(POOL)),            # dest (the last index is an account nobody holds)
    values,
    st.sampled_from([0, 0, 0, 0, -1, 1]),  # nonce offset: mostly right, sometimes stale or ahead
    st.sampled_from([0, 0, 5, FEE]),      # tip
    st.booleans(),                        # keep_alive
    # era at block 1: immortal; mortal and valid; born at block 1 (not yet known); a bad period; immortal with a birth
    st.sampled_from([IMMORTAL, IMMORTAL, IMMORTAL, Era(0, 4), Era(1, 4), Era(0, 2), Era(3, 0)]),
), min_size=1, max_size=12)


@given(pre_states, moves)
@settings(max_examples=400, deadline=None)
def test_fast_path_and_general_path_agree_on_random_blocks_of_transfers(accounts, drawn):
    newcomer = b"\xee" * 32

    def maker(sender, dest, value, offset, tip, keep_alive, era):
        def make(ctx):  # the nonce is the sender's next one in the block so far, give or take the offset
            info = Account.get(ctx.state, sender) or AccountInfo(0, 0, 0)
            nonce = max(0, info.nonce + offset)
            amount = value
            if isinstance(value, tuple):
                relation, delta = value
                amount = info.free
                for _ in range(3):  # the fee depends on the length, which depends on the amount
                    fee = _fee_of(_transfer(sender, dest, amount, nonce, tip=tip, keep_alive=keep_alive, era=era))
                    amount = max(0, info.free - fee + delta - (ED if relation == "keep" else 0))
            return _transfer(sender, dest, amount, nonce, tip=tip, keep_alive=keep_alive, era=era)
        return make

    extrinsics = [maker(POOL[s], POOL[d] if d < len(POOL) else newcomer, value, offset, tip, keep_alive, era)
                  for s, d, value, offset, tip, keep_alive, era in drawn]
    fast, general = _both_paths(accounts, extrinsics)
    assert fast == general


def test_fast_path_takes_a_plain_transfer():
    alice, bob = POOL[0], POOL[1]
    accounts = {alice: AccountInfo(0, 10**15, 0), bob: AccountInfo(2, 10**12, 7)}
    executive = Executive(bytes(32))
    header = Header(bytes(32), 1, bytes(32), bytes(32), Digest(1, alice, b""))
    ctx = executive.initialize_block(_backend(accounts), header)
    extrinsic = _transfer(alice, bob, 10**9, 0)
    fee = _fee_of(extrinsic)
    outcome = apply_transfer(ctx, extrinsic, executive._check_era, None)
    assert outcome is not None and outcome.success and outcome.fee == fee
    assert Account.get(ctx.state, alice) == AccountInfo(1, 10**15 - fee - 10**9, 0)
    assert Account.get(ctx.state, bob) == AccountInfo(2, 10**12 + 10**9, 7)
    fast, general = _both_paths(accounts, [extrinsic])
    assert fast == general


def test_fast_path_declines_every_case_that_is_not_plain_and_changes_nothing():
    alice, bob, empty = POOL[0], POOL[1], POOL[2]
    fee = _fee_of(_transfer(alice, bob, 100, 0))
    rich, poor = AccountInfo(0, 10**15, 0), AccountInfo(0, fee + ED + 10, 0)  # can pay, cannot also send 100
    cases = {
        "to oneself": ({alice: rich}, _transfer(alice, alice, 10**9, 0)),
        "nothing": ({alice: rich, bob: rich}, _transfer(alice, bob, 0, 0)),
        "a new account": ({alice: rich}, _transfer(alice, empty, 10**12, 0)),
        "more than free": ({alice: rich, bob: rich}, _transfer(alice, bob, 10**16, 0)),
        "reaps the sender": ({alice: poor, bob: rich}, _transfer(alice, bob, 100, 0)),
        "keep alive fails": ({alice: poor, bob: rich}, _transfer(alice, bob, 100, 0, keep_alive=True)),
        "below the deposit to a new account": ({alice: rich}, _transfer(alice, empty, ED - 1, 0)),
        "a stale nonce": ({alice: AccountInfo(3, 10**15, 0), bob: rich}, _transfer(alice, bob, 10**9, 2)),
        "a future nonce": ({alice: rich, bob: rich}, _transfer(alice, bob, 10**9, 1)),
        "an unknown sender": ({bob: rich}, _transfer(alice, bob, 10**9, 0)),
        "cannot pay the fee": ({alice: AccountInfo(0, fee - 1, 0), bob: rich}, _transfer(alice, bob, 1, 0)),
        "the fee leaves less than the deposit": ({alice: AccountInfo(0, fee + ED - 1, 0), bob: rich},
                                                 _transfer(alice, bob, 1, 0)),
    }
    executive = Executive(bytes(32))
    header = Header(bytes(32), 1, bytes(32), bytes(32), Digest(1, alice, b""))
    for name, (accounts, extrinsic) in cases.items():
        ctx = executive.initialize_block(_backend(accounts), header)
        before = dict(ctx.state.changes), list(ctx.state.events), ctx.extrinsic_index
        assert apply_transfer(ctx, extrinsic, executive._check_era, None) is None, name
        assert (dict(ctx.state.changes), list(ctx.state.events), ctx.extrinsic_index) == before, name
        fast, general = _both_paths(accounts, [extrinsic])
        assert fast == general, name


def test_fast_path_raises_the_era_errors_of_the_general_path():
    alice, bob = POOL[0], POOL[1]
    accounts = {alice: AccountInfo(0, 10**15, 0), bob: AccountInfo(0, 10**15, 0)}
    for era in (Era(1, 4), Era(0, 2), Era(0, 5000), Era(3, 0)):
        fast, general = _both_paths(accounts, [_transfer(alice, bob, 10**9, 0, era=era)])
        assert fast == general
        (reason, message), = fast[0]
        assert reason in (InvalidReason.BAD_PROOF, InvalidReason.ANCIENT_BIRTH_BLOCK) and message, era


def test_fast_path_leaves_a_full_block_and_an_oversized_extrinsic_to_the_general_path():
    alice, bob = POOL[0], POOL[1]
    accounts = {alice: AccountInfo(0, 10**15, 0), bob: AccountInfo(0, 10**15, 0)}
    executive = Executive(bytes(32))
    header = Header(bytes(32), 1, bytes(32), bytes(32), Digest(1, alice, b""))
    extrinsic = _transfer(alice, bob, 10**9, 0)
    for field, value in (("weight_used", PARAMS.block_weight_limit), ("length_used", PARAMS.block_length_limit)):
        ctx = executive.initialize_block(_backend(accounts), header)
        setattr(ctx, field, value)
        assert apply_transfer(ctx, extrinsic, executive._check_era, None) is None, field
        assert not ctx.state.events and Account.get(ctx.state, alice) == accounts[alice]
    too_long = Extrinsic(extrinsic.signed, balances.transfer(bob, 10**9))
    too_long.__dict__["encoded"] = bytes(PARAMS.max_extrinsic_length + 1)  # only its length matters here
    ctx = executive.initialize_block(_backend(accounts), header)
    assert apply_transfer(ctx, too_long, executive._check_era, None) is None


def test_fast_path_checks_a_signature_not_checked_before_and_agrees_on_bad_ones():
    alice, bob = DEV_KEYS["Alice"], DEV_KEYS["Bob"]
    accounts = {alice.public: AccountInfo(0, 10**15, 0), bob.public: AccountInfo(0, 10**15, 0)}
    good = sign_extrinsic(alice, balances.transfer(bob.public, 10**9), nonce=0, genesis_hash=bytes(32))
    other_chain = sign_extrinsic(alice, balances.transfer(bob.public, 10**9), nonce=0, genesis_hash=b"\1" * 32)
    forged = Extrinsic(SignedData(alice.public, bob.sign(b"x"), IMMORTAL, 0, 0), balances.transfer(bob.public, 1))
    mortal = sign_extrinsic(alice, balances.transfer(bob.public, 10**9), nonce=0, genesis_hash=bytes(32),
                            era=Era(0, 4), birth_hash=bytes(32))  # block 0's hash, as _run_block's parent
    for extrinsics in ([good], [other_chain], [forged], [mortal], [good, forged]):
        fast, general = _both_paths(accounts, extrinsics, signatures_checked=False)
        assert fast == general
    (outcome,), _, _ = _both_paths(accounts, [good], signatures_checked=False)[0]
    assert outcome.success
    (failure,), _, _ = _both_paths(accounts, [forged], signatures_checked=False)[0]
    assert failure[0] is InvalidReason.BAD_PROOF
