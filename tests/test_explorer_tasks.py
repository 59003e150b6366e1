"""The explorer's training views against the shared dev node: the tasks list, one task's rounds, updates,
models and trainers (terminal and HTML with its accuracy plot), and the leaderboard. Task 0 ran two rounds
with three trainers, one of them poisoning; task 1 pays 20,000 GRAD a round (over 2**53 planck, so the
node sends it as a string) and its round 0 is open with one revealed update. Every expected cell comes
from the node's own answers."""

from __future__ import annotations

import io
import re
import threading
from html.parser import HTMLParser

import pytest
from rich.console import Console

from consensus.useful_work import ModelSpec, build_model, state_of
from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out
from runtime import crypto
from runtime.pallets import balances, training
from scripts import explorer, explorer_tasks
from scripts._common import ChainInfo
from scripts._tasks import ChainAccount, TaskOptions, get_task, publish_task, wait_until
from scripts.trainer import Trainer, TrainerOptions
from tests.helpers.threads import ThreadRunner

GRAD = 10**12
CHAIN = ChainInfo("GRAD", 12, 42)
SPEC = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
ALICE = crypto.dev_keypair("Alice")


def address(public: bytes) -> str:
    return crypto.encode_address(public, 42)


@pytest.fixture(scope="module")
def data():
    split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)
    shards = shard_non_iid(split.train_features, split.train_labels, 3, 2, seed=2, iid_fraction=0.2)
    return split, shards


def trainer(node, key, task_id: int, shard, behaviour: str = "honest") -> Trainer:
    return Trainer(node.client, key, task_id, *shard, TrainerOptions(behaviour=behaviour), say=lambda message: None)


@pytest.fixture(scope="module")
def finished(node, data):
    """Task 0, run to its end: two rounds, three trainers, the third poisons. (task id, trainer keys)"""
    split, shards = data
    alice = ChainAccount(node.client, ALICE)
    keys = [crypto.keypair_from_uri(f"//ExplorerTrainer{i}") for i in range(3)]
    for key in keys:
        alice.send(balances.transfer(key.public, 1000 * GRAD))
    task_id = publish_task(alice, SPEC, state_of(build_model(SPEC, 0)), split.held_out_features,
                           split.held_out_labels, TaskOptions(rounds=2, commit_blocks=4, reveal_blocks=2))
    threads = ThreadRunner()
    for index, (key, shard) in enumerate(zip(keys, shards)):
        threads.start(trainer(node, key, task_id, shard, "poison" if index == 2 else "honest").run)
    threads.join_all(120)
    assert node.client.call("training_task", task_id)["status"] == training.STATUS_FINISHED
    return task_id, keys


@pytest.fixture(scope="module")
def active(node, data, finished):
    """Task 1 (after task 0): round 0 stays open for 200 blocks, with one update revealed. (task id, its trainer)"""
    split, shards = data
    alice = ChainAccount(node.client, ALICE)
    key = crypto.keypair_from_uri("//ExplorerPending")
    alice.send(balances.transfer(key.public, 1000 * GRAD))
    task_id = publish_task(alice, SPEC, state_of(build_model(SPEC, 0)), split.held_out_features,
                           split.held_out_labels, TaskOptions(reward_per_round=20_000 * GRAD, rounds=3,
                                                              commit_blocks=6, reveal_blocks=200))
    stop, threads = threading.Event(), ThreadRunner()
    threads.start(trainer(node, key, task_id, shards[0]).run, stop)
    try:
        wait_until(lambda: node.client.call("training_updates", task_id, 0) or None, timeout=60, what="the reveal")
    finally:
        stop.set()
        threads.join_all(30)
    return task_id, key


def rendered(render, *args) -> str:
    console = Console(file=io.StringIO(), width=320, highlight=False)
    render(console, *args)
    return console.file.getvalue()


