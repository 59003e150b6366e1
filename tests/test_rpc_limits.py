"""Server limits on the shared dev node: a WebSocket whose notifications pile up is disconnected, the
subscriptions of one connection are capped, and subscriptions need a WebSocket. The limits are set on a
second server over the same node (`RunningNode.extra_rpc_server`); the blocks are the node's own."""

from __future__ import annotations

import asyncio

import aiohttp

from rpc.server import RpcLimits


def subscribe(request_id: int) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "chain_subscribeNewHeads", "params": []}


def test_a_connection_whose_notifications_pile_up_is_disconnected_with_a_reason(node):
    """60 head subscriptions on one socket: every block queues 60 notifications at once, past the 50 a
    connection may have waiting, as a client that stopped reading would."""
    async def scenario(url: str):
        async with aiohttp.ClientSession() as session:
            socket = await session.ws_connect(url.replace("http", "ws"))
            for i in range(60):
                await socket.send_json(subscribe(i))
            while True:
                message = await socket.receive(timeout=15)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return socket.close_code, message.extra

    with node.extra_rpc_server(limits=RpcLimits(max_buffered_notifications=50)) as (_, url):
        code, reason = asyncio.run(scenario(url))
    assert code == 1008 and "too slow" in reason


def test_subscriptions_per_connection_are_capped_and_closing_drops_them(node):
    async def scenario(url: str):
        async with aiohttp.ClientSession() as session:
            socket = await session.ws_connect(url.replace("http", "ws"))
            answers = {}
            for i in range(4):
                await socket.send_json(subscribe(i))
            while len(answers) < 4:  # skip the notifications of the first three
                message = await socket.receive_json(timeout=10)
                if "id" in message:
                    answers[message["id"]] = message
            during = len(node.rpc.facade._block_callbacks)
            await socket.close()
            return [answers[i] for i in range(4)], during

    before = len(node.rpc.facade._block_callbacks)
    with node.extra_rpc_server(limits=RpcLimits(max_subscriptions=3)) as (_, url):
        answers, during = asyncio.run(scenario(url))
    assert ["result" in a for a in answers] == [True, True, True, False]
    assert answers[3]["error"]["code"] == -32001
    assert during == before + 3
    assert len(node.rpc.facade._block_callbacks) == before  # closing the socket dropped its subscriptions


def test_subscriptions_over_http_are_refused(node):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.post(node.url, json=subscribe(1)) as response:
                return response.status, await response.json()

    status, answer = asyncio.run(scenario())
    assert status == 200 and answer["error"]["code"] == -32601 and "WebSocket" in answer["error"]["message"]
