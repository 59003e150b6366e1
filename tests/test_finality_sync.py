"""Sync verifies finality across validator-set changes (real LevelDB, real py-libp2p hosts on 127.0.0.1).

A served chain of 4 validators with an era every 6 blocks: Dave chills, so block 6 elects
{Alice, Bob, Charlie} (set 1), block 12 elects them again (set 2). Its node stores the
justification of each set-change block, signed by the old set, and of its finalized head, signed
by set 2. A fresh node syncs it: it fetches those justifications (/gradchain/justifications/1),
checks each against the set it derived by executing the blocks, and ends with the same
finalized block. A justification of the change block signed partly by a non-validator is
refused, its peer banned, and nothing is finalized.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest
from libp2p.custom_types import TProtocol

from consensus.finality.justification import build_justification, decode_justification, encode_justification
from consensus.finality.store_environment import voter_set_of
from node.chain_service import ChainService
from node.chain_setup import ChainPaths
from node.clock import SystemClock
from node.finality_service import FinalityService
from node.network import wire
from node.network.chain_adapter import ChainAdapter
from node.network.config import NetworkConfig
from node.network.service import NetworkService
from node.service import LoopThread, ServiceTree
from runtime.finality import PRECOMMIT, sign_vote
from runtime.pallets import validators
from runtime.state import Overlay
from runtime.types import encode_block
from tests.helpers.chain import DEV_KEYS, KEY_BY_PUBLIC, TestChain, dev_genesis
from tests.helpers.network_node import RawPeer, frame, serve_on, wait_for

ERA = 6
HEAD = 16


class SyncingNode:
    """Chain, network and a non-voting finality service in-process, as `gradchain` wires them (node/run.py)."""

    def __init__(self, base, config, *, seed: bytes, bootnodes=()) -> None:
        clock = SystemClock()
        self.chain = ChainService(config, ChainPaths(base, config.chain_id), clock=clock)
        self.network = NetworkService(ChainAdapter(self.chain), NetworkConfig(
            node_key_seed=seed, listen_host="127.0.0.1", port=0, bootnodes=tuple(bootnodes),
            ping_interval_s=1.0, ping_timeout_s=1.0, dial_interval_s=0.5))
        self.finality = FinalityService(self.chain, None, clock, gossip=self.network)
        self.network.adapter.attach_finality(self.finality)
        self.thread = LoopThread("sync-" + seed[:4].hex())
        self.thread.start()
        self.ready = threading.Event()
        self.future = self.thread.submit(self._run([self.chain, self.network, self.finality]))
        if not self.ready.wait(30) or self.future.done():
            self.future.result(timeout=1)
            raise RuntimeError("node did not start")

    async def _run(self, services) -> None:
        self.stop_event = asyncio.Event()
        tree = ServiceTree(services)
        task = asyncio.create_task(tree.run(self.stop_event))
        await asyncio.wait([asyncio.create_task(tree.started.wait()), task], return_when=asyncio.FIRST_COMPLETED)
        self.ready.set()
        await task

    @property
    def address(self) -> str:
        return self.network.listen_addresses[0]

    @property
    def store(self):
        return self.chain.store

    def close(self) -> None:
        self.thread.loop.call_soon_threadsafe(self.stop_event.set)
        self.future.result(timeout=60)
        self.thread.stop()


async def echo(stream) -> None:
    try:
        await stream.write(await stream.read(65536))
        await stream.close()
    except Exception:  # noqa: BLE001 - the node went away
        pass


def justify(chain: TestChain, block_hash: bytes, signers=None):
    """A justification of the block by every member of the set in its parent's state (or `signers`)."""
    header = chain.chain.header(block_hash)
    voters = voter_set_of(Overlay(chain.chain.state_view(header.parent_hash)))
    keys = signers or [KEY_BY_PUBLIC[who] for who, _ in voters.voters]
    votes = [sign_vote(k, chain.genesis_hash, voters.set_id, 1, PRECOMMIT, block_hash, header.number) for k in keys]
    return build_justification(voters.set_id, 1, (block_hash, header.number), votes, chain.chain.header)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The served chain's base path, its config, encoded blocks and hashes by number."""
    base = tmp_path_factory.mktemp("served")
    genesis = dev_genesis()
    config = dataclasses.replace(genesis, parameters=dataclasses.replace(genesis.parameters, era_length=ERA))
    chain = TestChain(ChainPaths(base, config.chain_id).database, config, finalize=False)
    try:
        chain.author_block()
        chain.author_block([chain.sign(DEV_KEYS["Dave"], validators.chill())])
        while chain.chain.best_header().number < HEAD:
            chain.author_block()
        hashes = {n: chain.chain.hash_at(n) for n in range(HEAD + 1)}
        eras = [validators.CurrentEra.get(chain.overlay(hashes[n])) for n in range(HEAD + 1)]
        changes = [n for n in range(1, HEAD + 1) if eras[n] != eras[n - 1]]
        assert changes == [ERA, 2 * ERA] and eras[HEAD] == 2
        assert DEV_KEYS["Dave"].public not in dict(voter_set_of(chain.overlay(hashes[ERA])).voters)  # a changed set
        for number in (*changes, HEAD):  # as the voters store them: each change by the old set, then the head
            chain.chain.set_finalized(hashes[number], encode_justification(justify(chain, hashes[number])))
        forged = justify(chain, hashes[ERA], signers=[DEV_KEYS[n] for n in ("Alice", "Bob", "Eve")])
        blocks = [encode_block(chain.chain.block(hashes[n])) for n in range(1, HEAD + 1)]
    finally:
        chain.close()
    return base, config, blocks, hashes, forged


