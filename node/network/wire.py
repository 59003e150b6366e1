"""Wire formats of gradchain's peer-to-peer protocols: names, messages, frames, limits.

Every request/response protocol is one libp2p stream per request: the
requester writes one frame, the responder writes zero or more frames and closes.
A frame is a 4-byte big-endian length and that many bytes. The length is
checked against the protocol's limit *before* anything is read or decoded, every
read has a deadline, and a stream that ends inside a frame is an error (a peer
killed mid-transfer looks like a normal end of stream in py-libp2p, so only the
length prefix tells a cut reply from a complete one). Payloads are canonical
msgpack (runtime.codec), decoded strictly.

Protocols (request -> response):
  /gradchain/status/1   Status -> Status            the handshake, both directions
  /gradchain/blocks/1   BlockRequest -> frames, each one encoded block, in order,
                        at most MAX_BLOCKS_PER_REQUEST blocks and RESPONSE_BUDGET
                        bytes (at least one block); an empty reply = none known
  /gradchain/blobs/1    BlobRequest -> BlobChunk   a byte range of a blob (up to
                        MAX_BLOB_CHUNK); total_size 0 and no data = not held
  /gradchain/ping/1     8 bytes -> the same 8 bytes
  /gradchain/block-push/1  an encoded Block (at most MAX_PUSHED_BLOCK bytes) -> no
                        frames: its author sends it whole to each peer on a stream of
                        its own, so it waits behind no gossip (the announcement still
                        follows on block-announces for the peers it does not reach)
  /gradchain/justifications/1  JustificationRequest -> a 4-byte count, then that
                        many frames, each a JustificationEntry: the finality proofs
                        stored with the asked blocks (at most
                        MAX_JUSTIFICATIONS_PER_REQUEST; blocks without one are left
                        out) and, if asked, the one of the responder's finalized
                        head; at most RESPONSE_BUDGET bytes (at least one entry)
Gossip topics (gossipsub, genesis-scoped so two chains never share a topic):
  .../block-announces/1  an encoded Header (the body is fetched with blocks/1)
  .../transactions/1     TransactionBatch
  .../finality/1         opaque bytes for consensus/finality
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

import trio

from runtime import codec
from runtime.errors import GradchainError
from runtime.types import BlockHash, BlockNumber, Hash, MAX_BLOCK_BYTES

STATUS = "/gradchain/status/1"
BLOCKS = "/gradchain/blocks/1"
BLOBS = "/gradchain/blobs/1"
PING = "/gradchain/ping/1"
JUSTIFICATIONS = "/gradchain/justifications/1"
BLOCK_PUSH = "/gradchain/block-push/1"
PROTOCOLS = (STATUS, BLOCKS, BLOBS, PING, JUSTIFICATIONS, BLOCK_PUSH)

MAX_BLOCKS_PER_REQUEST = 128
RESPONSE_BUDGET = 4 * 1024 * 1024  # bytes of blocks per reply (a single libp2p message over ~6.5 MB fails)
MAX_BLOB_CHUNK = 1024 * 1024
MAX_REQUEST_BYTES = 1024  # every request above is a few dozen bytes (justifications: at most ~560)
MAX_PUSHED_BLOCK = 1024 * 1024  # a larger block is only announced (peers fetch it with blocks/1)
REQUEST_LIMITS = {BLOCK_PUSH: MAX_PUSHED_BLOCK}  # protocols whose request may exceed MAX_REQUEST_BYTES
MAX_JUSTIFICATIONS_PER_REQUEST = 16
MAX_JUSTIFICATION_FRAME = 4 * 1024 * 1024 + 256  # consensus/finality's MAX_JUSTIFICATION_BYTES and an entry's fields
MAX_GOSSIP_BYTES = 1024 * 1024  # gossipsub's own cap on a message
MAX_TRANSACTIONS_PER_BATCH = 512
WRITE_PIECE = 1024 * 1024  # frames are written in pieces: large single writes hit a py-libp2p short-read bug
READ_TIMEOUT_S = 10.0  # per read; a frozen peer cannot hold a stream open

ROLE_FULL = 1
ROLE_AUTHORITY = 2

Roles = NewType("Roles", int)
Count = NewType("Count", int)
ByteCount = NewType("ByteCount", int)
ChunkData = NewType("ChunkData", bytes)
JustificationData = NewType("JustificationData", bytes)
codec.register_uint(Roles, 8)
codec.register_uint(Count, 16)
codec.register_uint(ByteCount, 32)
codec.register_bytes(ChunkData, max_length=MAX_BLOB_CHUNK)
codec.register_bytes(JustificationData, max_length=MAX_JUSTIFICATION_FRAME - 256)


class WireError(GradchainError):
    """A peer sent something that breaks a protocol: the peer is at fault, never this node."""

    code = "p2p_wire"


class NotReady(GradchainError):
    """A request that came before the handshake completed on this side (a race, not misbehaviour)."""

    code = "p2p_not_ready"


class CutShort(WireError):
    """The stream ended inside a reply: the peer died, froze or went away (cheap to forgive, not malformed)."""

    code = "p2p_cut_short"


class FrameTooLarge(WireError):
    code = "p2p_frame_too_large"


@dataclass(frozen=True)
class Status:
    genesis_hash: BlockHash
    best_number: BlockNumber
    best_hash: BlockHash
    finalized_number: BlockNumber
    finalized_hash: BlockHash
    roles: Roles


@dataclass(frozen=True)
class BlockRequest:
    """`count` blocks of the best chain from `start_hash` if given, else from `start_number`, ascending."""

    start_number: BlockNumber
    start_hash: BlockHash | None
    count: Count


@dataclass(frozen=True)
class BlobRequest:
    blob_hash: Hash
    offset: ByteCount
    length: ByteCount


@dataclass(frozen=True)
class BlobChunk:
    total_size: ByteCount
    data: ChunkData


@dataclass(frozen=True)
class JustificationRequest:
    """The stored justifications of these blocks (any of ours we have), and of the responder's finalized head."""

    block_hashes: tuple[BlockHash, ...]
    finalized_head: bool


