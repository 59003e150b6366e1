"""Server limits that need an event source we control: slow subscribers, connection and subscription caps."""

from __future__ import annotations

import asyncio

import aiohttp

from rpc.app import build_server
from rpc.server import RpcLimits
from runtime.types import Digest, Header


class BlockSource:
    """The one facade method the head subscriptions use; the test fires the blocks."""

    blobs = None  # serves no blobs

    def __init__(self) -> None:
        self.callbacks = []

    def on_blocks(self, callback):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def fire(self, count: int) -> None:
        header = Header(bytes(32), 1, bytes(32), bytes(32), Digest(1, bytes(32), b""))
        for _ in range(count):
            for callback in list(self.callbacks):
                callback("new", header)


async def serve(limits: RpcLimits):
    source = BlockSource()
    server = build_server(source, port=0, limits=limits)
    await server.start()
    return source, server


def test_a_subscriber_that_does_not_keep_up_is_disconnected_with_a_reason():
    async def scenario():
        source, server = await serve(RpcLimits(max_buffered_notifications=50))
        try:
            async with aiohttp.ClientSession() as session:
                socket = await session.ws_connect(f"ws://127.0.0.1:{server.port}/")
                await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads"})
                assert "result" in await socket.receive_json(timeout=5)
                source.fire(10_000)  # faster than any socket drains
                while True:
                    message = await socket.receive(timeout=10)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        return socket.close_code, message.extra
        finally:
            await server.stop()

    code, reason = asyncio.run(scenario())
    assert code == 1008 and "too slow" in reason


def test_subscriptions_per_connection_are_capped():
    async def scenario():
        source, server = await serve(RpcLimits(max_subscriptions=3))
        try:
            async with aiohttp.ClientSession() as session:
                socket = await session.ws_connect(f"ws://127.0.0.1:{server.port}/")
                answers = []
                for i in range(4):
                    await socket.send_json({"jsonrpc": "2.0", "id": i, "method": "chain_subscribeNewHeads"})
                    answers.append(await socket.receive_json(timeout=5))
                await socket.close()
                return answers, len(source.callbacks)
        finally:
            await server.stop()

    answers, remaining = asyncio.run(scenario())
    assert ["result" in a for a in answers] == [True, True, True, False]
    assert answers[3]["error"]["code"] == -32001
    assert remaining == 0  # closing the socket dropped its subscriptions


def test_subscriptions_over_http_are_refused():
    async def scenario():
        _, server = await serve(RpcLimits())
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{server.port}/",
                                        json={"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads"}) as r:
                    return r.status, await r.json()
        finally:
            await server.stop()

    status, answer = asyncio.run(scenario())
    assert status == 200 and answer["error"]["code"] == -32601


def test_unsafe_methods_refuse_remote_callers_unless_enabled():
    from rpc.server import CallContext, Method, RpcServer

    async def rotate(ctx):
        return "0xkey"

    body = b'{"jsonrpc":"2.0","id":1,"method":"author_rotateKeys","params":[]}'

    async def answer(unsafe_methods: bool, remote: str) -> dict:
        server = RpcServer(unsafe_methods=unsafe_methods)
        server.register(Method("author_rotateKeys", rotate, unsafe=True))
        import json

        return json.loads(await server.handle_body(body, CallContext(remote, None)))

    assert asyncio.run(answer(False, "192.0.2.7"))["error"]["code"] == -32000
    assert asyncio.run(answer(False, "127.0.0.1"))["result"] == "0xkey"
    assert asyncio.run(answer(False, "::1"))["result"] == "0xkey"
    assert asyncio.run(answer(True, "192.0.2.7"))["result"] == "0xkey"
