"""Blob admission on a real dev node (real aiohttp server, real LevelDB): a flood of junk uploads
is refused or pushed out, consensus keeps its reserved space, and a training round still closes."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request

import pytest

from consensus.useful_work import ModelSpec, build_model, state_of
from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out
from node.blob_admission import AdmissionLimits
from runtime import crypto
from runtime.hashing import blake2b_256
from runtime.pallets import balances
from scripts._tasks import ChainAccount, TaskOptions, publish_task, upload_headers, wait_until
from scripts.trainer import Trainer, TrainerOptions
from storage.blobs import VERIFIED, BlobStore, BlobStoreFull
from storage.database import Database
from tests.helpers.chain import DEV_KEYS

GRAD = 10**12
KIB = 1024
SPEC = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
CHARLIE, DAVE = DEV_KEYS["Charlie"], DEV_KEYS["Dave"]


GENESIS: dict[str, bytes] = {}


def put(node, data: bytes, keypair: crypto.Keypair | None = None, headers: dict | None = None) -> tuple[int, dict]:
    blob_hash = blake2b_256(data)
    if node.url not in GENESIS:
        GENESIS[node.url] = node.client.genesis_hash()
    genesis = GENESIS[node.url]
    signed = upload_headers(keypair, genesis, data) if keypair is not None else {}
    request = urllib.request.Request(f"{node.url}/blobs/0x{blob_hash.hex()}", data=data, method="PUT",
                                     headers={**signed, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def configure(node, *, total: int, reserved: int, limits: AdmissionLimits) -> None:
    """Shrink the node's store and set its admission limits (the policy is rebuilt with them)."""
    def apply():
        node.chain.blobs.max_total_bytes, node.chain.blobs.reserved_bytes = total, reserved
        endpoints = node.rpc.server.blobs
        endpoints.limits, endpoints.admission = limits, None
    node.thread.submit(node.chain.call(apply)).result(timeout=10)


def fund(node, *keypairs: crypto.Keypair, amount: int = 50 * GRAD) -> None:
    charlie = ChainAccount(node.client, CHARLIE)
    for keypair in keypairs:
        charlie.send(balances.transfer(keypair.public, amount))
    wait_until(lambda: all(node.client.account(crypto.encode_address(k.public, 42)).free >= amount
                           for k in keypairs), timeout=30, what="funded accounts")


