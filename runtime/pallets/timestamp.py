"""timestamp: the block's time, set once per block by the author as an inherent.

The runtime only checks that time moves forward by at least the minimum
period; whether it is plausible against a wall clock is the importing node's
check (consensus), because the runtime has no clock.
"""

from __future__ import annotations

from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, DispatchFailure, Pallet
from runtime.state import StorageValue
from runtime.types import Moment

pallet = Pallet(3, "timestamp", "The block's time in milliseconds since the Unix epoch.")

# --- config -----------------------------------------------------------------

SET_WEIGHT = 5_000

# --- storage ----------------------------------------------------------------

Now = StorageValue(pallet, "Now", Moment, 0, "Time of the current block (ms since the Unix epoch).")
SlotDuration = StorageValue(pallet, "SlotDuration", Moment, 0, "Length of a block authoring slot (ms).")
DidUpdate = StorageValue(pallet, "DidUpdate", bool, False, "Whether the current block set its time.")

# --- errors -----------------------------------------------------------------


@pallet.error(0)
class TooEarly(DispatchFailure):
    """The timestamp is less than the previous one plus the minimum period."""


@pallet.error(1)
class AlreadySet(DispatchFailure):
    """The block already set its timestamp."""


@pallet.error(2)
class NotSet(DispatchFailure):
    """The block did not set its timestamp."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, genesis_time_ms: int, slot_duration_ms: int) -> None:
    Now.put(state, genesis_time_ms)
    SlotDuration.put(state, slot_duration_ms)


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    if not DidUpdate.get(ctx.state):
        raise NotSet("every block must carry a timestamp.set inherent")
    DidUpdate.kill(ctx.state)


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=SET_WEIGHT, origin=ORIGIN_INHERENT)
def set(ctx: BlockContext, origin: None, now: Moment) -> None:
    """Set the block's time (inherent, exactly once per block)."""
    if DidUpdate.get(ctx.state):
        raise AlreadySet()
    previous = Now.get(ctx.state)
    if ctx.number > 1 and now < previous + ctx.params.minimum_period_ms:
        raise TooEarly(f"timestamp {now} is earlier than {previous} + {ctx.params.minimum_period_ms} ms")
    Now.put(ctx.state, now)
    DidUpdate.put(ctx.state, True)
