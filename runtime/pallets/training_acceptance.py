"""training's acceptance rules: which updates of a round are excluded, measured, accepted (paid) and
aggregated into the new model, and whether it is adopted. Pure integer arithmetic over a report's
scores, shared by the runtime (training_rewards.py), the block author and every verifying validator
(consensus/useful_work/rounds.py; training_types.py has the types they read, training.py re-exports them).
"""

from __future__ import annotations

from runtime.pallets.training_types import METRIC_ACCURACY, UPDATE_OK, RoundReport, Score, TaskConfig, UpdateScore


def metric_value(metric: int, score: Score) -> int:
    """Higher is better: accuracy in ppm, or minus the loss in ppm."""
    return score.accuracy_ppm if metric == METRIC_ACCURACY else -score.loss_ppm


def is_adopted(config: TaskConfig, base: Score, new: Score) -> bool:
    """The adoption rule: the new model (the accepted updates' aggregate) replaces the base when it
    scores better on the task's metric, on the same held-out subset."""
    return metric_value(config.metric, new) > metric_value(config.metric, base)


def contributions(metric: int, candidate: Score | None, scores) -> dict[bytes, int]:
    """Each sound update's contribution: value(candidate) - value(the aggregate without it)."""
    if candidate is None:
        return {}
    total = metric_value(metric, candidate)
    return {s.update: total - metric_value(metric, s.without) for s in scores if s.status == UPDATE_OK}


def excluded_updates(config: TaskConfig, candidate: Score | None, scores) -> list[bytes]:
    """The sound updates that do not lift the round's aggregate by the task's minimum (a first-pass
    contribution below min_improvement_ppm, at least 1 ppm), by hash. They are left out of a second
    leave-one-out pass over the others, which decides contributions, acceptance, pay and the new model.

    Why two passes: leave-one-out weighs every sound update the same, so an update in the round counts
    in every aggregate the pass measures, whatever it adds. One that drags the aggregate down (a poisoned
    update inside the norm bound, pulling against the honest ones) shrinks what leaving out an honest
    update changes; one that adds nothing (a free rider's zero update, or a token step) dilutes every
    honest step to (n - 1) / n. Measured again without them, the honest updates' contributions are
    exactly what they would be in the same round without them (tests/test_useful_work_second_pass.py,
    tests/test_useful_work_free_rider.py).

    The bound, for an update p against the same round without it (tests/test_useful_work_sub_bar_bound.py):
      * p is excluded, so it changes nothing the round decides, unless its first-pass contribution
        g_p reaches the task's minimum: the round's aggregate is better with it than without it;
      * such a p, if paid, earns for what it adds (its second-pass contribution over the bar), and
        otherwise at most joins the new model as an update that lifts the aggregate.
    Excluded updates are never paid nor aggregated (an update under the minimum was not aggregated before
    either); honest non-IID updates that late in training do not lift the aggregate are measured out of
    the round as well (scripts/bench/simulate.py --sweep measures what that costs in accuracy)."""
    gains = contributions(config.metric, candidate, scores)
    minimum = max(config.min_improvement_ppm, 1)
    return sorted(update for update, gain in gains.items() if gain < minimum)


def acceptance_bar(config: TaskConfig, gains: dict[bytes, int]) -> int:
    """The least contribution an accepted update makes: the task's minimum (at least 1 ppm) and its
    min_relative_ppm share of the round's best contribution."""
    best = max(gains.values(), default=0)
    relative = best * config.min_relative_ppm // 1_000_000 if best > 0 else 0
    return max(config.min_improvement_ppm, relative, 1)


def deciding_pass(config: TaskConfig, candidate: Score | None, scores,
                  kept_candidate: Score | None) -> tuple[Score | None, list[UpdateScore]]:
    """(candidate, scores) that contributions, acceptance and rewards read: the first pass when no
    update was excluded, else the second: the kept updates' aggregate and each kept update's score
    without it (excluded updates drop out: they are neither accepted nor paid)."""
    excluded = set(excluded_updates(config, candidate, scores))
    if not excluded:
        return candidate, list(scores)
    return kept_candidate, [UpdateScore(s.update, UPDATE_OK, s.kept) for s in scores
                            if s.status == UPDATE_OK and s.update not in excluded]


def round_contributions(config: TaskConfig, report: RoundReport) -> dict[bytes, int]:
    """Each sound update's contribution as the round pays it (the deciding pass; excluded ones absent)."""
    return contributions(config.metric, *deciding_pass(config, report.candidate, report.scores,
                                                       report.kept_candidate))


def round_accepted(config: TaskConfig, report: RoundReport) -> list[bytes]:
    """The updates a report's integers accept: `accepted_updates` over its deciding pass."""
    return accepted_updates(config, *deciding_pass(config, report.candidate, report.scores,
                                                   report.kept_candidate))


def round_aggregated(config: TaskConfig, report: RoundReport) -> list[bytes]:
    """The updates a report's new model aggregates: `aggregated_updates` over its deciding pass."""
    return aggregated_updates(config, *deciding_pass(config, report.candidate, report.scores,
                                                     report.kept_candidate))


def aggregated_updates(config: TaskConfig, candidate: Score | None, scores) -> list[bytes]:
    """The updates the new model aggregates, by hash: when some update is accepted, every sound update
    whose contribution reaches the task's minimum (min_improvement_ppm, at least 1 ppm), the accepted
    ones and those under the relative bar alike. Those below the bar add to the model without being
    paid: on non-IID shards the model needs every class's update, and the relative bar is there to
    keep lucky noise from being paid, not to keep useful updates out of the model (a round whose
    model took only its one or two best updates often lost to its base and was not adopted)."""
    if not accepted_updates(config, candidate, scores):
        return []
    minimum = max(config.min_improvement_ppm, 1)
    return sorted(update for update, gain in contributions(config.metric, candidate, scores).items()
                  if gain >= minimum)


def accepted_updates(config: TaskConfig, candidate: Score | None, scores) -> list[bytes]:
    """The acceptance rule, shared by the runtime, the author and every verifying validator:
    the sound updates whose contribution reaches the task's minimum (at least 1 ppm) and the
    task's share of the round's largest contribution, by hash.

    The relative bar is what keeps random updates out. An honest update moves the aggregate
    along the loss's slope; noise of the same norm moves it mostly across (in a model of d
    weights, about 1/sqrt(d) as much along it) and pays for its curvature, so when it lowers
    the held-out loss at all, by luck, it is by a small fraction of what the best update does
    (at most 15% over 12 rounds of the digits demo, mostly under 6%).
    """
    gains = contributions(config.metric, candidate, scores)
    bar = acceptance_bar(config, gains)
    return sorted(update for update, gain in gains.items() if gain >= bar)
