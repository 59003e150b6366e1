"""The explorer's training views: the tasks list, one task's rounds, updates, models and trainers (terminal
and HTML with its accuracy plot), and the leaderboard. Fast tests render canned RPC answers; one slow
test trains a real task on a dev node (one trainer poisons) and checks the views against the chain."""

from __future__ import annotations

import io
import re
import threading
from html.parser import HTMLParser

import pytest
from rich.console import Console

from runtime import crypto
from scripts import explorer, explorer_tasks
from scripts._common import ChainInfo

GRAD = 10**12
CHAIN = ChainInfo("GRAD", 12, 42)
KEYS = {name: crypto.keypair_from_uri(f"//Viewer{name}") for name in ("A", "B", "C", "Creator")}
HEX = {name: "0x" + key.public.hex() for name, key in KEYS.items()}
ADDRESS = {name: crypto.encode_address(key.public, 42) for name, key in KEYS.items()}
ALICE_HEX = "0x" + crypto.dev_keypair("Alice").public.hex()


def h(n: int) -> str:
    return "0x" + f"{n:02x}" * 32


def score(accuracy_ppm: int) -> dict:
    return {"accuracy_ppm": accuracy_ppm, "loss_ppm": 2_000_000 - accuracy_ppm}


def config(rounds: int, reward) -> dict:
    return {"spec": {"architecture": "mlp", "params": [64, 64, 10]}, "initial_model": h(1), "metric": 0,
            "held_out": h(2), "held_out_size": 9000, "held_out_subset": 256,
            "sealed_keys": [{"validator": ALICE_HEX, "sealed": h(3)}], "reward_per_round": reward, "rounds": rounds,
            "commit_blocks": 4, "reveal_blocks": 2, "min_improvement_ppm": 1, "max_update_bytes": 1 << 20,
            "max_update_norm": 8 * 2**24, "bond": 10 * GRAD, "aggregation": 0, "trim": 0}


def scored(update: int, who: str, status: int, contribution: int, accepted: bool, reward) -> dict:
    return {"update": h(update), "submitter": HEX[who], "status": status,
            "without": None if status else score(100_000), "contribution_ppm": contribution, "accepted": accepted,
            "reward": reward, "data_commitment": h(99), "num_samples": 450}


# Task 0 finished two rounds (as a real run did: the poisoner C's updates were malformed both times);
# task 1 is active: its round 0 kept the model, and B revealed in its open round 1. Balances above
# 2**53 come as strings.
TASKS = [
    {"id": 0, "creator": HEX["Creator"], "config": config(2, 1000 * GRAD), "round": 2, "round_start": 16,
     "model": h(11), "model_score": score(656_250), "remaining_pool": 1, "status": 1},
    {"id": 1, "creator": HEX["Creator"], "config": config(3, str(20_000 * GRAD)), "round": 1, "round_start": 20,
     "model": h(1), "model_score": None, "remaining_pool": str(60_000 * GRAD), "status": 0},
]
ROUNDS = {
    0: [{"round": 0, "closed_at": 8, "subset_seed": h(4), "base": score(74_218), "candidate": score(167_968),
         "model": h(10), "model_score": score(375_000), "adopted": True, "revealed": 3, "accepted": 1,
         "paid": 1000 * GRAD},
        {"round": 1, "closed_at": 15, "subset_seed": h(5), "base": score(324_218), "candidate": score(656_250),
         "model": h(11), "model_score": score(656_250), "adopted": True, "revealed": 3, "accepted": 2,
         "paid": 999_999_999_999_999}],
    1: [{"round": 0, "closed_at": 27, "subset_seed": h(6), "base": score(500_000), "candidate": score(480_000),
         "model": h(1), "model_score": None, "adopted": False, "revealed": 1, "accepted": 0, "paid": "0"}],
}
UPDATES = {
    (0, 0): [scored(20, "A", 0, 5_327_071, True, 900 * GRAD), scored(21, "B", 0, 0, False, 0),
             scored(22, "C", 2, 0, False, 0)],
    (0, 1): [scored(23, "B", 0, 533_724, True, 486_587_215_162_304),
             scored(24, "A", 0, 453_461, True, 413_412_784_837_695), scored(25, "C", 2, 0, False, 0)],
    (1, 0): [scored(30, "A", 0, 2_000, False, 0)],
    (1, 1): [{"update": h(31), "submitter": HEX["B"], "num_samples": 449, "data_commitment": h(98)}],
}
MODELS = {0: [{"round": 0, "model": h(10), "score": score(375_000), "contributors": [HEX["A"]]},
              {"round": 1, "model": h(11), "score": score(656_250), "contributors": [HEX["A"], HEX["B"]]}], 1: []}