@dataclass(frozen=True)
class JustificationEntry:
    """A block's justification as stored (an encoded consensus.finality Justification, checked by the asker)."""

    block_hash: BlockHash
    block_number: BlockNumber
    justification: JustificationData


@dataclass(frozen=True)
class TransactionBatch:
    extrinsics: tuple[bytes, ...]  # each an encoded Extrinsic, decoded strictly by the receiver


def encode(message: object) -> bytes:
    return codec.encode(message, type(message))


def decode(kind: type, data: bytes, *, max_length: int = MAX_REQUEST_BYTES):
    """Strictly decode a message of `kind`; anything else is the sender's WireError."""
    try:
        return codec.decode(kind, data, max_length=max_length)
    except GradchainError as exc:
        raise WireError(f"malformed {kind.__name__}: {exc.message}") from None


# --- frames on a libp2p stream (trio) ------------------------------------------------


async def write_frame(stream, payload: bytes) -> None:
    await stream.write(len(payload).to_bytes(4, "big"))
    for start in range(0, len(payload), WRITE_PIECE):
        await stream.write(payload[start:start + WRITE_PIECE])


async def read_exactly(stream, size: int, *, timeout: float = READ_TIMEOUT_S) -> bytes:
    """`size` bytes, each read under its own deadline; a stream that ends early is a WireError."""
    pieces: list[bytes] = []
    got = 0
    while got < size:
        with trio.fail_after(timeout):
            try:
                piece = await stream.read(size - got)
            except Exception as exc:  # StreamEOF, StreamReset, a closed connection
                raise CutShort(f"stream ended after {got} of {size} bytes ({type(exc).__name__})") from None
        if not piece:
            raise CutShort(f"stream ended after {got} of {size} bytes")
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


async def read_frame(stream, max_bytes: int, *, timeout: float = READ_TIMEOUT_S) -> bytes | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    with trio.fail_after(timeout):
        try:
            first = await stream.read(4)
        except Exception:
            return None
    if not first:
        return None
    if len(first) < 4:
        first += await read_exactly(stream, 4 - len(first), timeout=timeout)
    size = int.from_bytes(first, "big")
    if size > max_bytes:
        raise FrameTooLarge(f"a frame of {size} bytes is over this protocol's limit of {max_bytes}")
    return await read_exactly(stream, size, timeout=timeout) if size else b""


MAX_BLOCK_FRAME = MAX_BLOCK_BYTES
