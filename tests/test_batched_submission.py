"""Transactions submitted together reach the pool together: an RPC batch is taken concurrently (answers in
the requests' order), and the chain service validates what arrives at once in one chain-thread job."""

from __future__ import annotations

import asyncio
import json
import threading

from rpc.server import CallContext, Method, RpcServer
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from node.txpool import AlreadyImported

BOB = crypto.dev_keypair("Bob")
CHARLIE = crypto.dev_keypair("Charlie")


def test_an_rpc_batch_is_taken_concurrently_and_answered_in_order():
    server = RpcServer(port=0)
    everyone_arrived = asyncio.Event()
    arrived = []

    async def gather_up(ctx, number):
        arrived.append(number)
        if len(arrived) == 3:
            everyone_arrived.set()
        await asyncio.wait_for(everyone_arrived.wait(), 5)  # taken one at a time, the first would wait forever
        return number * 10

    server.register(Method("test_gatherUp", gather_up))
    batch = [{"jsonrpc": "2.0", "id": 3, "method": "test_gatherUp", "params": [3]},
             {"jsonrpc": "2.0", "method": "test_gatherUp", "params": [0]},  # a notification: no answer
             {"jsonrpc": "2.0", "id": 1, "method": "test_gatherUp", "params": [1]}]
    answer = asyncio.run(server.handle_body(json.dumps(batch).encode(), CallContext("127.0.0.1", None)))
    assert json.loads(answer) == [{"jsonrpc": "2.0", "result": 30, "id": 3}, {"jsonrpc": "2.0", "result": 10, "id": 1}]


def test_submissions_arriving_together_are_validated_in_one_chain_thread_job(nodes):
    node, _ = nodes
    service = node.service
    jobs = []
    submit_many = service._submit_many
    service._submit_many = lambda extrinsics: (jobs.append(len(extrinsics)), submit_many(extrinsics))[1]
    genesis = node.store.genesis_hash
    transfers = [sign_extrinsic(BOB, balances.transfer(CHARLIE.public, 10**12 + i), nonce=i, genesis_hash=genesis)
                 for i in range(40)]

    async def submit_all():
        return await asyncio.gather(*(service.submit(x) for x in transfers + transfers[:1]),
                                    return_exceptions=True)
    answers = asyncio.run(submit_all())
    assert jobs == [41]  # one trip for the lot (one each before)
    assert [a for a in answers[:40]] == [(x.hash, "ready") for x in transfers]
    assert isinstance(answers[40], AlreadyImported)  # each caller gets its own answer or error
    assert service.pool.ready_count == 40


def test_transactions_a_pool_operation_admits_wake_the_network_loop_once():
    from node.network.transactions import TransactionGossip
    genesis = b"\x01" * 32
    transfers = [sign_extrinsic(BOB, balances.transfer(CHARLIE.public, 10**12), nonce=i, genesis_hash=genesis)
                 for i in range(50)]
    gossip = TransactionGossip(network=None)

    async def admit_from_the_chain_thread():
        loop = asyncio.get_running_loop()
        wakes = []

        class CountingLoop:
            def call_soon_threadsafe(self, callback, *args):
                wakes.append(callback)
                return loop.call_soon_threadsafe(callback, *args)
        thread = threading.Thread(target=lambda: [gossip.on_admitted_threadsafe(CountingLoop(), x) for x in transfers])
        thread.start()
        thread.join()  # the loop is busy meanwhile, as it often is
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return wakes
    wakes = asyncio.run(admit_from_the_chain_thread())
    assert len(wakes) == 1  # one each before
    assert list(gossip._outgoing_transactions) == transfers  # all of them, in order
    gossip.on_admitted_threadsafe(type("Loop", (), {"call_soon_threadsafe": lambda self, f: f()})(), transfers[0])
    assert list(gossip._outgoing_transactions) == transfers  # published once


def test_only_watched_transactions_wake_the_rpc_loop(nodes):
    from node.rpc_facade import ChainFacade
    node, _ = nodes
    wakes = []

    class CountingLoop:
        def call_soon_threadsafe(self, callback, *args):
            wakes.append(args)
    facade = ChainFacade(node.service, node_name="test", chain_type="Development")
    facade.attach(CountingLoop())
    genesis = node.store.genesis_hash
    transfers = [sign_extrinsic(BOB, balances.transfer(CHARLIE.public, 10**12), nonce=i, genesis_hash=genesis)
                 for i in range(3)]
    facade.watch_extrinsic(transfers[2].hash, lambda status, info: None)
    for transfer in transfers:
        node.service._submit(transfer)
    assert wakes == [(transfers[2].hash, "ready", None)]  # one each before