LEADERBOARD = [{"account": HEX["A"], "address": ADDRESS["A"], "earned": str(1_313_412_784_837_695)},
               {"account": ALICE_HEX, "address": crypto.encode_address(bytes.fromhex(ALICE_HEX[2:]), 42),
                "earned": 199_999_999_999_999}]


class CannedClient:
    """Answers the training_* methods the way a node does, from the tables above."""

    def call(self, method: str, *params):
        answers = {"training_tasks": lambda: TASKS, "training_task": lambda t: next(
                       (task for task in TASKS if task["id"] == t), None),
                   "training_rounds": lambda t: ROUNDS.get(t, []), "training_updates": lambda t, r: UPDATES.get(
                       (t, r), []),
                   "training_models": lambda t: MODELS.get(t, []), "training_leaderboard": lambda: LEADERBOARD,
                   "system_chain": lambda: "Dev <b>&</b> chain"}
        return answers[method](*params)

    def properties(self) -> dict:
        return {"tokenSymbol": "GRAD", "tokenDecimals": 12, "ss58Format": 42}


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


def test_report_normalizes_balances_and_tells_why_updates_were_rejected():
    report = explorer_tasks.task_report(CannedClient(), 0, CHAIN)
    first, second = report["closed_rounds"]
    assert first["rejected"] == {"missing": 0, "malformed": 1, "not accepted": 1}
    assert [u["fate"] for u in first["updates"]] == [
        "accepted", "not accepted: contribution below the minimum", "malformed: bond slashed"]
    assert second["paid_to_trainers"] == 899_999_999_999_999 and second["paid_to_validators"] == 100 * GRAD
    assert [(t["address"], t["earned"], t["slashed"]) for t in report["trainers"]] == [
        (ADDRESS["A"], 900 * GRAD + 413_412_784_837_695, 0), (ADDRESS["B"], 486_587_215_162_304, 0),
        (ADDRESS["C"], 0, 2)]
    active = explorer_tasks.task_report(CannedClient(), 1, CHAIN)
    assert active["reward_per_round"] == 20_000 * GRAD and active["remaining_pool"] == 60_000 * GRAD
    assert active["closed_rounds"][0]["paid"] == 0
    assert active["closed_rounds"][0]["updates"][0]["fate"] == "not accepted: the aggregate did not beat the base model"
    assert active["open_round"]["updates"][0]["status"] == "pending"


def test_task_view_prints_summary_rounds_updates_models_and_trainers():
    out = rendered(explorer_tasks.print_task, explorer_tasks.task_report(CannedClient(), 0, CHAIN))
    assert "Task 0" in out and "mlp(64, 64, 10)" in out and "2 of 2 closed" in out
    assert re.search(r"│ +0 │ +#8 │ +3 │ +1 │ 1 malformed \(bond slashed\), 1 not accepted +│ +7\.42% │ +37\.50% │ "
                     r"+900 GRAD │ +100 GRAD │", out)
    assert re.search(r"│ +1 │ +#15 │ +3 │ +2 │ 1 malformed \(bond slashed\) +│ +32\.42% │ +65\.63% │ "
                     r"+899\.999999999999 GRAD │ +100 GRAD │", out)
    assert "Round 0 updates" in out and "Round 1 updates" in out
    poisoned = [line for line in out.splitlines() if ADDRESS["C"] in line and "malformed" in line]
    assert len(poisoned) == 2 and all("bond slashed" in line and re.search(r"│ +no │", line) for line in poisoned)
    assert re.search(rf"{ADDRESS['A']} │ +450 │ ok +│ +5,327,071 │ +yes │ +900 GRAD │ accepted", out)
    assert re.search(r"│ +initial │ 0x(01){32} │ +7\.42% │", out)
    assert re.search(rf"│ +1 │ {h(11)} │ +65\.63% │ {ADDRESS['A']}", out)
    ranks = [(int(m.group(1)), m.group(2)) for m in re.finditer(r"│ (\d) │ (\w{40,}) +│ +\d+ │", out)]
    assert ranks == [(1, ADDRESS["A"]), (2, ADDRESS["B"]), (3, ADDRESS["C"])]
    assert re.search(rf"│ 1 │ {ADDRESS['A']} +│ +2 │ +2 │ +0 │ 1,313\.412784837695 GRAD │", out)
    assert re.search(rf"│ 3 │ {ADDRESS['C']} +│ +2 │ +0 │ +2 │ +0 GRAD │", out)


