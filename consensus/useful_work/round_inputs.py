"""A round's inputs as the useful-work engine reads them, and its scores as the chain publishes them.

`RoundInputs` is everything one round's measurement needs (gathered from the parent state and the
blob store by RoundWork.inputs, rounds.py); `task_rules` turns the chain's task config into the
engine's `TaskRules`; `to_score` / `published` / `to_scores` convert between the engine's exact
`Scores` and the chain's `Score` (the loss on its quantum). Shared by the author's half (rounds.py)
and every validator's check (round_checks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.useful_work.aggregate import AggregationRule, ServerOptimizer
from consensus.useful_work.errors import ModelError, UsefulWorkError
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.models import ModelSpec
from consensus.useful_work.round_types import HeldOutSet, ModelVersion, Submission, TaskRules
from consensus.useful_work.updates import UpdateLimits
from runtime.pallets import training
from runtime.pallets.training import Score, Task


class RoundUnavailable(UsefulWorkError):
    """This node cannot measure or check the round (no sealed key, or a blob it needs is absent)."""

    def __init__(self, message: str, *, code: str | None = None, missing: tuple[bytes, ...] = ()) -> None:
        super().__init__(message, code=code)
        self.missing = missing  # the blobs this node lacks (data availability), if that is the reason


@dataclass(frozen=True)
class RoundInputs:
    task_id: int
    task: Task
    rules: TaskRules
    base: ModelVersion
    submissions: list[Submission]
    held_out: HeldOutSet
    seed: bytes
    copies: dict[bytes, str] = field(default_factory=dict)  # update hash -> what it copies
    previous: ModelVersion | None = None  # the model the base replaced (FedAvgM's momentum), if momentum is on

    def scored(self) -> list[Submission]:
        """The submissions that are not copies (what the verifier measures)."""
        return [s for s in self.submissions if s.update_hash not in self.copies]

    def weighted(self, accepted: list[bytes]) -> list[Submission]:
        """The scored submissions, the accepted ones carrying their aggregation weight instead of their count."""
        by_hash = {s.update_hash: s for s in self.scored()}
        chosen = [by_hash[bytes(h)] for h in accepted if bytes(h) in by_hash]
        weights = dict(zip((s.update_hash for s in chosen),
                           training.aggregation_weights(self.task.config, [s.num_samples for s in chosen])))
        return [Submission(s.update_hash, s.update_blob, weights.get(s.update_hash, s.num_samples))
                for s in by_hash.values()]


def task_rules(task: Task) -> TaskRules:
    config = task.config
    try:
        spec = ModelSpec.from_params(config.spec.architecture, tuple(config.spec.params))
        return TaskRules(spec, UpdateLimits(config.max_update_bytes, config.max_update_norm),
                         AggregationRule(training.AGGREGATIONS[config.aggregation], config.trim),
                         held_out_subset_size=config.held_out_subset,
                         server=ServerOptimizer(config.server_lr_ppm, config.server_momentum_ppm))
    except (ModelError, UsefulWorkError) as error:
        raise RoundUnavailable(f"the task's config has no model here ({error})", code="round_bad_config") from None


def to_score(scores: Scores) -> Score:
    """A measurement as the chain publishes it (losses coarsened to training.LOSS_QUANTUM_PPM)."""
    return Score(scores.accuracy_ppm, training.quantize_loss(scores.loss_ppm))


def published(scores: Scores) -> Scores:
    """What the chain publishes of a measurement (the loss on its quantum): exact scores compare so."""
    return to_scores(to_score(scores))


def to_scores(score: Score | None) -> Scores | None:
    return None if score is None else Scores(score.accuracy_ppm, score.loss_ppm)
