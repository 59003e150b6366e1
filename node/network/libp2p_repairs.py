"""What gradchain changes in py-libp2p (0.8.1): gossipsub's silent drops are counted, its log lines
become this node's structlog events, and its Pubsub serializes writes per stream and survives an RPC
that does not parse (SerialPubsub)."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import structlog
import trio
from libp2p.pubsub import gossipsub as gossipsub_module
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pubsub import Pubsub

log = structlog.get_logger("network")


# gossipsub drops an RPC it cannot queue with a DEBUG line only; count them (per process).
_dropped_total = 0


def _counting_drop(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def drop(peer_id: Any, rpc: Any) -> None:
        global _dropped_total
        _dropped_total += 1
        original(peer_id, rpc)
    drop.__gradchain_counting__ = True  # type: ignore[attr-defined]
    return drop


for _module in (pubsub_module, gossipsub_module):
    if not getattr(_module.drop_rpc, "__gradchain_counting__", False):
        _module.drop_rpc = _counting_drop(_module.drop_rpc)


class SerialPubsub(Pubsub):
    """py-libp2p's Pubsub with two repairs, both seen when blocks began to be gossiped whole (~230 KB):

    - writes to one peer's stream are serialized: gossipsub writes from several tasks (its queue, publish,
      relaying) and yamux takes its lock per 64 KiB frame, not per message, so two large messages
      interleaved and the peer read garbage;
    - an inbound RPC that does not parse ends that stream only (the peer is reported), not the whole
      network thread (py-libp2p let protobuf's DecodeError escape its read loop: a validator's network
      died of it, and a hostile peer could end one on purpose)."""

    def __init__(self, *args: Any, on_malformed: Callable[[str, str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_locks: dict[int, trio.Lock] = {}
        self._on_malformed = on_malformed

    async def write_msg(self, stream: Any, rpc_msg: Any) -> bool:
        lock = self._write_locks.get(id(stream))
        if lock is None:
            if len(self._write_locks) > 4096:  # streams of peers long gone (ids may be reused: harmless)
                self._write_locks.clear()
            lock = self._write_locks[id(stream)] = trio.Lock()
        async with lock:
            return await super().write_msg(stream, rpc_msg)

    async def continuously_read_stream(self, stream: Any) -> None:
        try:
            await super().continuously_read_stream(stream)
        except Exception as exc:  # trio.Cancelled is a BaseException: shutdown still goes through
            peer_id = stream.muxed_conn.peer_id
            self._on_malformed(str(peer_id), f"pubsub: {type(exc).__name__}: {str(exc)[:120]}")
            await reset_stream(stream)
            self._handle_dead_peer(peer_id)


class _Libp2pToStructlog(logging.Handler):
    """py-libp2p logs dial failures and resets of peers going away at ERROR, as bare lines on stderr:
    routine on a network, and not JSON. They become this node's debug events instead."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log.debug("libp2p", level=record.levelname.lower(), message=record.getMessage()[:300])
        except Exception:  # a log line must never break the network
            pass


def route_libp2p_logs() -> None:
    logger = logging.getLogger("libp2p")
    logger.handlers = [_Libp2pToStructlog()]
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def dropped_gossip_messages() -> int:
    return _dropped_total


async def reset_stream(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception:
        pass
