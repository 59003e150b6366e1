"""JSON shapes of chain values, as Substrate's RPC returns them (hex strings for bytes and numbers)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rpc.digest import digest_logs
from rpc.params import hex_number, to_hex
from runtime.types import Block, Extrinsic, Header


_HEADER_JSON: dict[bytes, dict[str, Any]] = {}


def header_json(header: Header) -> dict[str, Any]:
    """Headers are immutable, and explorers ask for the same few again and again: keep their JSON."""
    cached = _HEADER_JSON.get(header.hash)
    if cached is None:
        if len(_HEADER_JSON) >= 4096:
            _HEADER_JSON.clear()
        cached = _HEADER_JSON[header.hash] = _header_json(header)
    return cached


def _header_json(header: Header) -> dict[str, Any]:
    return {
        "parentHash": to_hex(header.parent_hash),
        "number": hex_number(header.number),
        "stateRoot": to_hex(header.state_root),
        "extrinsicsRoot": to_hex(header.extrinsics_root),
        "digest": {"logs": digest_logs(header.digest)},
        "hash": to_hex(header.hash),
    }


def block_json(block: Block) -> dict[str, Any]:
    return {"block": {"header": header_json(block.header),
                      "extrinsics": [to_hex(x.encoded) for x in block.extrinsics]},
            "justifications": None}


def plain(value: Any) -> Any:
    """A decoded value (dataclass, event, call) as JSON: bytes as hex, names kept."""
    if isinstance(value, bytes):
        return to_hex(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        fields = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        cls = type(value)
        if hasattr(cls, "event_index"):  # declared by @pallet.event
            return {"event": f"{cls.pallet_name}.{cls.__name__}", **fields}
        return fields
    return str(value)


def extrinsic_json(extrinsic: Extrinsic) -> dict[str, Any]:
    call = extrinsic.call
    signed = extrinsic.signed
    return {
        "hash": to_hex(extrinsic.hash),
        "call": call.name,
        "args": {name: plain(value) for name, value in call.args_dict().items()},
        "signer": to_hex(signed.signer) if signed else None,
        "nonce": signed.nonce if signed else None,
        "tip": plain(signed.tip) if signed else None,
        "era": plain(signed.era) if signed else None,
    }
