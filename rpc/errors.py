"""JSON-RPC error codes: the standard ones and Substrate's transaction pool codes."""

from __future__ import annotations

from typing import Any

from runtime.errors import GradchainError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNSAFE_METHOD = -32000  # an unsafe method called from a non-loopback address without --rpc-methods unsafe
TOO_MANY_SUBSCRIPTIONS = -32001

# Substrate's author_* errors
POOL_INVALID_TRANSACTION = 1010
POOL_UNKNOWN_VALIDITY = 1011
POOL_TEMPORARILY_BANNED = 1012
POOL_ALREADY_IMPORTED = 1013
POOL_TOO_LOW_PRIORITY = 1014
POOL_CYCLE_DETECTED = 1015
POOL_IMMEDIATELY_DROPPED = 1016


class RpcError(GradchainError):
    """An error answered to the client, with its JSON-RPC code and optional data."""

    code = "rpc"

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.data = data

    def to_json(self) -> dict:
        error: dict[str, Any] = {"code": self.rpc_code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}")
