"""NetworkService: the asyncio side of gradchain's peer-to-peer network.

The libp2p host lives on a TrioThread (node/network/host.py); this service
decides what messages mean: the status handshake, gossip of announcements,
transaction batches and finality messages, serving and making requests; peer
reputation, bans, dialling and the application ping are node/network/peering.py's,
catching up with peers node/network/sync.py's. It talks to the chain only through ChainAdapter.

Lifecycle: started after the chain service and stopped before it (the service
tree stops in reverse order), so LevelDB is open for as long as peers are served.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import structlog

from node.metrics import NodeMetrics
from node.network import wire
from node.network.blobs import BlobAvailability
from node.network.chain_adapter import ChainAdapter
from node.network.config import NetworkConfig
from node.network.host import P2PHost
from node.network.libp2p_repairs import dropped_gossip_messages, route_libp2p_logs
from node.network.justification_sync import JustificationSync
from node.network.peering import Peering
from node.network.peers import PeerBook
from node.network.sync import BlockSync
from node.network.transactions import TRANSACTIONS, TransactionGossip
from node.service import Service, ThreadQueue, TrioThread
from runtime import codec
from runtime.errors import GradchainError
from runtime.types import Header, decode_block

log = structlog.get_logger("network")

# gossip topics by short name (scoped to the genesis on the wire by `topic`)
ANNOUNCE, FINALITY = "block-announces", "finality"
EVENT_QUEUE = 10_000
URGENT_EVENT_QUEUE = 1_000  # gossiped blocks and announcements, taken apart from the rest


class NetworkService(Service):
    name = "network"

    def __init__(self, adapter: ChainAdapter, config: NetworkConfig, *, metrics: NodeMetrics | None = None) -> None:
        self.adapter = adapter
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self.book = PeerBook()
        self.thread = TrioThread("network")
        self.host: P2PHost | None = None
        self.peer_id = ""
        self.listen_addresses: list[str] = []
        self.genesis_hash = b""
        self.sync = BlockSync(self)
        self.justifications = JustificationSync(self)
        self.blobs = BlobAvailability(self)
        self.transactions = TransactionGossip(self)
        self.peering = Peering(self)
        self.dropped_events = 0
        self._events: ThreadQueue | None = None
        self._urgent_events: ThreadQueue | None = None
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._subscribers: dict[str, list[asyncio.Queue]] = {}
        for address in config.reserved_nodes:
            self.book.reserved[address.rsplit("/p2p/", 1)[-1]] = address

    # --- lifecycle ------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return f"/gradchain/{self.genesis_hash[:8].hex()}/{name}/1"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        route_libp2p_logs()
        self.genesis_hash = self.adapter.head().genesis_hash
        self._events = ThreadQueue(loop, EVENT_QUEUE)
        self._urgent_events = ThreadQueue(loop, URGENT_EVENT_QUEUE)
        self.thread.start_thread()
        self.host = P2PHost(seed=self.config.node_key_seed, listen_host=self.config.listen_host,
                            listen_port=self.config.port, topics=[self.topic(t) for t in (ANNOUNCE, TRANSACTIONS, FINALITY)],
                            relay_after_check=frozenset({self.topic(TRANSACTIONS)}),
                            thread=self.thread, loop=loop, events=self._events, serve=self.serve,
                            limits=self.config.gossip, urgent_events=self._urgent_events,
                            urgent_topics=frozenset({self.topic(ANNOUNCE)}))
        try:
            self.peer_id, addresses = await self.thread.start(self.host.run, timeout=30)
        except BaseException:
            self.thread.stop()
            raise
        self.listen_addresses = [f"{a}" if "/p2p/" in a else f"{a}/p2p/{self.peer_id}" for a in addresses]
        self.adapter.on_blocks(lambda block, how: loop.call_soon_threadsafe(self._on_own_block, block, how))
        self.adapter.on_admitted_transactions(lambda x: self.transactions.on_admitted_threadsafe(loop, x))
        self.adapter.on_retracted_transactions(lambda xs: loop.call_soon_threadsafe(self.transactions.regossip, xs))
        self.adapter.on_unverifiable(lambda missing: loop.call_soon_threadsafe(self.blobs.wake))
        log.info("network started", peer_id=self.peer_id, listen=self.listen_addresses,
                 bootnodes=len(self.config.bootnodes), reserved=len(self.config.reserved_nodes),
                 reserved_only=self.config.reserved_only)

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(coroutine, name=f"network-{name}") for name, coroutine in (
            ("events", self._event_loop(self._events)), ("block-events", self._event_loop(self._urgent_events)),
            ("dial", self.peering.dial_loop()), ("transactions", self.transactions.run()),
            ("transaction-intake", self.transactions.intake()),
            ("ping", self.peering.ping_loop()), ("sync", self.sync.run()), ("blobs", self.blobs.run()),
            ("justifications", self.justifications.run()),
            ("metrics", self._metrics_loop()))]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background, *self.sync.tasks, *self.blobs.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self.thread.stop)
        await self.adapter.close()  # the signature process, if sync started one
        log.info("network stopped")

    def _spawn(self, coroutine) -> None:
        """A background step (handshake, ban, announcement): kept referenced, its failure logged, never raised."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background network step failed", error=repr(task.exception()))

    async def _on_trio(self, function, *args: Any, timeout: float | None = None) -> Any:
        return await self.thread.call(function, *args, timeout=timeout)

    # --- events from the trio side -----------------------------------------------------

    async def _event_loop(self, events: ThreadQueue) -> None:
        while True:
            event = await events.get()
            try:
                kind = event[0]
                if kind == "connected":
                    self._on_connected(event[1])
                elif kind == "disconnected":
                    self._on_disconnected(event[1])
                elif kind == "gossip":
                    await self._on_gossip(*event[1:])
                elif kind == "misbehaved":
                    _, peer, error, reason = event
                    self.report(peer, {"FrameTooLarge": "oversized", "TooSlowError": "timeout",
                                       "CutShort": "cut_short", "UnknownProtocol": "unknown_protocol"
                                       }.get(error, "malformed"), reason)
            except Exception:  # one bad event must never stop the network
                log.exception("network event failed", kind=event[0])

    def _on_connected(self, peer: str) -> None:
        refused = self.book.is_banned(peer) or (
            peer not in self.book.reserved and (self.config.reserved_only or len(self.book.peers) >= self.config.max_peers))
        if refused:
            self._spawn(self.peering.disconnect(peer))
            return
        if peer not in self.book.peers:
            self.book.connected(peer)
            self._spawn(self._handshake(peer))

    def _on_disconnected(self, peer: str) -> None:
        if self.book.peers.pop(peer, None) is not None:
            log.info("peer disconnected", peer=peer)
        self.peering.wake_dialer()  # a reserved or boot peer is redialled at once

    async def _handshake(self, peer: str) -> None:
        try:
            frames = await self.request(peer, wire.STATUS, wire.encode(self.local_status()), max_frame=512)
            if not frames:
                raise wire.CutShort("no status reply")
            if len(frames) != 1:
                raise wire.WireError("a status reply is exactly one frame")
            self._accept_status(peer, wire.decode(wire.Status, frames[0]))
        except wire.CutShort as exc:
            self.report(peer, "cut_short", exc.message)
        except wire.WireError as exc:
            self.report(peer, "malformed", exc.message)
        except Exception as exc:  # the peer left or froze mid-handshake
            log.debug("handshake failed", peer=peer, error=repr(exc))

    def _accept_status(self, peer: str, status: wire.Status) -> None:
        if status.genesis_hash != self.genesis_hash:
            self.report(peer, "wrong_chain", f"genesis {status.genesis_hash.hex()[:16]} is not ours")
            return
        known = self.book.peers.get(peer)
        if known is None:
            return
        first = known.status is None
        known.status = status
        if first:
            log.info("peer connected", peer=peer, best=status.best_number, roles=status.roles)
            self.sync.wake()

    def local_status(self) -> wire.Status:
        head = self.adapter.head()
        return wire.Status(head.genesis_hash, head.best.number, head.best.hash, head.finalized.number,
                           head.finalized.hash, wire.Roles(self.config.roles))

    # --- serving requests ----------------------------------------------------------------

    async def serve(self, protocol: str, peer: str, request: bytes) -> list[bytes]:
        """The reply frames to one inbound request (runs on this loop; raises WireError for a bad one)."""
        if protocol == wire.STATUS:
            status = wire.decode(wire.Status, request)
            self.book.connected(peer)
            self._accept_status(peer, status)
            return [wire.encode(self.local_status())]
        if not self.book.peers.get(peer) or not self.book.peers[peer].ready:
            raise wire.NotReady(f"{protocol} before the status handshake completed here")
        if protocol == wire.PING:
            if len(request) != 8:
                raise wire.WireError("a ping is 8 bytes")
            return [request]
        if protocol == wire.BLOCKS:
            ask = wire.decode(wire.BlockRequest, request)
            count = min(ask.count, wire.MAX_BLOCKS_PER_REQUEST)
            blocks = await self.adapter.encoded_blocks(ask.start_number, ask.start_hash, count, wire.RESPONSE_BUDGET)
            return [len(blocks).to_bytes(4, "big"), *blocks]
        if protocol == wire.BLOBS:
            ask = wire.decode(wire.BlobRequest, request)
            data = await self.adapter.blob(ask.blob_hash)
            if data is None:
                return [wire.encode(wire.BlobChunk(wire.ByteCount(0), wire.ChunkData(b"")))]
            piece = data[ask.offset:ask.offset + min(ask.length, wire.MAX_BLOB_CHUNK)]
            return [wire.encode(wire.BlobChunk(wire.ByteCount(len(data)), wire.ChunkData(piece)))]
        if protocol == wire.JUSTIFICATIONS:
            return await self.justifications.serve(request)
        if protocol == wire.BLOCK_PUSH:
            self._on_pushed_block(peer, request)
            return []
        raise wire.WireError(f"unknown protocol {protocol}")

    async def request(self, peer: str, protocol: str, payload: bytes, *, max_frame: int,
                      max_total: int | None = None, timeout: float | None = None) -> list[bytes]:
        timeout = timeout or self.config.request_timeout_s
        # the trio side enforces the deadline; the asyncio one is a backstop a little later
        return await self._on_trio(functools.partial(self.host.request, peer, protocol, payload, max_frame=max_frame,
                                                     max_total=max_total or max_frame * 2, timeout=timeout),
                                   timeout=timeout + 5)

    # --- peers (node/network/peering.py) ---------------------------------------------------

    def report(self, peer: str, misbehaviour: str, reason: str = "") -> None:
        self.peering.report(peer, misbehaviour, reason)

    async def ban(self, peer: str, seconds: float | None = None) -> None:
        await self.peering.ban(peer, seconds)

    async def unban(self, peer: str) -> bool:
        return await self.peering.unban(peer)

    async def add_reserved(self, address: str) -> str:
        return await self.peering.add_reserved(address)

    async def remove_reserved(self, peer: str) -> bool:
        return await self.peering.remove_reserved(peer)

    # --- gossip ----------------------------------------------------------------------

    async def _on_gossip(self, topic: str, origin: str, data: bytes) -> None:
        if self.book.is_banned(origin):
            return
        if topic == self.topic(ANNOUNCE):
            await self._on_announcement(origin, data)
        elif topic == self.topic(TRANSACTIONS):
            self.transactions.on_gossip_nowait(origin, data)
        elif topic == self.topic(FINALITY):
            for queue in self._subscribers.get(FINALITY, ()):
                try:
                    queue.put_nowait((origin, data))
                except asyncio.QueueFull:
                    self.dropped_events += 1

    async def _on_announcement(self, origin: str, data: bytes) -> None:
        try:
            header = codec.decode(Header, data, max_length=1024)
        except GradchainError as exc:
            self.report(origin, "malformed", f"announcement: {exc.message}")
            return
        if self.book.note_announcement(origin):
            self.report(origin, "flood", "more than 20 announcements in a second")
            return
        await self.sync.on_announcement(origin, header)

    def _on_pushed_block(self, origin: str, data: bytes) -> None:
        if self.book.note_announcement(origin):  # before decoding: a flood must cost little
            self.report(origin, "flood", "more than 20 announcements in a second")
            return
        try:
            block = decode_block(data)
        except GradchainError as exc:
            raise wire.WireError(f"pushed block: {exc.message}") from exc  # the peer is reported
        self.sync.on_block(origin, block)

    def _on_own_block(self, block, how: str) -> None:
        if how == "authored":
            self._spawn(self._announce(block))
        self.sync.on_local_block(block)
        self.blobs.wake()

    async def _announce(self, block) -> None:
        """A block this node authored: pushed whole to every peer on a stream of its own (no request round
        trip, and no wait behind the transaction gossip on the pubsub streams: under load both made blocks
        late at the next slot's author), then announced by gossip for the peers not reached directly."""
        encoded = await self.adapter.encoded_blocks(0, block.hash, 1, wire.MAX_PUSHED_BLOCK)
        if encoded and len(encoded[0]) <= wire.MAX_PUSHED_BLOCK:
            await asyncio.gather(*(self._push(peer.peer_id, encoded[0]) for peer in self.book.ready_peers()))
        await self.publish(ANNOUNCE, codec.encode(block.header, Header), paced=False)

    async def _push(self, peer: str, encoded_block: bytes) -> None:
        try:
            await self.request(peer, wire.BLOCK_PUSH, encoded_block, max_frame=8)
        except Exception as exc:  # the peer left or is slow: the announcement reaches it anyway
            log.debug("block push failed", peer=peer, error=repr(exc))

    # --- the gossip port (consensus/finality uses this; see node/network/__init__.py) --------

    async def publish(self, topic: str, data: bytes, *, paced: bool = True) -> None:
        if len(data) > wire.MAX_GOSSIP_BYTES:
            raise wire.WireError(f"a gossip message of {len(data)} bytes is over {wire.MAX_GOSSIP_BYTES}")
        sent = await self._on_trio(functools.partial(self.host.publish, self.topic(topic), data, paced=paced),
                                   timeout=30)
        if not sent:
            self.metrics.gossip_dropped.inc()

    def subscribe(self, topic: str, maxsize: int = 1024) -> asyncio.Queue:
        if topic != FINALITY:
            raise wire.WireError(f"only the {FINALITY!r} topic is open to subscribers")
        queue: asyncio.Queue = asyncio.Queue(maxsize)
        self._subscribers.setdefault(topic, []).append(queue)
        return queue

    # --- what RPC and metrics see ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {"peers": len(self.book.ready_peers()), "isSyncing": self.sync.is_syncing,
                "shouldHavePeers": bool(self.config.bootnodes or self.book.reserved)}

    def peers_info(self) -> list[dict[str, Any]]:
        return [{"peerId": p.peer_id, "roles": "AUTHORITY" if p.status.roles & wire.ROLE_AUTHORITY else "FULL",
                 "bestHash": "0x" + p.status.best_hash.hex(), "bestNumber": p.status.best_number,
                 "reputation": round(p.reputation)} for p in self.book.ready_peers()]

    def sync_state(self) -> dict[str, int]:
        head = self.adapter.head()
        return {"startingBlock": self.sync.starting_block, "currentBlock": head.best.number,
                "highestBlock": max(head.best.number, self.sync.target)}

    async def _metrics_loop(self) -> None:
        while True:
            self.metrics.peers.set(len(self.book.ready_peers()))
            self.metrics.p2p_bytes_in.set(self.host.bytes_in)
            self.metrics.p2p_bytes_out.set(self.host.bytes_out)
            self.metrics.gossip_dropped_by_libp2p.set(dropped_gossip_messages() + self._events.dropped
                                                      + self._urgent_events.dropped
                                                      + self.dropped_events + self.transactions.dropped_batches)
            self.metrics.sync_target.set(self.sync.target)
            await asyncio.sleep(1)
