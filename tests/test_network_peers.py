"""Peers on real py-libp2p hosts over 127.0.0.1: the handshake, and every kind of bad peer.

The node under test is in-process (chain on a real LevelDB + network); the other
side is either another in-process node or a raw py-libp2p host that writes
whatever bytes the test chooses.
"""

from __future__ import annotations

import asyncio

import pytest

from node.chain_setup import load_chain_spec
from node.network import wire
from node.network.service import ANNOUNCE
from tests.helpers.network_node import InProcessNode, RawPeer, wait_for

OTHER_GENESIS = bytes(range(32))


@pytest.fixture
def dev_config():
    return load_chain_spec(None, dev=True)


@pytest.fixture
def node(tmp_path, dev_config):
    running = InProcessNode(tmp_path / "node", dev_config, seed=b"N" * 32)
    yield running
    running.close()


@pytest.fixture
def raw():
    peer = RawPeer(b"R" * 32)
    yield peer
    peer.close()


def foreign_status(genesis: bytes) -> wire.Status:
    return wire.Status(genesis, 0, genesis, 0, genesis, wire.Roles(wire.ROLE_FULL))


def test_a_plaintext_only_dialer_is_refused(node):
    plaintext = RawPeer(b"P" * 32, plaintext=True)
    try:
        with pytest.raises(Exception):
            plaintext.connect(node.address)
        assert not plaintext.connected_to(node.network.peer_id)
        assert node.ready_peers() == []
    finally:
        plaintext.close()


def test_two_nodes_of_one_chain_complete_the_handshake_and_ping(tmp_path, dev_config, node):
    other = InProcessNode(tmp_path / "other", dev_config, seed=b"O" * 32, bootnodes=[node.address])
    try:
        wait_for(lambda: node.ready_peers() and other.ready_peers(), 15, "both handshakes")
        assert other.ready_peers() == [node.network.peer_id]
        peer = node.network.book.peers[other.network.peer_id]
        assert peer.status.genesis_hash == node.chain.store.genesis_hash
        wait_for(lambda: node.on_loop(_ping_ok(node, other.network.peer_id)), 10, "a pong")
    finally:
        other.close()


async def _ping_ok(node, peer: str) -> bool:
    frames = await node.network.request(peer, wire.PING, b"12345678", max_frame=8, timeout=5)
    return frames == [b"12345678"]


def test_a_peer_of_another_chain_is_refused_and_banned(node, raw):
    raw.connect(node.address)
    reply = raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(foreign_status(OTHER_GENESIS)))
    # told which chain this is (unless the ban's disconnection came first), then dropped
    assert reply in (b"", raw.status_frame(node.network.local_status()))
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 10, "the ban")
    wait_for(lambda: not raw.connected_to(node.network.peer_id), 10, "the disconnection")
    assert raw.peer_id not in node.ready_peers()
    with pytest.raises(Exception):  # and it may not come back while banned
        raw.connect(node.address)
        wait_for(lambda: not raw.connected_to(node.network.peer_id), 5, "the banned peer to be dropped again")
        raise ConnectionError("dropped")


def test_junk_in_place_of_a_status_costs_reputation_then_a_ban(node, raw):
    raw.connect(node.address)
    for _ in range(2):
        raw.exchange(node.network.peer_id, wire.STATUS, (9).to_bytes(4, "big") + b"\xc1junk\xff\x00!!")
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 10, "the ban")
    assert node.chain.store.best_header().number == 0  # the node is fine


def test_an_oversized_frame_is_refused_before_it_is_read(node, raw):
    raw.connect(node.address)
    raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(node.network.local_status()))
    wait_for(lambda: raw.peer_id in node.ready_peers(), 10, "the handshake")
    # announces 100 MB and sends 5 bytes: refused at once (no 100 MB buffer, no wait for the rest)
    reply = raw.exchange(node.network.peer_id, wire.BLOCKS, (100 * 1024 * 1024).to_bytes(4, "big") + b"hello")
    assert reply == b""
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 10, "the ban")


def test_a_blocks_request_is_answered_with_a_counted_length_prefixed_reply(node, raw):
    raw.connect(node.address)
    raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(node.network.local_status()))
    wait_for(lambda: raw.peer_id in node.ready_peers(), 10, "the handshake")
    request = wire.encode(wire.BlockRequest(0, None, wire.Count(5000)))  # asks for more than the cap
    reply = raw.exchange(node.network.peer_id, wire.BLOCKS, len(request).to_bytes(4, "big") + request)
    assert reply[:4] == (4).to_bytes(4, "big") and int.from_bytes(reply[4:8], "big") == 1  # genesis only
    assert not node.network.book.is_banned(raw.peer_id)