def test_active_task_shows_the_kept_model_and_the_open_round():
    out = rendered(explorer_tasks.print_task, explorer_tasks.task_report(CannedClient(), 1, CHAIN))
    assert "active, round 1 open (commits until #24, reveals until #26)" in out
    assert re.search(r"│ +0 │ +#27 │ +1 │ +0 │ 1 not accepted +│ +50\.00% │ +kept │ +0 GRAD │ +0 GRAD │", out)
    assert "Round 1 updates (open)" in out
    assert re.search(rf"{ADDRESS['B']} │ +449 │ pending │ +- │ +- │ +- │ pending: the round is open", out)


def test_tasks_and_leaderboard_tables():
    out = rendered(explorer_tasks.print_tasks, explorer_tasks.task_list(CannedClient(), CHAIN), CHAIN)
    assert re.search(rf"│ +0 │ {ADDRESS['Creator']} │ mlp\(64, 64, 10\) │ +2/2 │ finished │ +0\.000000000001 GRAD │ "
                     r"+65\.63% │", out)
    assert re.search(rf"│ +1 │ {ADDRESS['Creator']} │ mlp\(64, 64, 10\) │ +1/3 │ active +│ +60,000 GRAD │ +- │", out)
    out = rendered(explorer_tasks.print_leaderboard, explorer_tasks.leaderboard(CannedClient()), CHAIN)
    assert re.search(rf"│ 1 │ {ADDRESS['A']} │ 1,313\.412784837695 GRAD │", out)
    assert re.search(r"│ 2 │ \w+ │ +199\.999999999999 GRAD │", out)


@pytest.mark.parametrize("baseline", [None, 0.962])
def test_task_page_plots_one_point_per_round_and_the_baseline(baseline):
    report = explorer_tasks.task_report(CannedClient(), 0, CHAIN)
    page = explorer_tasks.render_task_page(report, "Dev <b>&</b> chain", baseline)
    assert_well_formed(page)
    assert "Dev &lt;b&gt;&amp;&lt;/b&gt; chain: task 0" in page and "<b>" not in page
    assert plot_points(page) == [(0, 37.5), (1, 65.63)]
    baseline_line = re.findall(r'<line class=baseline[^>]*data-accuracy="([\d.]+)"', page)
    assert baseline_line == ([] if baseline is None else ["96.20"])
    assert page.count("<table class=updates") == 2 and page.count("malformed: bond slashed") == 2
    trainers = re.search(r"<table class=trainers>.*?</table>", page, re.S).group(0)
    assert trainers.index(ADDRESS["A"]) < trainers.index(ADDRESS["B"]) < trainers.index(ADDRESS["C"])


def test_kept_rounds_plot_the_base_accuracy():
    page = explorer_tasks.render_task_page(explorer_tasks.task_report(CannedClient(), 1, CHAIN), "dev")
    assert_well_formed(page)
    assert plot_points(page) == [(0, 50.0)] and "(open)" in page


@pytest.fixture
def run_canned(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "320")
    monkeypatch.setattr(explorer, "connect", lambda url: CannedClient())

    def run(*argv: str) -> tuple[int, str, str]:
        code = explorer.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_commands_and_their_errors(run_canned, tmp_path):
    code, out, err = run_canned("tasks")
    assert code == 0 and "Training tasks (2)" in out, err
    code, out, err = run_canned("leaderboard")
    assert code == 0 and ADDRESS["A"] in out, err
    page_path = tmp_path / "task.html"
    code, out, err = run_canned("task", "0", "--html", str(page_path), "--baseline", "0.962")
    assert code == 0 and f"wrote {page_path}" in out and "Round 1 updates" in out, err
    assert plot_points(page_path.read_text()) == [(0, 37.5), (1, 65.63)]
    for argv, fragment in ((["task", "9"], "no task 9: the chain has tasks 0 to 1"),
                           (["task", "-1"], "bad task id -1"),
                           (["task", "0", "--baseline", "96.2"], "bad --baseline 96.2"),
                           (["task", "0", "--html", str(tmp_path / "no" / "x.html")], "cannot write")):
        code, _, err = run_canned(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)


# --- a real task on a real dev node -------------------------------------------------------------