class TagChecker(HTMLParser):
    """Fails on an end tag that closes anything but the innermost open element."""

    VOID = {"meta", "br", "line", "circle", "polyline", "link", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def assert_well_formed(page: str) -> None:
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.open == [], checker.open
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://|<script|<link|<img|@import|url\(|src=", page, re.I)


def plot_points(page: str) -> list[tuple[int, float]]:
    plot = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    return [(int(r), float(a)) for r, a in
            re.findall(r'<circle class="point"[^>]*data-round="(\d+)" data-accuracy="([\d.]+)"', plot)]


def after_each_round(rounds: list[dict]) -> list[tuple[int, float]]:
    """The global model's accuracy after each round, as the plot shows it: the new model's when it was
    adopted, the base's when the round kept it."""
    return [(r["round"], float(explorer_tasks.percent(
        (r["model_score"] if r["adopted"] else r["base"])["accuracy_ppm"])[:-1])) for r in rounds]


# --- the report ------------------------------------------------------------------------------------


def test_the_report_of_a_finished_task_agrees_with_the_chain_and_tells_why_updates_were_rejected(node, finished):
    task_id, keys = finished
    client = node.client
    report = explorer_tasks.task_report(client, task_id, CHAIN)
    rounds = client.call("training_rounds", task_id)
    assert [r["round"] for r in report["closed_rounds"]] == [0, 1] and report["open_round"] is None
    validator_pot = report["reward_per_round"] * training.VALIDATOR_SHARE_PPM // 1_000_000  # Alice's alone
    poisoner = address(keys[2].public)
    for summary, closed in zip(rounds, report["closed_rounds"]):
        updates = client.call("training_updates", task_id, summary["round"])
        rewards = sum(int(u["reward"]) for u in updates)
        assert closed["paid_to_trainers"] == rewards and rewards + closed["paid_to_validators"] == int(summary["paid"])
        if summary["adopted"]:  # the whole reward is paid: the trainers' rounding dust goes to the validators
            assert closed["paid_to_validators"] == report["reward_per_round"] - rewards >= validator_pot
        else:
            assert closed["paid_to_validators"] == 0
        not_accepted = sum(1 for u in updates if u["status"] == training.UPDATE_OK and not u["accepted"])
        assert closed["rejected"] == {"missing": 0, "malformed": 1, "copy": 0, "not accepted": not_accepted}
        by_submitter = {u["submitter"]: u for u in closed["updates"]}
        assert by_submitter[poisoner]["fate"] == "malformed: bond slashed"
        for update in updates:
            row = by_submitter[address(bytes.fromhex(update["submitter"][2:]))]
            assert row["reward"] == int(update["reward"]) and row["accepted"] == update["accepted"]
            assert (row["fate"] == "accepted") == update["accepted"]
    board = {t["address"]: t for t in report["trainers"]}
    assert board[poisoner]["earned"] == 0 and board[poisoner]["slashed"] == 2
    paid_to_trainers = sum(r["paid_to_trainers"] for r in report["closed_rounds"])
    assert sum(t["earned"] for t in report["trainers"]) == paid_to_trainers > 0
    assert [t["earned"] for t in report["trainers"]] == sorted((t["earned"] for t in report["trainers"]), reverse=True)


def test_the_report_of_an_active_task_reads_big_balances_and_shows_the_open_round(node, active):
    task_id, key = active
    raw = node.client.call("training_task", task_id)
    assert isinstance(raw["config"]["reward_per_round"], str)  # over 2**53: the node sends a string
    report = explorer_tasks.task_report(node.client, task_id, CHAIN)
    assert report["reward_per_round"] == 20_000 * GRAD and report["remaining_pool"] == 3 * 20_000 * GRAD
    assert report["status"] == "active" and report["closed_rounds"] == []
    [pending] = report["open_round"]["updates"]
    assert (pending["submitter"], pending["status"], pending["fate"]) == (
        address(key.public), "pending", "pending: the round is open")
    assert (pending["accepted"], pending["reward"], pending["contribution_ppm"]) == (None, 0, None)


def test_each_fate_follows_from_the_update_record_and_the_round(node, finished):
    """The decision table of `update_row`, over a real update record of the node with its fields varied."""
    record = node.client.call("training_updates", finished[0], 0)[0]

    def fate(adopted: bool, minimum: int = 1, **fields) -> str:
        return explorer_tasks.update_row(dict(record, **fields), CHAIN, adopted, minimum)["fate"]

    assert fate(True, status=training.UPDATE_OK, accepted=True, contribution_ppm=5) == "accepted"
    assert fate(True, minimum=500, status=training.UPDATE_OK, accepted=False, contribution_ppm=499) == \
        "not accepted: contribution below the minimum"
    assert fate(False, minimum=500, status=training.UPDATE_OK, accepted=False, contribution_ppm=500) == \
        "not accepted: the aggregate did not beat the base model"
    assert fate(True, status=training.UPDATE_MALFORMED, accepted=False) == "malformed: bond slashed"
    assert fate(True, status=training.UPDATE_MISSING, accepted=False) == "missing: bond slashed"
    assert fate(True, status=training.UPDATE_COPY, accepted=False) == "copy: bond slashed"


# --- the terminal ------------------------------------------------------------------------------------


def test_task_view_prints_summary_rounds_updates_models_and_trainers(node, finished):
    task_id, keys = finished
    report = explorer_tasks.task_report(node.client, task_id, CHAIN)
    out = rendered(explorer_tasks.print_task, report)
    assert f"Task {task_id}" in out and "mlp(64, 64, 10)" in out and "2 of 2 closed" in out
    for r in report["closed_rounds"]:  # each round with the block that closed it and its payouts
        cells = (r["round"], f"#{r['closed_at']}", r["revealed"], r["accepted"])
        assert re.search("│" + "│".join(rf" +{cell} " for cell in cells) + "│", out)
        assert re.search(rf"│ +{re.escape(CHAIN.format_balance(r['paid_to_trainers']))} │ "
                         rf"+{re.escape(CHAIN.format_balance(r['paid_to_validators']))} │", out)
        assert f"Round {r['round']} updates" in out
    poisoned = [line for line in out.splitlines() if address(keys[2].public) in line and "malformed" in line]
    assert len(poisoned) == 2 and all("bond slashed" in line and re.search(r"│ +no │", line) for line in poisoned)
    ranks = [(int(m.group(1)), m.group(2)) for m in re.finditer(r"│ (\d) │ (\w{40,}) +│ +\d+ │", out)]
    assert ranks == [(rank, t["address"]) for rank, t in enumerate(report["trainers"], 1)]
    assert re.search(r"│ +initial │ " + re.escape(report["initial_model"]), out)


def test_amounts_are_rounded_for_reading_and_exact_on_request(node, finished):
    """(issue 18 item 8) The views round amounts as people read them; --exact shows every planck."""
    exact = ChainInfo("GRAD", 12, 42, exact=True)
    for chain in (CHAIN, exact):
        report = explorer_tasks.task_report(node.client, finished[0], chain)
        out = rendered(explorer_tasks.print_task, report)
        for rank, trainer_row in enumerate(report["trainers"], 1):
            earned = re.escape(chain.format_balance(trainer_row["earned"]))
            assert re.search(rf"│ {rank} │ {trainer_row['address']} +│.*│ +{earned} │", out), (chain, out)


def test_active_task_shows_its_windows_and_the_pending_update(node, active):
    task_id, key = active
    task = get_task(node.client, task_id)
    out = rendered(explorer_tasks.print_task, explorer_tasks.task_report(node.client, task_id, CHAIN))
    assert f"active, round 0 open (commits until #{task.commit_end}, reveals until #{task.reveal_end})" in out
    assert "Round 0 updates (open)" in out and "no round has closed yet" in out
    assert re.search(rf"{address(key.public)} │ +\d+ │ pending │ +- │ +- │ +- │ pending: the round is open", out)


def test_tasks_and_leaderboard_tables(node, finished, active):
    tasks = {t["id"]: t for t in node.client.call("training_tasks")}
    out = rendered(explorer_tasks.print_tasks, explorer_tasks.task_list(node.client, CHAIN), CHAIN)
    final = explorer_tasks.percent(tasks[finished[0]]["model_score"]["accuracy_ppm"])
    pool = CHAIN.format_balance(int(tasks[finished[0]]["remaining_pool"]))
    assert re.search(rf"│ +{finished[0]} │ {address(ALICE.public)} │ mlp\(64, 64, 10\) │ +2/2 │ finished │ +"
                     rf"{re.escape(pool)} │ +{re.escape(final)} │", out), out
    assert re.search(rf"│ +{active[0]} │ {address(ALICE.public)} │ mlp\(64, 64, 10\) │ +0/3 │ active +│ +60,000 GRAD │ "
                     r"+- │", out), out
    board = node.client.call("training_leaderboard")
    out = rendered(explorer_tasks.print_leaderboard, explorer_tasks.leaderboard(node.client), CHAIN)
    for rank, row in enumerate(board, 1):
        amount = re.escape(CHAIN.format_balance(int(row["earned"])))
        assert re.search(rf"│ {rank} │ {row['address']} │ +{amount} │", out)
    report = explorer_tasks.task_report(node.client, finished[0], CHAIN)
    earned = {row["address"]: int(row["earned"]) for row in board}
    for trainer_row in report["trainers"]:  # task 0 is the only task that paid: its rewards are all they earned
        assert earned.get(trainer_row["address"], 0) == trainer_row["earned"]
    assert earned[address(ALICE.public)] == sum(r["paid_to_validators"] for r in report["closed_rounds"])


# --- the page ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", [None, 0.962])
def test_task_page_plots_one_point_per_round_and_the_baseline(node, finished, baseline):
    report = explorer_tasks.task_report(node.client, finished[0], CHAIN)
    page = explorer_tasks.render_task_page(report, "Dev <b>&</b> chain", baseline)
    assert_well_formed(page)
    assert f"Dev &lt;b&gt;&amp;&lt;/b&gt; chain: task {finished[0]}" in page and "<b>" not in page
    assert plot_points(page) == after_each_round(node.client.call("training_rounds", finished[0]))
    baseline_line = re.findall(r'<line class=baseline[^>]*data-accuracy="([\d.]+)"', page)
    assert baseline_line == ([] if baseline is None else ["96.20"])
    assert page.count("<table class=updates") == 2 and page.count("malformed: bond slashed") == 2
    trainers = re.search(r"<table class=trainers>.*?</table>", page, re.S).group(0)
    positions = [trainers.index(t["address"]) for t in report["trainers"]]
    assert positions == sorted(positions)


def test_a_task_with_no_closed_round_has_an_empty_plot_and_its_open_round(node, active):
    page = explorer_tasks.render_task_page(explorer_tasks.task_report(node.client, active[0], CHAIN), "dev")
    assert_well_formed(page)
    assert plot_points(page) == [] and "(open)" in page


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def run(node, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "320")

    def run(*argv: str) -> tuple[int, str, str]:
        code = explorer.main(["--url", node.url, *argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_commands_and_their_errors(node, finished, active, run, tmp_path):
    code, out, err = run("tasks")
    assert code == 0 and "Training tasks (2)" in out, err
    code, out, err = run("leaderboard")
    assert code == 0 and address(ALICE.public) in out, err
    page_path = tmp_path / "task.html"
    code, out, err = run("task", str(finished[0]), "--html", str(page_path), "--baseline", "0.962")
    assert code == 0 and f"wrote {page_path}" in out and "Round 1 updates" in out, err
    assert plot_points(page_path.read_text()) == after_each_round(node.client.call("training_rounds", finished[0]))
    assert re.search(r'<line class=baseline[^>]*data-accuracy="96.20"', page_path.read_text())
    for argv, fragment in ((["task", "9"], "no task 9: the chain has tasks 0 to 1"),
                           (["task", "-1"], "bad task id -1"),
                           (["task", "0", "--baseline", "96.2"], "bad --baseline 96.2"),
                           (["task", "0", "--html", str(tmp_path / "no" / "x.html")], "cannot write")):
        code, _, err = run(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)
