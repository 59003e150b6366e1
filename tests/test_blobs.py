"""The blob store on a real LevelDB: content addressing, limits, garbage collection."""

from __future__ import annotations

import pytest

from runtime.hashing import blake2b_256
from storage.blobs import BlobHashMismatch, BlobStore, BlobStoreFull, BlobTooLarge
from storage.database import Database


@pytest.fixture
def store(tmp_path):
    db = Database(tmp_path / "db")
    yield BlobStore(db, max_blob_bytes=1000, max_total_bytes=2500)
    db.close()


def test_a_blob_is_stored_under_its_hash_once(store):
    data = b"weights" * 10
    assert store.put(blake2b_256(data), data, now_block=3)
    assert not store.put(blake2b_256(data), data, now_block=4)
    assert store.get(blake2b_256(data)) == data
    assert store.info(blake2b_256(data)).size == len(data) and store.total_bytes == len(data)


def test_a_wrong_hash_or_oversize_body_is_refused_and_nothing_is_kept(store):
    with pytest.raises(BlobHashMismatch):
        store.put(blake2b_256(b"other"), b"data", now_block=1)
    with pytest.raises(BlobTooLarge):
        store.put(blake2b_256(b"x" * 1001), b"x" * 1001, now_block=1)
    assert store.total_bytes == 0 and store.get(blake2b_256(b"data")) is None


def test_the_total_limit_is_enforced(store):
    for i in range(2):
        data = bytes([i]) * 1000
        store.put(blake2b_256(data), data, now_block=1)
    with pytest.raises(BlobStoreFull):
        store.put(blake2b_256(b"z" * 600), b"z" * 600, now_block=1)


def test_garbage_collection_keeps_referenced_and_young_blobs(store):
    blobs = {name: name.encode() * 20 for name in ("kept", "young", "old")}
    store.put(blake2b_256(blobs["kept"]), blobs["kept"], now_block=1)
    store.put(blake2b_256(blobs["old"]), blobs["old"], now_block=1)
    store.put(blake2b_256(blobs["young"]), blobs["young"], now_block=95)
    deleted = store.collect_garbage([blake2b_256(blobs["kept"])], now_block=100, grace_blocks=10)
    assert deleted == 1
    assert store.get(blake2b_256(blobs["old"])) is None
    assert store.get(blake2b_256(blobs["kept"])) and store.get(blake2b_256(blobs["young"]))
    assert store.total_bytes == len(blobs["kept"]) + len(blobs["young"])
