"""JSON-RPC against a real dev node on a free loopback port: methods, errors, limits, subscriptions."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rpc.client import Client, RpcCallError
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances, system
from storage.trie import verify_proof
from tests.helpers.chain import DEV_KEYS
from tests.helpers.dev_node import RunningNode
from tests.helpers.ports import non_loopback_address

ALICE, BOB, CHARLIE, EVE = DEV_KEYS["Alice"], DEV_KEYS["Bob"], DEV_KEYS["Charlie"], DEV_KEYS["Eve"]


def post(node: RunningNode, body: bytes | str) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(node.url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def error_code(answer) -> int:
    return answer["error"]["code"]


# --- happy paths ---------------------------------------------------------------------


def test_system_methods(node):
    c = node.client
    assert c.call("system_name") == "test-node"
    assert c.call("system_chain") == "Development"
    assert c.call("system_properties")["tokenSymbol"] == "GRAD"
    assert c.call("system_health") == {"peers": 0, "isSyncing": False, "shouldHavePeers": False}
    assert c.call("system_peers") == []
    assert c.call("system_version") == importlib.metadata.version("gradchain")
    assert "chain_getHeader" in c.call("rpc_methods")["methods"]


def test_chain_methods(node):
    c = node.client
    header = c.header()
    assert c.block_hash(header.number) == header.hash
    block = c.block(header.hash)
    assert block.header == header and block.extrinsics[0].call.name == "timestamp.set"
    assert c.call("chain_getBlockHash", [0, 1]) == ["0x" + c.genesis_hash().hex(), "0x" + c.block_hash(1).hex()]
    assert c.call("chain_getBlockHash", 10**9) is None
    finalized = c.finalized_hash()  # read once: the head moves on between two calls
    assert finalized == c.block_hash(c.header(finalized).number)
    decoded = c.call("explorer_block", "0x" + header.hash.hex())
    assert decoded["extrinsics"][0]["call"] == "timestamp.set"
    assert decoded["extrinsics"][0]["events"][0]["event"] == "system.ExtrinsicSuccess"


def test_state_methods_and_a_read_proof_verified_by_the_client(node):
    c = node.client
    key = system.Account.key_of(ALICE.public)
    header = c.header()
    value = c.call("state_getStorage", "0x" + key.hex(), "0x" + header.hash.hex())
    assert value is not None
    proof = c.call("state_getReadProof", ["0x" + key.hex()], "0x" + header.hash.hex())
    as_bytes = _unhex_tree(proof["proof"][0])
    assert verify_proof(header.state_root, key, as_bytes) == bytes.fromhex(value[2:])
    keys = c.call("state_getKeysPaged", "0x" + system.Account.prefix.hex(), 3)
    assert 1 <= len(keys) <= 3 and keys == sorted(keys)
    assert c.call("state_getRuntimeVersion")["specName"] == "gradchain"
    pallets = [p["name"] for p in c.call("state_getMetadata")["pallets"]]
    assert "balances" in pallets


def _unhex_tree(value):
    if isinstance(value, str) and value.startswith("0x"):
        return bytes.fromhex(value[2:])
    if isinstance(value, list):
        return [_unhex_tree(v) for v in value]
    return value


def test_a_transfer_reaches_a_finalized_block_and_both_balances_move(node):
    c = node.client
    charlie, eve = (crypto.encode_address(k.public, 42) for k in (CHARLIE, EVE))
    before_c, before_e = c.account(charlie), c.account(eve)
    nonce = c.next_index(charlie)
    transfer = sign_extrinsic(CHARLIE, balances.transfer_keep_alive(EVE.public, 12345 * 10**9), nonce=nonce,
                              genesis_hash=c.genesis_hash())
    fee = c.query_fee(transfer)
    assert c.submit(transfer) == transfer.hash
    assert c.next_index(charlie) == nonce + 1
    deadline = time.monotonic() + 30
    while c.account(eve).free == before_e.free and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.account(eve).free == before_e.free + 12345 * 10**9
    assert c.account(charlie).free == before_c.free - 12345 * 10**9 - fee
    finalized = c.header(c.finalized_hash()).number  # the dev node finalizes each block it authors
    including = [n for n in range(1, finalized + 1) if transfer in c.block(c.block_hash(n)).extrinsics]
    assert len(including) == 1, "the transfer is not in exactly one finalized block"


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("body,code", [
    ("{not json", -32700),
    ('{"jsonrpc":"2.0","method":"system_name","id":1,"x":NaN}', -32700),
    ('{"jsonrpc":"2.0","method":"system_name","id":1,"id":2}', -32700),
    ("[" * 1000 + "]" * 1000, -32700),
    ('{"jsonrpc":"2.0","method":"system_name","id":1' + ',"n":' + "9" * 5000 + "}", -32700),
    ('{"jsonrpc":"2.0","id":1}', -32600),
    ('{"jsonrpc":"1.0","method":"system_name","id":1}', -32600),
    ("[]", -32600),
    ('"just a string"', -32600),
    ('{"jsonrpc":"2.0","method":"no_such_method","id":1}', -32601),
    ('{"jsonrpc":"2.0","method":"chain_getHeader","params":["0x12"],"id":1}', -32602),
    ('{"jsonrpc":"2.0","method":"chain_getBlockHash","params":[-1],"id":1}', -32602),
    ('{"jsonrpc":"2.0","method":"author_submitExtrinsic","params":["0xdeadbeef"],"id":1}', -32602),
    ('{"jsonrpc":"2.0","method":"state_getKeysPaged","params":["0x", 100000],"id":1}', -32602),
])
def test_each_error_case_gets_its_code(node, body, code):
    status, answer = post(node, body)
    assert status < 500
    answer = answer[0] if isinstance(answer, list) else answer
    assert error_code(answer) == code, answer


def test_invalid_params_names_the_parameter(node):
    _, answer = post(node, '{"jsonrpc":"2.0","method":"chain_getHeader","params":["0x12"],"id":1}')
    assert "hash" in answer["error"]["message"]


def test_invalid_utf8_is_a_parse_error(node):
    status, answer = post(node, b'{"jsonrpc":"2.0","method":"\xff\xfe","id":1}')
    assert status == 200 and error_code(answer) == -32700


def test_batches_answer_in_order_and_skip_notifications(node):
    body = json.dumps([{"jsonrpc": "2.0", "method": "system_name", "id": 1},
                       {"jsonrpc": "2.0", "method": "system_chain"},
                       {"jsonrpc": "2.0", "method": "nope", "id": 3}])
    _, answer = post(node, body)
    assert [a["id"] for a in answer] == [1, 3] and answer[0]["result"] == "test-node"
    _, too_big = post(node, json.dumps([{"jsonrpc": "2.0", "method": "system_name", "id": i} for i in range(300)]))
    assert error_code(too_big) == -32600


def test_transaction_errors_carry_substrates_codes(node):
    c = node.client
    genesis = c.genesis_hash()
    bob = crypto.encode_address(BOB.public, 42)
    waiting = sign_extrinsic(BOB, balances.transfer(EVE.public, 10**11), nonce=c.next_index(bob) + 5,
                             genesis_hash=genesis)  # a nonce gap: it waits in the pool, never in a block
    c.submit(waiting)
    with pytest.raises(RpcCallError) as already:
        c.submit(waiting)
    assert already.value.rpc_code == 1013
    used = sign_extrinsic(BOB, balances.transfer(EVE.public, 10**11), nonce=c.next_index(bob), genesis_hash=genesis)
    c.submit(used)
    deadline = time.monotonic() + 30
    while c.account(bob).nonce <= used.signed.nonce and time.monotonic() < deadline:
        time.sleep(0.2)
    with pytest.raises(RpcCallError) as stale:
        c.submit(used)  # in a block now: its nonce is used
    assert stale.value.rpc_code == 1010 and stale.value.data == "stale"
    bad_signature = sign_extrinsic(BOB, balances.transfer(EVE.public, 10**11), nonce=5, genesis_hash=b"\x01" * 32)
    with pytest.raises(RpcCallError) as invalid:
        c.submit(bad_signature)
    assert invalid.value.rpc_code == 1010 and invalid.value.data == "bad_proof"
    broke = sign_extrinsic(DEV_KEYS["Ferdie"], balances.transfer(EVE.public, 1), nonce=0, genesis_hash=genesis)
    with pytest.raises(RpcCallError) as payment:
        c.submit(broke)
    assert payment.value.rpc_code == 1010 and payment.value.data == "payment"


def key_files(node: RunningNode) -> set:
    keystore = node.chain.paths.keystore
    return set(keystore.iterdir()) if keystore.exists() else set()


def test_unsafe_methods_answer_on_loopback(node):
    keys_before = key_files(node)
    result = node.client.call("author_rotateKeys")
    assert result.startswith("0x") and len(result) == 66
    assert len(key_files(node) - keys_before) == 1


def test_unsafe_methods_refuse_a_caller_from_another_address_unless_enabled(node):
    """Through the real server: a server bound to this machine's own non-loopback address (as with
    --rpc-external) sees a caller from that address, which is not loopback."""
    host = non_loopback_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    keys_before = key_files(node)
    with node.extra_rpc_server(host) as (_, url):
        remote = Client(url, timeout=20)
        with pytest.raises(RpcCallError) as refused:
            remote.call("author_rotateKeys")
        assert refused.value.rpc_code == -32000 and "unsafe method" in str(refused.value)
        assert key_files(node) == keys_before  # refused before it made a key
        assert remote.call("system_name") == "test-node"  # safe methods answer the same caller
    with node.extra_rpc_server(host, unsafe_methods=True) as (_, url):  # --rpc-methods unsafe
        result = Client(url, timeout=20).call("author_rotateKeys")
    assert result.startswith("0x") and len(key_files(node) - keys_before) == 1


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                              lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                              max_leaves=20).map(lambda v: json.dumps(v).encode())))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_junk_bodies_never_get_a_5xx_or_kill_the_server(node, body):
    status, _ = post(node, body)
    assert status < 500
    assert node.client.call("system_name") == "test-node"


# --- subscriptions ---------------------------------------------------------------------


def test_new_heads_subscription_and_watching_a_transfer_to_finalized(node):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            socket = await session.ws_connect(node.url.replace("http", "ws"))
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads", "params": []})
            subscription = (await socket.receive_json(timeout=10))["result"]
            note = await socket.receive_json(timeout=10)
            assert note["method"] == "chain_newHead" and note["params"]["subscription"] == subscription
            await socket.send_json({"jsonrpc": "2.0", "id": 2, "method": "chain_unsubscribeNewHeads",
                                    "params": [subscription]})
            genesis = node.client.genesis_hash()
            nonce = node.client.next_index(crypto.encode_address(EVE.public, 42))
            transfer = sign_extrinsic(EVE, balances.transfer(BOB.public, 10**11), nonce=nonce, genesis_hash=genesis)
            await socket.send_json({"jsonrpc": "2.0", "id": 3, "method": "author_submitAndWatchExtrinsic",
                                    "params": ["0x" + transfer.encoded.hex()]})
            reply = await socket.receive_json(timeout=10)
            while reply.get("id") != 3:  # the unsubscribe's answer, or a head sent before it
                assert reply.get("method") != "author_extrinsicUpdate", "a status arrived before the subscription id"
                reply = await socket.receive_json(timeout=10)
            assert reply["result"].startswith("0x")
            statuses = []
            while not statuses or statuses[-1] != "finalized":
                message = await socket.receive_json(timeout=15)
                if message.get("method") == "author_extrinsicUpdate":
                    result = message["params"]["result"]
                    statuses.append(result if isinstance(result, str) else next(iter(result)))
            await socket.close()
            return statuses

    statuses = asyncio.run(scenario())
    assert statuses[0] == "ready" and "inBlock" in statuses and statuses[-1] == "finalized"


def test_blobs_upload_download_and_refusals(node):
    import urllib.request

    from runtime.hashing import blake2b_256

    data = b"model weights " * 1000
    blob_hash = "0x" + blake2b_256(data).hex()

    from scripts._tasks import upload_headers
    from tests.helpers.chain import DEV_KEYS

    genesis = node.client.genesis_hash()

    def request(method: str, path: str, body: bytes | None = None):
        # uploads the chain does not refer to are signed by a funded account (node/blob_admission.py)
        headers = upload_headers(DEV_KEYS["Charlie"], genesis, body) if method == "PUT" else {}
        req = urllib.request.Request(node.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=20) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    import urllib.error

    assert request("PUT", f"/blobs/{blob_hash}", b"tampered" + data)[0] == 400
    assert request("GET", f"/blobs/{blob_hash}")[0] == 404
    status, _ = request("PUT", f"/blobs/{blob_hash}", data)
    assert status == 201
    assert request("GET", f"/blobs/{blob_hash}") == (200, data)
    assert node.client.call("training_blobInfo", blob_hash)["size"] == len(data)
    assert request("PUT", "/blobs/0x1234", data)[0] == 400
    huge = b"x" * (16 * 1024 * 1024 + 1)
    assert request("PUT", "/blobs/0x" + blake2b_256(huge).hex(), huge)[0] == 413
    assert node.client.call("training_blobInfo", "0x" + blake2b_256(huge).hex()) is None
    assert node.client.call("training_tasks") == [] and node.client.call("training_leaderboard") == []
