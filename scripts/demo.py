#!/usr/bin/env python3
"""The one-command demo: a model trained through the chain by trainers who never share their data.

Starts a local network of four validators with `gradchain testnet` (Alice, Bob, Charlie
and Dave, 1 s slots, each with its own LevelDB, p2p and RPC port under a temporary base
path unless `--base-path`), or with `--dev` one `gradchain --dev` node (Alice validates
alone), then on 127.0.0.1:

  * the task creator (Alice) holds back a quarter of the data as the held-out set,
    encrypts it, seals its key to every validator and creates a task per `--tasks` (scripts/_demo_tasks.py):
    an MLP and the small CNN on scikit-learn's digits, logistic regression on its
    breast-cancer set, each with FedAvgM (server momentum 0.5) in fixed point;
  * five trainers each get a non-IID shard of the rest (70% two classes) and
    follow the task round by round (scripts/trainer.py's Trainer, one thread each),
    trainer i through validator i mod 4;
  * the author of the round's block measures the round on the held-out subset the chain
    picks, accepts the updates that improve the aggregate and pays them; every other
    validator re-measures it before it votes to finalize that block.

A line per closed round shows the updates accepted and rejected, the new global
model's accuracy on the *whole* held-out set, the rewards paid and, on the network, when
the round's block was finalized and by how many validators' stake; the end shows
the same architecture trained centrally on the union of the trainers' data for
the same number of epochs (the baseline), and writes the explorer's HTML page (on the
network, with which validators verified each round). Defaults: on the network 10 rounds of
digits_mlp and breast_cancer_logistic; with --dev 20 rounds of every task.

    python scripts/demo.py [--dev] [--validators 4] [--rounds 10] [--trainers 5] [--tasks digits_mlp,digits_cnn]
                           [--scenarios honest,poison] [--json]

Accuracy is reported on the task's whole held-out set (the chain scores rounds on
subsets of it) and on a test set that neither the chain nor the baseline ever sees.

`--scenarios` runs, for every task, one chain task per scenario side by side on the same
chain: `honest` (all trainers honest) or an adversary's behaviour (`copy`, `noise`,
`poison`, `stale`, `inflate`, `nearcopy`: the last trainer of that task misbehaves, see
scripts/trainer.py). The summary shows what the adversary earned against the best honest
trainer of its task, and how often its bond was burned or forfeited. With `--json` the last
line of output is one JSON object: per-round figures, `final_accuracy` and
`baseline_accuracy` of the first task's first scenario, every scenario's summary of the
first task under `scenarios`, and under `tasks` per task: `final_accuracy`,
`baseline_accuracy`, `test_accuracy`, `baseline_test_accuracy` (of its first scenario)
and its `scenarios`; `network` says where it ran (`mode`, `validators`, `slot_ms`). On the
network each round also has `closed_at` (its block), `finality` (`block`, `justified`,
`signers`, `validators`, `stake_percent`, `after_s`) and, for the first task's first
scenario, `verified_by` ({validator: verification status}).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from consensus.useful_work import ModelSpec, build_model, state_of  # noqa: E402
from consensus.useful_work.evaluate import evaluate  # noqa: E402
from rpc.client import Client, RpcClientError  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.pallets import balances  # noqa: E402
from scripts._demo_args import parse_args  # noqa: E402
from scripts._demo_summary import grad, say, summarize  # noqa: E402
from scripts._demo_network import DevNode, FinalityWatch, TestnetChain, finality_text  # noqa: E402
from scripts._demo_tasks import DEMO_TASKS, DemoTask, train_centrally  # noqa: E402
from scripts._tasks import (  # noqa: E402
    ChainAccount, TaskError, demo_data, download_model, get_task, publish_task, unhex, wait_until,
)
from scripts.trainer import Trainer, TrainerOptions  # noqa: E402

PLANCK = 10**12


@dataclass
class Scenario:
    name: str
    task_name: str  # the key of DEMO_TASKS
    task_id: int
    trainers: list[Trainer]
    accounts: list[bytes]
    adversary: bytes | None
    rounds: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TaskData:
    """One demo task's model and data, and its local training after the command line's overrides."""

    name: str
    task: DemoTask
    split: object
    shards: list
    test: tuple
    epochs: int
    batch_size: int
    lr: float

    @property
    def spec(self) -> ModelSpec:
        return self.task.spec


def run_demo(args: argparse.Namespace, base: Path) -> dict:
    quiet = args.json_only
    torch.set_num_threads(1)  # trainers share this process; the nodes have their own
    tasks = [_task_data(name, args) for name in args.tasks]
    # before the trainers start: computed beside them, the baselines held the trainers' threads (one process)
    # past the first rounds' commit windows on a loaded machine, and those rounds closed with nothing revealed
    baselines = {}
    for data in tasks:
        baselines[data.name] = _baseline(data, args)
        say(f"centralized baseline of {data.name} ({args.rounds * data.epochs} epochs on the union of the "
            f"trainers' data): held-out accuracy {baselines[data.name][0]:.4f}, test accuracy "
            f"{baselines[data.name][1]:.4f}", quiet)
    if args.dev:
        say(f"starting a dev node (base path {base})", quiet)
    else:
        say(f"starting a network of {args.validators} validators with `gradchain testnet` (base path {base})", quiet)
    chain = DevNode(base) if args.dev else TestnetChain(base, args.validators, args.slot_ms)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    watch: FinalityWatch | None = None
    try:
        chain.wait_ready(lambda line: say(line, quiet))
        say(f"running on {chain.describe()}", quiet)
        clients = [v.client for v in chain.validators]
        watch = None if args.dev else FinalityWatch(chain)
        alice = ChainAccount(chain.client, crypto.dev_keypair("Alice"))
        scenarios = []
        for data in tasks:
            for name in args.scenarios:
                scenario = _start_scenario(clients, alice, data, name, args, quiet)
                scenarios.append(scenario)
                for trainer in scenario.trainers:  # at once: the task's first commit window is open now
                    report = (lambda line, t=trainer, q=quiet: say(f"  task {t.task_id} trainer {t.options.seed + 1}: "
                                                                   f"{line}", q))
                    thread = threading.Thread(target=_run_trainer, args=(trainer, stop, report), daemon=True)
                    thread.start()
                    threads.append(thread)
        say(f"{'task':<32}{'round':>5}{'revealed':>10}{'accepted':>10}{'rejected':>10}{'accuracy':>10}{'test':>8}"
            f"{'paid (GRAD)':>14}" + ("" if watch is None else "  finality of the round's block"), quiet)
        _follow(chain, scenarios, {data.name: data for data in tasks}, args, quiet, watch)
        html_path = _write_html(chain.client, scenarios[0], baselines[scenarios[0].task_name][0], args, watch)
        if html_path:
            say(f"explorer page: {html_path}", quiet)
        result = summarize(chain.client, scenarios, baselines, html_path, quiet, exact=args.exact)
        result["network"] = {"mode": "dev" if args.dev else "testnet",
                             "validators": [v.name for v in chain.validators], "slot_ms": chain.slot_ms}
        return result
    except (TaskError, RpcClientError):
        chain.check(grace_s=5)  # a validator that died explains the error best: name it, with its log
        raise
    finally:
        stop.set()
        if watch is not None:
            watch.stop()
        for thread in threads:
            thread.join(10)
        say("stopping the node" + ("" if args.dev else "s"), quiet)
        chain.stop()


def _task_data(name: str, args: argparse.Namespace) -> TaskData:
    task = DEMO_TASKS[name]
    split, shards, test = demo_data(task.dataset, args.trainers, task.held_out_fraction)
    return TaskData(name, task, split, shards, test, args.epochs or task.epochs, args.batch_size or task.batch_size,
                    args.lr or task.lr)


def _start_scenario(clients: list[Client], alice: ChainAccount, data: TaskData, name: str,
                    args: argparse.Namespace, quiet: bool) -> Scenario:
    """The task, created by Alice through the first validator; trainer i talks to validator i mod N."""
    keys = [crypto.keypair_from_uri(f"//Demo//{data.name}//{name}//{i}") for i in range(args.trainers)]
    for key in keys:
        alice.send(balances.transfer(key.public, 1_000 * PLANCK))
    initial = state_of(build_model(data.spec, 0))
    changes = {} if args.subset is None else {"held_out_subset": args.subset}
    task_id = publish_task(alice, data.spec, initial, data.split.held_out_features, data.split.held_out_labels,
                           data.task.options(args.rounds, **changes))
    # a trainer asks its own validator for the task: every validator must have imported it first
    wait_until(lambda: all(get_task(c, task_id) is not None for c in clients), timeout=60,
               what=f"every validator to import task {task_id}")
    options = TrainerOptions(epochs=data.epochs, batch_size=data.batch_size, lr=data.lr, lr_floor=data.task.lr_floor)
    trainers = []
    for i, (key, (features, labels)) in enumerate(zip(keys, data.shards)):
        behaviour = name if (name != "honest" and i == args.trainers - 1) else "honest"
        prefix = f"  {data.name} {name:<7} trainer {i + 1}"
        trainers.append(Trainer(clients[i % len(clients)], key, task_id, features, labels,
                                TrainerOptions(**{**options.__dict__, "behaviour": behaviour, "seed": i}),
                                say=(lambda line, p=prefix: say(f"{p}: {line}", quiet or not args.verbose))))
    adversary = keys[-1].public if name != "honest" else None
    say(f"task {task_id} ({data.name}, {name}): {args.rounds} rounds, {args.trainers} trainers"
        + (f", trainer {args.trainers} behaves '{name}'" if adversary else "")
        + (f"; trainer i talks to validator i mod {len(clients)}" if len(clients) > 1 else ""), quiet)
    return Scenario(name, data.name, task_id, trainers, [k.public for k in keys], adversary)


def _run_trainer(trainer: Trainer, stop: threading.Event, report, attempts: int = 5) -> None:
    """A trainer's failure is its own: the demo reports it and goes on. On a network its validator may lack a
    blob for a moment (still fetching it), so it tries again, keeping its round state, a few times."""
    for attempt in range(1, attempts + 1):
        try:
            trainer.run(stop)
            return
        except Exception as error:  # noqa: BLE001
            again = attempt < attempts and not stop.is_set()
            report(f"{type(error).__name__}: {error}" + ("; trying again in 2 s" if again else "; stopped"))
            if not again or stop.wait(2):
                return


def _baseline(data: TaskData, args) -> tuple[float, float]:
    """(held-out, test) accuracy of the task's model trained centrally on the union of the shards, same epochs."""
    features = torch.cat([f for f, _ in data.shards])
    labels = torch.cat([l for _, l in data.shards])
    model = train_centrally(data.task, state_of(build_model(data.spec, 0)), features, labels, args.rounds,
                            epochs=data.epochs, batch_size=data.batch_size, lr=data.lr)
    return (evaluate(data.spec, model, data.split.held_out_features, data.split.held_out_labels).accuracy_ppm / 1e6,
            evaluate(data.spec, model, *data.test).accuracy_ppm / 1e6)


