#!/usr/bin/env python3
"""Benchmark: the chain's federated task against a plain FedAvg server loop with no chain.

On the same shards, rounds and local training (scripts/_demo_tasks.py: five non-IID
trainers, the task's epochs, batch size and learning rate, the same per-round seeds):

    chain     the demo's task on a real `gradchain --dev` node (scripts/demo.py, honest
              scenario): commit-reveal, leave-one-out scoring on the held-out set, the
              acceptance rule, FedAvgM in fixed point, adoption by the task's metric
    fedavg    what Flower's FedAvg strategy computes: each round, every client trains from
              the global model and the new global weights are the mean of their weights
              weighted by examples (float, in this process, no chain, no checks)

Printed per round: both models' accuracy on the held-out set and on the test set; then
the wall-clock seconds of each and the chain's overhead (chain - fedavg seconds: block
slots, transactions, scoring). `--no-chain` replaces the node by the engine functions in
a loop (scripts/bench/simulate.py), for quick comparisons.

    python scripts/bench/federated.py [--task digits_mlp] [--rounds 20] [--no-chain] [--json]

With --json, one JSON object: task, rounds (per round: chain_accuracy, chain_test_accuracy,
fedavg_accuracy, fedavg_test_accuracy), chain_final_accuracy, fedavg_final_accuracy,
chain_final_test_accuracy, fedavg_final_test_accuracy, chain_seconds, fedavg_seconds,
overhead_seconds, chain_not_worse (the chain's last-round held-out accuracy >= FedAvg's).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import torch  # noqa: E402

from scripts import demo  # noqa: E402
from scripts._demo_tasks import DEMO_TASKS  # noqa: E402
from simulate import plain_fedavg, simulate_chain  # noqa: E402


def run_chain(task: str, rounds: int, trainers: int) -> list[dict]:
    args = demo.parse_args(["--dev", "--tasks", task, "--scenarios", "honest", "--rounds", str(rounds), "--trainers",
                            str(trainers), "--html", "", "--json-only"])
    base = Path(tempfile.mkdtemp(prefix="gradchain-federated-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = demo.run_demo(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return result["rounds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="digits_mlp", choices=sorted(DEMO_TASKS))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trainers", type=int, default=5)
    parser.add_argument("--no-chain", action="store_true", help="the engine in a loop instead of a node")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000 or not 2 <= args.trainers <= 50:
        parser.error("--rounds 1..1000 and --trainers 2..50")
    torch.set_num_threads(1)
    started = time.monotonic()
    chain = simulate_chain(args.task, args.rounds, args.trainers) if args.no_chain \
        else run_chain(args.task, args.rounds, args.trainers)
    chain_seconds = time.monotonic() - started
    started = time.monotonic()
    fedavg = plain_fedavg(args.task, args.rounds, args.trainers)
    fedavg_seconds = time.monotonic() - started
    rows = [{"round": fed["round"], "chain_accuracy": ours["accuracy"], "chain_test_accuracy": ours["test_accuracy"],
             "fedavg_accuracy": fed["accuracy"], "fedavg_test_accuracy": fed["test_accuracy"]}
            for ours, fed in zip(chain, fedavg)]
    result = {"task": args.task, "chain": "engine loop" if args.no_chain else "dev node", "rounds": rows,
              "chain_final_accuracy": rows[-1]["chain_accuracy"], "fedavg_final_accuracy": rows[-1]["fedavg_accuracy"],
              "chain_final_test_accuracy": rows[-1]["chain_test_accuracy"],
              "fedavg_final_test_accuracy": rows[-1]["fedavg_test_accuracy"],
              "chain_seconds": round(chain_seconds, 2), "fedavg_seconds": round(fedavg_seconds, 2),
              "overhead_seconds": round(chain_seconds - fedavg_seconds, 2),
              "chain_not_worse": rows[-1]["chain_accuracy"] >= rows[-1]["fedavg_accuracy"]}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.task}: the chain ({result['chain']}) against plain FedAvg, {args.rounds} rounds, "
          f"{args.trainers} non-IID trainers")
    print(f"{'round':>5}{'chain':>10}{'chain test':>12}{'fedavg':>10}{'fedavg test':>13}")
    for row in rows:
        print(f"{row['round']:>5}{row['chain_accuracy']:>10.4f}{row['chain_test_accuracy']:>12.4f}"
              f"{row['fedavg_accuracy']:>10.4f}{row['fedavg_test_accuracy']:>13.4f}")
    print(f"wall clock: chain {chain_seconds:.1f} s, fedavg {fedavg_seconds:.1f} s, "
          f"overhead {chain_seconds - fedavg_seconds:.1f} s; the chain "
          f"{'does not lose' if result['chain_not_worse'] else 'loses'} to FedAvg at the last round")


if __name__ == "__main__":
    main()
