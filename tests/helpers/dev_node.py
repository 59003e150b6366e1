"""A real --dev node for tests: chain, authorship every 1 s slot, JSON-RPC on a free loopback port,
all on its own thread so a test can talk to it with the blocking client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Iterator

from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import SystemClock
from node.rpc_facade import ChainFacade, RpcService
from node.service import LoopThread, ServiceTree
from rpc.app import build_server
from rpc.client import Client
from rpc.server import RpcLimits, RpcServer
from tests.helpers.chain import DEV_KEYS

ALICE = DEV_KEYS["Alice"]


async def serve_until_stopped(owner, services) -> None:
    """Run `services` as one tree on the owner's loop thread until `owner.stop_event` is set; sets
    `owner.ready` once every service started (or the tree ended early: the caller sees its error)."""
    owner.stop_event = asyncio.Event()
    tree = ServiceTree(services)
    task = asyncio.create_task(tree.run(owner.stop_event))
    await asyncio.wait([asyncio.create_task(tree.started.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    owner.ready.set()
    await task


class RunningNode:
    """A --dev node (authoring every 1 s slot) with RPC on a free port, on its own thread."""

    def __init__(self, base) -> None:
        self.config = load_chain_spec(None, dev=True)
        clock = SystemClock()
        self.chain = ChainService(self.config, ChainPaths(base, self.config.chain_id), clock=clock,
                                  finalize_own_blocks=True)
        self.rpc = RpcService(ChainFacade(self.chain, node_name="test-node", chain_type="Development"),
                              host="127.0.0.1", port=0, unsafe_methods=False, cors=[])
        services = [self.chain, self.rpc, AuthorshipService(self.chain, ALICE, clock)]
        self.thread = LoopThread("node")
        self.thread.start()
        self.ready = threading.Event()
        self.loop_future = self.thread.submit(serve_until_stopped(self, services))
        if not self.ready.wait(30) or self.loop_future.done():
            failure = self.loop_future.exception(timeout=0) if self.loop_future.done() else None
            self.thread.stop()
            raise RuntimeError("the test node did not start") from failure
        self.url = f"http://127.0.0.1:{self.rpc.server.port}"
        self.client = Client(self.url, timeout=20)

    def __enter__(self) -> "RunningNode":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Closes the node; an error of the closing never replaces the test's own."""
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as cleanup_error:
            exc.add_note(f"(closing the test node also failed: {cleanup_error!r})")

    def close(self) -> None:
        self.thread.loop.call_soon_threadsafe(self.stop_event.set)
        self.loop_future.result(timeout=60)
        self.thread.stop()

    @contextlib.contextmanager
    def extra_rpc_server(self, host: str = "127.0.0.1", *, unsafe_methods: bool = False,
                         limits: RpcLimits | None = None) -> Iterator[tuple[RpcServer, str]]:
        """A second JSON-RPC server over this node's own facade and loop, on a free port of `host`, with its
        own limits and unsafe-method setting; yields it and its URL, and stops it after."""
        server = build_server(self.rpc.facade, host=host, port=0, unsafe_methods=unsafe_methods, limits=limits)
        self.thread.submit(server.start()).result(timeout=30)
        try:
            yield server, f"http://{host}:{server.port}"
        finally:
            self.thread.submit(server.stop()).result(timeout=30)

    def wait_for_block(self, number: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int(self.client.call("chain_getHeader")["number"], 16) >= number:
                return
            time.sleep(0.1)
        raise AssertionError(f"no block {number} within {timeout} s")
