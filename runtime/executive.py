"""The executive: the runtime's entry points, called by block authorship, import and the pool.

    initialize_block(backend, header)      -> BlockContext    run on_initialize hooks
    apply_extrinsic(ctx, extrinsic)        -> ApplyOutcome    or raise InvalidTransaction, changing nothing
    finalize_block(ctx)                                       run on_finalize hooks, write the events
    execute_block(backend, block)          -> BlockExecution  all of the above, then check every root;
                                                              returns the new state (nothing kept on the backend)
    signature_checks(block, ancestor_hash) -> (key, message, signature) of every signed extrinsic, from the
                                              block and its ancestry alone (checked before, or beside, execution)
    validation_context(backend, number, hash) / validate_transaction(vctx, extrinsic)
                                           -> ValidTransaction (what the pool needs) or raise
    inherent_extrinsics(timestamp_ms, slot_signature, useful_work)
                                           -> the unsigned extrinsics an author must add
    version, metadata()

Two tiers of failure, as in FRAME: an *invalid* transaction (bad signature, wrong
nonce, cannot pay, does not fit) never enters a block and leaves no trace; a
*dispatch error* (the call itself failed) is included, pays its fee, bumps the
nonce, has its own writes reverted and is recorded as an ExtrinsicFailed event.

Order of the checks of a signed extrinsic (cheap first, signature last but one):
length and weight, era, nonce, fee, signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b as _blake2b  # blake2b_256 without its call layer, for a message per extrinsic
from typing import Any, Callable, NamedTuple

from runtime import codec, crypto, fast_transfer
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, PALLETS, DispatchFailure
from runtime.errors import InvalidBlock
from runtime.hashing import blake2b_256
from runtime.pallets import (
    balances, held_out_keys, offences, payment, randomness, sudo, system, timestamp, training, validators,
)
from runtime.pallets.system import Account, AccountInfo
from runtime.state import ComputedState, Overlay, StateBackend
from runtime.types import (
    AccountId, ApplyOutcome, Balance, Block, BlockHash, Digest, Era, EventRecord, Extrinsic, Header, Seal,
    SignedData, SigningPayload, compute_extrinsics_root,
)
from runtime.validity import InvalidReason, InvalidTransaction, ValidTransaction

# Hook order: system first on initialize and last on finalize (it writes the events).
PALLET_MODULES = (system, balances, payment, timestamp, randomness, validators, sudo, training, offences,
                  held_out_keys)
_INITIALIZE_HOOKS = [m.on_initialize for m in PALLET_MODULES if hasattr(m, "on_initialize")]
_FINALIZE_HOOKS = [m.on_finalize for m in PALLET_MODULES[1:] if hasattr(m, "on_finalize")] + [system.on_finalize]

IMMORTAL_LONGEVITY = (1 << 64) - 1
MIN_MORTAL_PERIOD = 4


@dataclass(frozen=True)
class RuntimeVersion:
    spec_name: str
    impl_name: str
    spec_version: int
    transaction_version: int


# spec_version 2: a new account's nonce starts at its position in the chain (system.new_account_nonce), so
# a version-1 node would compute other state roots for the same blocks.
VERSION = RuntimeVersion("gradchain", "gradchain-python", 2, 1)


@dataclass(frozen=True)
class BlockExecution:
    """What executing a block produced: its state changes, the new state (what storage commits;
    `state.root` is the state root), outcomes and events."""

    changes: dict[bytes, bytes | None]
    state: ComputedState
    outcomes: tuple[ApplyOutcome, ...]
    events: tuple[EventRecord, ...]

    @property
    def state_root(self) -> bytes:
        return self.state.root


class CheckedSigned(NamedTuple):
    """A signed extrinsic that passed every check but the signature (and its costs)."""

    info: AccountInfo  # the signer's account before paying
    fee: int
    weight: int
    length: int
    longevity: int
    birth_hash: bytes


_NO_ACCOUNT = AccountInfo(0, 0, 0)
_new = tuple.__new__  # builds a NamedTuple from a tuple of its fields, one Python call fewer than calling the class

# Calls with a fast path for their plain case (runtime/fast_transfer.py), by pallet index << 8 | call index
# (both are below 256: an int key, no tuple to build per extrinsic).
FAST_PATHS = {
    balances.pallet.index << 8 | balances.transfer.index: fast_transfer.apply_transfer,
    balances.pallet.index << 8 | balances.transfer_keep_alive.index: fast_transfer.apply_transfer,
}


class Executive:
    def __init__(self, genesis_hash: bytes, version: RuntimeVersion = VERSION, *, fast_paths: bool = True) -> None:
        self.genesis_hash = genesis_hash
        self.version = version
        self.fast_paths = FAST_PATHS if fast_paths else {}  # off: the general path only (the fast path's twin)

    # --- block execution -----------------------------------------------------

    def initialize_block(self, backend: StateBackend, header: Header) -> BlockContext:
        state = Overlay(backend)
        ctx = BlockContext(state, header.number, header.parent_hash, header.digest.author, header.digest.slot,
                           system.Params.get(state), self.genesis_hash)
        for hook in _INITIALIZE_HOOKS:
            hook(ctx)
        ctx.extrinsic_index = 0
        return ctx

    def apply_extrinsic(self, ctx: BlockContext, extrinsic: Extrinsic, *, signature_checked: bool = False) -> ApplyOutcome:
        """Apply one extrinsic. Raises InvalidTransaction, with nothing changed, if it must not be in the block."""
        if extrinsic.signed is None:
            return self._apply_inherent(ctx, extrinsic)
        call = extrinsic.call
        fast_path = self.fast_paths.get(call.pallet_index << 8 | call.call_index)
        if fast_path is not None:
            outcome = fast_path(ctx, extrinsic, self._check_era, None if signature_checked else self.is_valid_signature)
            if outcome is not None:
                return outcome
        signed = extrinsic.signed
        checked = self._check_signed(ctx, extrinsic, for_block=True)
        if not signature_checked and not self.is_valid_signature(extrinsic, checked.birth_hash):
            raise InvalidTransaction(InvalidReason.BAD_PROOF, "the signature does not match this chain, runtime and era")
        # Checks passed: pay, bump the nonce, then run the call in its own layer.
        info = checked.info
        Account.insert(ctx.state, signed.signer, AccountInfo(info.nonce + 1, info.free - checked.fee, info.reserved))
        ctx.fees_collected += checked.fee
        ctx.weight_used += checked.weight
        ctx.length_used += checked.length
        error = None
        ctx.state.begin()
        try:
            system.dispatch_call(ctx, signed.signer, extrinsic.call)
        except DispatchFailure as failure:
            ctx.state.rollback()
            error = system.dispatch_error_of(failure)
            ctx.deposit_event(system.ExtrinsicFailed(error, checked.weight, checked.fee))
        else:
            ctx.state.commit()
            ctx.deposit_event(system.ExtrinsicSuccess(checked.weight, checked.fee))
        return self._next_outcome(ctx, error, checked.weight, checked.fee)

    def _apply_inherent(self, ctx: BlockContext, extrinsic: Extrinsic) -> ApplyOutcome:
        definition = extrinsic.call.definition
        if definition.origin != ORIGIN_INHERENT:
            raise InvalidTransaction(InvalidReason.CALL, f"{extrinsic.call.name} must be signed")
        weight = definition.weight_of(extrinsic.call)
        weight_before = ctx.weight_used
        ctx.state.begin()
        try:
            system.dispatch_call(ctx, None, extrinsic.call)
        except DispatchFailure as failure:
            ctx.state.rollback()
            ctx.weight_used = weight_before
            raise InvalidTransaction(InvalidReason.BAD_MANDATORY, f"{extrinsic.call.name} failed: {failure.message}") from None
        ctx.state.commit()
        # what the call charged beyond its declared weight (report_useful_work: its rounds' useful work) is
        # part of its dispatch info, as Substrate's actual weight is: the event shows what the block counted
        weight += ctx.weight_used - weight_before
        ctx.weight_used = weight_before + weight
        ctx.length_used += len(extrinsic.encoded)
        ctx.deposit_event(system.ExtrinsicSuccess(weight, 0))
        return self._next_outcome(ctx, None, weight, 0)

    @staticmethod
    def _next_outcome(ctx: BlockContext, error, weight: int, fee: int) -> ApplyOutcome:
        index = ctx.extrinsic_index
        ctx.extrinsic_index = index + 1
        return ApplyOutcome(index, error is None, error, weight, fee)

    def finalize_block(self, ctx: BlockContext) -> None:
        ctx.extrinsic_index = None
        ctx.finalizing = True
        try:
            for hook in _FINALIZE_HOOKS:
                hook(ctx)
        except DispatchFailure as failure:
            raise InvalidBlock(f"block {ctx.number} cannot be finalized: {failure.message}") from None

    def execute_block(self, backend: StateBackend, block: Block, *, signatures_checked: bool = False,
                      extrinsics_root: bytes | None = None) -> BlockExecution:
        """Execute a block on its parent's state and check every root against its header.

        `extrinsics_root`: the root of this block's extrinsics as computed elsewhere (a second process, from
        their encodings, while the block before executed); computed here when not given."""
        header = block.header
        self.check_extrinsics_root(block, extrinsics_root)
        if len(block.extrinsics) > system.MAX_BLOCK_EXTRINSICS:
            raise InvalidBlock(f"{len(block.extrinsics)} extrinsics: a block holds {system.MAX_BLOCK_EXTRINSICS} at most")
        ctx = self.initialize_block(backend, header)
        outcomes = []
        seen_signed = False
        for index, extrinsic in enumerate(block.extrinsics):
            if extrinsic.signed is None and seen_signed:
                raise InvalidBlock(f"extrinsic {index}: inherents must come before signed extrinsics")
            seen_signed = seen_signed or extrinsic.signed is not None
            try:
                outcomes.append(self.apply_extrinsic(ctx, extrinsic, signature_checked=signatures_checked))
            except InvalidTransaction as exc:
                raise InvalidBlock(f"extrinsic {index} ({extrinsic.call.name}) is invalid: {exc.message}") from None
        self.finalize_block(ctx)
        state = backend.compute_state(ctx.state.changes)
        if state.root != header.state_root:
            raise InvalidBlock(f"state root mismatch: header has {header.state_root.hex()}, "
                               f"execution gives {state.root.hex()}")
        return BlockExecution(ctx.state.changes, state, tuple(outcomes), tuple(ctx.state.events))

    @staticmethod
    def check_extrinsics_root(block: Block, extrinsics_root: bytes | None = None) -> None:
        """execute_block's first check: the header's extrinsics root is the body's (`extrinsics_root`, if
        computed elsewhere; computed here when None)."""
        if extrinsics_root is None:
            extrinsics_root = compute_extrinsics_root([x.hash for x in block.extrinsics])
        if extrinsics_root != block.header.extrinsics_root:
            raise InvalidBlock(f"extrinsics root mismatch: header has {block.header.extrinsics_root.hex()}, "
                               f"body gives {extrinsics_root.hex()}")

    # --- the transaction pool's view ---------------------------------------

    def validation_context(self, backend: StateBackend, best_number: int, best_hash: bytes) -> BlockContext:
        """A context as if building the block after `best`; reused for many validations."""
        header = Header(BlockHash(best_hash), best_number + 1, bytes(32), bytes(32), Digest(0, bytes(32), Seal(b"")))
        return self.initialize_block(backend, header)

    def validate_transaction(self, vctx: BlockContext, extrinsic: Extrinsic, *,
                             signature_checked: bool = False) -> ValidTransaction:
        """Would this transaction be valid in the next block, maybe after others (`requires`)?"""
        if extrinsic.signed is None:
            raise InvalidTransaction(InvalidReason.MANDATORY_VALIDATION,
                                     "unsigned extrinsics are inherents, added by the block author")
        checked = self._check_signed(vctx, extrinsic, for_block=False)
        if not signature_checked and not self.is_valid_signature(extrinsic, checked.birth_hash):
            raise InvalidTransaction(InvalidReason.BAD_PROOF, "the signature does not match this chain, runtime and era")
        signed = extrinsic.signed
        requires = (nonce_tag(signed.signer, signed.nonce - 1),) if signed.nonce > checked.info.nonce else ()
        return ValidTransaction(priority=signed.tip, requires=requires,
                                provides=(nonce_tag(signed.signer, signed.nonce),), longevity=checked.longevity)

    # --- checks ---------------------------------------------------------------

    def _check_signed(self, ctx: BlockContext, extrinsic: Extrinsic, *, for_block: bool) -> CheckedSigned:
        signed: SignedData = extrinsic.signed  # type: ignore[assignment]
        params = ctx.params
        definition = extrinsic.call.definition
        if definition.origin == ORIGIN_INHERENT:
            raise InvalidTransaction(InvalidReason.CALL, f"{extrinsic.call.name} is an inherent and cannot be signed")
        length = len(extrinsic.encoded)
        if length > params.max_extrinsic_length:
            raise InvalidTransaction(InvalidReason.EXHAUSTS_RESOURCES,
                                     f"extrinsic of {length} bytes is over the limit of {params.max_extrinsic_length}")
        weight = payment.compute_extrinsic_weight(extrinsic.call)
        if ctx.weight_used + weight > params.block_weight_limit or ctx.length_used + length > params.block_length_limit:
            raise InvalidTransaction(InvalidReason.EXHAUSTS_RESOURCES, "the block has no room left for this extrinsic")
        birth_hash, longevity = self._check_era(ctx, signed.era)
        info = Account.get(ctx.state, signed.signer) or _NO_ACCOUNT
        nonce = signed.nonce
        if nonce != info.nonce:
            if nonce < info.nonce:
                raise InvalidTransaction(InvalidReason.STALE, f"nonce {nonce} is used; the account's next is {info.nonce}")
            if for_block:
                raise InvalidTransaction(InvalidReason.FUTURE, f"nonce {nonce} is ahead of the account's {info.nonce}")
        fee = payment.compute_fee(params, length, weight, signed.tip)
        free = info.free
        if free < fee:
            raise InvalidTransaction(InvalidReason.PAYMENT, f"free balance {free} cannot pay the fee {fee}")
        if free - fee < params.existential_deposit:
            raise InvalidTransaction(InvalidReason.PAYMENT,
                                     f"paying the fee {fee} would leave the account below the existential deposit")
        return _new(CheckedSigned, (info, fee, weight, length, longevity, birth_hash))

    def _check_era(self, ctx: BlockContext, era: Era) -> tuple[bytes, int]:
        if era.period == 0:
            if era.birth != 0:
                raise InvalidTransaction(InvalidReason.BAD_PROOF, "an immortal era must have birth 0")
            return self.genesis_hash, IMMORTAL_LONGEVITY
        if not MIN_MORTAL_PERIOD <= era.period <= system.BLOCK_HASH_COUNT:
            raise InvalidTransaction(InvalidReason.BAD_PROOF,
                                     f"era period must be {MIN_MORTAL_PERIOD}..{system.BLOCK_HASH_COUNT} blocks")
        last_valid = era.birth + era.period - 1
        if era.birth >= ctx.number:
            raise InvalidTransaction(InvalidReason.ANCIENT_BIRTH_BLOCK, f"era birth block {era.birth} is not yet known")
        if ctx.number > last_valid:
            raise InvalidTransaction(InvalidReason.ANCIENT_BIRTH_BLOCK,
                                     f"the transaction expired after block {last_valid}")
        birth_hash = system.BlockHashes.get(ctx.state, era.birth)
        if birth_hash is None:
            raise InvalidTransaction(InvalidReason.ANCIENT_BIRTH_BLOCK, f"era birth block {era.birth} is too old")
        return birth_hash, last_valid - ctx.number + 1

    def is_valid_signature(self, extrinsic: Extrinsic, birth_hash: bytes) -> bool:
        signed: SignedData = extrinsic.signed  # type: ignore[assignment]
        message = signing_message(extrinsic.call, signed.nonce, signed.tip, signed.era,
                                  self.genesis_hash, birth_hash, self.version)
        return crypto.verify(signed.signer, message, signed.signature)

    def signature_checks(self, block: Block, ancestor_hash: Callable[[int], bytes | None]
                         ) -> list[tuple[bytes, bytes, bytes]]:
        """(public key, message, signature) of every signed extrinsic of a block, for batch verification.

        Needs no state and runs no hook: a mortal era's birth hash is the hash of the
        block's ancestor at that number (`ancestor_hash`, what System's BlockHashes holds
        for every era that is still valid), so the checks of a run of blocks can be made
        before the blocks before them execute. An extrinsic whose era is not valid at
        this block gets an empty message, which never verifies (the era's own error is
        the same "bad proof" the executive would give).
        """
        number, genesis_hash, version = block.header.number, self.genesis_hash, self.version
        checks = []
        for extrinsic in block.extrinsics:
            signed = extrinsic.signed
            if signed is None:
                continue
            era = signed.era
            if era.period == 0 and era.birth == 0:
                birth_hash = genesis_hash  # immortal: _birth_hash's first case, without the call
            else:
                birth_hash = self._birth_hash(era, number, ancestor_hash)
            if birth_hash is None:
                checks.append((signed.signer, b"", signed.signature))
                continue
            message = signing_message(extrinsic.call, signed.nonce, signed.tip, era, genesis_hash, birth_hash, version)
            checks.append((signed.signer, message, signed.signature))
        return checks

    def _birth_hash(self, era: Era, number: int, ancestor_hash: Callable[[int], bytes | None]) -> bytes | None:
        """_check_era's answer for a block at `number`, from its ancestry; None where it raises."""
        if era.period == 0:
            return self.genesis_hash if era.birth == 0 else None
        if not MIN_MORTAL_PERIOD <= era.period <= system.BLOCK_HASH_COUNT:
            return None
        if era.birth >= number or number > era.birth + era.period - 1:
            return None
        return ancestor_hash(era.birth)

    # --- authorship helpers and introspection --------------------------------

    @staticmethod
    def authorities(backend: StateBackend) -> list[bytes]:
        """The validator set in authoring order (Aura's authorities)."""
        return [v.account for v in validators.Validators.get(Overlay(backend))]

    @staticmethod
    def parameters(backend: StateBackend) -> system.Parameters:
        return system.Params.get(Overlay(backend))

    @staticmethod
    def inherent_extrinsics(timestamp_ms: int, useful_work: tuple = (), *,
                            slot_signature: bytes | None = None) -> list[Extrinsic]:
        """The block's inherents: its time, its author's slot signature (randomness.slot_signature; every
        block needs it, and only a test that never finalizes may leave it out), and the author's
        useful-work reports, if any are due."""
        inherents = [Extrinsic(None, timestamp.set(timestamp_ms))]
        if slot_signature is not None:
            inherents.append(Extrinsic(None, randomness.note_slot_signature(slot_signature)))
        if useful_work:
            inherents.append(Extrinsic(None, training.report_useful_work(tuple(useful_work))))
        return inherents

    def metadata(self) -> dict[str, Any]:
        from runtime.metadata import build_metadata

        return build_metadata(self.version)


