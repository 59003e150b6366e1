"""The demo's three tasks: a model, its data set, the trainers' local training and the task's options.

    digits_mlp              an MLP (64-64-10) on scikit-learn's digits (the default task)
    digits_cnn              the small CNN (8 channels) on digits
    breast_cancer_logistic  logistic regression on scikit-learn's breast-cancer set

`scripts/demo.py --tasks` runs them on a chain, `scripts/bench/simulate.py` and
`scripts/bench/federated.py` without one (same shards, same local training).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus.useful_work import ModelSpec
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