def test_a_syncing_node_verifies_justifications_across_set_changes_and_ends_equally_final(tmp_path, served):
    base, config, _, hashes, _ = served
    server = SyncingNode(base, config, seed=b"S" * 32)
    fresh = None
    try:
        assert server.store.finalized_hash == hashes[HEAD]
        fresh = SyncingNode(tmp_path / "fresh", config, seed=b"F" * 32, bootnodes=[server.address])
        wait_for(lambda: fresh.store.best_header().number == HEAD, 60, "the fresh node to sync the blocks")
        wait_for(lambda: fresh.store.finalized_hash == hashes[HEAD], 60, "the fresh node to finalize the head")
        for number, set_id in ((ERA, 0), (2 * ERA, 1), (HEAD, 2)):  # each proof kept, by the set that made it
            stored = fresh.store.justification(hashes[number])
            assert stored is not None and decode_justification(stored).set_id == set_id
        assert fresh.network.justifications.finalized_by_peers == 3  # the change blocks in order, then the head
        assert not fresh.network.book.is_banned(server.network.peer_id)
    finally:
        if fresh is not None:
            fresh.close()
        server.close()


def test_a_forged_justification_of_a_set_change_is_refused_and_its_peer_banned(tmp_path, served):
    _, config, blocks, hashes, forged = served
    raw = RawPeer(b"R" * 32)
    node = SyncingNode(tmp_path / "victim", config, seed=b"V" * 32)
    try:
        genesis = hashes[0]
        status = wire.Status(genesis, HEAD, hashes[HEAD], ERA, hashes[ERA], wire.Roles(wire.ROLE_FULL))
        serve_on(raw, wire.STATUS, frame(wire.encode(status)))
        serve_on(raw, wire.BLOCKS, frame(len(blocks).to_bytes(4, "big")) + b"".join(frame(b) for b in blocks))
        entry = wire.JustificationEntry(hashes[ERA], ERA, wire.JustificationData(encode_justification(forged)))
        serve_on(raw, wire.JUSTIFICATIONS, frame((1).to_bytes(4, "big")) + frame(wire.encode(entry)))
        raw.host.set_stream_handler(TProtocol(wire.PING), echo)  # a live peer: kept, asked again after a cut reply
        raw.connect(node.address)
        wait_for(lambda: node.store.best_header().number == HEAD, 60, "the blocks from the raw peer")
        wait_for(lambda: node.network.book.is_banned(raw.peer_id), 30, "the forger's ban")
        assert node.network.metrics.peer_reports.labels("bad_justification")._value.get() == 1
        assert node.store.finalized_header().number == 0 and node.store.justification(hashes[ERA]) is None
    finally:
        node.close()
        raw.close()


