"""What `validate_transaction` answers: the contract between the runtime and the pool.

A transaction is either valid now (it may still need others first: `requires`),
or rejected with a reason that says whether it can ever become valid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from runtime.errors import GradchainError

TransactionTag = bytes


@dataclass(frozen=True)
class ValidTransaction:
    """A transaction the pool may keep.

    priority:  higher first; ties by arrival.
    requires:  tags that other transactions must provide before this one is ready
               (a nonce gap: the tag of (signer, nonce - 1)).
    provides:  tags this transaction provides ((signer, nonce)); two pool entries
               providing the same tag replace one another by priority.
    longevity: how many more blocks the transaction stays valid (mortality).
    """

    priority: int
    requires: tuple[TransactionTag, ...]
    provides: tuple[TransactionTag, ...]
    longevity: int
    propagate: bool = True


class InvalidReason(enum.Enum):
    """Why a transaction can never be included as it is. Values are stable wire codes."""

    CALL = 0                  # the call is not allowed (e.g. an inherent sent as a transaction)
    PAYMENT = 1               # the signer cannot pay the fee, or would drop below the existential deposit
    FUTURE = 2                # nonce ahead of the account's (only a block rejects this; the pool waits)
    STALE = 3                 # nonce already used
    BAD_PROOF = 4             # the signature does not verify for this chain, runtime and era
    ANCIENT_BIRTH_BLOCK = 5   # the mortal era's birth block is unknown or too old
    EXHAUSTS_RESOURCES = 6    # does not fit in a block (weight or length)
    BAD_SIGNER = 7            # the signer is not a valid account
    BAD_MANDATORY = 8         # an inherent failed
    MANDATORY_VALIDATION = 9  # an inherent was sent to the pool
    CUSTOM = 10               # a pallet-specific reason, in the message


class UnknownReason(enum.Enum):
    """Validity cannot be decided now (it may be later)."""

    CANNOT_LOOKUP = 0
    NO_UNSIGNED_VALIDATOR = 1


class TransactionValidityError(GradchainError):
    """Root of the two rejection kinds; carries a stable reason and a message."""

    def __init__(self, reason: enum.Enum, message: str = "") -> None:
        super().__init__(message or reason.name.lower().replace("_", " "), code=reason.name.lower())
        self.reason = reason


class InvalidTransaction(TransactionValidityError):
    reason: InvalidReason


class UnknownTransaction(TransactionValidityError):
    reason: UnknownReason