def nonce_tag(signer: bytes, nonce: int) -> bytes:
    return signer + nonce.to_bytes(8, "big")


def signing_message(call, nonce: int, tip: int, era: Era, genesis_hash: bytes, birth_hash: bytes,
                    version: RuntimeVersion = VERSION) -> bytes:
    """The 32 bytes a signer signs: the hash of the SigningPayload.

    Built from the call's cached bytes and the packed extras rather than through
    a SigningPayload value (a msgpack array is its header and its items' bytes in
    a row); `signing_message_reference` is the plain version a test holds it to."""
    # The payload is an 8-item array: its header, then each item's bytes in a row (the call's are cached).
    # What follows the nonce is the same for every transaction of one tip, era and chain: packed once.
    key = (tip, era.birth, era.period, birth_hash, genesis_hash, version.spec_version,
           version.transaction_version)
    extras = _EXTRAS_AFTER_NONCE.get(key)
    if extras is None:
        if len(_EXTRAS_AFTER_NONCE) >= 4096:
            _EXTRAS_AFTER_NONCE.clear()
        extras = _EXTRAS_AFTER_NONCE[key] = codec.pack([_encode_balance(tip), _encode_era(era), version.spec_version,
                                                        version.transaction_version, genesis_hash, birth_hash])[1:]
    return _blake2b(_PAYLOAD_HEADER + call.encoded + _pack(nonce) + extras, digest_size=32).digest()