def test_a_justifications_request_is_answered_with_what_is_stored_and_limits_are_enforced(tmp_path, served):
    base, config, _, hashes, _ = served
    server = SyncingNode(base, config, seed=b"T" * 32)
    raw = RawPeer(b"Q" * 32)
    try:
        raw.connect(server.address)
        raw.exchange(server.network.peer_id, wire.STATUS, raw.status_frame(server.network.local_status()))
        wait_for(lambda: raw.peer_id in [p.peer_id for p in server.network.book.ready_peers()], 10, "the handshake")
        ask = wire.encode(wire.JustificationRequest((hashes[ERA], hashes[3]), True))
        reply = raw.exchange(server.network.peer_id, wire.JUSTIFICATIONS, frame(ask))
        assert reply[:8] == frame((2).to_bytes(4, "big"))  # block 3 has none stored: the change block and the head
        first = wire.decode(wire.JustificationEntry, reply[12:12 + int.from_bytes(reply[8:12], "big")],
                            max_length=wire.MAX_JUSTIFICATION_FRAME)
        assert (first.block_hash, first.block_number) == (hashes[ERA], ERA)
        assert decode_justification(first.justification).target == (hashes[ERA], ERA)
        too_many = wire.encode(wire.JustificationRequest(tuple(hashes[n % HEAD + 1] for n in range(17)), False))
        assert len(too_many) <= wire.MAX_REQUEST_BYTES
        assert raw.exchange(server.network.peer_id, wire.JUSTIFICATIONS, frame(too_many)) == b""  # refused
        oversized = (10**6).to_bytes(4, "big") + b"x" * 10  # refused from its length, before any decoding
        assert raw.exchange(server.network.peer_id, wire.JUSTIFICATIONS, oversized) == b""
        wait_for(lambda: server.network.book.is_banned(raw.peer_id), 10, "the ban")
    finally:
        raw.close()
        server.close()


def test_justifications_are_taken_in_set_order_and_checked_against_the_derived_set(tmp_path):
    from consensus.finality.catch_up import check_justification, set_change_blocks
    from consensus.finality.justification import BadJustification

    genesis = dev_genesis()
    config = dataclasses.replace(genesis, parameters=dataclasses.replace(genesis.parameters, era_length=ERA))
    chain = TestChain(tmp_path / "db", config, finalize=False)
    try:
        chain.author_block([chain.sign(DEV_KEYS["Dave"], validators.chill())])
        while chain.chain.best_header().number < HEAD:
            chain.author_block()
        store, at = chain.chain, chain.chain.hash_at
        assert set_change_blocks(store) == [(at(ERA), ERA), (at(2 * ERA), 2 * ERA)]
        head = justify(chain, at(HEAD))
        assert check_justification(store, chain.genesis_hash, head) is None  # set 2's: its changes come first
        new_set = [DEV_KEYS[n] for n in ("Alice", "Bob", "Charlie")]
        by_new_set = dataclasses.replace(justify(chain, at(2 * ERA), signers=new_set), set_id=2)
        with pytest.raises(BadJustification, match="set 2, but set 1"):  # the old set signs the change block
            check_justification(store, chain.genesis_hash, by_new_set)
        with pytest.raises(BadJustification, match="below the supermajority"):  # 2 of 4: not > 2/3
            check_justification(store, chain.genesis_hash,
                                justify(chain, at(ERA), signers=[DEV_KEYS["Alice"], DEV_KEYS["Bob"]]))
        for number in (ERA, 2 * ERA, HEAD):
            justification = justify(chain, at(number))
            header = check_justification(store, chain.genesis_hash, justification)
            assert header is not None and header.number == number
            store.set_finalized(header.hash, encode_justification(justification))
            assert set_change_blocks(store) == [(at(n), n) for n in (ERA, 2 * ERA) if n > number]
        assert check_justification(store, chain.genesis_hash, justify(chain, at(ERA))) is None  # old news
    finally:
        chain.close()
