"""Dispute statements: from "this node could not reproduce block B's useful work" to slashing evidence.

A validator whose node disputes a block signs a statement (runtime/finality.py:
SignedDispute, over the block and the set that authored it) and gossips it on the
finality topic. Every node collects the statements it receives, checked against
that set; once they hold more than 2/3 of its stake, a validator submits them
with the block's header as offences.report_false_useful_work, which slashes the
author. Statements for blocks not yet known wait (bounded) until the block arrives.
"""

from __future__ import annotations

from typing import Callable

from consensus.finality.ports import VoterSet
from runtime.finality import SignedDispute, is_valid_dispute_signature
from runtime.types import Header

MAX_PENDING = 1024  # statements waiting for a block this node has not imported
MAX_BLOCKS = 1024  # disputed blocks whose statements are kept (the oldest are forgotten first)


class DisputeCollector:
    def __init__(self, genesis_hash: bytes, header_of: Callable[[bytes], Header | None],
                 authoring_set: Callable[[Header], VoterSet],
                 submit: Callable[[Header, tuple[SignedDispute, ...]], None]) -> None:
        self.genesis_hash = genesis_hash
        self.header_of = header_of
        self.authoring_set = authoring_set  # the set that authored a block (its parent's state)
        self.submit = submit
        self.statements: dict[bytes, dict[bytes, SignedDispute]] = {}  # block -> validator -> statement
        self.pending: list[SignedDispute] = []
        self.submitted: set[bytes] = set()

    def add(self, dispute: SignedDispute) -> bool:
        """Take one statement; False if it is forged or not a validator's (a peer to report)."""
        header = self.header_of(dispute.block_hash)
        if header is None:
            if len(self.pending) < MAX_PENDING and is_valid_dispute_signature(self.genesis_hash, dispute):
                self.pending.append(dispute)
            return True
        voters = self.authoring_set(header)
        if dispute.set_id != voters.set_id or dispute.validator not in voters or header.number != dispute.block_number:
            return False
        if header.hash not in self.statements and len(self.statements) >= MAX_BLOCKS:
            del self.statements[next(iter(self.statements))]
        known = self.statements.setdefault(header.hash, {})
        if dispute.validator in known:
            return True
        if not is_valid_dispute_signature(self.genesis_hash, dispute):
            return False
        known[dispute.validator] = dispute
        weight = sum(voters.weight_of(v) for v in known)
        if weight >= voters.threshold and header.hash not in self.submitted:
            self.submitted.add(header.hash)
            self.submit(header, tuple(sorted(known.values(), key=lambda d: d.validator)))
        return True

    def retry_pending(self) -> None:
        """Statements that waited for their block: take those whose block is now known."""
        waiting, self.pending = self.pending, []
        for dispute in waiting:
            self.add(dispute)
