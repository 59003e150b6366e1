"""Slot arithmetic (Aura): time is cut into slots of the genesis duration, and the
validators take them in turn. Pure functions; the node's clock feeds them."""

from __future__ import annotations


def slot_at(time_ms: int, slot_duration_ms: int) -> int:
    return time_ms // slot_duration_ms


def slot_start_ms(slot: int, slot_duration_ms: int) -> int:
    return slot * slot_duration_ms


def block_timestamp_ms(slot: int, slot_duration_ms: int) -> int:
    """The timestamp an author puts in a block of `slot`: the slot's start.

    Not the wall clock: an author that starts late in one slot and on time in the
    next would otherwise stamp two blocks closer than the minimum period."""
    return slot_start_ms(slot, slot_duration_ms)
