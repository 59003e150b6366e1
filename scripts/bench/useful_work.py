#!/usr/bin/env python3
"""Benchmark: what verifying an update costs a validator, against what producing it cost its trainer.

Per architecture (logistic regression on breast-cancer, MLP and small CNN on
digits), on one core (torch single-threaded, as the verifier always runs):

    train_ms          one local epoch of SGD on one trainer's shard (1/shards of the
                      training data, non-IID), what `train_local` does
    verify_ms         decode + sanity checks + apply + evaluate one update on the
                      round's held-out subset (UsefulWorkVerifier.score_update, no cache)
    verify_over_train verify_ms / train_ms (the goal: <= 0.05 for MLP and CNN)
    round_over_train  round_ms / train_ms: what the chain's leave-one-out check costs per update
    round_ms          a whole round as the chain measures it, with one update per shard
                      (measure_round: the base, the candidate and one leave-one-out
                      aggregate per update, then aggregate_round over all of them: fixed-point aggregation,
                      model hash, the new model's score), per update
    updates_per_s     1000 / verify_ms: updates one core verifies per second
    epochs_for_goal   the local epochs per update at which verify_over_train reaches 0.05
                      (verify cost is fixed per update; training grows with epochs x shard)

Each time is the median of --repeats measurements after a warm-up, in CPU time of
this process (so other load on the machine does not count; torch runs one thread).

    python scripts/bench/useful_work.py [--subset-size 256] [--shards 5] [--epochs 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from consensus.useful_work import (  # noqa: E402
    AggregationRule, HeldOutSet, ModelSpec, ModelVersion, Submission, TaskRules, UpdateLimits, UsefulWorkVerifier,
    build_model, encode_tensors, state_of,
)
from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out  # noqa: E402
from consensus.useful_work.fixed_point import norm_to_fixed  # noqa: E402
from consensus.useful_work.models import parameter_count  # noqa: E402
from consensus.useful_work.train import train_local  # noqa: E402

GOAL = 0.05  # verifying an update should cost at most 5% of producing it
# architecture -> (data set, spec, learning rate)
CASES = {
    "logistic_regression": ("breast_cancer", ModelSpec("logistic_regression", input_dim=30, classes=2), 0.1),
    "mlp": ("digits", ModelSpec("mlp", input_dim=64, hidden=64, classes=10), 0.1),
    "small_cnn": ("digits", ModelSpec("small_cnn", input_dim=64, channels=8, classes=10), 0.1),
}


def median_ms(action: Callable[[], object], repeats: int) -> float:
    action()  # warm-up: first calls allocate and pick kernels
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        action()
        samples.append((time.process_time() - started) * 1000)
    return statistics.median(samples)


def bench_architecture(name: str, args: argparse.Namespace) -> dict:
    dataset, spec, lr = CASES[name]
    features, labels = load_dataset(dataset)
    split = split_held_out(features, labels, args.held_out_fraction, seed=0)
    shards = shard_non_iid(split.train_features, split.train_labels, args.shards, classes_per_shard=2, seed=0)
    base = ModelVersion.from_weights(spec, state_of(build_model(spec, seed=0)))
    held_out = HeldOutSet.from_tensors(split.held_out_features, split.held_out_labels)
    subset_size = min(args.subset_size, held_out.labels.shape[0])
    rules = TaskRules(spec, UpdateLimits(max_update_bytes=1 << 24, max_norm_fixed=norm_to_fixed(1000.0)),
                      AggregationRule("trimmed_mean", trim=1), held_out_subset_size=subset_size)
    shard_features, shard_labels = shards[0]

    def train() -> dict:
        return train_local(spec, base.weights, shard_features, shard_labels, epochs=args.epochs,
                           batch_size=args.batch_size, lr=lr, seed=1)

    train_ms = median_ms(train, args.repeats)
    submissions = [Submission.of(encode_tensors(train_local(spec, base.weights, x, y, epochs=args.epochs,
                                                          batch_size=args.batch_size, lr=lr, seed=index)), len(y))
                   for index, (x, y) in enumerate(shards)]
    uncached = UsefulWorkVerifier(cache_size=0, delta_cache_size=0, aggregate_cache_size=0)
    seed = b"round-seed"
    verify_ms = median_ms(lambda: uncached.score_update(rules, base, submissions[0].update_blob, held_out, seed),
                          args.repeats)

    def run_round() -> None:
        verifier = UsefulWorkVerifier()  # a validator meeting the round for the first time
        measured = verifier.measure_round(rules, base, submissions, held_out, seed)
        verifier.aggregate_round(rules, base, submissions, list(measured.without), held_out, seed)

    round_ms = median_ms(run_round, max(3, args.repeats // 5)) / len(submissions)
    return {
        "dataset": dataset,
        "parameters": parameter_count(spec),
        "shard_examples": int(shard_labels.shape[0]),
        "subset_examples": subset_size,
        "epochs": args.epochs,
        "train_ms": round(train_ms, 3),
        "verify_ms": round(verify_ms, 3),
        "verify_over_train": round(verify_ms / train_ms, 4),
        "round_ms_per_update": round(round_ms, 3),
        "round_over_train": round(round_ms / train_ms, 4),
        "updates_per_s_per_core": round(1000 / verify_ms, 1),
        "epochs_for_goal": math.ceil(verify_ms / (GOAL * train_ms / args.epochs)),
    }


def print_table(results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="useful work: verify one update vs produce it (1 core)")
    columns = ["architecture", "dataset", "params", "shard", "subset", "epochs", "train ms", "verify ms",
               "verify/train", "round ms/update", "round/train", "updates/s/core", "epochs for 5%"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("architecture", "dataset") else "right", no_wrap=True)
    for name, row in results.items():
        ratio = row["verify_over_train"]
        style = "green" if ratio <= GOAL else "red"
        table.add_row(name, row["dataset"], str(row["parameters"]), str(row["shard_examples"]),
                      str(row["subset_examples"]), str(row["epochs"]), f"{row['train_ms']:.2f}",
                      f"{row['verify_ms']:.2f}", f"[{style}]{ratio:.3f}[/{style}]",
                      f"{row['round_ms_per_update']:.2f}", f"{row['round_over_train']:.3f}",
                      f"{row['updates_per_s_per_core']:.0f}",
                      str(row["epochs_for_goal"]))
    Console(width=180).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset-size", type=int, default=256, help="held-out examples scored per update")
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument("--shards", type=int, default=5, help="trainers; each shard is 1/shards of the training data")
    parser.add_argument("--epochs", type=int, default=1, help="local epochs a trainer runs per update")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--architectures", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by architecture")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: bench_architecture(name, args) for name in args.architectures}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
