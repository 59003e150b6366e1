"""The local learning rate's schedule (consensus/useful_work/train.py scheduled_lr): linear decay to a floor,
and the neutral floor 1 leaves every round's lr exactly the task's (the demo tasks' trainers and baselines)."""

from __future__ import annotations

import pytest

from consensus.useful_work.train import scheduled_lr
from scripts._demo_tasks import DEMO_TASKS


def test_the_neutral_floor_keeps_the_learning_rate_exactly():
    for round_number in range(20):
        assert scheduled_lr(0.2, 1.0, round_number, 20) == 0.2


def test_the_learning_rate_decays_linearly_to_its_floor():
    assert scheduled_lr(0.2, 0.2, 0, 20) == 0.2
    assert scheduled_lr(0.2, 0.2, 10, 20) == pytest.approx(0.1)
    assert scheduled_lr(0.2, 0.2, 16, 20) == pytest.approx(0.04)
    assert scheduled_lr(0.2, 0.2, 19, 20) == pytest.approx(0.04)  # held at the floor


@pytest.mark.parametrize("floor, rounds", [(0.0, 20), (1.5, 20), (0.5, 0)])
def test_a_floor_outside_0_1_or_no_rounds_is_refused(floor, rounds):
    with pytest.raises(ValueError):
        scheduled_lr(0.2, floor, 0, rounds)


def test_every_demo_task_trains_with_a_constant_rate():
    for task in DEMO_TASKS.values():
        assert task.lr_floor == 1.0 and task.held_out_fraction == 0.25
        assert all(task.local_lr(round_number, 20) == task.lr for round_number in range(20))
