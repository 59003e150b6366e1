"""The demo's three tasks: a model, its data set, the trainers' local training and the task's options.

    digits_mlp              an MLP (64-64-10) on scikit-learn's digits (the default task)
    digits_cnn              the small CNN (8 channels) on digits
    breast_cancer_logistic  logistic regression on scikit-learn's breast-cancer set

`scripts/demo.py --tasks` runs them on a chain, `scripts/bench/simulate.py` and
`scripts/bench/federated.py` without one (same shards, same local training).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from consensus.useful_work import ModelSpec, apply_update
from consensus.useful_work.train import scheduled_lr, train_local
from scripts._tasks import TaskOptions


@dataclass(frozen=True)
class DemoTask:
    dataset: str
    spec: ModelSpec
    epochs: int  # local epochs per round
    batch_size: int
    lr: float
    metric: str = "loss"
    min_improvement_ppm: int = 500
    min_relative_ppm: int = 300_000
    held_out_subset: int = 384
    max_update_norm: float = 8.0
    server_lr_ppm: int = 1_000_000
    server_momentum_ppm: int = 0
    # tuning options, neutral in every task: for the CNN, 35% held out with a decay to 0.2 lifted the test column
    # with an adversary on two simulated seeds of three (scripts/bench/simulate.py --seed), lowered it on the third
    # (honest too) and in a demo run, where the noise trainer was paid
    held_out_fraction: float = 0.25  # of the data left after the test set: the task creator's held-out set
    lr_floor: float = 1.0  # the local lr decays linearly to lr * lr_floor over the rounds (1: constant)

    def local_lr(self, round_number: int, rounds: int) -> float:
        return scheduled_lr(self.lr, self.lr_floor, round_number, rounds)

    def options(self, rounds: int, **changes) -> TaskOptions:
        return replace(TaskOptions(rounds=rounds, metric=self.metric, min_improvement_ppm=self.min_improvement_ppm,
                                   min_relative_ppm=self.min_relative_ppm, held_out_subset=self.held_out_subset,
                                   max_update_norm=self.max_update_norm, server_lr_ppm=self.server_lr_ppm,
                                   server_momentum_ppm=self.server_momentum_ppm), **changes)


DEMO_TASKS = {
    # tuned with scripts/bench/simulate.py over 20 rounds: lr 0.5 (the old demo's) drifts on non-IID shards;
    # server momentum 0.5 and a 30% relative bar keep honest updates in and paid noise out; honest updates'
    # norms stay below 2.3, so a bound of 4 keeps them and burns a x10 poisoned one every round
    "digits_mlp": DemoTask("digits", ModelSpec("mlp", input_dim=64, hidden=64, classes=10), epochs=2, batch_size=16,
                           lr=0.2, min_improvement_ppm=1, min_relative_ppm=300_000, server_momentum_ppm=500_000,
                           max_update_norm=4.0),
    "digits_cnn": DemoTask("digits", ModelSpec("small_cnn", input_dim=64, channels=8, classes=10), epochs=2,
                           batch_size=16, lr=0.2, min_improvement_ppm=1, min_relative_ppm=300_000,
                           server_lr_ppm=1_500_000, server_momentum_ppm=500_000, max_update_norm=4.0),
    # 62 weights: random noise helps by luck far more often than in a big model (1/sqrt(d)), so the bars are
    # higher (0.002 nats and half the best contribution): no noise update was paid over 20 rounds
    "breast_cancer_logistic": DemoTask("breast_cancer", ModelSpec("logistic_regression", input_dim=30, classes=2),
                                       epochs=2, batch_size=16, lr=0.1, min_improvement_ppm=2_000,
                                       min_relative_ppm=500_000),
}


def train_centrally(task: DemoTask, initial: dict[str, torch.Tensor], features: torch.Tensor, labels: torch.Tensor,
                    rounds: int, *, epochs: int, batch_size: int, lr: float) -> dict[str, torch.Tensor]:
    """The baseline's model: `initial` trained on the union of the trainers' data for the chain's epochs
    (rounds x epochs), with the trainers' learning rate in each round's epochs (one run when constant)."""
    if task.lr_floor == 1.0:
        return apply_update(initial, train_local(task.spec, initial, features, labels, epochs=rounds * epochs,
                                                 batch_size=batch_size, lr=lr, seed=0))
    weights = initial
    for round_number in range(rounds):
        weights = apply_update(weights, train_local(task.spec, weights, features, labels, epochs=epochs,
                                                    batch_size=batch_size, seed=round_number,
                                                    lr=scheduled_lr(lr, task.lr_floor, round_number, rounds)))
    return weights
