"""Training tasks over JSON-RPC: what the task creator, the trainers, the demo and the explorer share.

Everything here talks to a node through `rpc.client.Client` only. The machine
learning (models, training, tensor blobs, held-out encryption) comes from the
engine library `consensus.useful_work`, which a client may use like any other
library: it touches no node state.

    ChainAccount       signs and submits calls for one key (nonces from the node, pool included)
    TaskView           a task as the node reports it, with its round's windows
    publish_task       upload the initial model and the encrypted held-out set, seal its key to
                       the current validators, create the task, declare the held-out plaintext's
                       hash; returns its id
    download_model     a task's model weights from the node's blob store, checked
    save_model_file    weights as a file plain torch loads into the registry's architecture
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from consensus.useful_work import ModelSpec, ModelVersion
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.secrecy import encrypt_held_out, held_out_plaintext
from rpc.client import Client
from runtime import crypto
from runtime.errors import GradchainError
from runtime.executive import sign_extrinsic
from runtime.hashing import blake2b_256
from runtime.uploads import ACCOUNT_HEADER, SIGNATURE_HEADER, upload_message
from runtime.pallets import held_out_keys, training
from runtime.pallets.training import ModelSpec as ChainModelSpec
from runtime.pallets.training import SealedKey, TaskConfig
from scripts._common import DEFAULT_ERA_PERIOD, signing_era

T = TypeVar("T")
AGGREGATION_IDS = {name: index for index, name in training.AGGREGATIONS.items()}
METRIC_IDS = {name: index for index, name in training.METRICS.items()}
STATUS_NAMES = {training.STATUS_ACTIVE: "active", training.STATUS_FINISHED: "finished",
                training.STATUS_CANCELLED: "cancelled"}
UPDATE_STATUS_NAMES = {training.UPDATE_OK: "ok", training.UPDATE_MISSING: "missing",
                       training.UPDATE_MALFORMED: "malformed", training.UPDATE_COPY: "copy"}


class TaskError(GradchainError):
    code = "task"


def unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def wait_until(condition: Callable[[], T | None], *, timeout: float, what: str, poll: float = 0.25) -> T:
    """Poll `condition` until it returns something other than None/False; TaskError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise TaskError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class ChainAccount:
    """One key that signs and submits calls; the node's next index counts its pooled transactions."""

    def __init__(self, client: Client, keypair: crypto.Keypair, *, ss58_prefix: int = 42,
                 era_period: int | None = DEFAULT_ERA_PERIOD) -> None:
        self.client = client
        self.keypair = keypair
        self.public = keypair.public
        self.address = crypto.encode_address(keypair.public, ss58_prefix)
        self.era_period = era_period  # None: immortal (replayable once the account is reaped and refunded)
        self._genesis_hash: bytes | None = None

    def send(self, call, *, tip: int = 0) -> bytes:
        """Sign `call` with the next nonce and a mortal era (unless immortal was asked for), and submit it."""
        if self._genesis_hash is None:
            self._genesis_hash = self.client.genesis_hash()
        nonce = self.client.next_index(self.address)
        era, birth_hash = signing_era(self.client, self.era_period)
        extrinsic = sign_extrinsic(self.keypair, call, nonce=nonce, genesis_hash=self._genesis_hash, tip=tip,
                                   era=era, birth_hash=birth_hash)
        return self.client.submit(extrinsic)

    def put_blob(self, data: bytes) -> bytes:
        """Upload a blob signed by this account (the node counts it against the account's quota
        until a commit, reveal or task on chain names it); its hash."""
        if self._genesis_hash is None:
            self._genesis_hash = self.client.genesis_hash()
        return self.client.put_blob(data, headers=upload_headers(self.keypair, self._genesis_hash, data))


def upload_headers(keypair: crypto.Keypair, genesis_hash: bytes, data: bytes) -> dict[str, str]:
    """The headers of a blob upload signed by `keypair` (runtime.uploads)."""
    signature = keypair.sign(upload_message(genesis_hash, blake2b_256(data)))
    return {ACCOUNT_HEADER: "0x" + keypair.public.hex(), SIGNATURE_HEADER: "0x" + signature.hex()}


