"""The trio side of the network: one py-libp2p host, its gossipsub, its streams.

Everything here runs on the network's TrioThread and knows bytes, peers and
deadlines, not blocks: what a message means is decided on the asyncio side
(node/network/service.py), which this side reaches in two ways only: events
posted into a bounded ThreadQueue (connected, disconnected, gossip,
misbehaved) and `serve(protocol, peer, request) -> frames`, awaited for each
inbound request.

Security is explicit: Noise is the only security protocol and yamux the only
muxer offered or accepted (py-libp2p's default host also accepts plaintext).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import multiaddr
import structlog
import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_noise_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import MultiselectCommunicatorError
from libp2p.protocol_muxer.multiselect import MULTISELECT_PROTOCOL_ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from node.network import wire
from node.network.libp2p_repairs import SerialPubsub, reset_stream
from node.service import ThreadQueue, TrioThread

log = structlog.get_logger("network")


@dataclass(frozen=True)
class GossipLimits:
    """py-libp2p's gossipsub defaults drop silently past 10 messages/topic/s and 32-deep queues."""

    max_messages_per_topic_per_second: float = 200.0
    peer_queue_size: int = 256  # outbound RPCs queued per peer before gossipsub drops
    pace_queue_depth: int = 64  # publishing waits while any peer's queue is deeper than this
    pace_max_wait_s: float = 2.0
    heartbeat_interval_s: int = 1
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12


def secure_host(seed: bytes, **options: Any):
    """A py-libp2p host that speaks Noise + yamux only (no plaintext, secio, TLS or mplex fallback)."""
    key_pair = create_new_key_pair(seed)
    security = {TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(key_pair, noise_privkey=create_noise_key_pair().private_key)}
    return new_host(key_pair=key_pair, sec_opt=security, muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux}, **options)


def peer_id_of_seed(seed: bytes) -> str:
    return str(ID.from_pubkey(create_new_key_pair(seed).public_key))


class _Notifee(INotifee):
    def __init__(self, host: "P2PHost") -> None:
        self.host = host

    async def connected(self, network: Any, conn: Any) -> None:
        self.host._on_connected(str(conn.muxed_conn.peer_id))

    async def disconnected(self, network: Any, conn: Any) -> None:
        self.host._on_disconnected(conn.muxed_conn.peer_id)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, address: Any) -> None:
        pass

    async def listen_close(self, network: Any, address: Any) -> None:
        pass


Serve = Callable[[str, str, bytes], Awaitable[list[bytes]]]

# libp2p's own protocol families: a peer may propose versions of these we lack (and fall back), honestly
STANDARD_PREFIXES = ("/ipfs/", "/libp2p/", "/meshsub/", "/floodsub/", "/p2p/")
MAX_UNKNOWN_PER_STREAM = 3


class _ProposalWatch:
    """Wraps an inbound stream's multistream negotiation to report proposals of protocols nobody here
    speaks (a probing or broken peer) and to cut a stream after a few, instead of answering "na" until
    the negotiation timeout."""

    def __init__(self, inner: Any, host: "P2PHost") -> None:
        self.inner = inner
        self.host = host
        self.unknown = 0

    async def read(self) -> str:
        command = await self.inner.read()
        if command and command not in ("ls", MULTISELECT_PROTOCOL_ID) and not command.startswith(STANDARD_PREFIXES) \
                and TProtocol(command) not in self.host.host.multiselect.handlers:
            self.unknown += 1
            peer = str(self.inner.read_writer.muxed_conn.peer_id)
            self.host.events.put_threadsafe(("misbehaved", peer, "UnknownProtocol", f"proposed {command[:80]!r}"))
            if self.unknown >= MAX_UNKNOWN_PER_STREAM:
                raise MultiselectCommunicatorError("too many unknown protocols proposed")
        return command

    async def write(self, message: str) -> None:
        await self.inner.write(message)


