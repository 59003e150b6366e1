#!/usr/bin/env python3
"""The one-command demo: a model trained through the chain by trainers who never share their data.

Starts a `gradchain --dev` node (Alice validates alone, 1 s slots, LevelDB under a
temporary base path unless `--base-path`), then on 127.0.0.1:

  * the task creator (Alice) holds back a quarter of scikit-learn's digits as the
    held-out set, encrypts it to the validators and creates a task for an MLP;
  * five trainers each get a non-IID shard of the rest (70% two classes) and
    follow the task round by round (scripts/trainer.py's Trainer, one thread each);
  * the node's author measures every round on the held-out subset the chain picks,
    accepts the updates that improve the aggregate and pays them.

A line per closed round shows the updates accepted and rejected, the new global
model's accuracy on the *whole* held-out set and the rewards paid; the end shows
the same architecture trained centrally on the union of the trainers' data for
the same number of epochs (the baseline), and writes the explorer's HTML page.

    python scripts/demo.py [--rounds 12] [--trainers 5] [--scenarios honest,poison] [--json]

Accuracy is reported on the task's whole held-out set (the chain scores rounds on
subsets of it) and on a test set that neither the chain nor the baseline ever sees.

`--scenarios` runs one task per scenario side by side on the same chain: `honest`
(all trainers honest) or an adversary's behaviour (`copy`, `noise`, `poison`,
`stale`, `inflate`, `nearcopy`: the last trainer of that task misbehaves, see
scripts/trainer.py). The summary shows what the adversary earned against the
best honest trainer of its task, and how often its bond was burned or forfeited. With `--json` the last line
of output is one JSON object: per-round figures, `final_accuracy` and
`baseline_accuracy` of the first scenario, and every scenario's summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
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
from consensus.useful_work.train import train_local  # noqa: E402
from consensus.useful_work.updates import apply_update  # noqa: E402
from rpc.client import Client, RpcClientError  # noqa: E402
from runtime import crypto  # noqa: E402
from runtime.pallets import balances  # noqa: E402
from scripts._common import format_balance  # noqa: E402
from scripts._tasks import (  # noqa: E402
    ChainAccount, TaskError, TaskOptions, demo_data, download_model, get_task, publish_task, unhex, wait_until,
)
from scripts.trainer import BEHAVIOURS, Trainer, TrainerOptions  # noqa: E402

PLANCK = 10**12
DECIMALS = 12  # the dev chain's tokenDecimals
SPEC = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)


@dataclass
class Scenario:
    name: str
    task_id: int
    trainers: list[Trainer]
    accounts: list[bytes]
    adversary: bytes | None
    rounds: list[dict] = field(default_factory=list)


class DemoNode:
    """A `gradchain --dev` subprocess with RPC on a free port; its log goes to <base>/node.log."""

    def __init__(self, base: Path) -> None:
        self.port = _free_port()
        self.log = open(base / "node.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "--dev", "--base-path", str(base / "node"), "--rpc-port",
             str(self.port), "--no-prometheus", "--log-format", "json"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = Client(self.url, timeout=30)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise TaskError(f"the node exited with code {self.process.returncode}; see {self.log.name}")
            try:
                return self.client.header().number >= 1
            except RpcClientError:
                return False
        wait_until(ready, timeout=timeout, what="the node to author its first block")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def grad(planck: int, exact: bool) -> str:
    """An amount in GRAD as people read it (4 decimals), or to the last planck with --exact."""
    return format_balance(planck, DECIMALS, "", exact=exact).strip()


def say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, flush=True)


def run_demo(args: argparse.Namespace, base: Path) -> dict:
    quiet = args.json_only
    torch.set_num_threads(1)  # trainers share this process; the node has its own
    split, shards, test = demo_data("digits", args.trainers)
    initial = state_of(build_model(SPEC, 0))
    options = TrainerOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)

    node = DemoNode(base)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        say(f"starting a dev node on {node.url} (base path {base}, log {node.log.name})", quiet)
        node.wait_ready()
        alice = ChainAccount(node.client, crypto.dev_keypair("Alice"))
        scenarios = []
        for name in args.scenarios:
            keys = [crypto.keypair_from_uri(f"//Demo//{name}//{i}") for i in range(args.trainers)]
            for key in keys:
                alice.send(balances.transfer(key.public, 1_000 * PLANCK))
            task_id = publish_task(alice, SPEC, initial, split.held_out_features, split.held_out_labels,
                                   TaskOptions(rounds=args.rounds, held_out_subset=args.subset))
            trainers = []
            for i, (key, (features, labels)) in enumerate(zip(keys, shards)):
                behaviour = name if (name != "honest" and i == args.trainers - 1) else "honest"
                prefix = f"  {name:<7} trainer {i + 1}"
                trainers.append(Trainer(node.client, key, task_id, features, labels,
                                        TrainerOptions(**{**options.__dict__, "behaviour": behaviour, "seed": i}),
                                        say=(lambda line, p=prefix: say(f"{p}: {line}", quiet or not args.verbose))))
            adversary = keys[-1].public if name != "honest" else None
            scenarios.append(Scenario(name, task_id, trainers, [k.public for k in keys], adversary))
            for trainer in trainers:  # at once: the task's first commit window is open now
                thread = threading.Thread(target=_run_trainer, args=(trainer, stop), daemon=True)
                thread.start()
                threads.append(thread)
            say(f"task {task_id} ({name}): {args.rounds} rounds, {args.trainers} trainers"
                + (f", trainer {args.trainers} behaves '{name}'" if adversary else ""), quiet)
        baseline, baseline_test = _baseline(split, shards, test, args)
        say(f"centralized baseline ({args.rounds * args.epochs} epochs on the union of the trainers' data): "
            f"held-out accuracy {baseline:.4f}, test accuracy {baseline_test:.4f}", quiet)
        say(f"{'task':<9}{'round':>5}{'revealed':>10}{'accepted':>10}{'rejected':>10}{'accuracy':>10}{'test':>8}"
            f"{'paid (GRAD)':>14}", quiet)
        _follow(node.client, scenarios, split, test, args, quiet)
        html_path = _write_html(node.client, scenarios[0], baseline, args)
        if html_path:
            say(f"explorer page: {html_path}", quiet)
        return _summary(node.client, scenarios, (baseline, baseline_test), html_path, quiet, exact=args.exact)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        node.stop()


def _run_trainer(trainer: Trainer, stop: threading.Event) -> None:
    try:
        trainer.run(stop)
    except Exception as error:  # a trainer's failure is its own; the demo reports it and goes on
        trainer.say(f"stopped: {type(error).__name__}: {error}")


def _baseline(split, shards, test, args) -> tuple[float, float]:
    """(held-out, test) accuracy of the MLP trained centrally on the union of the shards, same epochs."""
    features = torch.cat([f for f, _ in shards])
    labels = torch.cat([l for _, l in shards])
    initial = state_of(build_model(SPEC, 0))
    delta = train_local(SPEC, initial, features, labels, epochs=args.rounds * args.epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=0)
    model = apply_update(initial, delta)
    return (evaluate(SPEC, model, split.held_out_features, split.held_out_labels).accuracy_ppm / 1e6,
            evaluate(SPEC, model, *test).accuracy_ppm / 1e6)


def _follow(client: Client, scenarios: list[Scenario], split, test, args, quiet: bool) -> None:
    """Print each round as it closes, until every task has ended."""
    deadline = time.monotonic() + args.timeout
    pending = {s.task_id for s in scenarios}
    models: dict[bytes, tuple[float, float]] = {}
    while pending:
        if time.monotonic() > deadline:
            raise TaskError(f"the tasks did not finish within {args.timeout} s")
        for scenario in scenarios:
            closed = client.call("training_rounds", scenario.task_id)
            for summary in closed[len(scenario.rounds):]:
                model = unhex(summary["model"])
                if model not in models:
                    weights = download_model(client, SPEC, model)
                    models[model] = (evaluate(SPEC, weights, split.held_out_features,
                                              split.held_out_labels).accuracy_ppm / 1e6,
                                     evaluate(SPEC, weights, *test).accuracy_ppm / 1e6)
                updates = client.call("training_updates", scenario.task_id, summary["round"])
                row = {"task": scenario.task_id, "scenario": scenario.name, "round": summary["round"],
                       "revealed": summary["revealed"], "accepted": summary["accepted"],
                       "rejected": summary["revealed"] - summary["accepted"],
                       "slashed": sum(1 for u in updates if u.get("status", 0) != 0),
                       "adopted": summary["adopted"], "accuracy": models[model][0],
                       "test_accuracy": models[model][1],
                       "subset_accuracy": (summary["model_score"] or summary["base"])["accuracy_ppm"] / 1e6,
                       "paid": int(summary["paid"])}
                scenario.rounds.append(row)
                say(f"{scenario.name:<9}{row['round']:>5}{row['revealed']:>10}{row['accepted']:>10}"
                    f"{row['rejected']:>10}{row['accuracy']:>10.4f}{row['test_accuracy']:>8.4f}"
                    f"{grad(row['paid'], args.exact):>14}"
                    + ("" if row["adopted"] else "  (model kept)"), quiet)
            task = get_task(client, scenario.task_id)
            if task is not None and not task.active:
                pending.discard(scenario.task_id)
        time.sleep(0.5)


def _write_html(client: Client, scenario: Scenario, baseline: float, args) -> str | None:
    if args.html == "":
        return None
    try:
        from scripts import explorer_tasks
    except ImportError:
        return None
    from scripts._common import ChainInfo

    report = explorer_tasks.task_report(client, scenario.task_id, ChainInfo.of(client, exact=args.exact))
    page = explorer_tasks.render_task_page(report, client.call("system_chain"), baseline=baseline)
    path = Path(args.html).resolve()
    path.write_text(page)
    return str(path)


def _summary(client: Client, scenarios: list[Scenario], baselines: tuple[float, float], html_path: str | None,
             quiet: bool, *, exact: bool = False) -> dict:
    baseline, baseline_test = baselines
    earned = {unhex(row["account"]): int(row["earned"]) for row in client.call("training_leaderboard")}
    result: dict = {"baseline_accuracy": baseline, "baseline_test_accuracy": baseline_test, "scenarios": {},
                    "html": html_path}
    say("\nsummary", quiet)
    say(f"{'scenario':<10}{'final accuracy':>16}{'vs baseline':>13}{'test':>8}{'vs baseline':>13}{'rounds':>8}"
        f"{'adversary earned':>18}{'best honest':>13}{'slashed':>9}{'forfeited':>11}", quiet)
    for scenario in scenarios:
        final = scenario.rounds[-1]["accuracy"] if scenario.rounds else 0.0
        final_test = scenario.rounds[-1]["test_accuracy"] if scenario.rounds else 0.0
        summary = {"task": scenario.task_id, "final_accuracy": final, "ratio_to_baseline": final / baseline,
                   "final_test_accuracy": final_test, "test_ratio_to_baseline": final_test / baseline_test,
                   "rounds": scenario.rounds,
                   "trainers_earned": {crypto.encode_address(a, 42): earned.get(a, 0) for a in scenario.accounts},
                   "paid": sum(r["paid"] for r in scenario.rounds)}
        if scenario.adversary is not None:
            adversary = crypto.encode_address(scenario.adversary, 42)
            mine = [r for t in scenario.trainers if t.account.public == scenario.adversary for r in t.results]
            honest = [earned.get(a, 0) for a in scenario.accounts if a != scenario.adversary]
            summary.update(adversary=adversary, adversary_earned=earned.get(scenario.adversary, 0),
                           best_honest_earned=max(honest, default=0),
                           adversary_slashed=sum(1 for r in mine if r["status"] in ("missing", "malformed")),
                           adversary_forfeited=sum(1 for r in mine if r["status"] in ("copy", "not revealed")))
        result["scenarios"][scenario.name] = summary
        say(f"{scenario.name:<10}{final:>16.4f}{final / baseline:>13.3f}{final_test:>8.4f}"
            f"{final_test / baseline_test:>13.3f}{len(scenario.rounds):>8}"
            f"{grad(summary.get('adversary_earned', 0), exact):>18}"
            f"{grad(summary.get('best_honest_earned', 0), exact):>13}{summary.get('adversary_slashed', 0):>9}"
            f"{summary.get('adversary_forfeited', 0):>11}", quiet)
    first = result["scenarios"][scenarios[0].name]
    result.update(final_accuracy=first["final_accuracy"], final_test_accuracy=first["final_test_accuracy"],
                  rounds=first["rounds"])
    say(f"\nthe chain's model reached {first['final_accuracy']:.4f} held-out accuracy "
        f"({first['final_test_accuracy']:.4f} on the test set nobody trained or chose models on); the same MLP "
        f"trained centrally reached {baseline:.4f} ({baseline_test:.4f})", quiet)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12, help="training rounds (default 12)")
    parser.add_argument("--trainers", type=int, default=5, help="trainers per task (default 5)")
    parser.add_argument("--scenarios", default="honest",
                        help="comma-separated: honest, copy, noise, poison, stale, inflate, nearcopy (one task "
                             "each; default honest)")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round (default 2)")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--subset", type=int, default=384,
                        help="held-out examples each round is scored on (default 384: all 360 held out; a "
                             "smaller subset is drawn afresh each round from the chain's seed)")
    parser.add_argument("--base-path", type=Path, help="keep the node's data here (default: a temporary directory)")
    parser.add_argument("--html", default="gradchain-demo.html", help="explorer page to write ('' for none)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    parser.add_argument("--exact", action="store_true", help="print amounts to the last planck (default: rounded)")
    parser.add_argument("--json-only", action="store_true", help="print nothing but the JSON object")
    parser.add_argument("--verbose", action="store_true", help="print every trainer's progress lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in BEHAVIOURS]
    if unknown or not args.scenarios or len(set(args.scenarios)) != len(args.scenarios):
        parser.error(f"--scenarios takes distinct names among {', '.join(BEHAVIOURS)}")
    if not 1 <= args.rounds <= 1000 or not 2 <= args.trainers <= 50 or args.epochs < 1 or not args.lr > 0 \
            or not 1 <= args.subset <= 1 << 20 or args.batch_size < 1:
        parser.error("--rounds 1..1000, --trainers 2..50, --epochs >= 1, --lr > 0, --subset 1..1048576 and "
                     "--batch-size >= 1")
    args.json = args.json or args.json_only
    temporary = args.base_path is None
    base = Path(tempfile.mkdtemp(prefix="gradchain-demo-")) if temporary else args.base_path
    base.mkdir(parents=True, exist_ok=True)
    try:
        result = run_demo(args, base)
    except KeyboardInterrupt:
        return 130
    except (TaskError, RpcClientError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