def test_an_unknown_protocol_is_refused_and_the_node_keeps_serving_until_a_prober_is_banned(node, raw):
    raw.connect(node.address)
    with pytest.raises(Exception):
        raw.exchange(node.network.peer_id, "/gradchain/no-such-protocol/1", b"\x00\x00\x00\x01x")
    reply = raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(node.network.local_status()))
    assert reply[4:] == wire.encode(node.network.local_status())
    assert not node.network.book.is_banned(raw.peer_id)
    for attempt in range(4):  # a peer that keeps probing for protocols nobody speaks
        with pytest.raises(Exception):
            raw.exchange(node.network.peer_id, f"/probe/{attempt}", b"")
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 10, "the ban")


def test_a_flood_of_bad_announcements_gets_the_sender_banned(tmp_path, dev_config, node):
    flooder = InProcessNode(tmp_path / "flooder", dev_config, seed=b"F" * 32, bootnodes=[node.address])
    try:
        wait_for(lambda: flooder.ready_peers(), 15, "the handshake")
        wait_for(lambda: _mesh_ready(flooder), 15, "a gossip mesh")
        for i in range(30):
            flooder.on_loop(flooder.network.publish(ANNOUNCE, b"\x93not a header" + bytes([i])))
        wait_for(lambda: node.network.book.is_banned(flooder.network.peer_id), 15, "the ban")
        assert node.chain.store.best_header().number == 0
    finally:
        flooder.close()


def _mesh_ready(node) -> bool:
    pubsub = node.network.host.pubsub
    return bool(pubsub and pubsub.peer_topics.get(node.network.topic(ANNOUNCE)))


def test_transactions_are_relayed_only_after_a_pool_admitted_them(tmp_path, dev_config, node):
    """A - B(node) - C in a line: a valid transfer sent to A reaches C through B's pool; one with a bad
    signature is refused by B's pool and never reaches C."""
    from runtime import crypto
    from runtime.executive import sign_extrinsic
    from runtime.pallets import balances
    from runtime.types import Extrinsic, SignedData

    a = InProcessNode(tmp_path / "a", dev_config, seed=b"A" * 32, bootnodes=[node.address])
    c = InProcessNode(tmp_path / "c", dev_config, seed=b"C" * 32, bootnodes=[node.address])
    try:
        wait_for(lambda: len(node.ready_peers()) == 2 and a.ready_peers() and c.ready_peers(), 20, "the line")
        assert c.network.peer_id not in a.ready_peers()
        genesis = node.chain.store.genesis_hash
        eve, ferdie = crypto.dev_keypair("Eve"), crypto.dev_keypair("Ferdie")
        good = sign_extrinsic(eve, balances.transfer(ferdie.public, 10**12), nonce=0, genesis_hash=genesis)
        alice = crypto.dev_keypair("Alice")
        forged = sign_extrinsic(alice, balances.transfer(eve.public, 10**12), nonce=0, genesis_hash=genesis)
        forged = Extrinsic(SignedData(forged.signed.signer, bytes(64), forged.signed.era, 0, 0), forged.call)
        wait_for(lambda: _mesh_ready(a), 15, "a gossip mesh")
        # A's pool would refuse the forgery, so A publishes both as a peer with a bad pool would
        batch = wire.encode(wire.TransactionBatch((forged.encoded, good.encoded)))
        a.on_loop(a.network.publish("transactions", batch))
        wait_for(lambda: good.hash in c.chain.pool, 20, "the valid transfer at C")
        assert forged.hash not in node.chain.pool and forged.hash not in c.chain.pool
        wait_for(lambda: node.network.book.peers[a.network.peer_id].reputation < 0, 5, "A reported for the forgery")
    finally:
        a.close()
        c.close()


def test_with_reserved_only_a_peer_not_reserved_is_dropped(tmp_path, dev_config, raw):
    guarded = InProcessNode(tmp_path / "guarded", dev_config, seed=b"G" * 32, reserved_only=True)
    try:
        raw.connect(guarded.address)
        wait_for(lambda: not raw.connected_to(guarded.network.peer_id), 10, "the unreserved peer to be dropped")
        assert guarded.ready_peers() == []
    finally:
        guarded.close()


