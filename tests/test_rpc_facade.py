"""The RPC server meets the node at one declared interface (rpc/facade.py), and the node implements all of it."""

from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path

import pytest


from rpc.client import RpcCallError
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances, system
from rpc.facade import BlobEndpoints, NodeFacade, protocol_members
from tests.helpers.chain import DEV_KEYS

ROOT = Path(__file__).resolve().parent.parent
HANDLER_FILES = sorted((ROOT / "rpc" / "methods").glob("*.py")) + [ROOT / "rpc" / "app.py"]


def names_used_on(path: Path, variable: str) -> set[str]:
    """Every attribute read on `variable` in a file (`node.x`), and calls that hand it to a helper that
    reads one (rpc.params.account reads node.parse_account)."""
    used = set()
    for item in ast.walk(ast.parse(path.read_text())):
        if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == variable:
            used.add(item.attr)
        if isinstance(item, ast.Call) and isinstance(item.func, ast.Name) and item.func.id == "getattr" and \
                item.args and isinstance(item.args[0], ast.Name) and item.args[0].id == variable:
            used.add("<getattr probe>")
    return used


def helper_reads() -> set[str]:
    """rpc/params.py helpers take the node as an argument named `node`."""
    return names_used_on(ROOT / "rpc" / "params.py", "node")


def test_every_name_a_handler_uses_on_the_node_is_declared_by_the_protocol():
    declared = set(protocol_members(NodeFacade))
    for path in HANDLER_FILES:
        undeclared = names_used_on(path, "node") - declared
        assert not undeclared, f"{path.name} uses {sorted(undeclared)} on the node, which NodeFacade does not declare"
    assert helper_reads() <= declared


def test_the_blob_routes_use_only_what_blob_endpoints_declare():
    used = {item.attr for item in ast.walk(ast.parse((ROOT / "rpc" / "server.py").read_text()))
            if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Attribute)
            and item.value.attr == "blobs"}
    assert used and used <= set(protocol_members(BlobEndpoints))


def test_the_check_catches_an_undeclared_name(tmp_path):
    handler = tmp_path / "handler.py"
    handler.write_text("async def h(ctx):\n    return await node.secret_internals()\n"
                       "def g():\n    return getattr(node, 'maybe', None)\n")
    assert names_used_on(handler, "node") - set(protocol_members(NodeFacade)) == {"secret_internals",
                                                                                "<getattr probe>"}


def conforms(instance, protocol) -> list[str]:
    """What `instance` lacks of `protocol`: missing names, and methods that are not coroutines where they must be."""
    problems = []
    for name, is_coroutine in protocol_members(protocol).items():
        if not hasattr(instance, name):
            problems.append(f"missing {name}")
        elif is_coroutine and not inspect.iscoroutinefunction(getattr(instance, name)):
            problems.append(f"{name} must be async")
    return problems


def test_the_nodes_facade_implements_the_whole_protocol(node):
    facade = node.rpc.facade
    assert conforms(facade, NodeFacade) == []
    assert conforms(facade.blobs, BlobEndpoints) == []
    # declared, not inherited: the facade is a plain class, so nothing silently falls back to a stub
    assert NodeFacade not in type(facade).__mro__


# --- the paged and indexed methods, over real RPC -------------------------------------------


def test_state_get_keys_paged_pages_in_key_order(node):
    prefix = "0x" + system.Account.prefix.hex()
    first = node.client.call("state_getKeysPaged", prefix, 2)
    assert len(first) == 2 and first == sorted(first)
    second = node.client.call("state_getKeysPaged", prefix, 2, first[-1])
    assert second and second[0] > first[-1]
    everything = node.client.call("state_getKeysPaged", prefix, 1000)
    assert everything[:4] == first + second[:2]
    with pytest.raises(RpcCallError) as error:
        node.client.call("state_getKeysPaged", prefix, 1001)
    assert error.value.rpc_code == -32602


def send_transfers(node, sender, dest: bytes, count: int) -> None:
    client = node.client
    address = crypto.encode_address(sender.public, 42)
    nonce, genesis = client.next_index(address), client.genesis_hash()
    for i in range(count):
        client.submit(sign_extrinsic(sender, balances.transfer(dest, 10**12), nonce=nonce + i, genesis_hash=genesis))
    deadline = time.monotonic() + 30
    while client.next_index(address) > client.account(address).nonce and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.account(address).nonce == nonce + count


def test_account_history_and_leaderboards_answer_from_the_indexes(node):
    ferdie = DEV_KEYS["Ferdie"].public
    send_transfers(node, DEV_KEYS["Dave"], ferdie, 1)
    send_transfers(node, DEV_KEYS["Dave"], ferdie, 1)
    history = node.client.call("explorer_accountHistory", "0x" + ferdie.hex(), None, 5)
    assert len(history) == 2
    numbers = [entry["number"] for entry in history]
    assert numbers == sorted(numbers, reverse=True) and numbers[0] > numbers[1]
    events = node.client.call("explorer_events", history[0]["hash"])
    assert history[0]["extrinsics"] == [] and history[0]["events"]  # Ferdie signed nothing, events name him
    assert all("0x" + ferdie.hex() in events[i].values() for i in history[0]["events"])
    older = node.client.call("explorer_accountHistory", "0x" + ferdie.hex(), numbers[0], 5)
    assert [entry["number"] for entry in older] == numbers[1:]
    assert node.client.call("training_leaderboard", 10) == []
    assert node.client.call("training_taskLeaderboard", 0) == []
    assert node.client.call("training_tasks", 5) == []
    too_many = ("explorer_accountHistory", "0x" + ferdie.hex(), None, 101)
    for bad in (("training_tasks", 0), ("training_tasks", 101), too_many):
        with pytest.raises(RpcCallError) as error:
            node.client.call(*bad)
        assert error.value.rpc_code == -32602