def signing_message_reference(call, nonce: int, tip: int, era: Era, genesis_hash: bytes, birth_hash: bytes,
                              version: RuntimeVersion = VERSION) -> bytes:
    """The slow, obviously correct twin of `signing_message`."""
    payload = SigningPayload(call, nonce, tip, era, version.spec_version, version.transaction_version,
                             genesis_hash, birth_hash)
    return blake2b_256(codec.encode(payload, SigningPayload))


_PAYLOAD_HEADER = codec.array_header(8)  # the fields of SigningPayload
_EXTRAS_AFTER_NONCE: dict[tuple, bytes] = {}  # the payload's bytes after the nonce, by what they depend on
_pack = codec.pack
_encode_balance = codec.encoder_for(Balance)
_encode_era = codec.encoder_for(Era)


def sign_extrinsic(keypair: crypto.Keypair, call, *, nonce: int, genesis_hash: bytes, tip: int = 0,
                   era: Era = Era(0, 0), birth_hash: bytes | None = None,
                   version: RuntimeVersion = VERSION) -> Extrinsic:
    """Build a signed extrinsic (what wallets do). A mortal era needs the hash of its birth block."""
    if era.period and birth_hash is None:
        raise ValueError("a mortal era needs birth_hash, the hash of block era.birth")
    message = signing_message(call, nonce, tip, era, genesis_hash, birth_hash or genesis_hash, version)
    return Extrinsic(SignedData(AccountId(keypair.public), keypair.sign(message), era, nonce, tip), call)


__all__ = ["Executive", "BlockExecution", "VERSION", "RuntimeVersion", "sign_extrinsic", "signing_message",
           "nonce_tag", "PALLETS"]
