"""Rounds of a task without a chain: the engine functions the block author runs, in a loop.

For tuning a task's options and for the federated bench: each round every trainer trains
from the global model on its shard (the demo's local training), and the block author's own
code measures the round (RoundWork.measure: leave-one-out on a held-out subset drawn from a
per-round seed, a second pass without the updates under the task's minimum, the runtime's
acceptance rule, the accepted updates aggregated with the task's server optimizer); the new
model is adopted by the runtime's rule. Also the plain FedAvg server
loop (what Flower's FedAvg strategy computes: the sample-weighted mean of every client's new
weights) on the same shards and local training.

    python scripts/bench/simulate.py --task digits_mlp [--rounds 12] [--adversary noise|poison|absent] [--seed 1]
                                     [--set lr_floor=0.5 held_out_fraction=0.25]
    python scripts/bench/simulate.py --task digits_cnn --rounds 20 --sweep 0-4 [--jobs 2]

`--sweep` runs the chain's rounds for every seed in the range with five honest trainers, one absent
(what copy, poison, stale, inflate and nearcopy come to) and one noise trainer, and prints the test
and held-out ratios to the central baseline per run and their minimum (the goal holds across seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
import torch  # noqa: E402

from consensus.useful_work import (  # noqa: E402
    HeldOutSet, ModelSpec, ModelVersion, Submission, build_model, encode_tensors, state_of,
)
from consensus.useful_work.evaluate import evaluate  # noqa: E402
from consensus.useful_work.rounds import RoundInputs, RoundWork, task_rules  # noqa: E402
from consensus.useful_work.train import train_local  # noqa: E402
from consensus.useful_work.updates import apply_update  # noqa: E402
from runtime.hashing import blake2b_256  # noqa: E402
from runtime.pallets import training as rules_of_the_chain  # noqa: E402
from scripts._demo_tasks import DEMO_TASKS, train_centrally  # noqa: E402
from scripts._tasks import demo_data, task_config  # noqa: E402


@dataclass(frozen=True)
class Adversary:
    # noise, poison, or absent: what becomes of a copy, a stale or an inflated update (the chain leaves it
    # out of every aggregate and pays it nothing), so the round has the honest updates only
    behaviour: str
    poison_scale: float = 10.0
    noise_scale: float = 1.0


def local_update(spec: ModelSpec, weights, features, labels, task, trainer: int, round_number: int, rounds: int,
                 seed: int = 0):
    """A trainer's round of local training; `seed` 0 is the demo's (trainer i's seed is i), others shift every
    trainer's shuffles (to check that a task's options do not fit one seed)."""
    return train_local(spec, weights, features, labels, epochs=task.epochs, batch_size=task.batch_size,
                       lr=task.local_lr(round_number, rounds), seed=(trainer + 1000 * seed) * 100_003 + round_number)


def adversarial(delta, adversary: Adversary, trainer: int, round_number: int):
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in delta.values())))
    if adversary.behaviour == "poison":
        return {n: (-adversary.poison_scale * t).to(torch.float32) for n, t in delta.items()}
    generator = torch.Generator().manual_seed(trainer * 7 + round_number)
    noise = {n: torch.randn(t.shape, generator=generator) for n, t in delta.items()}
    scale = adversary.noise_scale * norm / float(torch.sqrt(sum((t.double() ** 2).sum() for t in noise.values())))
    return {n: (t * scale).to(torch.float32) for n, t in noise.items()}


def accuracy(spec, weights, features, labels) -> float:
    return evaluate(spec, weights, features, labels).accuracy_ppm / 1e6


def simulate_chain(name: str, rounds: int, trainers: int = 5, adversary: Adversary | None = None,
                   trainer_seed: int = 0, **changes) -> list[dict]:
    """Per round: the global model's held-out and test accuracy after the round, accepted, adopted.
    The round is measured by the block author's own code (RoundWork.measure: both leave-one-out passes,
    the acceptance rule, the aggregate) and adopted by the runtime's rule."""
    task = replace(DEMO_TASKS[name], **changes)
    split, shards, test = demo_data(task.dataset, trainers, task.held_out_fraction)
    spec = task.spec
    held_out = HeldOutSet.from_tensors(split.held_out_features, split.held_out_labels)
    options = task.options(rounds)
    config = task_config(spec, bytes(32), bytes(32), 1, {bytes(32): b"k"}, options)
    work = RoundWork(None, None)
    work.deferred = []  # aggregates stay in memory: there is no blob store
    base = ModelVersion.from_weights(spec, state_of(build_model(spec, 0)))
    previous = None
    history = []
    for round_number in range(rounds):
        submissions = []
        for index, (features, labels) in enumerate(shards):
            if adversary is not None and adversary.behaviour == "absent" and index == trainers - 1:
                continue
            delta = local_update(spec, base.weights, features, labels, task, index, round_number, rounds,
                                 trainer_seed)
            if adversary is not None and index == trainers - 1:
                delta = adversarial(delta, adversary, index, round_number)
            submissions.append(Submission.of(encode_tensors(delta), int(labels.shape[0])))
        seed = blake2b_256(b"simulated round" + round_number.to_bytes(4, "little"))
        chain_task = rules_of_the_chain.Task(bytes(32), config, round_number, 0, base.model_hash, None, 0,
                                             rules_of_the_chain.STATUS_ACTIVE)
        report = work.measure(RoundInputs(0, chain_task, task_rules(chain_task), base, submissions, held_out, seed,
                                          previous=previous))
        accepted = rules_of_the_chain.round_accepted(config, report)
        adopted = report.new_model is not None and rules_of_the_chain.is_adopted(config, report.base,
                                                                                 report.new_model_score)
        if adopted:
            previous, base = base, next(m for m in work.deferred if m.model_hash == report.new_model)
        work.deferred.clear()
        excluded = rules_of_the_chain.excluded_updates(config, report.candidate, report.scores)
        adversary_accepted = adversary is not None and adversary.behaviour != "absent" and \
            submissions[-1].update_hash in accepted
        history.append({"round": round_number, "accepted": len(accepted), "excluded": len(excluded),
                        "adopted": adopted, "adversary_paid": adopted and adversary_accepted,
                        "accuracy": accuracy(spec, base.weights, split.held_out_features, split.held_out_labels),
                        "test_accuracy": accuracy(spec, base.weights, *test)})
    return history


