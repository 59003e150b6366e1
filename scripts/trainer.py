#!/usr/bin/env python3
"""The trainer: follows a task round by round, trains on private data, and earns for what it adds.

Each round it downloads the task's global model from the node, trains on its own
shard (`--epochs`, `--batch-size`, `--lr`), uploads the update blob, commits to
hash(update, account, salt) in the commit window, reveals in the reveal window,
and when the round closes prints the update's fate: its contribution to the
round's aggregate (parts per million of the task's metric) and its reward.

    python scripts/trainer.py --wallet trainer1 --task 0 --data shard.npz [--url http://127.0.0.1:9944]
    python scripts/trainer.py --key-file trainer1.key --task 0 --shard 1/5     # a 0600 file with the phrase
    GRADCHAIN_SECRET_URI=... python scripts/trainer.py --task 0 --shard 1/5    # or the environment
    python scripts/trainer.py --uri //Trainer1 --task 0 --shard 1/5            # dev accounts only (a warning)

The secret never needs the command line (readable by every user in `ps`). Transactions are
signed mortal (valid `--era-period` blocks, default 64) so they can never be replayed after
the account is emptied and refunded; `--immortal` opts out, with a warning.

The data file is a NumPy .npz with `features` (float32 [n, d]) and `labels`
(int64 [n]); `--dataset digits --shard i/n` uses a non-IID shard of a data set
scikit-learn ships instead. A trainer that misses a window waits for the next
round; its progress (round, salt, update) is kept in `--state` so a restarted
trainer reveals what it committed. It stops when the task ends.

`--behaviour` makes it an adversary, for demos and tests:
    copy    commits to nothing of its own, then reveals another trainer's update
    noise   submits random noise (`--noise-scale` times an honest update's norm)
    poison  submits its honest update sign-flipped and scaled (`--poison-scale`)
    stale   resubmits an update revealed in an earlier round
    inflate uses no data: replays the last public model step (model_t - model_t-1; a near-zero
            update in round 0) and declares 2**32 - 1 samples
    nearcopy  submits another trainer's update of an earlier round with one float changed by
            one unit in the last place (a new hash, the same fixed-point vector)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from consensus.useful_work.tensors import decode_tensors, encode_tensors  # noqa: E402
from consensus.useful_work.train import scheduled_lr, train_local  # noqa: E402
from rpc.client import Client, RpcClientError  # noqa: E402
from rpc.key_sources import add_key_options, keypair_from_args  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.hashing import blake2b_256  # noqa: E402
from runtime.pallets import training  # noqa: E402
from scripts._common import CliError, add_era_options, era_period_of, format_balance  # noqa: E402
from scripts._tasks import (  # noqa: E402
    ChainAccount, TaskError, TaskView, demo_data, download_model, get_task, round_summary, round_updates, unhex,
)

BEHAVIOURS = ("honest", "copy", "noise", "poison", "stale", "inflate", "nearcopy")
INFLATED_SAMPLES = (1 << 32) - 1
PLANCK = 10**12


@dataclass(frozen=True)
class TrainerOptions:
    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.5
    momentum: float = 0.0
    behaviour: str = "honest"
    poison_scale: float = 10.0
    noise_scale: float = 1.0  # the noise's norm, in honest updates' norms
    seed: int = 0
    poll_seconds: float = 0.3
    lr_floor: float = 1.0  # the local lr decays linearly to lr * lr_floor over the task's rounds (1: constant)


@dataclass
class RoundState:
    """What the trainer did in one round (kept on disk, so a restart can reveal)."""

    round: int
    update: str | None = None  # hex hash of the update it committed to
    salt: str | None = None
    committed: bool = False
    revealed: bool = False
    reported: bool = False
    skipped: str | None = None  # why it sat the round out

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Trainer:
    """One participant of one task. `run()` follows the task until it ends (or `stop` is set)."""

    def __init__(self, client: Client, keypair: crypto.Keypair, task_id: int, features: torch.Tensor,
                 labels: torch.Tensor, options: TrainerOptions = TrainerOptions(), *, state_path: Path | None = None,
                 say: Callable[[str], None] = print, era_period: int | None = 64) -> None:
        if options.behaviour not in BEHAVIOURS:
            raise TaskError(f"unknown behaviour {options.behaviour!r}; one of {', '.join(BEHAVIOURS)}")
        self.client = client
        self.account = ChainAccount(client, keypair, era_period=era_period)
        self.task_id = task_id
        self.features, self.labels = features, labels
        self.options = options
        self.state_path = state_path
        self.say = say
        self.state = self._load_state()
        self.results: list[dict] = []  # one per closed round this trainer took part in

    # --- the loop ---------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> list[dict]:
        stop = stop or threading.Event()
        while not stop.is_set():
            task = get_task(self.client, self.task_id)
            if task is None:
                raise TaskError(f"the node knows no task {self.task_id}")
            self.step(task)
            if not task.active:
                if self.state is not None and not self.state.reported:
                    self._report(self.state, final=True)
                self.say(f"task {self.task_id} is {task.status}; stopping")
                break
            stop.wait(self.options.poll_seconds)
        return self.results

    def step(self, task: TaskView) -> None:
        """Act on what the chain says now: report a closed round, then commit or reveal in the current one."""
        if self.state is not None and not self.state.reported and self.state.round < task.round + (not task.active):
            self._report(self.state)
        if not task.active:
            return
        number = self.client.header().number
        if self.state is None or self.state.round != task.round:
            if number + 2 >= task.commit_end:  # too late to train and still land in the commit window
                self._set_state(RoundState(task.round, skipped="missed the commit window"), quiet=True)
                self.say(f"round {task.round}: the commit window has closed; waiting for round {task.round + 1}")
                return
            self._commit(task)
        elif self.state.committed and not self.state.revealed and task.commit_end <= number + 1 < task.reveal_end:
            self._reveal(task)

    # --- commit and reveal ----------------------------------------------------------

    def _commit(self, task: TaskView) -> None:
        behaviour = self.options.behaviour
        if behaviour == "copy":
            update, note = secrets.token_bytes(32), "a placeholder (it will reveal someone else's update)"
        elif behaviour == "stale":
            old = self._old_update(task)
            if old is None:
                self._set_state(RoundState(task.round, skipped="no earlier update to resubmit yet"))
                self.say(f"round {task.round}: nothing stale to resubmit yet; sitting this round out")
                return
            update, note = old, "an update revealed in an earlier round"
        elif behaviour == "nearcopy":
            old = self._old_update(task, others_only=True)
            blob = None if old is None else self.client.get_blob(old)
            if blob is None:
                self._set_state(RoundState(task.round, skipped="no earlier update to copy yet"))
                self.say(f"round {task.round}: nothing to copy yet; sitting this round out")
                return
            update = self.account.put_blob(one_ulp_copy(blob))
            note = f"update 0x{old.hex()[:16]} with one float moved by one ulp"
        elif behaviour == "inflate":
            blob, note = self._replayed_step(task)
            update = self.account.put_blob(blob)
        else:
            blob, note = self._make_update(task)
            update = self.account.put_blob(blob)
        salt = secrets.token_bytes(32)
        state = RoundState(task.round, update.hex(), salt.hex())
        self._set_state(state)  # before sending: a restart must know the salt of what it committed to
        self.account.send(training.commit_update(self.task_id, task.round,
                                                 training.update_commitment(update, self.account.public, salt)))
        state.committed = True
        self._set_state(state)
        self.say(f"round {task.round}: committed to update 0x{update.hex()[:16]} ({note})")

    def _reveal(self, task: TaskView) -> None:
        state = self.state
        update = bytes.fromhex(state.update)
        if self.options.behaviour == "copy":
            others = [unhex(u["update"]) for u in round_updates(self.client, self.task_id, task.round)
                      if unhex(u["submitter"]) != self.account.public]
            if not others:
                return  # nobody revealed yet: try again at the next poll
            update = others[0]
        samples = INFLATED_SAMPLES if self.options.behaviour == "inflate" else max(1, int(self.labels.shape[0]))
        self.account.send(training.reveal_update(self.task_id, task.round, update, bytes.fromhex(state.salt),
                                                 samples, self._data_commitment()))
        state.revealed = True
        self._set_state(state)
        self.say(f"round {task.round}: revealed update 0x{update.hex()[:16]}")

    def _make_update(self, task: TaskView) -> tuple[bytes, str]:
        base = download_model(self.client, task.spec, task.model)
        delta = train_local(task.spec, base, self.features, self.labels, epochs=self.options.epochs,
                            batch_size=self.options.batch_size, momentum=self.options.momentum,
                            lr=scheduled_lr(self.options.lr, self.options.lr_floor, task.round, task.rounds),
                            seed=self.options.seed * 100_003 + task.round)
        norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in delta.values())))
        behaviour = self.options.behaviour
        if behaviour == "noise":
            generator = torch.Generator().manual_seed(self.options.seed * 7 + task.round)
            noise = {n: torch.randn(t.shape, generator=generator) for n, t in delta.items()}
            target = self.options.noise_scale * norm
            scale = target / float(torch.sqrt(sum((t.double() ** 2).sum() for t in noise.values())))
            delta = {n: (t * scale).to(torch.float32) for n, t in noise.items()}
            return encode_tensors(delta), f"random noise of norm {target:.3f}"
        if behaviour == "poison":
            delta = {n: (-self.options.poison_scale * t).to(torch.float32) for n, t in delta.items()}
            return encode_tensors(delta), f"sign-flipped x{self.options.poison_scale:g}, norm " \
                                       f"{norm * self.options.poison_scale:.3f}"
        examples = self.labels.shape[0]
        return encode_tensors(delta), f"{self.options.epochs} epoch(s) on {examples} examples, norm {norm:.3f}"

    def _old_update(self, task: TaskView, *, others_only: bool = False) -> bytes | None:
        for earlier in range(task.round - 1, -1, -1):
            updates = [u for u in round_updates(self.client, self.task_id, earlier)
                       if not others_only or (unhex(u["submitter"]) != self.account.public and u.get("status") == 0)]
            if updates:
                return unhex(updates[0]["update"])
        return None

    def _replayed_step(self, task: TaskView) -> tuple[bytes, str]:
        """The last public model step (anyone can compute it), or a near-zero update before there is one."""
        current = download_model(self.client, task.spec, task.model)
        earlier = [unhex(v["model"]) for v in self.client.call("training_models", self.task_id)
                   if int(v["round"]) < task.round and unhex(v["model"]) != task.model]
        previous = earlier[-1] if earlier else unhex(task.config["initial_model"])
        if previous != task.model:
            before = download_model(self.client, task.spec, previous)
            step = {name: (current[name] - before[name]).to(torch.float32) for name in current}
            return encode_tensors(step), f"the last public model step, declaring {INFLATED_SAMPLES} samples"
        generator = torch.Generator().manual_seed(self.options.seed * 11 + task.round)
        tiny = {name: (torch.randn(t.shape, generator=generator) * 1e-6).to(torch.float32)
                for name, t in current.items()}
        return encode_tensors(tiny), f"a near-zero update, declaring {INFLATED_SAMPLES} samples"

    def _data_commitment(self) -> bytes:
        return blake2b_256(self.features.numpy().tobytes() + self.labels.numpy().tobytes())

    # --- results -------------------------------------------------------------------

    def _report(self, state: RoundState, *, final: bool = False) -> None:
        summary = round_summary(self.client, self.task_id, state.round)
        if summary is None and not final:
            return  # not closed yet
        if summary is None:  # the task was cancelled during the round: the bond came back
            self.results.append({"round": state.round, "behaviour": self.options.behaviour, "revealed": False,
                                 "accepted": False, "reward": 0, "contribution_ppm": 0, "status": "cancelled"})
            state.reported = True
            self._set_state(state, quiet=True)
            return
        mine = [u for u in round_updates(self.client, self.task_id, state.round)
                if unhex(u["submitter"]) == self.account.public]
        result = {"round": state.round, "behaviour": self.options.behaviour, "revealed": bool(mine),
                  "accepted": False, "reward": 0, "contribution_ppm": 0, "status": None}
        if state.skipped:
            result["status"] = "skipped"
        elif not mine:
            result["status"] = "not revealed"
            self.say(f"round {state.round}: closed; no update of ours was revealed on chain (refused)")
        else:
            record = mine[0]
            status = {0: "ok", 1: "missing", 2: "malformed", 3: "copy"}.get(record.get("status"), "?")
            result.update(accepted=bool(record.get("accepted")), reward=int(record.get("reward", 0)),
                          contribution_ppm=int(record.get("contribution_ppm", 0)), status=status)
            fate = "accepted" if result["accepted"] else {"ok": "not accepted", "copy": "refused as a near-copy, bond "
                                                          "forfeited"}.get(status, "bond slashed")
            self.say(f"round {state.round}: closed; {fate}, contribution {result['contribution_ppm']:,} ppm, "
                     f"reward {format_balance(result['reward'], 12, 'GRAD', exact=False)}")
        self.results.append(result)
        state.reported = True
        self._set_state(state, quiet=True)

    # --- state on disk -----------------------------------------------------------------

    def _load_state(self) -> RoundState | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            record = json.loads(self.state_path.read_text())
            if record.get("task") != self.task_id:
                return None
            return RoundState(**record["round"])
        except (ValueError, KeyError, TypeError) as error:
            raise TaskError(f"{self.state_path}: not a trainer state file ({error}); move it away to start fresh")

    def _set_state(self, state: RoundState, quiet: bool = False) -> None:
        self.state = state
        if self.state_path is not None:
            temporary = self.state_path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"task": self.task_id, "round": state.to_json()}))
            os.replace(temporary, self.state_path)


def one_ulp_copy(blob: bytes) -> bytes:
    """The update with its first float moved by one unit in the last place: a new hash, the same update."""
    tensors = decode_tensors(blob, max_bytes=len(blob), max_tensors=1 << 10, max_elements=1 << 28)
    name = sorted(tensors)[0]
    flat = tensors[name].detach().clone().reshape(-1)
    flat[0] = torch.from_numpy(np.nextafter(flat[0:1].numpy(), np.float32(np.inf)))
    return encode_tensors({**tensors, name: flat.reshape(tensors[name].shape)})


# --- command line ----------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    if args.data:
        try:
            with np.load(args.data) as data:
                features = torch.from_numpy(np.ascontiguousarray(data["features"], dtype=np.float32))
                labels = torch.from_numpy(np.ascontiguousarray(data["labels"], dtype=np.int64))
        except (OSError, KeyError, ValueError) as error:
            raise TaskError(f"{args.data}: cannot read features and labels from it ({error})") from None
        if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0] or not len(labels):
            raise TaskError(f"{args.data}: needs features [n, d] and labels [n] with n > 0")
        return features, labels
    try:
        index, count = (int(part) for part in args.shard.split("/"))
        assert 1 <= index <= count
    except (ValueError, AssertionError):
        raise TaskError(f"--shard must be i/n with 1 <= i <= n, not {args.shard!r}") from None
    return demo_data(args.dataset, count)[1][index - 1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:9944", help="the node's JSON-RPC URL")
    add_key_options(parser)
    add_era_options(parser)
    parser.add_argument("--task", type=int, required=True, help="the task id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help=".npz file with features and labels (the private data)")
    source.add_argument("--shard", help="i/n: the i-th non-IID shard of --dataset instead of --data")
    parser.add_argument("--dataset", default="digits", choices=("digits", "breast_cancer"))
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="honest", help="an adversary for demos and tests")
    parser.add_argument("--poison-scale", type=float, default=10.0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state", type=Path, help="progress file (default: ./trainer-<task>-<account>.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        print("error: --epochs and --batch-size must be positive and --lr above 0", file=sys.stderr)
        return 2
    try:
        keypair = keypair_from_args(args)
        era_period = era_period_of(args)
        features, labels = load_data(args)
        client = Client(args.url, timeout=30)
        address = crypto.encode_address(keypair.public, 42)
        state = args.state or Path(f"trainer-{args.task}-{address[:10]}.json")
        options = TrainerOptions(args.epochs, args.batch_size, args.lr, args.momentum, args.behaviour,
                                 args.poison_scale, args.noise_scale, args.seed)
        trainer = Trainer(client, keypair, args.task, features, labels, options, state_path=state,
                          say=lambda line: print(f"[{address[:8]}] {line}", flush=True), era_period=era_period)
        print(f"trainer {address} on task {args.task}: {labels.shape[0]} examples, behaviour {args.behaviour}",
              flush=True)
        results = trainer.run()
    except KeyboardInterrupt:
        return 130
    except (TaskError, RpcClientError, crypto.CryptoError, CliError) as error:
        print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
        return 2
    earned = sum(r["reward"] for r in results)
    print(f"done: {sum(r['accepted'] for r in results)} of {len(results)} rounds accepted, earned "
          f"{format_balance(earned, 12, 'GRAD', exact=False)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