@dataclass(frozen=True)
class TaskView:
    """A task as `training_task` reports it."""

    id: int
    creator: bytes
    spec: ModelSpec
    round: int
    round_start: int
    model: bytes
    model_score: dict | None
    remaining_pool: int
    status: str
    config: dict[str, Any]

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TaskView:
        config = value["config"]
        spec = ModelSpec.from_params(config["spec"]["architecture"], tuple(config["spec"]["params"]))
        return cls(int(value["id"]), unhex(value["creator"]), spec, int(value["round"]), int(value["round_start"]),
                   unhex(value["model"]), value["model_score"], int(value["remaining_pool"]),
                   STATUS_NAMES.get(int(value["status"]), str(value["status"])), dict(config))

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def rounds(self) -> int:
        return int(self.config["rounds"])

    @property
    def commit_end(self) -> int:
        return self.round_start + int(self.config["commit_blocks"])

    @property
    def reveal_end(self) -> int:
        return self.commit_end + int(self.config["reveal_blocks"])

    @property
    def bond(self) -> int:
        return int(self.config["bond"])


def get_task(client: Client, task_id: int) -> TaskView | None:
    value = client.call("training_task", task_id)
    return None if value is None else TaskView.from_json(value)


def round_summary(client: Client, task_id: int, round_number: int) -> dict | None:
    return next((r for r in client.call("training_rounds", task_id) if r["round"] == round_number), None)


def round_updates(client: Client, task_id: int, round_number: int) -> list[dict]:
    return client.call("training_updates", task_id, round_number)


def validator_keys(client: Client) -> list[bytes]:
    return [unhex(v["account"]) for v in client.call("explorer_validators")]


@dataclass(frozen=True)
class TaskOptions:
    """A task's parameters beyond its model and data (defaults suit the digits demo on a 1 s-slot dev chain)."""

    reward_per_round: int = 1_000 * 10**12
    rounds: int = 12
    commit_blocks: int = 5
    reveal_blocks: int = 2
    # an accepted update lowers the aggregate's loss by at least 0.0005 nats and by 30% of the round's
    # best contribution: random noise of an honest update's norm, when lucky, reaches a few percent
    # of it (15% at most, measured over 12 rounds of the digits demo)
    min_improvement_ppm: int = 500
    min_relative_ppm: int = 300_000
    metric: str = "loss"
    aggregation: str = "fedavg"
    trim: int = 0
    held_out_subset: int = 256
    max_update_bytes: int = 1 << 20
    max_update_norm: float = 8.0
    bond: int = 10 * 10**12
    max_samples: int = training.DEFAULT_MAX_SAMPLES  # cap on an update's aggregation weight
    max_share_ppm: int = training.DEFAULT_MAX_SHARE_PPM  # ... and on its share of the round's weight
    copy_distance_ppm: int = training.DEFAULT_COPY_DISTANCE_PPM  # near-copies refused (sine of the angle)
    max_updates: int = training.MAX_UPDATES_PER_ROUND  # reveals per round (the chain's compute budget counts them)
    server_lr_ppm: int = 1_000_000  # FedAvgM's server learning rate (1.0 with momentum 0: plain FedAvg)
    server_momentum_ppm: int = 0


def task_config(spec: ModelSpec, initial_model: bytes, held_out_hash: bytes, held_out_size: int,
                sealed: Mapping[bytes, bytes], options: TaskOptions) -> TaskConfig:
    if options.aggregation not in AGGREGATION_IDS:
        raise TaskError(f"unknown aggregation {options.aggregation!r}; known: {', '.join(AGGREGATION_IDS)}")
    if options.metric not in METRIC_IDS:
        raise TaskError(f"unknown metric {options.metric!r}; known: {', '.join(METRIC_IDS)}")
    return TaskConfig(
        spec=ChainModelSpec(spec.architecture, tuple(spec.params)), initial_model=initial_model,
        metric=METRIC_IDS[options.metric], held_out=held_out_hash, held_out_size=held_out_size,
        held_out_subset=options.held_out_subset,
        sealed_keys=tuple(SealedKey(who, key) for who, key in sorted(sealed.items())),
        reward_per_round=options.reward_per_round, rounds=options.rounds, commit_blocks=options.commit_blocks,
        reveal_blocks=options.reveal_blocks, min_improvement_ppm=options.min_improvement_ppm,
        min_relative_ppm=options.min_relative_ppm,
        max_update_bytes=options.max_update_bytes, max_update_norm=norm_to_fixed(options.max_update_norm),
        bond=options.bond, aggregation=AGGREGATION_IDS[options.aggregation], trim=options.trim,
        max_samples=options.max_samples, max_share_ppm=options.max_share_ppm,
        copy_distance_ppm=options.copy_distance_ppm,
        max_updates=options.max_updates, server_lr_ppm=options.server_lr_ppm,
        server_momentum_ppm=options.server_momentum_ppm)


