"""The environment a block's hooks and calls run in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.state import Overlay
from runtime.types import EventRecord


@dataclass
class BlockContext:
    """One block under construction or execution.

    `state` holds every write of the block so far; `params` are the runtime
    parameters as they stood at the start of the block (a change made by
    governance takes effect from the next block). The counters enforce the
    block's weight and length limits; `fees_collected` is paid out at finalize.
    """

    state: Overlay
    number: int
    parent_hash: bytes
    author: bytes
    slot: int
    params: Any
    genesis_hash: bytes
    weight_used: int = 0
    length_used: int = 0
    fees_collected: int = 0
    extrinsic_index: int | None = None  # None in the initialize and finalize hooks
    finalizing: bool = False  # in the finalize hooks (new accounts' nonces depend on it)

    def deposit_event(self, event: Any) -> None:
        self.state.events.append(EventRecord(self.extrinsic_index, event))