@pytest.mark.slow
def test_views_of_a_real_task_with_a_poisoner(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from consensus.useful_work import ModelSpec, build_model, state_of
    from consensus.useful_work.data import load_dataset, shard_non_iid, split_held_out
    from runtime.pallets import balances, training
    from scripts._tasks import ChainAccount, TaskOptions, publish_task
    from scripts.trainer import Trainer, TrainerOptions
    from tests.helpers.dev_node import RunningNode

    torch.set_num_threads(1)
    monkeypatch.setenv("COLUMNS", "320")
    node = RunningNode(tmp_path / "node")
    try:
        client = node.client
        alice = ChainAccount(client, crypto.dev_keypair("Alice"))
        keys = [crypto.keypair_from_uri(f"//ExplorerTrainer{i}") for i in range(3)]
        for key in keys:
            alice.send(balances.transfer(key.public, 1000 * GRAD))
        split = split_held_out(*load_dataset("digits"), fraction=0.25, seed=1)
        shards = shard_non_iid(split.train_features, split.train_labels, 3, 2, seed=2, iid_fraction=0.2)
        spec = ModelSpec("mlp", input_dim=64, hidden=64, classes=10)
        task_id = publish_task(alice, spec, state_of(build_model(spec, 0)), split.held_out_features,
                               split.held_out_labels, TaskOptions(rounds=2, commit_blocks=4, reveal_blocks=2))
        threads = []
        for index, (key, (features, labels)) in enumerate(zip(keys, shards)):
            options = TrainerOptions(behaviour="poison" if index == 2 else "honest")
            trainer = Trainer(client, key, task_id, features, labels, options, say=lambda message: None)
            threads.append(threading.Thread(target=trainer.run, daemon=True))
            threads[-1].start()
        for thread in threads:
            thread.join(90)
        assert client.call("training_task", task_id)["status"] == 1, "the task did not finish"
        rounds = client.call("training_rounds", task_id)
        assert [r["round"] for r in rounds] == [0, 1]

        page_path = tmp_path / "task.html"
        code = explorer.main(["--url", node.url, "task", str(task_id), "--html", str(page_path), "--baseline",
                              "0.962"])
        out, err = capsys.readouterr()
        assert code == 0, err
        for r in rounds:  # each round with the block that closed it
            cells = (r["round"], f"#{r['closed_at']}", r["revealed"], r["accepted"])
            assert re.search("│" + "│".join(rf" +{cell} " for cell in cells) + "│", out)
        poisoner = crypto.encode_address(keys[2].public, 42)
        poisoned = [line for line in out.splitlines() if line.startswith("│ 0x") and poisoner in line]
        assert len(poisoned) == 2 and all("malformed: bond slashed" in line for line in poisoned), out

        report = explorer_tasks.task_report(client, task_id)
        validator_pot = report["reward_per_round"] * training.VALIDATOR_SHARE_PPM // 1_000_000  # Alice's alone
        for summary, r in zip(rounds, report["closed_rounds"]):
            rewards = sum(int(u["reward"]) for u in client.call("training_updates", task_id, summary["round"]))
            assert r["paid_to_trainers"] == rewards and rewards + r["paid_to_validators"] == int(summary["paid"])
            assert r["paid_to_validators"] == (validator_pot if summary["adopted"] else 0)
            assert r["rejected"]["malformed"] == 1
        by_address = {t["address"]: t for t in report["trainers"]}
        assert by_address[poisoner]["earned"] == 0 and by_address[poisoner]["slashed"] == 2
        paid_to_trainers = sum(r["paid_to_trainers"] for r in report["closed_rounds"])
        assert sum(t["earned"] for t in report["trainers"]) == paid_to_trainers > 0
        earned = {row["address"]: row["earned"] for row in explorer_tasks.leaderboard(client)}
        for trainer in report["trainers"]:  # the only task on this chain: its rewards are all they earned
            assert earned.get(trainer["address"], 0) == trainer["earned"]
        assert earned[alice.address] == sum(r["paid_to_validators"] for r in report["closed_rounds"])

        after_round = [(r["round"], (r["model_score"] if r["adopted"] else r["base"])["accuracy_ppm"]) for r in rounds]
        page = page_path.read_text()
        assert_well_formed(page)
        assert plot_points(page) == [(n, float(explorer_tasks.percent(ppm)[:-1])) for n, ppm in after_round]
        assert re.search(r'<line class=baseline[^>]*data-accuracy="96.20"', page)

        code = explorer.main(["--url", node.url, "tasks"])
        out, err = capsys.readouterr()
        final = client.call("training_task", task_id)["model_score"]["accuracy_ppm"]
        assert code == 0 and re.search(rf"│ +{task_id} │ .* │ +2/2 │ finished │ .* │ +"
                                       rf"{re.escape(explorer_tasks.percent(final))} │", out), out
    finally:
        node.close()
