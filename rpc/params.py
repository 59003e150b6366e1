"""Parsing RPC params: every failure names the parameter (-32602)."""

from __future__ import annotations

from typing import Any

from rpc.errors import invalid_params
from runtime.errors import GradchainError

MAX_HEX_BYTES = 10 * 1024 * 1024


def hex_bytes(value: Any, name: str, *, length: int | None = None, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.startswith("0x"):
        raise invalid_params(f"{name} must be a 0x-prefixed hex string")
    if len(value) > 2 + 2 * MAX_HEX_BYTES:
        raise invalid_params(f"{name} is too long")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        raise invalid_params(f"{name} is not valid hex") from None
    if length is not None and len(data) != length:
        raise invalid_params(f"{name} must be {length} bytes, got {len(data)}")
    return data


def block_hash(value: Any, name: str = "hash") -> bytes | None:
    return hex_bytes(value, name, length=32, optional=True)


def block_number(value: Any, name: str = "number") -> int | None:
    """A block number as Substrate accepts it: an integer or a 0x hex string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise invalid_params(f"{name} must be a block number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 16) if value.startswith("0x") else int(value, 10)
        except ValueError:
            raise invalid_params(f"{name} must be a block number") from None
    else:
        raise invalid_params(f"{name} must be a block number")
    if not 0 <= number < 2**64:
        raise invalid_params(f"{name} is out of range")
    return number


def positive_count(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise invalid_params(f"{name} must be a whole number from 1 to {maximum}")
    return value


def to_hex(data: bytes) -> str:
    return "0x" + data.hex()


def hex_number(n: int) -> str:
    return hex(n)


def account(value: Any, node: Any, name: str = "account") -> bytes:
    """An SS58 address or 0x public key, parsed by the node (it knows the network prefix)."""
    try:
        return node.parse_account(value)
    except GradchainError as exc:
        raise invalid_params(f"{name}: {exc.message}") from None
