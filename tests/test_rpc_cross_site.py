"""A web page must not reach a local node's unsafe methods: through the real aiohttp server, a
cross-site text/plain POST (no CORS preflight) is refused with 415, a DNS-rebound Host and a
disallowed Origin are refused for unsafe methods, and no key file is written; ordinary JSON
clients (rpc.client over HTTP, WebSocket) keep working."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import aiohttp
import pytest

from rpc.client import AsyncClient
from rpc.server import CallContext, Method, RpcServer

ROTATE = b'{"jsonrpc":"2.0","id":1,"method":"author_rotateKeys","params":[]}'


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def key_files(node) -> set[str]:
    keystore = node.chain.paths.keystore
    return {p.name for p in keystore.iterdir()} if keystore.exists() else set()


def test_a_cross_site_text_plain_post_to_rotate_keys_is_refused_and_writes_no_key(node):
    before = key_files(node)
    status, answer = post(node.url, ROTATE, {"Content-Type": "text/plain;charset=UTF-8",
                                              "Origin": "http://evil.example"})
    assert status == 415
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None and answer["error"]["code"] == -32600
    assert "application/json" in answer["error"]["message"]
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        assert post(node.url, ROTATE, headers)[0] == 415
    assert key_files(node) == before


def test_a_rebound_host_cannot_call_an_unsafe_method(node):
    before = key_files(node)
    port = node.url.rsplit(":", 1)[1]
    status, answer = post(node.url, ROTATE, {"Content-Type": "application/json", "Host": f"evil.example:{port}"})
    assert status == 200 and answer["error"]["code"] == -32000 and "loopback name" in answer["error"]["message"]
    assert key_files(node) == before
    # safe methods still answer whatever the Host (a reverse proxy may name the node differently)
    status, answer = post(node.url, b'{"jsonrpc":"2.0","id":2,"method":"system_name","params":[]}',
                          {"Content-Type": "application/json", "Host": f"evil.example:{port}"})
    assert answer["result"] == "test-node"


def test_a_disallowed_origin_cannot_call_an_unsafe_method(node):
    before = key_files(node)
    status, answer = post(node.url, ROTATE, {"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert answer["error"]["code"] == -32000 and "--rpc-cors" in answer["error"]["message"]
    assert key_files(node) == before


def test_a_local_json_client_still_rotates_keys_and_ordinary_clients_work(node):
    before = key_files(node)
    for host in ("127.0.0.1", "localhost", "[::1]"):
        status, answer = post(node.url, ROTATE, {"Content-Type": "application/json; charset=utf-8",
                                                  "Host": host})
        assert status == 200 and answer["result"].startswith("0x"), answer
    assert len(key_files(node) - before) == 3
    assert node.client.call("system_name") == "test-node"  # rpc.client's blocking client

    async def over_async_clients():
        async with AsyncClient(node.url) as client:
            name = await client.call("system_name")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(node.url) as socket:
                await socket.send_str('{"jsonrpc":"2.0","id":1,"method":"system_name","params":[]}')
                over_socket = json.loads((await socket.receive()).data)
            async with session.ws_connect(node.url, headers={"Origin": "http://evil.example"}) as socket:
                await socket.send_str(ROTATE.decode())
                refused = json.loads((await socket.receive()).data)
        return name, over_socket, refused

    name, over_socket, refused = asyncio.run(over_async_clients())
    assert name == "test-node" and over_socket["result"] == "test-node"
    assert refused["error"]["code"] == -32000  # a page's WebSocket carries its Origin too
    assert len(key_files(node) - before) == 3


@pytest.mark.parametrize("host,cors,headers,allowed", [
    ("127.0.0.1", ["http://wallet.example"], {"Origin": "http://wallet.example"}, True),
    ("127.0.0.1", ["http://wallet.example"], {"Origin": "http://evil.example"}, False),
    ("127.0.0.1", ["all"], {"Origin": "http://anything.example"}, True),
    ("127.0.0.1", [], {"Host": "node.internal:9944"}, False),
    ("0.0.0.0", [], {"Host": "node.internal:9944"}, True),       # --rpc-external: other names are expected
    ("0.0.0.0", [], {"Host": "node.internal", "Origin": "http://evil.example"}, False),
])
def test_origin_and_host_rules_on_a_real_server(host, cors, headers, allowed):
    async def rotate(ctx):
        return "0xkey"

    async def scenario():
        server = RpcServer(host=host, port=0, cors=cors)
        server.register(Method("author_rotateKeys", rotate, unsafe=True))
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{server.port}/", data=ROTATE,
                                        headers={"Content-Type": "application/json", **headers}) as response:
                    return await response.json()
        finally:
            await server.stop()

    answer = asyncio.run(scenario())
    assert ("result" in answer) == allowed, answer


def test_host_names_are_read_without_port_or_brackets():
    assert CallContext(None, None, host="LocalHost:9944").host_name == "localhost"
    assert CallContext(None, None, host="[::1]:9944").host_name == "::1"
    assert CallContext(None, None, host="127.0.0.1").host_name == "127.0.0.1"
    assert CallContext(None, None).host_name is None
