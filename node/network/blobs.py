"""Blob availability: every blob the chain names is fetched from peers, checked and kept.

Tasks, reveals and adopted models name blobs by hash (initial models, held-out
sets, updates); a validator cannot check a round whose blobs it lacks, and a
trainer uploads to one node only. So every node asks the chain which named
blobs it is missing, downloads each from peers in ranged chunks (blobs reach
16 MiB; a single libp2p message over ~6.5 MB fails), checks the hash, stores it,
and tells the chain it arrived so a block that waited on it is checked again.
A peer that sends bytes of the wrong hash or a wrong size is reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

import structlog

from node.network import wire
from runtime.hashing import blake2b_256
from runtime.errors import GradchainError

if TYPE_CHECKING:
    from node.network.service import NetworkService

log = structlog.get_logger("blobs")
MAX_BLOB_BYTES = 16 * 1024 * 1024
CHECK_INTERVAL_S = 1.0
RETRY_AFTER_S = 3.0
PARALLEL_FETCHES = 2


class BlobAvailability:
    def __init__(self, network: "NetworkService") -> None:
        self.network = network
        self.retry_at: dict[bytes, float] = {}
        self.fetching: set[bytes] = set()
        self.fetched = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(PARALLEL_FETCHES)
        self.tasks: set[asyncio.Task] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()
            if not self.network.book.ready_peers():
                continue
            try:
                missing = await self.network.adapter.missing_blobs()
            except Exception:  # a failed look-up is tried again at the next tick
                log.exception("could not list missing blobs")
                continue
            now = time.monotonic()
            for blob_hash in missing:
                if blob_hash in self.fetching or self.retry_at.get(blob_hash, 0) > now:
                    continue
                self.fetching.add(blob_hash)
                task = asyncio.create_task(self._fetch(blob_hash))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _fetch(self, blob_hash: bytes) -> None:
        try:
            async with self._slots:
                peers = [p.peer_id for p in self.network.book.ready_peers()]
                random.shuffle(peers)
                for peer in peers:
                    data = await self.download(peer, blob_hash)
                    if data is None:
                        continue
                    await self.network.adapter.put_blob(blob_hash, data)
                    self.fetched += 1
                    self.retry_at.pop(blob_hash, None)
                    log.info("blob fetched", blob="0x" + blob_hash.hex()[:16], bytes=len(data), peer=peer)
                    await self.network.adapter.blob_arrived(blob_hash)
                    return
                self.retry_at[blob_hash] = time.monotonic() + RETRY_AFTER_S
        except Exception:
            log.exception("blob fetch failed", blob="0x" + blob_hash.hex()[:16])
            self.retry_at[blob_hash] = time.monotonic() + RETRY_AFTER_S
        finally:
            self.fetching.discard(blob_hash)

    async def download(self, peer: str, blob_hash: bytes) -> bytes | None:
        """The whole blob from one peer in chunks, hash-checked; None if the peer lacks it or failed."""
        pieces: list[bytes] = []
        offset, total = 0, None
        try:
            while total is None or offset < total:
                request = wire.BlobRequest(wire.Hash(blob_hash), wire.ByteCount(offset), wire.ByteCount(wire.MAX_BLOB_CHUNK))
                frames = await self.network.request(peer, wire.BLOBS, wire.encode(request),
                                                    max_frame=wire.MAX_BLOB_CHUNK + 64)
                if len(frames) != 1:
                    raise wire.CutShort("a blob reply is one frame")
                chunk = wire.decode(wire.BlobChunk, frames[0], max_length=wire.MAX_BLOB_CHUNK + 64)
                if chunk.total_size == 0:
                    return None  # not held there
                if total is None:
                    if chunk.total_size > MAX_BLOB_BYTES:
                        raise wire.FrameTooLarge(f"a blob of {chunk.total_size} bytes is over {MAX_BLOB_BYTES}")
                    total = chunk.total_size
                expected = min(wire.MAX_BLOB_CHUNK, total - offset)
                if chunk.total_size != total or len(chunk.data) != expected:
                    raise wire.WireError(f"a blob chunk of {len(chunk.data)} bytes at {offset}, expected {expected}")
                pieces.append(chunk.data)
                offset += len(chunk.data)
        except wire.CutShort as exc:
            self.network.report(peer, "cut_short", exc.message)
            return None
        except wire.FrameTooLarge as exc:
            self.network.report(peer, "oversized", exc.message)
            return None
        except GradchainError as exc:
            self.network.report(peer, "malformed", f"blob reply: {exc.message}")
            return None
        except Exception as exc:  # timeout, the peer left
            log.debug("blob request failed", peer=peer, error=repr(exc))
            return None
        data = b"".join(pieces)
        if blake2b_256(data) != blob_hash:
            self.network.report(peer, "bad_blob", f"bytes that do not hash to 0x{blob_hash.hex()[:16]}")
            return None
        return data
