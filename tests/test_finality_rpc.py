"""A real `gradchain --dev` node finalizes through the finality gadget, and serves what it proves over RPC:
justifications in chain_getBlock, grandpa_roundState, grandpa_proveFinality, and finalized-head
notifications for every block."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from consensus.finality.justification import FinalityProof, decode_justification, verify_justification
from consensus.finality.ports import VoterSet
from rpc.client import Client
from runtime import codec
from tests.helpers.chain import DEV_KEYS
from tests.helpers.processes import NodeProcess


def finalized_number(client: Client) -> int:
    return client.header(client.finalized_hash()).number


def test_a_dev_node_finalizes_through_the_gadget_and_serves_its_proofs(tmp_path):
    with NodeProcess(tmp_path, "--no-prometheus") as node:
        port = node.wait_for("rpc listening")["port"]
        client = Client(f"http://127.0.0.1:{port}", timeout=10)
        url = f"ws://127.0.0.1:{port}"

        async def finalized_heads(count: int) -> list[int]:
            async with aiohttp.ClientSession() as session:
                socket = await session.ws_connect(url)
                await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeFinalizedHeads",
                                        "params": []})
                assert "result" in await socket.receive_json(timeout=10)
                numbers = []
                while len(numbers) < count:
                    note = await socket.receive_json(timeout=15)
                    numbers.append(int(note["params"]["result"]["number"], 16))
                await socket.close()
                return numbers

        numbers = asyncio.run(finalized_heads(4))
        assert numbers == list(range(numbers[0], numbers[0] + 4)), numbers  # every block, in order
        deadline = time.monotonic() + 30
        while finalized_number(client) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        finalized = client.finalized_hash()
        assert finalized_number(client) >= 3
        block = client.call("chain_getBlock", "0x" + finalized.hex())
        [[engine, encoded]] = block["justifications"]
        justification = decode_justification(bytes.fromhex(encoded[2:]))
        assert engine == "FRNK" and justification.target_hash == finalized
        alice = DEV_KEYS["Alice"].public
        verify_justification(justification, client.genesis_hash(), VoterSet(0, ((alice, 10**17),)))
        state = client.call("grandpa_roundState")
        assert state["setId"] == 0 and state["best"]["round"] >= 1 and state["best"]["totalWeight"] == 10**17
        proof = codec.decode(FinalityProof, bytes.fromhex(client.call("grandpa_proveFinality", 1)[2:]))
        assert proof.block == client.block_hash(1)
        assert client.call("grandpa_proveFinality", 10**6) is None
        assert node.stop() == 0  # a clean stop: SIGTERM flushed and closed the database