def _follow(chain, scenarios: list[Scenario], tasks: dict[str, TaskData], args, quiet: bool,
            watch: FinalityWatch | None) -> None:
    """Print each round as it closes (on a network: once its block is final, with who finalized it and when),
    until every task has ended and every round is printed."""
    client = chain.client
    deadline = time.monotonic() + args.timeout
    pending = {s.task_id for s in scenarios}
    unprinted: list[dict] = []
    waited_until = time.monotonic()
    models: dict[tuple[str, bytes], tuple[float, float]] = {}
    while pending or unprinted:
        if time.monotonic() > deadline:
            raise TaskError(f"the tasks did not finish within {args.timeout} s")
        chain.check()
        for scenario in scenarios:
            data = tasks[scenario.task_name]
            closed = client.call("training_rounds", scenario.task_id)
            for summary in closed[len(scenario.rounds):]:
                model = unhex(summary["model"])
                if (data.name, model) not in models:
                    weights = download_model(client, data.spec, model)
                    models[data.name, model] = (
                        evaluate(data.spec, weights, data.split.held_out_features,
                                 data.split.held_out_labels).accuracy_ppm / 1e6,
                        evaluate(data.spec, weights, *data.test).accuracy_ppm / 1e6)
                accuracy, test_accuracy = models[data.name, model]
                updates = client.call("training_updates", scenario.task_id, summary["round"])
                row = {"task": scenario.task_id, "demo_task": data.name, "scenario": scenario.name,
                       "round": summary["round"], "revealed": summary["revealed"], "accepted": summary["accepted"],
                       "rejected": summary["revealed"] - summary["accepted"],
                       "slashed": sum(1 for u in updates if u.get("status", 0) != 0),
                       "adopted": summary["adopted"], "accuracy": accuracy, "test_accuracy": test_accuracy,
                       "subset_accuracy": (summary["model_score"] or summary["base"])["accuracy_ppm"] / 1e6,
                       "paid": int(summary["paid"]), "closed_at": int(summary["closed_at"])}
                scenario.rounds.append(row)
                if not unprinted:
                    waited_until = time.monotonic()
                unprinted.append(row)
            task = get_task(client, scenario.task_id)
            if task is not None and not task.active:
                pending.discard(scenario.task_id)
        while unprinted and (watch is None or _with_finality(unprinted[0], watch, late=not pending)):
            _print_round(unprinted.pop(0), args, quiet)
        if unprinted and watch is not None and time.monotonic() > waited_until + 30:  # say why nothing moves
            waited_until = time.monotonic()
            row = unprinted[0]
            say(f"  (round {row['round']} of task {row['task']} closed in block #{row['closed_at']}, not final yet: "
                f"finalized #{watch.finalized}; {watch.disputes(row['closed_at'])})", quiet)
        time.sleep(0.5)