def junk(tag: str, size: int) -> bytes:
    return (tag.encode() * (size // len(tag) + 1))[:size]


def test_unsigned_unfunded_badly_signed_and_oversized_uploads_are_refused_with_a_json_reason(node):
    stranger = crypto.keypair_from_uri("//NoFunds")
    before = node.chain.blobs.total_bytes
    cases = [
        (put(node, junk("unsigned", 10 * KIB)), 401, "blob_upload_unsigned"),
        (put(node, junk("stranger", 10 * KIB), stranger), 403, "blob_uploader_not_allowed"),
        (put(node, junk("forged", 10 * KIB), headers={"X-Gradchain-Account": "0x" + CHARLIE.public.hex(),
                                                     "X-Gradchain-Signature": "0x" + "00" * 64}),
         401, "blob_upload_unsigned"),
        (put(node, junk("garbled", 10 * KIB), headers={"X-Gradchain-Account": "0xzz"}), 401, "blob_upload_unsigned"),
    ]
    for (status, answer), expected_status, code in cases:
        assert (status, answer["code"]) == (expected_status, code) and answer["error"]
    assert node.chain.blobs.total_bytes == before


def test_uploads_count_against_the_connection_limit(node):
    limits = node.rpc.server.limits
    put(node, junk("warm", KIB))  # the genesis hash is asked before the limit drops
    saved, limits.max_connections = limits.max_connections, 0
    try:
        status, answer = put(node, junk("busy", KIB), CHARLIE)
    finally:
        limits.max_connections = saved
    assert status == 503 and answer["code"] == "too_many_connections"


def test_an_account_is_held_to_its_rate_and_its_quota(node):
    configure(node, total=8 << 20, reserved=2 << 20,
              limits=AdmissionLimits(account_quota_bytes=200 * KIB, uploads_per_minute=6, burst_uploads=3))
    statuses = [put(node, junk(f"rate-{i}", KIB), DAVE) for i in range(4)]
    assert [s for s, _ in statuses] == [201, 201, 201, 429] and statuses[3][1]["code"] == "blob_rate_limited"
    configure(node, total=8 << 20, reserved=2 << 20,
              limits=AdmissionLimits(account_quota_bytes=200 * KIB, uploads_per_minute=600, burst_uploads=100))
    statuses = [put(node, junk(f"quota-{i}", 60 * KIB), DAVE) for i in range(4)]
    assert [s for s, _ in statuses] == [201, 201, 201, 429] and statuses[3][1]["code"] == "blob_quota_exceeded"


def test_a_full_store_answers_507_with_a_reason_and_a_verified_blob_is_still_stored(node, tmp_path):
    flooder = crypto.keypair_from_uri("//Filler")
    fund(node, flooder)
    used = node.chain.blobs.total_bytes
    configure(node, total=used + 600 * KIB, reserved=300 * KIB,
              limits=AdmissionLimits(account_quota_bytes=10 << 20, uploads_per_minute=6000, burst_uploads=1000))
    statuses = [put(node, junk(f"fill-{i}", 100 * KIB), flooder) for i in range(4)]
    assert [s for s, _ in statuses[:3]] == [201, 201, 201]
    status, answer = statuses[3]
    assert status == 507 and answer["code"] == "blob_store_full" and "full" in answer["error"]
    assert node.chain.blobs.total_bytes <= node.chain.blobs.max_total_bytes - node.chain.blobs.reserved_bytes

    db = Database(tmp_path / "db")  # the store itself: a validator's verified blob ignores the limit
    try:
        store = BlobStore(db, max_blob_bytes=1000, max_total_bytes=1500, reserved_bytes=500)
        store.put(blake2b_256(b"a" * 900), b"a" * 900, now_block=1)
        with pytest.raises(BlobStoreFull):
            store.put(blake2b_256(b"b" * 900), b"b" * 900, now_block=1)
        assert store.put(blake2b_256(b"c" * 900), b"c" * 900, now_block=1, admission=VERIFIED)
        assert store.total_bytes == 1800
    finally:
        db.close()


def test_a_flood_of_junk_uploads_then_a_training_round_still_closes(node):
    attackers = [crypto.keypair_from_uri(f"//Flood{i}") for i in range(4)]
    trainers = [crypto.keypair_from_uri(f"//FloodTrainer{i}") for i in range(2)]
    fund(node, *attackers, *trainers)
    used = node.chain.blobs.total_bytes
    configure(node, total=used + (2 << 20), reserved=512 * KIB,
              limits=AdmissionLimits(account_quota_bytes=600 * KIB, uploads_per_minute=6000, burst_uploads=1000))
    refused: dict[int, int] = {}
    threads = []

    def flood(keypair, index):
        for n in range(10):
            status, answer = put(node, junk(f"junk-{index}-{n}-" + os.urandom(4).hex(), 100 * KIB), keypair)
            refused[status] = refused.get(status, 0) + 1
            assert status in (201, 429, 507) and ("hash" in answer or answer["error"])
        for n in range(10):
            status, _ = put(node, junk(f"unsigned-{index}-{n}", 50 * KIB))
            refused[status] = refused.get(status, 0) + 1

    for index, keypair in enumerate(attackers):
        threads.append(threading.Thread(target=flood, args=(keypair, index)))
        threads[-1].start()
    for thread in threads:
        thread.join(60)
    store = node.chain.blobs
    assert refused.get(401) == 40 and refused.get(507, 0) > 0  # unsigned refused; the shared space filled up
    admission = node.rpc.server.blobs.admission
    flooded = sum(admission.provisional_bytes(k.public) for k in attackers)
    assert store.total_bytes <= store.max_total_bytes - store.reserved_bytes  # the reserve is untouched

    # the creator and the trainers upload after the flood: the heaviest flooder's junk makes way
    split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)
    creator = ChainAccount(node.client, DEV_KEYS["Alice"])
    task_id = publish_task(creator, SPEC, state_of(build_model(SPEC, 0)), split.held_out_features,
                           split.held_out_labels, TaskOptions(rounds=1, commit_blocks=6, reveal_blocks=2))
    shards = shard_non_iid(split.train_features, split.train_labels, 2, 5, seed=2, iid_fraction=0.2)
    runners = [Trainer(node.client, keypair, task_id, features, labels, TrainerOptions(), say=lambda _: None)
               for keypair, (features, labels) in zip(trainers, shards)]
    threads = [threading.Thread(target=runner.run, daemon=True) for runner in runners]
    for thread in threads:
        thread.start()
    rounds = wait_until(lambda: node.client.call("training_rounds", task_id) or None, timeout=90,
                        what="the round to close")
    for thread in threads:
        thread.join(30)
    assert sum(admission.provisional_bytes(k.public) for k in attackers) < flooded  # junk made way
    assert rounds[0]["revealed"] == 2
    updates = node.client.call("training_updates", task_id, 0)
    assert all(u["status"] == 0 for u in updates), updates  # every update's blob was there: none missing
    assert node.client.get_blob(bytes.fromhex(rounds[0]["model"][2:])) is not None
    assert store.total_bytes <= store.max_total_bytes  # verified blobs may pass the limit, junk not


def test_a_blob_an_active_task_refers_to_may_be_uploaded_unsigned(node):
    split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=3)
    task_id = publish_task(ChainAccount(node.client, DEV_KEYS["Alice"]), SPEC, state_of(build_model(SPEC, 5)),
                           split.held_out_features, split.held_out_labels,
                           TaskOptions(rounds=3, commit_blocks=50, reveal_blocks=5))
    model = bytes.fromhex(node.client.call("training_task", task_id)["config"]["initial_model"][2:])
    data = node.client.get_blob(model)

    def forget():
        node.chain.blobs.delete([model])
    node.thread.submit(node.chain.call(forget)).result(timeout=10)
    status, answer = put(node, data)
    assert status == 201 and answer["created"]
