"""The demo's three tasks: valid task configs inside the genesis compute budget, and their rounds run
through the engine (the bench's simulation) with FedAvgM."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from pathlib import Path

import pytest

from runtime.pallets import training
from runtime.state import EmptyBackend, Overlay
from scripts._demo_tasks import DEMO_TASKS
from scripts._tasks import task_config
from tests.helpers.chain import dev_genesis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "bench"))
from simulate import plain_fedavg, simulate_chain, sweep  # noqa: E402


@pytest.mark.parametrize("name", sorted(DEMO_TASKS))
def test_each_demo_task_is_a_valid_config_inside_the_budget(name):
    task = DEMO_TASKS[name]
    config = task_config(task.spec, b"\x01" * 32, b"\x02" * 32, 1000, {b"\x03" * 32: b"k" * 80}, task.options(20))
    training._check_config(SimpleNamespace(state=Overlay(EmptyBackend())), config)
    assert training.task_work(config) <= dev_genesis().parameters.max_task_work
    assert config.server_momentum_ppm == task.server_momentum_ppm


@pytest.mark.parametrize("name", sorted(DEMO_TASKS))
def test_each_demo_task_learns_through_the_engine(name):
    chain = simulate_chain(name, 3)
    plain = plain_fedavg(name, 3)
    assert len(chain) == len(plain) == 3
    assert any(row["adopted"] for row in chain)
    assert chain[-1]["accuracy"] > 0.5 and plain[-1]["accuracy"] > 0.5


def test_a_sweep_reports_every_run_and_the_worst_ratio_per_adversary():
    result = sweep("breast_cancer_logistic", 2, range(0, 2), 1, {}, adversaries=("absent", "noise"))
    assert [(run["adversary"], run["seed"]) for run in result["runs"]] == [
        ("absent", 0), ("absent", 1), ("noise", 0), ("noise", 1)]
    for adversary in ("absent", "noise"):
        runs = [run for run in result["runs"] if run["adversary"] == adversary]
        assert result["worst"][adversary]["test_ratio"] == min(run["test_ratio"] for run in runs) > 0
