"""balances: free and reserved balances, transfers, the existential deposit, total issuance.

Invariant: TotalIssuance equals the sum of every account's free + reserved
balance. Minting (genesis) raises it; burning (fees, dust, slashes) lowers it;
transfers, reserves and unreserves leave it unchanged.

An account whose total falls below the existential deposit is removed and its
dust burned, so state holds no worthless accounts (Substrate's reaping). Pallet
accounts (a pot that holds other accounts' claims, registered with
`register_pallet_account`) are exempt: they exist with any balance, are created
by a deposit of any size and are never reaped, so what they owe is never burned.
"""

from __future__ import annotations

from runtime.context import BlockContext
from runtime.dispatch import DispatchFailure, Pallet
from runtime.pallets import system
from runtime.pallets.system import Account, AccountInfo
from runtime.state import StorageValue
from runtime.types import AccountId, Balance

pallet = Pallet(1, "balances", "Free and reserved balances, transfers and total issuance.")

# --- config -----------------------------------------------------------------

TRANSFER_WEIGHT = 60_000
PALLET_ACCOUNTS: set[bytes] = set()  # filled at import by the pallets that own them: the same on every node


def register_pallet_account(account: bytes) -> None:
    """Declare an account that holds funds for a pallet: never reaped, created by any amount."""
    PALLET_ACCOUNTS.add(bytes(account))

# --- storage ----------------------------------------------------------------

