"""The demo's summary: each scenario's final accuracy against the centralized baseline, what adversaries
earned, and the figures `--json` prints (scripts/demo.py)."""

from __future__ import annotations

from collections import Counter

from typing import TYPE_CHECKING

from rpc.client import Client
from runtime import crypto
from scripts._common import format_balance
from scripts._tasks import unhex

if TYPE_CHECKING:
    from scripts.demo import Scenario

DECIMALS = 12  # the dev chain's tokenDecimals


def grad(planck: int, exact: bool) -> str:
    """An amount in GRAD as people read it (4 decimals), or to the last planck with --exact."""
    return format_balance(planck, DECIMALS, "", exact=exact).strip()


def say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, flush=True)


def summarize(client: Client, scenarios: list["Scenario"], baselines: dict[str, tuple[float, float]],
              html_path: str | None, quiet: bool, *, exact: bool = False) -> dict:
    earned = {unhex(row["account"]): int(row["earned"]) for row in client.call("training_leaderboard")}
    tasks: dict[str, dict] = {}
    say("\nsummary", quiet)
    say(f"{'task':<24}{'scenario':<10}{'final accuracy':>16}{'vs baseline':>13}{'test':>8}{'vs baseline':>13}"
        f"{'rounds':>8}{'adversary earned':>18}{'best honest':>13}{'slashed':>9}{'forfeited':>11}", quiet)
    for scenario in scenarios:
        baseline, baseline_test = baselines[scenario.task_name]
        final = scenario.rounds[-1]["accuracy"] if scenario.rounds else 0.0
        final_test = scenario.rounds[-1]["test_accuracy"] if scenario.rounds else 0.0
        summary = {"task": scenario.task_id, "final_accuracy": final, "baseline_accuracy": baseline,
                   "ratio_to_baseline": final / baseline, "test_accuracy": final_test,
                   "final_test_accuracy": final_test, "baseline_test_accuracy": baseline_test,
                   "test_ratio_to_baseline": final_test / baseline_test, "rounds": scenario.rounds,
                   "trainers_earned": {crypto.encode_address(a, 42): earned.get(a, 0) for a in scenario.accounts},
                   "paid": sum(r["paid"] for r in scenario.rounds)}
        if scenario.adversary is not None:
            adversary = crypto.encode_address(scenario.adversary, 42)
            mine = [r for t in scenario.trainers if t.account.public == scenario.adversary for r in t.results]
            honest = [earned.get(a, 0) for a in scenario.accounts if a != scenario.adversary]
            summary.update(adversary=adversary, adversary_earned=earned.get(scenario.adversary, 0),
                           best_honest_earned=max(honest, default=0),
                           adversary_slashed=sum(1 for r in mine if r["status"] in ("missing", "malformed")),
                           adversary_forfeited=sum(1 for r in mine if r["status"] in ("copy", "not revealed")),
                           adversary_statuses=dict(Counter(str(r["status"]) for r in mine)))
        entry = tasks.setdefault(scenario.task_name, {
            key: summary[key] for key in ("final_accuracy", "baseline_accuracy", "test_accuracy",
                                          "baseline_test_accuracy", "ratio_to_baseline", "test_ratio_to_baseline")})
        entry.setdefault("scenarios", {})[scenario.name] = summary
        say(f"{scenario.task_name:<24}{scenario.name:<10}{final:>16.4f}{final / baseline:>13.3f}{final_test:>8.4f}"
            f"{final_test / baseline_test:>13.3f}{len(scenario.rounds):>8}"
            f"{grad(summary.get('adversary_earned', 0), exact):>18}"
            f"{grad(summary.get('best_honest_earned', 0), exact):>13}{summary.get('adversary_slashed', 0):>9}"
            f"{summary.get('adversary_forfeited', 0):>11}", quiet)
    default = tasks[scenarios[0].task_name]
    first = default["scenarios"][scenarios[0].name]
    result = {"final_accuracy": first["final_accuracy"], "baseline_accuracy": first["baseline_accuracy"],
              "final_test_accuracy": first["final_test_accuracy"],
              "baseline_test_accuracy": first["baseline_test_accuracy"], "rounds": first["rounds"],
              "scenarios": default["scenarios"], "tasks": tasks, "html": html_path}
    for name, entry in tasks.items():
        say(f"{name}: the chain's model reached {entry['final_accuracy']:.4f} held-out accuracy "
            f"({entry['test_accuracy']:.4f} on the test set nobody trained or chose models on); the same model "
            f"trained centrally reached {entry['baseline_accuracy']:.4f} ({entry['baseline_test_accuracy']:.4f})",
            quiet)
    return result
