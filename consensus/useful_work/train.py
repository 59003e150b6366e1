"""Local training: what a trainer does with its private shard to earn a reward.

Minibatch SGD (optionally with momentum) on cross-entropy, float32, starting from
the round's base model. Deterministic given `seed` on one machine: the shuffle comes from a private
`torch.Generator`, and torch runs single-threaded with deterministic algorithms.
Nothing here is checked by validators (they only score the resulting update), so
a trainer is free to train any other way; this is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from consensus.useful_work.evaluate import check_examples, deterministic_torch
from consensus.useful_work.models import ModelSpec, TaskModel, load_state, state_of
from consensus.useful_work.updates import compute_update


def train_local(spec: ModelSpec, base_weights: Mapping[str, torch.Tensor], features: torch.Tensor,
                labels: torch.Tensor, *, epochs: int, batch_size: int, lr: float, seed: int,
                momentum: float = 0.0) -> dict[str, torch.Tensor]:
    """The update (``trained - base`` per parameter, float32) after `epochs` of SGD on the shard."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch_size must be positive integers and lr a positive number")
    check_examples(spec, features, labels)
    model = TaskModel(spec)
    load_state(model, base_weights)
    features = features.to(torch.float32)
    parameters = list(model.parameters())
    velocities = [torch.zeros_like(parameter) for parameter in parameters]
    generator = torch.Generator().manual_seed(seed)
    with deterministic_torch():
        for _ in range(epochs):
            order = torch.randperm(labels.shape[0], generator=generator)
            for start in range(0, labels.shape[0], batch_size):
                batch = order[start:start + batch_size]
                for parameter in parameters:
                    parameter.grad = None
                F.cross_entropy(model(features[batch]), labels[batch]).backward()
                _sgd_step(parameters, velocities, lr, momentum)
    return compute_update(base_weights, state_of(model))


@torch.no_grad()
def _sgd_step(parameters: list[torch.Tensor], velocities: list[torch.Tensor], lr: float, momentum: float) -> None:
    """torch.optim.SGD's step (no dampening, no weight decay), written out: the first step of a
    torch.optim optimizer imports torch._dynamo, which costs seconds per process."""
    for parameter, velocity in zip(parameters, velocities):
        if momentum:
            velocity.mul_(momentum).add_(parameter.grad)
            parameter.add_(velocity, alpha=-lr)
        else:
            parameter.add_(parameter.grad, alpha=-lr)


def scheduled_lr(lr: float, floor: float, round_number: int, rounds: int) -> float:
    """The local learning rate of a round under a linear decay: lr * max(floor, 1 - round / rounds)
    (floor 1: constant). Late rounds take shorter local steps, so the aggregate of non-IID updates
    still improves on the held-out set near the optimum instead of overshooting it and being refused."""
    if not 0 < floor <= 1 or rounds < 1:
        raise ValueError("the floor is in (0, 1] and rounds is positive")
    return lr * max(floor, 1 - round_number / rounds)
