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
    """The sound updates that drag the round's aggregate down at least as much as an accepted update
    must lift it, by hash: a first-pass contribution <= -(the acceptance bar: the task's minimum and
    its share of the best contribution, `acceptance_bar`). They are left out of a second leave-one-out
    pass over the others.

    Why two passes: an update that drags the aggregate down also shrinks what leaving out an honest
    update changes (a poisoned update inside the norm bound, pulling against the honest ones, made
    their contributions small and their rewards unequal). Measured again without it, the honest
    updates' contributions are what they would be in a round without the poisoned update.
    Why not every negative one: small negative contributions are common among honest non-IID updates
    late in training (the step overshoots a little, and any update left out shortens it); excluding
    them too left second passes over one or two updates, whose contributions are noisy (measured with
    scripts/bench/simulate.py: lower accuracy, and a noise update paid where it was not before).

    The bound for an update p that is not excluded (first-pass contribution g_p > -b, b the bar), against
    the same round with p's delta zeroed and its weight kept (tests/test_useful_work_sub_bar_bound.py):
      * unless g_p reaches the task's minimum, p is neither paid nor aggregated: the new model is made
        of honest updates only (p can change which of them, not what they are);
      * the measured aggregate scores lower by exactly -g_p < b;
      * every aggregate the pass measures moves by lr * p / n in parameters (n sound updates, lr the
        server's), to one fixed-point unit per coordinate: at most lr * max_update_norm / n;
      * each honest update h's contribution moves by exactly g_p - g_p(-h), where g_p(-h) is p's effect
        on the aggregate without h: by less than b + |g_p(-h)|, and |g_p(-h)| <= L * lr * max_update_norm / n
        for L the metric's Lipschitz constant (ppm per unit of parameter norm) around those aggregates.
        To first order g_p(-h) = g_p and the shift vanishes; on the digits MLP just under the bar it was
        at most 1.3 b.
    p's presence alone (a zero delta too) also dilutes every honest step to (n - 1) / n: against the round
    without p, that test's honest contributions moved by up to 2 b (a zero update earns nothing, but this
    is not bounded by the bar)."""
    gains = contributions(config.metric, candidate, scores)
    bar = acceptance_bar(config, gains)
    return sorted(update for update, gain in gains.items() if gain <= -bar)


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
