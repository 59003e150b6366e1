"""grandpa_justifiedBy: who finalized a block, as plain figures, from a real `gradchain --dev` node."""

from __future__ import annotations

import time

import pytest

from rpc.client import Client, RpcCallError
from runtime import crypto
from tests.helpers.chain import DEV_KEYS
from tests.helpers.processes import NodeProcess


def test_a_final_block_names_its_signers_and_their_stake(tmp_path):
    with NodeProcess(tmp_path, "--no-prometheus") as node:
        port = node.wait_for("rpc listening")["port"]
        client = Client(f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 30
        while client.header(client.finalized_hash()).number < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        found = client.call("grandpa_justifiedBy", 1)
        assert found is not None, "block 1 is final: its justification (or a later one) names its signers"
        alice = crypto.encode_address(DEV_KEYS["Alice"].public, 42)
        assert found["block"] == 1 and found["justified"]["number"] >= 1
        assert client.block_hash(found["justified"]["number"]).hex() == found["justified"]["hash"][2:]
        assert found["signers"] == [alice] and found["voters"] == 1
        assert found["signedWeight"] == found["totalWeight"] == str(10**17)
        assert client.call("grandpa_justifiedBy", 10**6) is None  # not final (not even there)
        with pytest.raises(RpcCallError) as missing:
            client.call("grandpa_justifiedBy")
        assert missing.value.rpc_code == -32602
