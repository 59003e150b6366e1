"""An in-process networked node (chain + network, optionally authoring) on its own thread, and a raw
py-libp2p peer on a TrioThread that a test scripts byte by byte (to play a hostile or foreign peer)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths
from node.clock import SystemClock
from node.network import wire
from node.network.chain_adapter import ChainAdapter
from node.network.config import NetworkConfig
from node.network.host import secure_host
from node.network.service import NetworkService
from node.service import LoopThread, TrioThread
from tests.helpers.dev_node import serve_until_stopped


class InProcessNode:
    def __init__(self, base: Path, config, *, seed: bytes, author=None, bootnodes=(), **network_options) -> None:
        clock = SystemClock()
        self.chain = ChainService(config, ChainPaths(base, config.chain_id), clock=clock)
        options = dict(ping_interval_s=1.0, ping_timeout_s=1.0, dial_interval_s=0.5)
        options.update(network_options)
        self.network = NetworkService(ChainAdapter(self.chain), NetworkConfig(
            node_key_seed=seed, listen_host="127.0.0.1", port=0, bootnodes=tuple(bootnodes), **options))
        services = [self.chain, self.network]
        if author is not None:
            services.append(AuthorshipService(self.chain, author, clock))
        self.thread = LoopThread("node-" + seed[:4].hex())
        self.thread.start()
        self.ready = threading.Event()
        self.future = self.thread.submit(serve_until_stopped(self, services))
        if not self.ready.wait(30) or self.future.done():
            self.future.result(timeout=1)
            raise RuntimeError("node did not start")

    @property
    def address(self) -> str:
        return self.network.listen_addresses[0]

    def on_loop(self, coroutine, timeout: float = 30):
        return self.thread.submit(coroutine).result(timeout)

    def ready_peers(self) -> list[str]:
        return [p.peer_id for p in self.network.book.ready_peers()]

    def best(self) -> int:
        return self.chain.store.best_header().number

    def close(self) -> None:
        self.thread.loop.call_soon_threadsafe(self.stop_event.set)
        self.future.result(timeout=60)
        self.thread.stop()


class RawPeer:
    """A bare py-libp2p host (Noise + yamux, or plaintext only) driven from the test's thread."""

    def __init__(self, seed: bytes, *, plaintext: bool = False) -> None:
        if plaintext:
            key_pair = create_new_key_pair(seed)
            self.host = new_host(key_pair=key_pair, sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
                                 muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux})
        else:
            self.host = secure_host(seed)
        self.peer_id = str(self.host.get_id())
        self.thread = TrioThread("raw-peer")
        self.thread.start_thread()
        self.run(self._start)

    async def _start(self) -> None:
        async def serve(*, task_status) -> None:
            async with self.host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                task_status.started()
                await trio.sleep_forever()
        await self.thread._nursery.start(serve)

    def run(self, function, *args, timeout: float = 30):
        async def main():
            return await self.thread.call(function, *args, timeout=timeout)
        return asyncio.run(main())

    def connect(self, address: str) -> None:
        async def connect() -> None:
            await self.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(address)))
        self.run(connect)

    def exchange(self, peer: str, protocol: str, raw: bytes, *, read: bool = True) -> bytes:
        """Open a stream, write raw bytes, read the whole reply (b"" if the stream was reset)."""
        async def go() -> bytes:
            stream = await self.host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
            await stream.write(raw)
            if not read:
                return b""
            data = b""
            try:
                while True:
                    with trio.fail_after(10):
                        piece = await stream.read(65536)
                    if not piece:
                        break
                    data += piece
            except trio.TooSlowError:
                raise
            except Exception:
                pass
            return data
        return self.run(go)

    def status_frame(self, status: wire.Status) -> bytes:
        payload = wire.encode(status)
        return len(payload).to_bytes(4, "big") + payload

    def connected_to(self, peer: str) -> bool:
        return bool(self.host.get_network().connections.get(ID.from_base58(peer)))

    def close(self) -> None:
        self.thread.stop()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def serve_on(peer: RawPeer, protocol: str, reply: bytes) -> None:
    """Make the raw peer answer every request on `protocol` with the given raw bytes."""
    async def handler(stream) -> None:
        try:
            await stream.read(65536)
            await stream.write(reply)
            await stream.close()
        except Exception:
            pass
    peer.host.set_stream_handler(TProtocol(protocol), handler)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def mute_peer(node: InProcessNode) -> RawPeer:
    """A raw peer that answers the status handshake (with the node's own status) but never a ping in time."""
    raw = RawPeer(b"M" * 32)
    reply = wire.encode(node.network.local_status())

    async def status(stream) -> None:
        await wire.read_frame(stream, 512)
        await wire.write_frame(stream, reply)
        await stream.close()
    async def late_pong(stream) -> None:  # as from a starved machine: the pong never comes in time
        await wire.read_frame(stream, 8)
        await trio.sleep(30)
    raw.host.set_stream_handler(TProtocol(wire.STATUS), status)
    raw.host.set_stream_handler(TProtocol(wire.PING), late_pong)
    raw.connect(node.address)
    raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(node.network.local_status()))
    wait_for(lambda: raw.peer_id in node.ready_peers(), 15, "the handshake")
    return raw
