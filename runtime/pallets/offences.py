"""offences: evidence of validator misbehaviour, checked without torch, and its slashing.

Three offences, each proven by signatures alone (runtime/finality.py says what
each signature covers):

    vote equivocation     two finality votes of one validator in one set, round
                          and stage, for different blocks
    double authoring      two headers sealed by one author for one slot
    false useful work     a header whose author reported useful work that validators
                          holding more than 2/3 of the stake of its set signed
                          disputes of (they re-measured and got other numbers)

Each slashes `slash_ppm` of the offender's bond (active and unbonding stake), pays
`reporter_share_ppm` of that to the reporter and burns the rest: TotalIssuance
falls by exactly the burned amount. An offence is punished once. Evidence is
judged against the validator set it names, kept in validators.SetHistory until
`evidence_window` blocks after that set's last block; unbonding lasts longer than
an era plus that window, so an offender cannot withdraw before it can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import DispatchFailure, Pallet
from runtime.finality import (
    SignedDispute, SignedVote, is_valid_dispute_signature, is_valid_seal, is_valid_vote_signature,
    is_vote_equivocation, supermajority_threshold,
)
from runtime.hashing import blake2b_256
from runtime.pallets import balances, validators
from runtime.state import StorageMap, StorageValue
from runtime.types import AccountId, Balance, BlockNumber, Hash, Header, PartsPerMillion

pallet = Pallet(9, "offences", "Evidence of validator misbehaviour, and its slashing.")

# --- config -----------------------------------------------------------------

KIND_VOTE_EQUIVOCATION = 0
KIND_DOUBLE_AUTHORING = 1
KIND_FALSE_USEFUL_WORK = 2
MAX_DISPUTES = 1000
EQUIVOCATION_WEIGHT = 300_000  # two signature checks
DOUBLE_AUTHORING_WEIGHT = 300_000
DEFAULT_SLASH_PPM = 100_000  # 10% of the bond
DEFAULT_REPORTER_SHARE_PPM = 100_000  # 10% of the slashed amount
DEFAULT_EVIDENCE_WINDOW = 50  # blocks after a set's last block


@dataclass(frozen=True)
class OffenceParams:
    """Set at genesis (the chain spec's optional "offences" object)."""

    slash_ppm: PartsPerMillion
    reporter_share_ppm: PartsPerMillion
    evidence_window: BlockNumber


DEFAULT_PARAMS = OffenceParams(PartsPerMillion(DEFAULT_SLASH_PPM), PartsPerMillion(DEFAULT_REPORTER_SHARE_PPM),
                               BlockNumber(DEFAULT_EVIDENCE_WINDOW))

# --- storage ----------------------------------------------------------------

Params = StorageValue(pallet, "Params", OffenceParams, DEFAULT_PARAMS, "Slash and reward shares, evidence window.")
Reported = StorageMap(pallet, "Reported", Hash, BlockNumber, None,
                      "Offences already punished (by their identity hash), with the block that punished them.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class OffenceReported:
    """An offence was proven: the offender lost `slashed`; the reporter got `reward`, the rest was burned."""

    kind: codec.U8
    offender: AccountId
    reporter: AccountId
    slashed: Balance
    reward: Balance
    burned: Balance


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class NotAnOffence(DispatchFailure):
    """The two items do not conflict (same target, other round, other slot or other signer)."""


@pallet.error(1)
class BadSignature(DispatchFailure):
    """A vote, seal or dispute signature does not verify for this chain."""


@pallet.error(2)
class UnknownSet(DispatchFailure):
    """The evidence names a validator set that is not kept: too old (past the evidence window) or unknown."""


@pallet.error(3)
class NotAValidator(DispatchFailure):
    """The offender (or a disputer) was not in the validator set the evidence names."""


@pallet.error(4)
class AlreadyReported(DispatchFailure):
    """This offence was punished already."""


@pallet.error(5)
class NotEnoughDisputes(DispatchFailure):
    """The disputes' stake is not more than two thirds of the set's (or they are not for this block)."""


@pallet.error(6)
class SelfReport(DispatchFailure):
    """An offender cannot report itself."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, params: OffenceParams) -> None:
    Params.put(state, params)


def check_params(params: OffenceParams, era_length: int, unbonding_period: int) -> list[str]:
    """Problems that would let an offender escape or a report overpay; empty if none."""
    problems = []
    if not 0 < params.slash_ppm <= 1_000_000 or params.reporter_share_ppm > 1_000_000:
        problems.append("slash_ppm must be 1..1000000 and reporter_share_ppm at most 1000000")
    if unbonding_period <= era_length + params.evidence_window:
        problems.append(f"unbonding_period ({unbonding_period}) must be longer than era_length ({era_length}) plus "
                        f"the evidence window ({params.evidence_window}), so an offender cannot withdraw first")
    return problems


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    """Forget validator sets whose evidence window has closed."""
    window = Params.get(ctx.state).evidence_window
    oldest = validators.OldestSet.get(ctx.state)
    keep_from = oldest
    while True:
        record = validators.SetHistory.get(ctx.state, keep_from)
        if record is None or record.last_block is None or record.last_block + window >= ctx.number:
            break
        keep_from += 1
    if keep_from != oldest:
        validators.forget_sets_before(ctx.state, keep_from)


# --- functions ----------------------------------------------------------------


def _member(record: validators.SetRecord, who: bytes) -> bool:
    return any(v.account == who for v in record.validators)


def _punish(ctx: BlockContext, kind: int, offender: AccountId, reporter: AccountId, identity: bytes) -> None:
    """Slash once per offence identity; pay the reporter its share and burn the rest."""
    key = Hash(blake2b_256(codec.pack([kind, bytes(offender), identity])))
    if Reported.contains(ctx.state, key):
        raise AlreadyReported()
    params = Params.get(ctx.state)
    slashed = validators.take_bond(ctx, offender, params.slash_ppm)
    reward = slashed * params.reporter_share_ppm // 1_000_000
    burned = slashed - reward
    if reward:
        balances.deposit(ctx, reporter, reward)
    if burned:
        balances.burn_from_issuance(ctx, burned)
        ctx.deposit_event(balances.Burned(offender, burned))
    Reported.insert(ctx.state, key, ctx.number)
    ctx.deposit_event(OffenceReported(kind, offender, reporter, slashed, reward, burned))


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=EQUIVOCATION_WEIGHT)
def report_vote_equivocation(ctx: BlockContext, origin: AccountId, first: SignedVote, second: SignedVote) -> None:
    """Prove that a validator signed two different finality votes in one set, round and stage."""
    if not is_vote_equivocation(first, second):
        raise NotAnOffence("the votes must be one validator's, in one set, round and stage, for different blocks")
    if origin == first.voter:
        raise SelfReport()
    record = validators.set_record(ctx.state, first.set_id)
    if record is None:
        raise UnknownSet(f"validator set {first.set_id} is not kept (past the evidence window, or unknown)")
    if not _member(record, first.voter):
        raise NotAValidator(f"the voter was not in validator set {first.set_id}")
    # the signatures last: the most expensive check
    if not (is_valid_vote_signature(ctx.genesis_hash, first) and is_valid_vote_signature(ctx.genesis_hash, second)):
        raise BadSignature("a vote's signature does not verify for this chain")
    _punish(ctx, KIND_VOTE_EQUIVOCATION, first.voter, origin,
            codec.pack([first.set_id, first.round, first.stage]))


@pallet.call(1, weight=DOUBLE_AUTHORING_WEIGHT)
def report_double_authoring(ctx: BlockContext, origin: AccountId, first: Header, second: Header) -> None:
    """Prove that a validator sealed two different blocks for one slot."""
    author = first.digest.author
    if first.digest.slot != second.digest.slot or second.digest.author != author or first.hash == second.hash:
        raise NotAnOffence("the headers must be two different blocks of one author in one slot")
    if origin == author:
        raise SelfReport()
    found = validators.set_for_block(ctx.state, first.number)
    if found is None:
        raise UnknownSet(f"no kept validator set authored block #{first.number}")
    if not _member(found[1], author):
        raise NotAValidator(f"the author was not in validator set {found[0]}")
    if not (is_valid_seal(first) and is_valid_seal(second)):
        raise BadSignature("a header's seal is not its author's signature")
    _punish(ctx, KIND_DOUBLE_AUTHORING, author, origin, codec.pack([first.digest.slot]))


@pallet.call(2, weight=lambda header, disputes: DOUBLE_AUTHORING_WEIGHT + 150_000 * len(disputes))
def report_false_useful_work(ctx: BlockContext, origin: AccountId, header: Header,
                             disputes: tuple[SignedDispute, ...]) -> None:
    """Prove that a block's author reported useful work that more than 2/3 of its set's stake disputes."""
    author = header.digest.author
    if origin == author:
        raise SelfReport()
    if not disputes or len(disputes) > MAX_DISPUTES:
        raise NotEnoughDisputes(f"between 1 and {MAX_DISPUTES} disputes are needed")
    set_id = disputes[0].set_id
    record = validators.set_record(ctx.state, set_id)
    if record is None:
        raise UnknownSet(f"validator set {set_id} is not kept (past the evidence window, or unknown)")
    found = validators.set_for_block(ctx.state, header.number)
    if found is None or found[0] != set_id:
        raise UnknownSet(f"the disputes name set {set_id}, which did not author block #{header.number}")
    stake = {v.account: v.stake for v in record.validators}
    seen: set[bytes] = set()
    for dispute in disputes:
        if dispute.set_id != set_id or dispute.block_hash != header.hash or dispute.block_number != header.number:
            raise NotEnoughDisputes("every dispute must be about this block, under one validator set")
        if dispute.validator not in stake or dispute.validator in seen:
            raise NotAValidator("each disputer must be a distinct validator of the set")
        seen.add(dispute.validator)
    weight = sum(stake[v] for v in seen)
    if weight < supermajority_threshold(sum(stake.values())):
        raise NotEnoughDisputes(f"the disputes hold {weight} of {sum(stake.values())} stake: more than 2/3 is needed")
    if author not in stake:
        raise NotAValidator(f"the author was not in validator set {set_id}")
    if not is_valid_seal(header) or not all(is_valid_dispute_signature(ctx.genesis_hash, d) for d in disputes):
        raise BadSignature("the header's seal or a dispute's signature does not verify for this chain")
    _punish(ctx, KIND_FALSE_USEFUL_WORK, author, origin, bytes(header.hash))