def _with_finality(row: dict, watch: FinalityWatch, late: bool) -> bool:
    """Add the finality of the row's block; False while it is not final (unless `late`: printed without)."""
    row["finality"] = watch.finality_of(row["closed_at"])
    return row["finality"] is not None or late and time.monotonic() > row.setdefault("_late", time.monotonic() + 60)


def _print_round(row: dict, args, quiet: bool) -> None:
    row.pop("_late", None)
    label = f"{row['demo_task']} {row['scenario']}"
    say(f"{label:<32}{row['round']:>5}{row['revealed']:>10}{row['accepted']:>10}"
        f"{row['rejected']:>10}{row['accuracy']:>10.4f}{row['test_accuracy']:>8.4f}"
        f"{grad(row['paid'], args.exact):>14}"
        + ("" if row["adopted"] else "  (model kept)")
        + (f"  {finality_text(row['finality'])}" if "finality" in row else ""), quiet)


def _write_html(client: Client, scenario: Scenario, baseline: float, args, watch: FinalityWatch | None) -> str | None:
    if args.html == "":
        return None
    try:
        from scripts import explorer_tasks
    except ImportError:
        return None
    from scripts._common import ChainInfo

    report = explorer_tasks.task_report(client, scenario.task_id, ChainInfo.of(client, exact=args.exact))
    if watch is not None:  # per round: which validators verified its block, and who finalized it
        finality = {row["round"]: row.get("finality") for row in scenario.rounds}
        for r in report["closed_rounds"]:
            r["verified_by"] = watch.verified_by(r["closed_at"])
            r["finality"] = finality.get(r["round"]) or watch.finality_of(r["closed_at"])
            for row in scenario.rounds:
                if row["round"] == r["round"]:
                    row["verified_by"] = r["verified_by"]
    page = explorer_tasks.render_task_page(report, client.call("system_chain"), baseline=baseline)
    path = Path(args.html).resolve()
    path.write_text(page)
    return str(path)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.base_path is None
    base = Path(tempfile.mkdtemp(prefix="gradchain-demo-")) if temporary else args.base_path
    base.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops the nodes as a Ctrl-C does
    try:
        result = run_demo(args, base)
    except KeyboardInterrupt:
        return 130
    except (TaskError, RpcClientError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if temporary:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