TotalIssuance = StorageValue(pallet, "TotalIssuance", Balance, 0, "The sum of all balances.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class Transfer:
    """Value moved from one account to another."""

    sender: AccountId
    dest: AccountId
    amount: Balance


@pallet.event(1)
class DustLost:
    """An account was removed; its remaining balance below the existential deposit was burned."""

    account: AccountId
    amount: Balance


@pallet.event(2)
class Reserved:
    """Free balance was set aside (bonded)."""

    account: AccountId
    amount: Balance


@pallet.event(3)
class Unreserved:
    """Reserved balance was returned to free."""

    account: AccountId
    amount: Balance


@pallet.event(4)
class Burned:
    """Balance was destroyed (a slash or a fee share); total issuance fell by the amount."""

    account: AccountId
    amount: Balance


@pallet.event(5)
class Endowed:
    """An account received its first balance."""

    account: AccountId
    amount: Balance


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class InsufficientBalance(DispatchFailure):
    """The free balance is lower than the amount."""


@pallet.error(1)
class ExistentialDeposit(DispatchFailure):
    """The amount would create an account below the existential deposit."""


@pallet.error(2)
class KeepAlive(DispatchFailure):
    """The transfer would drop the sender below the existential deposit; use transfer to allow that."""


@pallet.error(3)
class InsufficientReserved(DispatchFailure):
    """The reserved balance is lower than the amount."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, endowed: list[tuple[bytes, int]], existential_deposit: int) -> None:
    total = 0
    for who, amount in endowed:
        if amount < existential_deposit:
            raise ValueError(f"endowment {amount} is below the existential deposit {existential_deposit}")
        info = Account.get(state, who) or AccountInfo(0, 0, 0)
        Account.insert(state, who, AccountInfo(info.nonce, info.free + amount, info.reserved))
        total += amount
    TotalIssuance.put(state, TotalIssuance.get(state) + total)


# --- functions other pallets use --------------------------------------------


def write_account(ctx: BlockContext, who: AccountId, info: AccountInfo) -> None:
    """Store an account, reaping it (and burning its dust) below the existential deposit."""
    if info.reserved == 0 and info.free < ctx.params.existential_deposit and who not in PALLET_ACCOUNTS:
        Account.remove(ctx.state, who)
        if info.free:
            burn_from_issuance(ctx, info.free)
            ctx.deposit_event(DustLost(who, info.free))
        ctx.deposit_event(system.KilledAccount(who))
        return
    Account.insert(ctx.state, who, info)


def deposit(ctx: BlockContext, who: AccountId, amount: int) -> None:
    """Credit `amount` that already exists in the issuance (moved from elsewhere)."""
    if amount == 0:
        return
    info = Account.get(ctx.state, who)
    if info is None:
        if amount < ctx.params.existential_deposit and who not in PALLET_ACCOUNTS:
            raise ExistentialDeposit(f"{amount} is below the existential deposit {ctx.params.existential_deposit}")
        Account.insert(ctx.state, who, AccountInfo(system.new_account_nonce(ctx), amount, 0))
        ctx.deposit_event(system.NewAccount(who))
        ctx.deposit_event(Endowed(who, amount))
    else:
        Account.insert(ctx.state, who, AccountInfo(info.nonce, info.free + amount, info.reserved))


def burn_from_issuance(ctx: BlockContext, amount: int) -> None:
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) - amount)


def do_transfer(ctx: BlockContext, sender: AccountId, dest: AccountId, value: int, *, keep_alive: bool) -> None:
    """Check first, then mutate, then emit: a failed check changes nothing."""
    source = Account.get(ctx.state, sender)
    if source is None or source.free < value:
        raise InsufficientBalance(f"free balance {source.free if source else 0} is below {value}")
    remaining = source.free - value
    if keep_alive and source.reserved == 0 and remaining < ctx.params.existential_deposit:
        raise KeepAlive()
    if sender == dest or value == 0:
        ctx.deposit_event(Transfer(sender, dest, value))
        return
    target = Account.get(ctx.state, dest)
    if target is None and value < ctx.params.existential_deposit and dest not in PALLET_ACCOUNTS:
        raise ExistentialDeposit(f"{value} is below the existential deposit {ctx.params.existential_deposit}")
    write_account(ctx, sender, AccountInfo(source.nonce, remaining, source.reserved))
    if target is None:
        Account.insert(ctx.state, dest, AccountInfo(system.new_account_nonce(ctx), value, 0))
        ctx.deposit_event(system.NewAccount(dest))
    else:
        Account.insert(ctx.state, dest, AccountInfo(target.nonce, target.free + value, target.reserved))
    ctx.deposit_event(Transfer(sender, dest, value))


def reserve(ctx: BlockContext, who: AccountId, amount: int) -> None:
    info = Account.get(ctx.state, who)
    if info is None or info.free < amount:
        raise InsufficientBalance(f"free balance {info.free if info else 0} is below {amount}")
    Account.insert(ctx.state, who, AccountInfo(info.nonce, info.free - amount, info.reserved + amount))
    ctx.deposit_event(Reserved(who, amount))


def unreserve(ctx: BlockContext, who: AccountId, amount: int) -> None:
    info = Account.get(ctx.state, who)
    if info is None or info.reserved < amount:
        raise InsufficientReserved(f"reserved balance {info.reserved if info else 0} is below {amount}")
    Account.insert(ctx.state, who, AccountInfo(info.nonce, info.free + amount, info.reserved - amount))
    ctx.deposit_event(Unreserved(who, amount))


def slash_reserved(ctx: BlockContext, who: AccountId, amount: int) -> int:
    """Burn up to `amount` of reserved balance; returns what was burned."""
    info = Account.get(ctx.state, who)
    if info is None:
        return 0
    burned = min(amount, info.reserved)
    if burned:
        write_account(ctx, who, AccountInfo(info.nonce, info.free, info.reserved - burned))
        burn_from_issuance(ctx, burned)
        ctx.deposit_event(Burned(who, burned))
    return burned


def repatriate_reserved(ctx: BlockContext, who: AccountId, dest: AccountId, amount: int) -> int:
    """Move up to `amount` of `who`'s reserved balance into `dest`'s reserved balance (a forfeited
    bond joining a reward pool); returns what moved. `dest` must exist; issuance does not change."""
    info = Account.get(ctx.state, who)
    target = Account.get(ctx.state, dest)
    moved = min(amount, info.reserved) if info is not None else 0
    if moved == 0 or who == dest:
        return moved if who == dest else 0
    if target is None:
        raise InsufficientBalance("the account receiving a reserved balance must exist")
    write_account(ctx, who, AccountInfo(info.nonce, info.free, info.reserved - moved))
    Account.insert(ctx.state, dest, AccountInfo(target.nonce, target.free, target.reserved + moved))
    ctx.deposit_event(Transfer(who, dest, moved))
    return moved


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=TRANSFER_WEIGHT)
def transfer(ctx: BlockContext, origin: AccountId, dest: AccountId, value: Balance) -> None:
    """Move `value` to `dest`; the sender's account is removed if it drops below the existential deposit."""
    do_transfer(ctx, origin, dest, value, keep_alive=False)


@pallet.call(1, weight=TRANSFER_WEIGHT)
def transfer_keep_alive(ctx: BlockContext, origin: AccountId, dest: AccountId, value: Balance) -> None:
    """Move `value` to `dest`, failing rather than removing the sender's account."""
    do_transfer(ctx, origin, dest, value, keep_alive=True)