def test_a_large_blob_is_fetched_in_ranged_chunks_and_checked(tmp_path, dev_config, node):
    import os

    from runtime.hashing import blake2b_256

    other = InProcessNode(tmp_path / "other", dev_config, seed=b"O" * 32, bootnodes=[node.address])
    try:
        wait_for(lambda: other.ready_peers(), 15, "the handshake")
        data = os.urandom(5 * 1024 * 1024 + 123)  # six 1 MiB chunks
        blob_hash = blake2b_256(data)
        node.on_loop(node.network.adapter.put_blob(blob_hash, data))
        assert other.on_loop(other.network.blobs.download(node.network.peer_id, blob_hash)) == data
        assert other.on_loop(other.network.blobs.download(node.network.peer_id, bytes(32))) is None  # not held
        assert not other.network.book.is_banned(node.network.peer_id)
    finally:
        other.close()


def test_a_peer_serving_other_bytes_for_a_blob_is_reported_and_banned(node, raw):
    from tests.helpers.network_node import frame, serve_on

    serve_on(raw, wire.STATUS, frame(wire.encode(node.network.local_status())))
    serve_on(raw, wire.BLOBS, frame(wire.encode(wire.BlobChunk(wire.ByteCount(10), wire.ChunkData(b"x" * 10)))))
    raw.connect(node.address)
    wait_for(lambda: raw.peer_id in node.ready_peers(), 10, "the handshake")
    assert node.on_loop(node.network.blobs.download(raw.peer_id, b"\x07" * 32)) is None
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 10, "the ban")


def test_the_gossip_port_carries_finality_messages_with_their_sender(tmp_path, dev_config, node):
    other = InProcessNode(tmp_path / "other", dev_config, seed=b"O" * 32, bootnodes=[node.address])
    try:
        wait_for(lambda: other.ready_peers() and node.ready_peers(), 15, "the handshake")
        queue = node.on_loop(_subscribe(node))
        wait_for(lambda: _mesh_ready(other), 15, "a gossip mesh")
        other.on_loop(other.network.publish("finality", b"a precommit"))
        sender, data = node.on_loop(asyncio.wait_for(queue.get(), 10))
        assert (sender, data) == (other.network.peer_id, b"a precommit")
        node.on_loop(_report(node, sender))  # the port's third method
        assert node.network.book.peers[sender].reputation < 0
    finally:
        other.close()


async def _subscribe(node):
    return node.network.subscribe("finality")


async def _report(node, peer: str) -> None:
    node.network.report(peer, "malformed", "a vote with a bad signature")


def test_a_peer_that_never_completes_the_handshake_is_dropped(tmp_path, dev_config, raw):
    strict = InProcessNode(tmp_path / "strict", dev_config, seed=b"S" * 32, handshake_deadline_s=1.0)
    try:
        raw.connect(strict.address)  # the raw peer serves no status protocol: no handshake ever completes
        wait_for(lambda: not raw.connected_to(strict.network.peer_id), 10, "the silent peer to be dropped")
    finally:
        strict.close()


def test_past_max_peers_a_newcomer_is_refused(tmp_path, dev_config, raw):
    full = InProcessNode(tmp_path / "full", dev_config, seed=b"M" * 32, max_peers=0)
    try:
        raw.connect(full.address)
        wait_for(lambda: not raw.connected_to(full.network.peer_id), 10, "the newcomer to be refused")
    finally:
        full.close()


def test_a_peer_that_serves_an_invalid_block_in_sync_is_banned_and_nothing_is_imported(node, raw):
    from runtime.types import Block, Digest, Header, encode_block
    from tests.helpers.network_node import frame, serve_on

    genesis = node.chain.store.genesis_hash
    bogus = Block(Header(genesis, 1, bytes(32), bytes(32), Digest(10**9, bytes(32), bytes(64))), ())
    status = wire.Status(genesis, 5, b"\x05" * 32, 0, genesis, wire.Roles(wire.ROLE_FULL))  # claims to be ahead
    serve_on(raw, wire.STATUS, frame(wire.encode(status)))
    serve_on(raw, wire.BLOCKS, frame((1).to_bytes(4, "big")) + frame(encode_block(bogus)))
    raw.connect(node.address)
    wait_for(lambda: node.network.book.is_banned(raw.peer_id), 15, "the ban")
    assert node.best() == 0 and node.chain.store.header(bogus.hash) is None