def plain_fedavg(name: str, rounds: int, trainers: int = 5, trainer_seed: int = 0, **changes) -> list[dict]:
    """Flower's FedAvg on the same shards and local training: every round, the new global weights are
    the mean of every client's trained weights, weighted by its examples (float, no chain)."""
    task = replace(DEMO_TASKS[name], **changes)
    split, shards, test = demo_data(task.dataset, trainers, task.held_out_fraction)
    spec = task.spec
    weights = state_of(build_model(spec, 0))
    history = []
    for round_number in range(rounds):
        total = sum(int(labels.shape[0]) for _, labels in shards)
        mean = {n: torch.zeros_like(t, dtype=torch.float64) for n, t in weights.items()}
        for index, (features, labels) in enumerate(shards):
            delta = local_update(spec, weights, features, labels, task, index, round_number, rounds, trainer_seed)
            for name_, tensor in delta.items():
                mean[name_] += tensor.double() * (int(labels.shape[0]) / total)
        weights = apply_update(weights, {n: t.to(torch.float32) for n, t in mean.items()})
        history.append({"round": round_number,
                        "accuracy": accuracy(spec, weights, split.held_out_features, split.held_out_labels),
                        "test_accuracy": accuracy(spec, weights, *test)})
    return history


def central_baseline(name: str, rounds: int, trainers: int = 5, **changes) -> tuple[float, float]:
    """The demo's baseline: the same model trained centrally on the union of the shards, rounds x epochs
    (the trainers' learning rate schedule)."""
    task = replace(DEMO_TASKS[name], **changes)
    split, shards, test = demo_data(task.dataset, trainers, task.held_out_fraction)
    features = torch.cat([f for f, _ in shards])
    labels = torch.cat([label for _, label in shards])
    model = train_centrally(task, state_of(build_model(task.spec, 0)), features, labels, rounds, epochs=task.epochs,
                            batch_size=task.batch_size, lr=task.lr)
    return (accuracy(task.spec, model, split.held_out_features, split.held_out_labels),
            accuracy(task.spec, model, *test))


