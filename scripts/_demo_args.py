"""The demo's command line (scripts/demo.py), checked: parser errors exit with status 2."""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts._demo_tasks import DEMO_TASKS
from scripts.trainer import BEHAVIOURS

DESCRIPTION = "The one-command demo: a model trained through the chain by trainers who never share their data."
# the network's defaults: every validator re-measures every round, so on 2 cores fewer rounds and tasks than
# the dev node's 20 x 3 keep `make run` to a few minutes
NETWORK_ROUNDS = 10
NETWORK_TASKS = ("digits_mlp", "breast_cancer_logistic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo.py", description=DESCRIPTION)
    parser.add_argument("--dev", action="store_true",
                        help="one `gradchain --dev` node instead of a network (defaults: 20 rounds, every task)")
    parser.add_argument("--validators", type=int, default=4, help="validators of the network (default 4)")
    parser.add_argument("--slot-ms", type=int, default=1000, help="the network's slot duration (default 1000)")
    parser.add_argument("--rounds", type=int,
                        help=f"training rounds (default {NETWORK_ROUNDS} on the network, 20 with --dev)")
    parser.add_argument("--tasks",
                        help=f"comma-separated demo tasks among {', '.join(DEMO_TASKS)} (default "
                             f"{','.join(NETWORK_TASKS)} on the network, all with --dev; the first is the one the "
                             f"top-level figures describe)")
    parser.add_argument("--trainers", type=int, default=5, help="trainers per task (default 5)")
    parser.add_argument("--scenarios", default="honest",
                        help="comma-separated: honest, copy, noise, poison, stale, inflate, nearcopy (one task "
                             "each; default honest)")
    parser.add_argument("--epochs", type=int, help="local epochs per round (default: the task's)")
    parser.add_argument("--lr", type=float, help="local learning rate (default: the task's)")
    parser.add_argument("--batch-size", type=int, help="local batch size (default: the task's)")
    parser.add_argument("--subset", type=int,
                        help="held-out examples each round is scored on (default: the task's, 384: all of the "
                             "held-out set; a smaller subset is drawn afresh each round from the chain's seed)")
    parser.add_argument("--base-path", type=Path, help="keep the node's data here (default: a temporary directory)")
    parser.add_argument("--html", default="gradchain-demo.html", help="explorer page to write ('' for none)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    parser.add_argument("--exact", action="store_true", help="print amounts to the last planck (default: rounded)")
    parser.add_argument("--json-only", action="store_true", help="print nothing but the JSON object")
    parser.add_argument("--verbose", action="store_true", help="print every trainer's progress lines")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked (parser errors exit with status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else 20 if args.dev else NETWORK_ROUNDS
    args.tasks = args.tasks if args.tasks is not None else ",".join(DEMO_TASKS if args.dev else NETWORK_TASKS)
    if not 1 <= args.validators <= 16 or not 250 <= args.slot_ms <= 60_000:
        parser.error("--validators 1..16 and --slot-ms 250..60000")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in BEHAVIOURS]
    if unknown or not args.scenarios or len(set(args.scenarios)) != len(args.scenarios):
        parser.error(f"--scenarios takes distinct names among {', '.join(BEHAVIOURS)}")
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.tasks or any(t not in DEMO_TASKS for t in args.tasks) or len(set(args.tasks)) != len(args.tasks):
        parser.error(f"--tasks takes distinct names among {', '.join(DEMO_TASKS)}")
    bad_overrides = (args.epochs is not None and args.epochs < 1) or (args.lr is not None and not args.lr > 0) \
        or (args.subset is not None and not 1 <= args.subset <= 1 << 20) \
        or (args.batch_size is not None and args.batch_size < 1)
    if not 1 <= args.rounds <= 1000 or not 2 <= args.trainers <= 50 or bad_overrides:
        parser.error("--rounds 1..1000, --trainers 2..50, --epochs >= 1, --lr > 0, --subset 1..1048576 and "
                     "--batch-size >= 1")
    args.json = args.json or args.json_only
    return args
