"""The transaction pool's vocabulary: its errors (with Substrate's author_* codes), limits, the report
of what a block did to it, and its entries (node/txpool.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.errors import GradchainError
from runtime.validity import ValidTransaction

READY, FUTURE, ABSENT = "ready", "future", "absent"


class PoolError(GradchainError):
    """A transaction the pool does not take; `rpc_code` is Substrate's author_* error number."""

    code = "pool"
    rpc_code = 1000


class AlreadyImported(PoolError):
    """The same transaction (by hash) is already in the pool."""

    code = "already_imported"
    rpc_code = 1013


class TemporarilyBanned(PoolError):
    """The transaction was found invalid recently; it is refused until its ban expires."""

    code = "temporarily_banned"
    rpc_code = 1012


class TooLowPriority(PoolError):
    """Another transaction provides the same tag (nonce) with at least this priority; raise the tip."""

    code = "too_low_priority"
    rpc_code = 1014


class PoolFull(PoolError):
    """The pool is at its limits and this transaction would be the first evicted; raise the tip or retry later."""

    code = "pool_full"
    rpc_code = 1016


@dataclass(frozen=True)
class PoolLimits:
    ready_count: int = 8192
    ready_bytes: int = 20 * 1024 * 1024
    # future transactions wait for a nonce gap to fill (a re-org, gossip out of order): room for as many
    # as the ready queue, so a backlog is not evicted while it waits
    future_count: int = 8192
    future_bytes: int = 20 * 1024 * 1024
    ban_seconds: float = 1800.0


@dataclass(frozen=True)
class PruneReport:
    """What `on_block_imported` did, for logs and metrics."""

    included: int     # left because the block included them
    expired: int      # longevity ran out (banned)
    invalid: int      # re-validation rejected them (banned)
    dropped: int      # unknown validity, or lost a tag to a higher priority
    resubmitted: int  # came back from retracted blocks
    promoted: int     # future -> ready
    demoted: int      # ready -> future


@dataclass(eq=False, slots=True)
class PoolEntry:
    tx: Any
    hash: bytes
    size: int
    order: int                        # arrival: among equal priorities the earlier goes first
    priority: int = 0
    requires: tuple[bytes, ...] = ()
    provides: tuple[bytes, ...] = ()
    valid_till: int = 0               # the last block number that may include it
    propagate: bool = True
    ready: bool = False
    missing: set[bytes] = field(default_factory=set)  # required tags that no ready entry provides
    gen: int = 0                      # which heap items are current; renewed when queue, priority or tags change

    def set_validity(self, valid: ValidTransaction, at_block: int) -> None:
        self.priority = valid.priority
        self.requires = tuple(dict.fromkeys(valid.requires))
        self.provides = tuple(dict.fromkeys(valid.provides))
        self.valid_till = at_block + valid.longevity
        self.propagate = valid.propagate