def _sweep_run(job: tuple) -> tuple:
    name, rounds, adversary, seed, changes = job
    torch.set_num_threads(1)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # a line per round
    history = simulate_chain(name, rounds, adversary=None if adversary == "honest" else Adversary(adversary),
                             trainer_seed=seed, **changes)
    return (adversary, seed, history[-1]["accuracy"], history[-1]["test_accuracy"],
            sum(row["adversary_paid"] for row in history))


def sweep(name: str, rounds: int, seeds: range, jobs: int, changes: dict,
          adversaries: tuple[str, ...] = ("honest", "absent", "noise")) -> dict:
    """Every (adversary, seed) run's ratios to the central baseline, and the minimum per adversary."""
    baseline = central_baseline(name, rounds, **changes)
    work = [(name, rounds, adversary, seed, changes) for adversary in adversaries for seed in seeds]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_sweep_run, work))
    runs = [{"adversary": adversary, "seed": seed, "ratio": round(accuracy / baseline[0], 4),
             "test_ratio": round(test / baseline[1], 4), "adversary_paid_rounds": paid}
            for adversary, seed, accuracy, test, paid in results]
    worst = {adversary: {"ratio": min(r["ratio"] for r in runs if r["adversary"] == adversary),
                         "test_ratio": min(r["test_ratio"] for r in runs if r["adversary"] == adversary)}
             for adversary in adversaries}
    return {"task": name, "baseline": baseline, "runs": runs, "worst": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="digits_mlp", choices=sorted(DEMO_TASKS))
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--adversary", choices=("noise", "poison", "absent"))
    parser.add_argument("--seed", type=int, default=0, help="trainers' seeds (0: the demo's)")
    parser.add_argument("--set", nargs="*", default=[], help="task option changes, name=value")
    parser.add_argument("--sweep", help="seeds FIRST-LAST: honest, absent and noise runs of each, ratios only")
    parser.add_argument("--jobs", type=int, default=2, help="processes of a sweep (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    changes = {}
    for item in args.set:
        key, value = item.split("=", 1)
        changes[key] = type(getattr(DEMO_TASKS[args.task], key))(value)
    if args.sweep:
        first, _, last = args.sweep.partition("-")
        result = sweep(args.task, args.rounds, range(int(first), int(last or first) + 1), args.jobs, changes)
        for run in result["runs"]:
            print(f"{run['adversary']:<8} seed {run['seed']}  held-out {run['ratio']:.4f}  test {run['test_ratio']:.4f}"
                  f"  adversary paid {run['adversary_paid_rounds']}")
        print(json.dumps(result["worst"] | {"baseline": result["baseline"]}))
        return
    chain = simulate_chain(args.task, args.rounds, adversary=Adversary(args.adversary) if args.adversary else None,
                           trainer_seed=args.seed, **changes)
    plain = plain_fedavg(args.task, args.rounds, trainer_seed=args.seed, **changes)
    baseline = central_baseline(args.task, args.rounds, **changes)
    for row, fed in zip(chain, plain):
        print(f"round {row['round']:>3} accepted {row['accepted']} excluded {row['excluded']} "
              f"adopted {int(row['adopted'])} "
              f"chain {row['accuracy']:.4f}/{row['test_accuracy']:.4f}  fedavg {fed['accuracy']:.4f}/"
              f"{fed['test_accuracy']:.4f}")
    print(json.dumps({"task": args.task, "baseline": baseline, "chain_final": chain[-1]["accuracy"],
                      "chain_test": chain[-1]["test_accuracy"], "ratio": chain[-1]["accuracy"] / baseline[0],
                      "test_ratio": chain[-1]["test_accuracy"] / baseline[1], "fedavg_final": plain[-1]["accuracy"],
                      "adversary_paid_rounds": sum(row["adversary_paid"] for row in chain)}))


if __name__ == "__main__":
    main()
