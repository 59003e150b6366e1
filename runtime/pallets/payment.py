"""payment: transaction fees and tips.

fee = base_fee + byte_fee * length + weight_fee * weight / WEIGHT_FEE_UNIT, plus the tip.
The signer pays before its call runs (and keeps paying if the call fails). At the
end of the block, fee_burn_ppm of the collected fees is burned and the rest goes
to the block's author.
"""

from __future__ import annotations

from runtime.context import BlockContext
from runtime.dispatch import Pallet
from runtime.pallets import balances
from runtime.pallets.system import EXTRINSIC_BASE_WEIGHT, WEIGHT_FEE_UNIT, Parameters
from runtime.types import AccountId, Balance

pallet = Pallet(2, "payment", "Transaction fees and tips, split between the block author and burning.")

# --- events -----------------------------------------------------------------


# The fee each extrinsic paid is in its ExtrinsicSuccess / ExtrinsicFailed event.


@pallet.event(1)
class FeesDistributed:
    """The block's fees were split: the author's share paid, the rest burned."""

    author: AccountId
    to_author: Balance
    burned: Balance


# --- functions --------------------------------------------------------------


def compute_extrinsic_weight(call) -> int:
    """A signed extrinsic's weight: the call's declared weight plus the fixed cost of checking it."""
    return EXTRINSIC_BASE_WEIGHT + call.definition.weight_of(call)


def compute_fee(params: Parameters, length: int, weight: int, tip: int) -> int:
    """The full fee of a transaction, tip included. The one fee rule: the executive charges it,
    the runtime API (payment_queryInfo) quotes it."""
    return params.base_fee + params.byte_fee * length + params.weight_fee * weight // WEIGHT_FEE_UNIT + tip


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    collected = ctx.fees_collected
    if not collected:
        return
    burned = collected * ctx.params.fee_burn_ppm // 1_000_000
    to_author = collected - burned
    if to_author:
        try:
            balances.deposit(ctx, ctx.author, to_author)
        except balances.ExistentialDeposit:
            burned, to_author = collected, 0  # too little to open the author's account
    if burned:
        balances.burn_from_issuance(ctx, burned)
    ctx.deposit_event(FeesDistributed(ctx.author, to_author, burned))
