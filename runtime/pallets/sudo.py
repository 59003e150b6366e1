"""sudo: one key that may dispatch root calls (parameter changes, forced slashes).

A placeholder for real governance, as in Substrate's dev and test chains.
"""

from __future__ import annotations

from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_ROOT, ROOT, Call, DispatchFailure, Pallet
from runtime.pallets import system, validators
from runtime.state import StorageValue
from runtime.types import AccountId, DispatchError, PartsPerMillion

pallet = Pallet(5, "sudo", "A single key that may dispatch root calls.")

# --- config -----------------------------------------------------------------

SUDO_WEIGHT = 20_000

# --- storage ----------------------------------------------------------------

Key = StorageValue(pallet, "Key", AccountId, None, "The account allowed to dispatch root calls.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class Sudid:
    """A root call was dispatched; `error` is set if it failed."""

    error: DispatchError | None


@pallet.event(1)
class KeyChanged:
    """The sudo key moved to another account."""

    new: AccountId


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class RequireSudo(DispatchFailure):
    """Only the sudo key may make this call."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, key: bytes) -> None:
    Key.put(state, key)


# --- calls ------------------------------------------------------------------


def _ensure_sudo(ctx: BlockContext, origin: AccountId) -> None:
    if Key.get(ctx.state) != origin:
        raise RequireSudo()


@pallet.call(0, weight=lambda call: SUDO_WEIGHT + call.definition.weight_of(call))
def sudo(ctx: BlockContext, origin: AccountId, call: Call) -> None:
    """Dispatch `call` with the root origin; its failure is reported in the Sudid event."""
    _ensure_sudo(ctx, origin)
    ctx.state.begin()
    try:
        system.dispatch_call(ctx, ROOT, call)
    except DispatchFailure as failure:
        ctx.state.rollback()
        ctx.deposit_event(Sudid(system.dispatch_error_of(failure)))
        return
    ctx.state.commit()
    ctx.deposit_event(Sudid(None))


@pallet.call(1, weight=SUDO_WEIGHT)
def set_key(ctx: BlockContext, origin: AccountId, new: AccountId) -> None:
    """Hand the sudo key to another account."""
    _ensure_sudo(ctx, origin)
    Key.put(ctx.state, new)
    ctx.deposit_event(KeyChanged(new))


@pallet.call(2, weight=validators.STAKING_WEIGHT, origin=ORIGIN_ROOT)
def slash(ctx: BlockContext, origin, who: AccountId, fraction_ppm: PartsPerMillion) -> None:
    """Burn a share of a staker's bond (root only; consensus reports equivocations this way)."""
    if fraction_ppm > 1_000_000:
        raise system.InvalidParameters("fraction_ppm must be at most 1000000")
    validators.slash(ctx, who, fraction_ppm)
