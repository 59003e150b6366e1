"""`wallet.py task watch`: one line per closed round until the task ends, and the round's
current window on a status line (rewritten in place on a terminal)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from rpc.client import Client
from runtime.pallets import training
from scripts._common import ChainInfo, CliError
from scripts.wallet import Session, WalletStore

if TYPE_CHECKING:
    from scripts._tasks import TaskView

POLL_SECONDS = 0.5


def cmd_task_watch(args: argparse.Namespace, store: WalletStore) -> int:
    from scripts._tasks import get_task

    session = Session(args, store)
    client, chain = session.client, session.chain
    task = require_task(client, args.task_id)
    print(describe_task(task, chain), flush=True)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    status, shown = StatusLine(sys.stdout), -1  # shown: the last round printed
    try:
        while True:
            task = get_task(client, args.task_id)
            for summary in client.call("training_rounds", task.id):  # read after the task: none is missed
                if summary["round"] > shown:
                    status.clear()
                    print(describe_round(client, task, summary, chain), flush=True)
                    shown = summary["round"]
            if not task.active:
                print(describe_end(client, task, chain))
                return 0
            status.show(*describe_window(task, client.header().number))
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"task {task.id} is still {task.status} after {args.timeout:g} s (round {task.round})")
            time.sleep(POLL_SECONDS)
    finally:
        status.clear()  # also on Ctrl-C, before wallet.py prints "interrupted"


def require_task(client: Client, number: int) -> TaskView:
    from scripts._tasks import get_task

    task = get_task(client, number)
    if task is None:
        count = len(client.call("training_tasks"))
        raise CliError(f"there is no task {number} on this chain ({count} task(s); ids start at 0)")
    return task


def describe_task(task: TaskView, chain: ChainInfo) -> str:
    config, fmt = task.config, chain.format_balance
    aggregation = training.AGGREGATIONS.get(int(config["aggregation"]), config["aggregation"])
    metric = training.METRICS.get(int(config["metric"]), config["metric"])
    return (f"task {task.id} by {chain.address(task.creator)}: {task.spec.architecture} "
            f"{','.join(map(str, task.spec.params))}, {task.rounds} round(s) of {fmt(config['reward_per_round'])}, "
            f"commit {config['commit_blocks']} + reveal {config['reveal_blocks']} blocks, bond {fmt(task.bond)}, "
            f"{aggregation}, metric {metric}; {task.status}, round {task.round}")


def describe_round(client: Client, task: TaskView, summary: dict, chain: ChainInfo) -> str:
    updates = client.call("training_updates", task.id, summary["round"])
    slashed = sum(1 for update in updates if update["status"] != training.UPDATE_OK)
    base = describe_score(summary["base"])
    model = f"new model: {describe_score(summary['model_score'])} (base {base})" if summary["adopted"] \
        else f"model kept ({base})"
    return (f"round {summary['round']} closed at #{summary['closed_at']}: {summary['revealed']} revealed, "
            f"{summary['accepted']} accepted, {slashed} slashed; {model} on the round's held-out subset; "
            f"paid {chain.format_balance(summary['paid'])}")


def describe_window(task: TaskView, best: int) -> tuple[tuple, str]:
    """(what changed, the line) for the round's current window; a transaction sent now lands in best + 1."""
    following = best + 1
    if following < task.commit_end:
        phase, end = "commit window", task.commit_end
    elif following < task.reveal_end:
        phase, end = "reveal window", task.reveal_end
    else:
        return (task.round, "report"), f"round {task.round}: windows closed; the validators are measuring it"
    left = end - following
    return (task.round, phase), f"round {task.round}: {phase}, {left} block(s) left (until #{end - 1})"


def describe_end(client: Client, task: TaskView, chain: ChainInfo) -> str:
    fmt = chain.format_balance
    paid = sum(int(summary["paid"]) for summary in client.call("training_rounds", task.id))
    pool = int(task.config["reward_per_round"]) * task.rounds
    return (f"task {task.id} {task.status} after {task.round} of {task.rounds} round(s): paid {fmt(paid)}; "
            f"{fmt(pool - paid)} of the pool went back to the creator")


def describe_score(score: dict) -> str:
    return f"accuracy {int(score['accuracy_ppm']) / 10_000:.2f}%, loss {int(score['loss_ppm']) / 1_000_000:.4f}"


class StatusLine:
    """The current window: rewritten in place on a terminal; elsewhere one line each time it changes."""

    def __init__(self, stream) -> None:
        self.stream, self.live = stream, stream.isatty()
        self.key: tuple | None = None
        self.text: str | None = None  # what a terminal shows now

    def show(self, key: tuple, text: str) -> None:
        if self.live and text != self.text:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()
            self.text = text
        elif not self.live and key != self.key:
            print(text, file=self.stream, flush=True)
        self.key = key

    def clear(self) -> None:
        if self.text is not None:
            self.stream.write("\r\x1b[K")
            self.text = None
