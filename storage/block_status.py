"""The useful-work verification status of a block, as the chain store keeps it.

Every block has one, written in the same batch as the block (and rewritten, with
whatever it changes, in one batch when a verdict arrives):

    pending       its useful-work reports are being checked (a restart checks them again)
    verified      every report this node could check reproduced, and no data is missing
                  (a block without reports is verified when it is imported)
    disputed      a report does not reproduce, or its data stayed unavailable past the
                  genesis deadline: `reasons` say why. Never best, never final.
    unverifiable  a report calls sound an update (or needs a model or held-out set) whose
                  blob this node does not hold: `missing` names the blobs, `since` the best
                  block number when that was found. Cannot-check is never counted as checked:
                  not best, not final, and disputed once the deadline passes.

`unchecked` lists rounds this node has no duty to check (the held-out key is not
sealed to it, or it runs without a validator key): they are said, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import codec

PENDING = "pending"
VERIFIED = "verified"
DISPUTED = "disputed"
UNVERIFIABLE = "unverifiable"
STATES = (PENDING, VERIFIED, DISPUTED, UNVERIFIABLE)
DATA_UNAVAILABLE = "data unavailable"


@dataclass(frozen=True)
class VerificationStatus:
    state: str
    reasons: tuple[str, ...] = ()  # disputed: every mismatch, by round and update
    missing: tuple[bytes, ...] = ()  # unverifiable: the blobs this node lacks
    since: int | None = None  # unverifiable: the best block number when the blobs were found missing
    unchecked: tuple[str, ...] = ()  # rounds this node cannot check and why (not a verdict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown verification state {self.state!r}")

    @property
    def is_excluded(self) -> bool:
        """Fork choice never builds on such a block (nor on its descendants)."""
        return self.state in (DISPUTED, UNVERIFIABLE)

    @property
    def is_waiting(self) -> bool:
        """Still to be decided: checked again at restart (pending) or when a blob arrives (unverifiable)."""
        return self.state in (PENDING, UNVERIFIABLE)

    def encode(self) -> bytes:
        return codec.pack([self.state, list(self.reasons), list(self.missing), self.since, list(self.unchecked)])

    @classmethod
    def decode(cls, raw: bytes) -> "VerificationStatus":
        state, reasons, missing, since, unchecked = codec.unpack_trusted(raw)
        return cls(state, tuple(reasons), tuple(bytes(m) for m in missing), since, tuple(unchecked))

    def to_json(self) -> dict:
        return {"status": self.state, "reasons": list(self.reasons),
                "missing": ["0x" + m.hex() for m in self.missing], "since": self.since,
                "unchecked": list(self.unchecked)}


STATUS_PENDING = VerificationStatus(PENDING)
STATUS_VERIFIED = VerificationStatus(VERIFIED)
