"""The blob store: content-addressed (blake2b-256) model weights, updates and encrypted held-out sets.

Blobs live in the node's LevelDB under `schema.blob_key(hash)`, with a small
record beside each (size, block number at upload). A blob is stored only after
its bytes hash to the hash it was offered under and it fits the limits, in one
WriteBatch with the running total, so a refused or interrupted upload leaves
nothing behind. Blobs no task references are collected once they are older than
a grace period (a trainer uploads before it reveals).

Space has three tiers, so uploads can never crowd out what consensus needs:

    PROVISIONAL  an upload the chain does not refer to yet (a trainer's update before its
                 reveal, a task's model before create_task): only below
                 `max_total_bytes - reserved_bytes`
    REFERENCED   a blob the chain refers to (a task's model or held-out set, a revealed
                 update): up to `max_total_bytes`, into the reserve
    VERIFIED     what this validator computed or verified itself (an aggregate it adopted):
                 always stored, even over the limit, never refused for space
Who may upload what, and how much, is the node's admission policy (node/blob_admission.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from runtime import codec
from runtime.errors import GradchainError
from runtime.hashing import blake2b_256
from storage import schema
from storage.database import Database

DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_GRACE_BLOCKS = 600
DEFAULT_RESERVED_FRACTION = 4  # a quarter of the store is kept for blobs the chain refers to

PROVISIONAL, REFERENCED, VERIFIED = "provisional", "referenced", "verified"


class BlobError(GradchainError):
    code = "blob"
    http_status = 400  # what the HTTP blob endpoint answers


class BlobHashMismatch(BlobError):
    code = "blob_hash_mismatch"


class BlobTooLarge(BlobError):
    code = "blob_too_large"
    http_status = 413


class BlobStoreFull(BlobError):
    code = "blob_store_full"
    http_status = 507


@dataclass(frozen=True)
class BlobInfo:
    size: codec.U64
    uploaded_at: codec.U64


class BlobStore:
    def __init__(self, db: Database, *, max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, reserved_bytes: int | None = None) -> None:
        self.db = db
        self.max_blob_bytes = max_blob_bytes
        self.max_total_bytes = max_total_bytes
        self.reserved_bytes = max_total_bytes // DEFAULT_RESERVED_FRACTION if reserved_bytes is None \
            else reserved_bytes

    def free_bytes(self, admission: str = REFERENCED) -> int:
        """Room left for a blob of this tier (VERIFIED blobs are never refused)."""
        limit = self.max_total_bytes - (self.reserved_bytes if admission == PROVISIONAL else 0)
        return limit - self.total_bytes

    @property
    def total_bytes(self) -> int:
        raw = self.db.get(schema.meta_key(schema.META_BLOB_BYTES))
        return 0 if raw is None else int.from_bytes(raw, "big")

    def info(self, blob_hash: bytes) -> BlobInfo | None:
        raw = self.db.get(schema.blob_info_key(blob_hash))
        return None if raw is None else codec.decode_trusted(BlobInfo, raw)

    def get(self, blob_hash: bytes) -> bytes | None:
        return self.db.get(schema.blob_key(blob_hash))

    def check_size(self, size: int, admission: str = REFERENCED) -> None:
        """Refuse a blob before reading it, from its announced size."""
        if size > self.max_blob_bytes:
            raise BlobTooLarge(f"a blob may be at most {self.max_blob_bytes} bytes, this one is {size}")
        if admission != VERIFIED and size > self.free_bytes(admission):
            where = "its space for uploads the chain does not refer to yet" if admission == PROVISIONAL else "it"
            raise BlobStoreFull(f"the node's blob store is full ({where}: {self.total_bytes} of "
                                f"{self.max_total_bytes} bytes used); try another node or later")

    def put(self, expected_hash: bytes, data: bytes, *, now_block: int, admission: str = REFERENCED) -> bool:
        """Store `data` if it hashes to `expected_hash` and its tier has room; False if it was already stored."""
        if admission not in (PROVISIONAL, REFERENCED, VERIFIED):
            raise ValueError(f"unknown admission tier {admission!r}")
        self.check_size(len(data), admission)
        actual = blake2b_256(data)
        if actual != expected_hash:
            raise BlobHashMismatch(f"the body hashes to 0x{actual.hex()}, not 0x{expected_hash.hex()}")
        if self.info(expected_hash) is not None:
            return False
        self.db.write({
            schema.blob_key(expected_hash): data,
            schema.blob_info_key(expected_hash): codec.encode(BlobInfo(len(data), now_block), BlobInfo),
            schema.meta_key(schema.META_BLOB_BYTES): (self.total_bytes + len(data)).to_bytes(8, "big"),
        })
        return True

    def delete(self, blob_hashes: Iterable[bytes]) -> int:
        """Remove these blobs (admission evicts provisional uploads with it); returns the bytes freed."""
        doomed = [(h, info.size) for h in set(blob_hashes) if (info := self.info(h)) is not None]
        freed = sum(size for _, size in doomed)
        if doomed:
            deletes = [k for h, _ in doomed for k in (schema.blob_key(h), schema.blob_info_key(h))]
            self.db.write({schema.meta_key(schema.META_BLOB_BYTES): (self.total_bytes - freed).to_bytes(8, "big")},
                          deletes)
        return freed

    def collect_garbage(self, referenced: Iterable[bytes], *, now_block: int,
                        grace_blocks: int = DEFAULT_GRACE_BLOCKS) -> int:
        """Delete blobs nobody references that are older than the grace period; returns how many."""
        keep = set(referenced)
        doomed: list[tuple[bytes, int]] = []
        for key, raw in self.db.items_with_prefix(schema.BLOB_INFO):
            blob_hash = key[len(schema.BLOB_INFO):]
            info = codec.decode_trusted(BlobInfo, raw)
            if blob_hash not in keep and info.uploaded_at + grace_blocks <= now_block:
                doomed.append((blob_hash, info.size))
        if doomed:
            freed = sum(size for _, size in doomed)
            deletes = [k for h, _ in doomed for k in (schema.blob_key(h), schema.blob_info_key(h))]
            self.db.write({schema.meta_key(schema.META_BLOB_BYTES): (self.total_bytes - freed).to_bytes(8, "big")},
                          deletes)
        return len(doomed)
