"""A header's digest in Substrate's JSON shape: `{"logs": ["0x..", ..]}`, each log a SCALE DigestItem.

Substrate's RPC (and every tool built on it: polkadot.js, subxt, explorers) shows a
header's consensus data as a list of hex-encoded `DigestItem`s. SCALE encodes an
item as its variant index (one byte), a 4-byte consensus engine id, then the data
as a `Vec<u8>`: a compact length, then the bytes. The two kinds used here:

    PreRuntime  variant 6   06 ++ engine id ++ compact(len) ++ data
    Seal        variant 5   05 ++ engine id ++ compact(len) ++ data

Our header's digest (runtime.types.Digest) becomes, in this order:

    PreRuntime(b"aura", slot as u64 little-endian)     as Aura's slot
    PreRuntime(b"GRDA", the author's 32-byte account)  gradchain's own engine id: "GRaDchain Author".
                                                       Aura derives the author from the slot and the
                                                       authority set; our header names it, so that a
                                                       client can check the seal without the state.
    Seal(b"aura", the 64-byte signature)               left out while the header is unsealed (genesis)

SCALE compact integers: 0..63 in one byte (n << 2); up to 2**14 - 1 in two bytes
little-endian ((n << 2) | 1); up to 2**30 - 1 in four ((n << 2) | 2); larger ones
as a byte ((bytes - 4) << 2 | 3) followed by the value in that many bytes.

This module is the one place both sides share: the server writes logs with
`digest_logs`, the client (and the explorer through it) reads them with `parse_digest`.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import GradchainError
from runtime.types import Digest

PRE_RUNTIME = 6
SEAL = 5
AURA_ENGINE = b"aura"
AUTHOR_ENGINE = b"GRDA"
MAX_LOG_BYTES = 1024


class DigestFormatError(GradchainError):
    """A digest log that is not a well-formed SCALE DigestItem of the kinds this chain writes."""

    code = "bad_digest"


@dataclass(frozen=True)
class DigestLog:
    kind: int  # PRE_RUNTIME or SEAL
    engine: bytes  # 4 bytes
    data: bytes


def encode_compact(n: int) -> bytes:
    """SCALE's compact encoding of a non-negative integer."""
    if n < 0:
        raise ValueError("compact integers are non-negative")
    if n < 1 << 6:
        return bytes((n << 2,))
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    length = (n.bit_length() + 7) // 8
    return bytes((((length - 4) << 2) | 3,)) + n.to_bytes(length, "little")


def decode_compact(data: bytes, offset: int = 0) -> tuple[int, int]:
    """(value, offset after it); DigestFormatError if truncated or not canonical."""
    if offset >= len(data):
        raise DigestFormatError("a compact length is missing")
    mode = data[offset] & 3
    if mode == 3:
        length = (data[offset] >> 2) + 4
        end = offset + 1 + length
        value, minimum = int.from_bytes(data[offset + 1:end], "little"), 1 << 30
    else:
        width = (1, 2, 4)[mode]
        end = offset + width
        value, minimum = int.from_bytes(data[offset:end], "little") >> 2, (0, 1 << 6, 1 << 14)[mode]
    if end > len(data):
        raise DigestFormatError("a compact length is truncated")
    if value < minimum or encode_compact(value) != data[offset:end]:
        raise DigestFormatError("a compact length is not in its shortest form")
    return value, end


def encode_log(log: DigestLog) -> bytes:
    return bytes((log.kind,)) + log.engine + encode_compact(len(log.data)) + log.data


def decode_log(raw: bytes) -> DigestLog:
    if len(raw) > MAX_LOG_BYTES:
        raise DigestFormatError(f"a digest log is over {MAX_LOG_BYTES} bytes")
    if len(raw) < 5 or raw[0] not in (PRE_RUNTIME, SEAL):
        raise DigestFormatError("a digest log must be a PreRuntime (6) or Seal (5) item with an engine id")
    length, start = decode_compact(raw, 5)
    if start + length != len(raw):
        raise DigestFormatError("a digest log's data is not as long as its length says")
    return DigestLog(raw[0], raw[1:5], raw[start:])


def digest_logs(digest: Digest) -> list[str]:
    """The header digest as Substrate's JSON logs (hex strings)."""
    logs = [DigestLog(PRE_RUNTIME, AURA_ENGINE, int(digest.slot).to_bytes(8, "little")),
            DigestLog(PRE_RUNTIME, AUTHOR_ENGINE, bytes(digest.author))]
    if digest.seal:
        logs.append(DigestLog(SEAL, AURA_ENGINE, bytes(digest.seal)))
    return ["0x" + encode_log(log).hex() for log in logs]


def parse_digest(value: object) -> Digest:
    """`{"logs": [...]}` back to the header's slot, author and seal; DigestFormatError names what is wrong."""
    if not isinstance(value, dict) or not isinstance(value.get("logs"), list):
        raise DigestFormatError('a digest must be {"logs": ["0x..", ..]}')
    slot = author = None
    seal = b""
    for text in value["logs"]:
        if not isinstance(text, str) or not text.startswith("0x"):
            raise DigestFormatError("a digest log must be a 0x-prefixed hex string")
        try:
            log = decode_log(bytes.fromhex(text[2:]))
        except ValueError:
            raise DigestFormatError("a digest log is not valid hex") from None
        if log.kind == PRE_RUNTIME and log.engine == AURA_ENGINE:
            if len(log.data) != 8:
                raise DigestFormatError("Aura's pre-runtime slot must be a u64 (8 bytes)")
            slot = int.from_bytes(log.data, "little")
        elif log.kind == PRE_RUNTIME and log.engine == AUTHOR_ENGINE:
            if len(log.data) != 32:
                raise DigestFormatError("the author pre-runtime item must hold a 32-byte account")
            author = log.data
        elif log.kind == SEAL and log.engine == AURA_ENGINE:
            if len(log.data) != 64:
                raise DigestFormatError("an Aura seal must be a 64-byte signature")
            seal = log.data
    if slot is None or author is None:
        raise DigestFormatError("the digest lacks the Aura slot or the author pre-runtime item")
    return Digest(slot, author, seal)


def describe_logs(value: object) -> list[str]:
    """One line per log, for people: its kind, engine id and what its data means."""
    lines = []
    for text in value["logs"] if isinstance(value, dict) else ():
        log = decode_log(bytes.fromhex(text[2:]))
        kind = {PRE_RUNTIME: "PreRuntime", SEAL: "Seal"}[log.kind]
        engine = log.engine.decode("ascii", "replace")
        if log.kind == PRE_RUNTIME and log.engine == AURA_ENGINE:
            meaning = f"slot {int.from_bytes(log.data, 'little')}"
        elif log.kind == PRE_RUNTIME and log.engine == AUTHOR_ENGINE:
            meaning = f"author 0x{log.data.hex()}"
        else:
            meaning = f"{len(log.data)} bytes 0x{log.data[:8].hex()}.."
        lines.append(f"{kind}({engine}) {meaning}")
    return lines
