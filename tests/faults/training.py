"""A training task in flight during a fault: a real digits task with trainers, rounds going on through it.

At the start of a scenario Eve (endowed, no validator) funds two trainer accounts and
publishes a task (scripts/_demo_tasks.py's digits MLP, with short windows so several
rounds close during a scenario); each trainer (scripts/trainer.py's Trainer, the code a
trainer process runs) follows the task in a thread, talking to a node the fault spares.
A trainer whose call fails (its node busy, or a reorg dropped its commit) is started
again on its state file, as a supervisor restarts a trainer process: the rounds go on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from consensus.useful_work import build_model, state_of
from node.testnet.processes import TestnetNode
from rpc.client import Client
from runtime import crypto
from runtime.pallets import balances
from scripts._demo_tasks import DEMO_TASKS
from scripts._tasks import ChainAccount, demo_data, publish_task
from scripts.trainer import Trainer, TrainerOptions

TASK = DEMO_TASKS["digits_mlp"]
ROUNDS = 60  # more than a scenario runs (a round is about commit + reveal + 2 blocks): the task never ends in one
# Reveals name the update blobs; the other nodes fetch them then, and an author that lacks one when it
# reports the round declares it missing while the validators that have it measure it: an honest dispute
# (seen here with 2 reveal blocks on a busy machine). 4 reveal blocks leave the blobs time to spread.
COMMIT_BLOCKS, REVEAL_BLOCKS = 4, 4
REWARD_PER_ROUND = 100 * 10**12
TRAINER_FUNDS = 1_000 * 10**12
CREATOR = "//Eve"
SHARDS = 5  # the demo's split (scripts/demo.py); the trainers take the first shards
MAX_UPDATE_NORM = 8.0  # twice the demo's bound (its honest norms stay below 2.3): no honest bond burns here


@dataclass
class TrainerRun:
    """One trainer's thread: its key, its node, and what went wrong along the way."""

    keypair: crypto.Keypair
    node: TestnetNode
    state_path: Path
    restarts: int = 0
    errors: list[str] = field(default_factory=list)
    rounds: set[int] = field(default_factory=set)  # rounds whose result it saw
    thread: threading.Thread | None = None


class TrainingLoad:
    """Create the task, then keep `trainers` trainers on it until stop()."""

    def __init__(self, nodes: list[TestnetNode], work_dir: Path, trainers: int = 2) -> None:
        if not nodes:
            raise ValueError("the training load needs a node the fault spares")
        self.nodes = nodes
        self.work_dir = work_dir
        self.stop_event = threading.Event()
        self.task_id: int | None = None
        _, self.shards, _ = demo_data(TASK.dataset, SHARDS)  # the demo's shard sizes: its update norms
        self.runs = [TrainerRun(crypto.keypair_from_uri(f"//FaultTrainer{i + 1}"), nodes[i % len(nodes)],
                                work_dir / f"trainer{i + 1}.json") for i in range(trainers)]

    def start(self) -> "TrainingLoad":
        torch.set_num_threads(1)  # the trainers share this process with the load senders
        self.work_dir.mkdir(parents=True, exist_ok=True)
        creator = ChainAccount(Client(self.nodes[0].rpc_url, timeout=30), crypto.keypair_from_uri(CREATOR))
        for run in self.runs:
            creator.send(balances.transfer(run.keypair.public, TRAINER_FUNDS))
        split, _, _ = demo_data(TASK.dataset, SHARDS)
        options = TASK.options(ROUNDS, commit_blocks=COMMIT_BLOCKS, reveal_blocks=REVEAL_BLOCKS,
                               reward_per_round=REWARD_PER_ROUND, max_update_norm=MAX_UPDATE_NORM)
        self.task_id = publish_task(creator, TASK.spec, state_of(build_model(TASK.spec, 0)),
                                    split.held_out_features, split.held_out_labels, options, timeout=90)
        for index, run in enumerate(self.runs):
            run.thread = threading.Thread(target=self._follow, args=(run, index), name=f"trainer{index + 1}",
                                          daemon=True)
            run.thread.start()
        return self

    def _follow(self, run: TrainerRun, index: int) -> None:
        features, labels = self.shards[index]
        options = TrainerOptions(epochs=TASK.epochs, batch_size=TASK.batch_size, lr=TASK.lr, seed=index)
        while not self.stop_event.is_set():
            trainer = Trainer(Client(run.node.rpc_url, timeout=15), run.keypair, self.task_id, features, labels,
                              options, state_path=run.state_path, say=lambda line: None)
            try:
                results = trainer.run(self.stop_event)
                run.rounds.update(r["round"] for r in results)
                return  # stopped, or the task ended
            except Exception as error:  # noqa: BLE001 — a trainer process would die and be restarted: so here
                run.rounds.update(r["round"] for r in trainer.results)
                run.errors.append(f"{type(error).__name__}: {error}"[:200])
                run.restarts += 1
                self.stop_event.wait(1.0)

    def committed(self) -> bool:
        """Whether some trainer committed to an update already (the task is in flight)."""
        for run in self.runs:
            try:
                text = run.state_path.read_text()
            except OSError:
                continue
            if '"committed": true' in text:
                return True
        return False

    def stop(self) -> None:
        self.stop_event.set()
        for run in self.runs:
            if run.thread is not None:
                run.thread.join(30)

    def measured(self) -> dict:
        return {"task": self.task_id, "trainer_restarts": sum(r.restarts for r in self.runs),
                "trainer_errors": [e for r in self.runs for e in r.errors][:3],
                "trainer_rounds": sorted({n for r in self.runs for n in r.rounds})}

