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
    integer_score_ms  scoring the base model on the subset as validators do: exact integer
                      evaluation (int64 fixed point, see consensus/useful_work/exact.py)
    float_score_ms    the same scores from the float32 forward pass (not exact across CPUs)
    integer_over_float  what exactness costs

With --large-rounds 32 256, each in a fresh process (so its peak memory is its own), a whole
fedavg round of N random updates on an MLP of about 1M parameters (--large-parameters):

    seconds           CPU seconds of measure_round + aggregate_round (leave-one-out from
                      exact sums: O(N x P) aggregation, N + 2 models scored on the subset)
    peak_mib          the process's peak resident memory (the N update blobs included)
    goal              256 updates of 1M parameters in under 60 s of one core

Each time is the median of --repeats measurements after a warm-up, in CPU time of
this process (so other load on the machine does not count; torch runs one thread).

    python scripts/bench/useful_work.py [--subset-size 256] [--shards 5] [--epochs 1] [--json]
                                        [--large-rounds 32 256]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
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
from consensus.useful_work.evaluate import compute_float_scores, compute_scores  # noqa: E402
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
    x, y = held_out.features[:subset_size], held_out.labels[:subset_size]
    integer_ms = median_ms(lambda: compute_scores(spec, base.weights, x, y), args.repeats)
    float_ms = median_ms(lambda: compute_float_scores(spec, base.weights, x, y), args.repeats)
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
        "integer_score_ms": round(integer_ms, 3),
        "float_score_ms": round(float_ms, 3),
        "integer_over_float": round(integer_ms / float_ms, 2),
    }


LARGE_ROUND_GOAL_S = 60.0


def large_round(updates: int, parameters: int, subset_size: int) -> dict:
    """One fedavg round of `updates` random updates on an MLP of about `parameters` weights (run in its own
    process: ru_maxrss is the process's peak)."""
    hidden = max(1, (parameters - 10) // 75)  # mlp 64 -> hidden -> 10 has 75 x hidden + 10 weights
    spec = ModelSpec("mlp", input_dim=64, hidden=hidden, classes=10)
    features, labels = load_dataset("digits")
    split = split_held_out(features, labels, 0.2, seed=0)
    held_out = HeldOutSet.from_tensors(split.held_out_features, split.held_out_labels)
    base = ModelVersion.from_weights(spec, state_of(build_model(spec, seed=0)))
    rules = TaskRules(spec, UpdateLimits(max_update_bytes=1 << 26, max_norm_fixed=norm_to_fixed(1000.0)),
                      AggregationRule("fedavg"), held_out_subset_size=min(subset_size, held_out.labels.shape[0]))
    generator = torch.Generator().manual_seed(0)
    submissions = []
    for index in range(updates):
        delta = {name: torch.randn(tensor.shape, generator=generator) * 1e-3 for name, tensor in base.weights.items()}
        submissions.append(Submission.of(encode_tensors(delta), 100 + index))
        del delta
    started = time.process_time()
    verifier = UsefulWorkVerifier()
    measured = verifier.measure_round(rules, base, submissions, held_out, b"round-seed")
    verifier.aggregate_round(rules, base, submissions, list(measured.without), held_out, b"round-seed")
    seconds = time.process_time() - started
    return {"updates": updates, "parameters": parameter_count(spec), "subset_examples": rules.held_out_subset_size,
            "seconds": round(seconds, 2), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "goal_s": LARGE_ROUND_GOAL_S}


def run_large_round(updates: int, args: argparse.Namespace) -> dict:
    result = subprocess.run([sys.executable, __file__, "--one-large-round", str(updates), "--large-parameters",
                             str(args.large_parameters), "--subset-size", str(args.subset_size)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the large round of {updates} updates failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


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
    scoring = Table(title="exact (integer) scoring vs float32, base model on the subset (1 core)")
    for column in ("architecture", "integer ms", "float ms", "integer/float"):
        scoring.add_column(column, justify="left" if column == "architecture" else "right")
    for name, row in results.items():
        scoring.add_row(name, f"{row['integer_score_ms']:.2f}", f"{row['float_score_ms']:.2f}",
                        f"{row['integer_over_float']:.1f}")
    Console(width=180).print(scoring)


def print_large_rounds(rounds: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="a whole fedavg round on ~1M parameters (1 core; goal: 256 updates in < 60 s)")
    for column in ("updates", "parameters", "subset", "seconds", "peak MiB"):
        table.add_column(column, justify="right")
    for row in rounds.values():
        style = "green" if row["seconds"] < LARGE_ROUND_GOAL_S else "red"
        table.add_row(str(row["updates"]), str(row["parameters"]), str(row["subset_examples"]),
                      f"[{style}]{row['seconds']:.1f}[/{style}]", str(row["peak_mib"]))
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
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by architecture "
                        "(and large_rounds, keyed by update count, with --large-rounds)")
    parser.add_argument("--large-rounds", type=int, nargs="*", default=[],
                        help="also time whole fedavg rounds of these many updates on ~1M parameters")
    parser.add_argument("--large-parameters", type=int, default=1_000_000)
    parser.add_argument("--one-large-round", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one_large_round:
        print(json.dumps(large_round(args.one_large_round, args.large_parameters, args.subset_size)))
        return
    results: dict = {name: bench_architecture(name, args) for name in args.architectures}
    rounds = {str(updates): run_large_round(updates, args) for updates in args.large_rounds}
    if args.json:
        print(json.dumps(results | ({"large_rounds": rounds} if rounds else {}), indent=2))
    else:
        print_table(results)
        if rounds:
            print_large_rounds(rounds)


if __name__ == "__main__":
    main()
