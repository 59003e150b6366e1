"""One WebSocket connection of the RPC server: a bounded outgoing queue and its subscriptions."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Callable

import structlog
from aiohttp import web

if TYPE_CHECKING:
    from rpc.server import RpcLimits

log = structlog.get_logger("rpc")


class WsConnection:
    """One WebSocket: its outgoing queue (bounded) and its subscriptions."""

    def __init__(self, socket: web.WebSocketResponse, limits: RpcLimits) -> None:
        self.socket = socket
        self.limits = limits
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.subscriptions: dict[str, Callable[[], None]] = {}
        self.closed = asyncio.Event()
        self._next_id = 0
        # While a request is being answered, its notifications wait here, so a subscription's
        # id always reaches the client before the first notification that carries it.
        self.held: list[str] | None = None

    def new_subscription_id(self) -> str:
        self._next_id += 1
        return f"0x{self._next_id:016x}"

    def send_json(self, message: dict) -> None:
        if self.closed.is_set():
            return
        if self.held is not None:
            self.held.append(json.dumps(message, separators=(",", ":")))
            return
        if self.queue.qsize() >= self.limits.max_buffered_notifications:
            log.warning("disconnecting a slow WebSocket client", buffered=self.queue.qsize())
            self.closed.set()
            asyncio.ensure_future(self.socket.close(code=1008, message=b"too slow: notifications not read"))
            return
        self.queue.put_nowait(json.dumps(message, separators=(",", ":")))

    def send_text(self, text: str) -> None:
        if not self.closed.is_set():
            self.queue.put_nowait(text)

    def notify(self, method: str, subscription: str, result: Any) -> None:
        self.send_json({"jsonrpc": "2.0", "method": method, "params": {"subscription": subscription,
                                                                        "result": result}})

    def drop_all(self) -> None:
        for cancel in self.subscriptions.values():
            cancel()
        self.subscriptions.clear()
