"""Frames, limits and message codecs of the peer-to-peer protocols (node/network/wire.py), and the peer book."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, strategies as st

from node.network import wire
from node.network.peers import BAN_THRESHOLD, PeerBook


class ScriptedStream:
    """A stream that returns the given pieces, then end of stream (or hangs, to test deadlines)."""

    def __init__(self, pieces: list[bytes], *, hang: bool = False) -> None:
        self.pieces = list(pieces)
        self.hang = hang
        self.read_sizes: list[int] = []
        self.written = b""

    async def read(self, n: int) -> bytes:
        self.read_sizes.append(n)
        if self.pieces:
            piece = self.pieces.pop(0)
            if len(piece) > n:
                self.pieces.insert(0, piece[n:])
            return piece[:n]
        if self.hang:
            await trio.sleep_forever()
        return b""

    async def write(self, data: bytes) -> None:
        self.written += data


def run(async_fn, *args):
    return trio.run(async_fn, *args)


@given(st.binary(max_size=3 * wire.WRITE_PIECE // 1000))
def test_a_frame_written_reads_back_whole(payload):
    stream = ScriptedStream([])
    run(wire.write_frame, stream, payload)
    reader = ScriptedStream([stream.written[i:i + 7] for i in range(0, len(stream.written), 7)])
    assert run(wire.read_frame, reader, len(payload)) == payload
    assert run(wire.read_frame, reader, len(payload)) is None  # then a clean end


def test_an_oversized_length_is_refused_before_any_of_the_body_is_read():
    stream = ScriptedStream([(10**9).to_bytes(4, "big"), b"x" * 100])
    with pytest.raises(wire.FrameTooLarge):
        run(wire.read_frame, stream, 1024)
    assert stream.read_sizes == [4]


def test_a_stream_that_ends_inside_a_frame_is_cut_short_not_complete():
    stream = ScriptedStream([(10).to_bytes(4, "big"), b"12345"])
    with pytest.raises(wire.CutShort):
        run(wire.read_frame, stream, 1024)


def test_every_read_has_a_deadline():
    async def read() -> None:
        await wire.read_frame(ScriptedStream([(10).to_bytes(4, "big"), b"123"], hang=True), 1024, timeout=0.05)

    with pytest.raises(trio.TooSlowError):
        trio.run(read)


def test_large_frames_are_written_in_pieces():
    stream = ScriptedStream([])
    writes: list[int] = []

    async def write(data: bytes) -> None:
        writes.append(len(data))
    stream.write = write
    run(wire.write_frame, stream, b"x" * (2 * wire.WRITE_PIECE + 5))
    assert writes == [4, wire.WRITE_PIECE, wire.WRITE_PIECE, 5]


def test_messages_decode_strictly_and_junk_is_the_senders_wire_error():
    status = wire.Status(b"\x01" * 32, 5, b"\x02" * 32, 3, b"\x03" * 32, wire.Roles(wire.ROLE_AUTHORITY))
    assert wire.decode(wire.Status, wire.encode(status)) == status
    with pytest.raises(wire.WireError):
        wire.decode(wire.Status, b"\xc1junk")
    with pytest.raises(wire.WireError):
        wire.decode(wire.Status, wire.encode(status) + b"\x00")  # trailing bytes
    with pytest.raises(wire.WireError):
        wire.decode(wire.BlockRequest, wire.encode(wire.BlockRequest(0, None, wire.Count(1)))[:-1])
    with pytest.raises(wire.WireError):  # a blob chunk over the 1 MiB cap
        wire.decode(wire.BlobChunk, wire.encode(wire.BlobChunk(wire.ByteCount(1), b"x" * (wire.MAX_BLOB_CHUNK + 1))),
                    max_length=2 * wire.MAX_BLOB_CHUNK)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reputation_falls_with_misbehaviour_recovers_with_time_and_bans_expire():
    clock = FakeClock()
    book = PeerBook(clock=clock)
    book.connected("p")
    assert not book.report("p", "timeout")
    assert book.report("p", "wrong_chain")  # over the threshold at once
    book.ban("p", 60)
    assert book.is_banned("p")
    clock.now += 61
    assert not book.is_banned("p")

    book.connected("q")
    assert not book.report("q", "malformed")
    clock.now += 1000  # forgiven with time
    assert not book.report("q", "malformed")
    assert book.peers["q"].reputation > BAN_THRESHOLD


def test_an_announcement_flood_is_detected_per_peer_and_window():
    clock = FakeClock()
    book = PeerBook(clock=clock)
    book.connected("p")
    assert not any(book.note_announcement("p", limit=20) for _ in range(20))
    assert book.note_announcement("p", limit=20)
    clock.now += 2
    assert not book.note_announcement("p", limit=20)


@pytest.mark.parametrize("text", ["/ip4/127.0.0.1/tcp/30333", "not-an-address", "/ip4/127.0.0.1/tcp/1/p2p/xyz", ""])
def test_a_peer_address_must_be_a_multiaddress_ending_in_a_peer_id(text):
    from node.network.config import PeerAddressError, check_peer_address

    with pytest.raises(PeerAddressError):
        check_peer_address(text)


def test_a_good_peer_address_gives_its_peer_id():
    from node.network.config import check_peer_address, node_peer_id

    peer = node_peer_id(b"k" * 32)
    assert check_peer_address(f"/ip4/127.0.0.1/tcp/30333/p2p/{peer}") == peer