class P2PHost:
    def __init__(self, *, seed: bytes, listen_host: str, listen_port: int, topics: list[str],
                 relay_after_check: frozenset[str] = frozenset(),
                 thread: TrioThread, loop: asyncio.AbstractEventLoop, events: ThreadQueue, serve: Serve,
                 limits: GossipLimits | None = None, urgent_topics: frozenset[str] = frozenset(),
                 urgent_events: ThreadQueue | None = None) -> None:
        self.seed = seed
        self.listen = multiaddr.Multiaddr(f"/ip4/{listen_host}/tcp/{listen_port}")
        self.topics = topics
        self.relay_after_check = relay_after_check  # topics gossipsub must not forward by itself
        self.thread = thread
        self.loop = loop
        self.events = events
        # blocks skip the line: under load the events queue holds seconds of transaction batches
        self.urgent_topics, self.urgent_events = urgent_topics, urgent_events or events
        self.serve = serve
        self.limits = limits or GossipLimits()
        self.banned: set[str] = set()  # written only on the trio thread
        self.host: Any = None
        self.pubsub: Pubsub | None = None
        self.peer_id = ""
        self.bytes_in = 0
        self.bytes_out = 0
        # peer id -> time.monotonic() of the last bytes read from it directly (a request, a reply, a
        # gossip batch it forwarded): proof it is alive even when its pong is late (node/network/service.py)
        self.heard_from: dict[str, float] = {}

    # --- life ------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the topics, report (peer id, addresses) as started, and serve until cancelled."""
        self.host = secure_host(self.seed)
        self.peer_id = str(self.host.get_id())
        router = GossipSub([PROTOCOL_ID_V11], degree=self.limits.degree, degree_low=self.limits.degree_low,
                           degree_high=self.limits.degree_high, heartbeat_interval=self.limits.heartbeat_interval_s,
                           max_messages_per_topic_per_second=self.limits.max_messages_per_topic_per_second)
        self.pubsub = SerialPubsub(self.host, router, max_inbound_rpc_size=wire.MAX_GOSSIP_BYTES + 4096,
                                   allowed_topics=frozenset(self.topics), on_malformed=self._malformed_gossip)
        original_queue = pubsub_module.RpcQueue
        pubsub_module.RpcQueue = functools.partial(RpcQueue, max_size=self.limits.peer_queue_size)
        try:
            for protocol in wire.PROTOCOLS:
                self.host.set_stream_handler(TProtocol(protocol), functools.partial(self._handle, protocol))
            self.host.get_network().register_notifee(_Notifee(self))
            negotiate = self.host.multiselect.negotiate

            async def watched_negotiate(communicator: Any, *args: Any) -> Any:
                return await negotiate(_ProposalWatch(communicator, self), *args)
            self.host.multiselect.negotiate = watched_negotiate
            async with self.host.run([self.listen]), background_trio_service(self.pubsub), \
                    background_trio_service(router):
                await self.pubsub.wait_until_ready()
                for topic in self.relay_after_check:
                    self.pubsub.set_topic_validator(topic, functools.partial(self._take_unrelayed, topic), False)
                async with trio.open_nursery() as nursery:
                    for topic in self.topics:
                        subscription = await self.pubsub.subscribe(topic)
                        nursery.start_soon(self._read_topic, topic, subscription)
                    task_status.started((self.peer_id, [str(a) for a in self.host.get_addrs()]))
                    await trio.sleep_forever()
        finally:
            pubsub_module.RpcQueue = original_queue

    def _malformed_gossip(self, peer: str, reason: str) -> None:
        self.events.put_threadsafe(("misbehaved", peer, "WireError", reason))

    # --- connections -----------------------------------------------------------------

    def _on_connected(self, peer: str) -> None:
        if peer in self.banned:
            self.thread_nursery_soon(self.disconnect, peer)
            return
        self.events.put_threadsafe(("connected", peer))

    def _on_disconnected(self, peer_id: ID) -> None:
        if not self.host.get_network().connections.get(peer_id):
            self.events.put_threadsafe(("disconnected", str(peer_id)))

    def thread_nursery_soon(self, function: Callable[..., Awaitable[Any]], *args: Any) -> None:
        trio.lowlevel.spawn_system_task(_quietly, function, *args)

    async def dial(self, address: str) -> str:
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        peer = str(info.peer_id)
        if peer in self.banned:
            raise wire.WireError(f"peer {peer} is banned")
        # py-libp2p refuses to redial a peer that failed in the last 60 s: a restarted peer must be
        # reachable at once, so forget that failure first.
        self.host.get_network()._negative_peer_cache.evict(peer)
        await self.host.connect(info)
        return peer

    async def disconnect(self, peer: str) -> None:
        try:
            await self.host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # already gone
            log.debug("disconnect", peer=peer, error=str(exc))

    async def ban(self, peer: str) -> None:
        self.banned.add(peer)
        if self.pubsub is not None:
            # Not pubsub.add_to_blacklist: its teardown task deletes the peer's entry after awaiting the
            # stream's reset, and the disconnect below removes that entry meanwhile, so the task raised a
            # KeyError that ended the whole network thread (seen in the partition fault scenario). The
            # blacklist set refuses the peer's gossip; the disconnect tears its streams down once.
            self.pubsub.blacklisted_peers.add(ID.from_base58(peer))
        await self.disconnect(peer)

    async def unban(self, peer: str) -> None:
        self.banned.discard(peer)
        if self.pubsub is not None:
            self.pubsub.remove_from_blacklist(ID.from_base58(peer))

    def connected_peers(self) -> list[str]:
        return [str(p) for p, conns in self.host.get_network().connections.items() if conns]

    async def addresses(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    # --- requests ----------------------------------------------------------------------

    async def request(self, peer: str, protocol: str, payload: bytes, *, max_frame: int, max_total: int,
                      timeout: float) -> list[bytes]:
        """Send one request; return the reply's frames (a reply over `max_total` bytes is a WireError)."""
        with trio.fail_after(timeout):
            stream = await self.host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
            try:
                await wire.write_frame(stream, payload)
                self.bytes_out += len(payload) + 4
                frames: list[bytes] = []
                total = 0
                while (frame := await wire.read_frame(stream, max_frame)) is not None:
                    total += len(frame) + 4
                    if total > max_total:
                        raise wire.FrameTooLarge(f"a {protocol} reply over {max_total} bytes")
                    frames.append(frame)
                self.bytes_in += total
                self.heard_from[peer] = time.monotonic()
                return frames
            finally:
                with trio.move_on_after(1):
                    await stream.close()

    async def _handle(self, protocol: str, stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id)
        try:
            if peer in self.banned:
                raise wire.WireError("banned peer")
            request = await wire.read_frame(stream, wire.REQUEST_LIMITS.get(protocol, wire.MAX_REQUEST_BYTES))
            if request is None:
                # a requester that gave up (its own deadline passed on a starved machine) closes a stream
                # before writing: cut short, cheap to forgive; as "malformed" two of them banned honest peers
                raise wire.CutShort(f"{protocol}: the stream closed before a request")
            self.bytes_in += len(request) + 4
            self.heard_from[peer] = time.monotonic()
            if protocol == wire.PING and len(request) == 8:
                # answered here, not on the asyncio loop: a pong says the process lives (a frozen peer
                # sends none), and must not wait behind a loop that a saturated machine starves
                frames = [request]
            else:
                frames = await self.thread.await_asyncio(self.loop, self.serve(protocol, peer, request))
            for frame in frames:
                await wire.write_frame(stream, frame)
                self.bytes_out += len(frame) + 4
            with trio.move_on_after(wire.READ_TIMEOUT_S):
                await stream.close()
        except (wire.WireError, trio.TooSlowError) as exc:
            reason = exc.message if isinstance(exc, wire.WireError) else f"{protocol}: no request in time"
            self.events.put_threadsafe(("misbehaved", peer, type(exc).__name__, reason))
            await reset_stream(stream)
        except Exception as exc:  # the peer went away mid-reply, or serving failed: not worth a crash
            log.debug("request not served", protocol=protocol, peer=peer, error=repr(exc))
            await reset_stream(stream)

    # --- gossip ----------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, *, paced: bool = True) -> bool:
        """Publish once no peer's outbound queue is deeper than the pacing limit (unless not `paced`);
        False if it never drained."""
        waited = 0.0
        while paced and self._deepest_queue() > self.limits.pace_queue_depth:
            if waited >= self.limits.pace_max_wait_s:
                return False
            await trio.sleep(0.01)
            waited += 0.01
        await self.pubsub.publish(topic, data)
        self.bytes_out += len(data)
        return True

    def _deepest_queue(self) -> int:
        queues = getattr(self.pubsub, "peer_queues", {}) or {}
        return max((len(q) for q in queues.values()), default=0)

    def _take_unrelayed(self, topic: str, forwarder: ID, message: Any) -> bool:
        """Topic validator that hands a peer's message to the node and stops gossipsub relaying it: the node
        re-publishes what it accepted (transactions: only once its pool admitted them). Own messages pass."""
        if str(forwarder) == self.peer_id:
            return True
        self.heard_from[str(forwarder)] = time.monotonic()
        self.bytes_in += len(message.data)
        self.events.put_threadsafe(("gossip", topic, str(ID(message.from_id)), bytes(message.data)))
        return False

    async def _read_topic(self, topic: str, subscription: Any) -> None:
        while True:
            message = await subscription.get()
            origin = str(ID(message.from_id))
            if origin == self.peer_id:
                continue
            self.bytes_in += len(message.data)
            queue = self.urgent_events if topic in self.urgent_topics else self.events
            queue.put_threadsafe(("gossip", topic, origin, bytes(message.data)))


async def _quietly(function: Callable[..., Awaitable[Any]], *args: Any) -> None:
    try:
        await function(*args)
    except Exception as exc:
        log.debug("background network task failed", error=repr(exc))
