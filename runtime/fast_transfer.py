"""A fast path for the chain's most common extrinsic: a signed balances transfer that succeeds.

The general path (`Executive.apply_extrinsic`) writes the sender's account to pay
the fee and bump the nonce, opens a layer, dispatches `balances.transfer`, which
reads the sender again, checks, writes it again and writes the receiver, commits
the layer and records `ExtrinsicSuccess`. In the plain case -- both accounts
exist, the sender covers the amount after the fee and stays at or above the
existential deposit -- nothing can fail once the checks pass, so this does the
same in one step: each account read once and written once, the same events in
the same order, the same outcome and block counters.

Every other case (a new receiver, a transfer to oneself or of nothing, a failing
call, an account about to be reaped) returns None before changing anything, and
the general path runs from where the executive's checks left off.
`tests/test_fastpath_transfer.py` holds this and the general path equal on random
states and transfers.
"""

from __future__ import annotations

from typing import Any

from runtime.context import BlockContext
from runtime.pallets.balances import Transfer
from runtime.pallets.system import Account, AccountInfo, ExtrinsicSuccess
from runtime.types import ApplyOutcome, EventRecord, SignedData


def apply_transfer(ctx: BlockContext, signed: SignedData, call: Any, checked: Any) -> ApplyOutcome | None:
    """`balances.transfer` or `transfer_keep_alive` after the executive's checks; None: take the general path.

    `checked` is the executive's CheckedSigned: the sender's account before the fee,
    the fee, weight and length, all already validated."""
    dest, value = call.args
    sender = signed.signer
    if sender == dest or value == 0:
        return None  # no writes, one event: rare, left to the general path
    info = checked.info
    fee = checked.fee
    remaining = info.free - fee - value
    if remaining < 0:
        return None  # InsufficientBalance, a dispatch error
    if info.reserved == 0 and remaining < ctx.params.existential_deposit:
        return None  # transfer_keep_alive fails, transfer reaps the sender
    state = ctx.state
    target = Account.get(state, dest)
    if target is None:
        return None  # a new account: the existential deposit check and NewAccount
    # Checks passed: from here on nothing fails.
    Account.insert(state, sender, _new(AccountInfo, (info.nonce + 1, remaining, info.reserved)))
    Account.insert(state, dest, _new(AccountInfo, (target.nonce, target.free + value, target.reserved)))
    weight = checked.weight
    ctx.fees_collected += fee
    ctx.weight_used += weight
    ctx.length_used += checked.length
    index = ctx.extrinsic_index
    events = state.events
    events.append(_new(EventRecord, (index, Transfer(sender, dest, value))))
    events.append(_new(EventRecord, (index, _extrinsic_success(weight, fee))))
    ctx.extrinsic_index = index + 1
    return _new(ApplyOutcome, (index, True, None, weight, fee))


# A NamedTuple's own __new__ only packs its arguments into a tuple: tuple.__new__ does the
# same without one more Python call.
_new = tuple.__new__

# Events are immutable, and transfers of one size pay one fee: one ExtrinsicSuccess value
# per (weight, fee) serves them all, instead of a new object per extrinsic.
_SUCCESS_EVENTS: dict[tuple[int, int], ExtrinsicSuccess] = {}


def _extrinsic_success(weight: int, fee: int) -> ExtrinsicSuccess:
    event = _SUCCESS_EVENTS.get((weight, fee))
    if event is None:
        if len(_SUCCESS_EVENTS) >= 4096:
            _SUCCESS_EVENTS.clear()
        event = _SUCCESS_EVENTS[(weight, fee)] = ExtrinsicSuccess(weight, fee)
    return event