def publish_task(account: ChainAccount, spec: ModelSpec, initial_weights: Mapping[str, torch.Tensor],
                 held_out_features: torch.Tensor, held_out_labels: torch.Tensor, options: TaskOptions, *,
                 timeout: float = 60) -> int:
    """Create a task and wait until it is on chain; its id.

    The initial model and the held-out ciphertext go to the node's blob store
    first; the held-out key is sealed to every current validator. Once the task
    exists, the hash of the held-out plaintext is declared (submitted, not waited
    for): a validator elected later checks the key re-sealed to it against it.
    """
    client = account.client
    validators = validator_keys(client)
    if not validators:
        raise TaskError("the chain has no validators to seal the held-out key to")
    model = ModelVersion.from_weights(spec, initial_weights)
    ciphertext, sealed = encrypt_held_out(held_out_features, held_out_labels, validators)
    model_hash = account.put_blob(model.to_blob())
    held_out_hash = account.put_blob(ciphertext)
    config = task_config(spec, model_hash, held_out_hash, len(ciphertext), sealed, options)
    before = {task["id"] for task in client.call("training_tasks")}
    account.send(training.create_task(config))

    def created() -> int | None:
        for task in client.call("training_tasks"):
            if task["id"] not in before and unhex(task["creator"]) == account.public \
                    and unhex(task["config"]["held_out"]) == held_out_hash:
                return int(task["id"])
        return None
    task_id = wait_until(created, timeout=timeout, what="the task to be created (is the creator's balance enough "
                                                       "for the reward pool?)")
    plaintext_hash = blake2b_256(held_out_plaintext(held_out_features, held_out_labels))
    account.send(held_out_keys.declare_held_out_plaintext(task_id, plaintext_hash))
    return task_id


def download_model(client: Client, spec: ModelSpec, model_hash: bytes) -> dict[str, torch.Tensor]:
    """A model's weights from the node's blob store, checked against its hash and the task's spec."""
    blob = client.get_blob(model_hash)
    if blob is None:
        raise TaskError(f"the node does not have model 0x{model_hash.hex()} in its blob store")
    return dict(ModelVersion.from_blob(spec, blob).weights)


def save_model_file(path: Path, weights: Mapping[str, torch.Tensor]) -> None:
    """Weights as a plain state dict file:

        model = consensus.useful_work.build_model(spec, 0)   # or TaskModel(spec)
        model.load_state_dict(torch.load(path, weights_only=True))
    """
    torch.save({name: tensor.clone() for name, tensor in sorted(weights.items())}, path)


def demo_data(dataset: str, trainers: int, held_out_fraction: float = 0.25):
    """The demo's split of a data set scikit-learn ships: (HeldOutSplit, non-IID shards, test set).

    A fifth is set aside as a test set nobody sees during training (neither the chain nor the
    centralized baseline: it compares them fairly, since the chain picks models on its held-out
    set); a quarter of the rest (`held_out_fraction`) is held out (the task creator's); each
    trainer's shard is 70% two classes and 30% dealt at random from the rest ("mostly a few
    classes"). Fixed seeds: a trainer started with --shard i/n gets the shard the demo would give
    it (for a task with the default fraction).
    """
    from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out
    everything = split_held_out(*load_dataset(dataset), fraction=0.2, seed=3)
    split = split_held_out(everything.train_features, everything.train_labels, fraction=held_out_fraction, seed=1)
    shards = shard_non_iid(split.train_features, split.train_labels, trainers, 2, seed=2, iid_fraction=0.3)
    return split, shards, (everything.held_out_features, everything.held_out_labels)
