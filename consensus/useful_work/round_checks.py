"""Every validator's check of a block's useful-work reports: the half of RoundWork that verifies.

Before it votes for a block, a validator recomputes each round the block reports: `gather_block`
reads what each check needs from the parent state and the blob store (on the chain thread),
`check_gathered` measures them (torch: anywhere) into a `Verdict` that names every mismatch by
round and update. A round this node cannot check (no sealed key, a blob not here yet) is skipped
and said so: that is not a verdict. RoundWork (rounds.py) mixes this in beside the author's half.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consensus.useful_work.errors import UsefulWorkError
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.round_inputs import RoundInputs, RoundUnavailable, published, to_scores
from consensus.useful_work.round_types import ModelVersion
from consensus.useful_work.verifier import UsefulWorkVerifier
from runtime import api as runtime_api
from runtime.pallets import training
from runtime.pallets.training import RoundReport, Task
from runtime.types import Block, Header


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one block's useful-work reports."""

    ok: bool
    reasons: list[str] = field(default_factory=list)  # every mismatch, by round and update
    skipped: list[str] = field(default_factory=list)  # rounds this node could not check, and why
    checked: int = 0  # rounds reproduced
    missing: list[bytes] = field(default_factory=list)  # blobs lacking here that the reports need


@dataclass(frozen=True)
class RoundCheck:
    """One report of a block with what checking it needs, gathered on the chain thread."""

    name: str
    report: RoundReport
    inputs: RoundInputs | None  # None: nothing to measure (see problem / skipped / missing)
    problem: str | None = None  # a mismatch found without measuring
    skipped: str | None = None  # why this node cannot check it (not a verdict)
    missing: tuple[bytes, ...] = ()  # blobs the check needs that this node lacks


class RoundChecks:
    """Checks blocks' reports; RoundWork provides the inputs, the verifier and the model store."""

    verifier: UsefulWorkVerifier
    _block_number: int

    def inputs(self, state, task_id: int, task: Task, seed: bytes) -> RoundInputs:
        raise NotImplementedError  # RoundWork.inputs

    def _store_model(self, model: ModelVersion) -> None:
        raise NotImplementedError  # RoundWork._store_model

    def verify_block(self, parent_state, parent: Header, block: Block) -> Verdict:
        """Recompute every report in `block` (built on `parent`); a verdict naming each mismatch."""
        return self.check_gathered(self.gather_block(parent_state, block))

    def gather_block(self, parent_state, block: Block) -> list[RoundCheck]:
        """What checking each report of `block` needs, read from its parent's state and the blob store
        (on the chain thread). A report calling sound an update whose blob is absent names it as missing."""
        gathered = []
        self._block_number = block.header.number
        for report in reports_in(block):
            name = f"task {report.task} round {report.round}"
            task = runtime_api.task(parent_state, report.task)
            if task is None or task.round != report.round:  # the runtime refuses this first
                gathered.append(RoundCheck(name, report, None, problem="not the task's current round"))
                continue
            try:
                inputs = self.inputs(parent_state, report.task, task, report.subset_seed)
            except RoundUnavailable as error:
                gathered.append(RoundCheck(name, report, None, skipped=str(error), missing=error.missing))
                continue
            sound = {bytes(s.update) for s in report.scores if s.without is not None}
            absent = tuple(s.update_hash for s in inputs.submissions
                           if s.update_blob is None and s.update_hash in sound)
            if absent:  # cannot check is not a mismatch, and not a pass either: the blob may still arrive
                gathered.append(RoundCheck(name, report, None, skipped=f"{len(absent)} update(s) the block reports "
                                           f"sound are not in the blob store yet (0x{absent[0].hex()[:16]}...)",
                                           missing=absent))
                continue
            gathered.append(RoundCheck(name, report, inputs))
        return gathered

    def check_gathered(self, gathered: list[RoundCheck]) -> Verdict:
        """Measure the gathered rounds (torch: anywhere, off the chain thread) into a verdict."""
        reasons: list[str] = []
        skipped: list[str] = []
        missing: list[bytes] = []
        checked = 0
        for round_check in gathered:
            name = round_check.name
            if round_check.problem is not None:
                reasons.append(f"{name}: {round_check.problem}")
            if round_check.skipped is not None:
                skipped.append(f"{name}: {round_check.skipped}")
                missing.extend(round_check.missing)
            if round_check.inputs is None:
                continue
            try:
                problems = self.check(round_check.inputs, round_check.report)
            except RoundUnavailable as error:
                skipped.append(f"{name}: {error}")
                missing.extend(error.missing)
                continue
            reasons += [f"{name}: {problem}" for problem in problems]
            checked += 1
        return Verdict(not reasons, reasons, skipped, checked, missing)

    def check(self, inputs: RoundInputs, report: RoundReport) -> list[str]:
        """Every way `report` differs from what this node measures for the round; `RoundUnavailable`
        if an update the report calls sound or a copy has no blob here (that is for blob sync, not a dispute)."""
        if bytes(report.subset_seed) != inputs.seed:
            return ["the subset seed is not the round's"]
        status = {bytes(s.update): s.status for s in report.scores}
        unavailable = [s.update_hash for s in inputs.submissions if s.update_blob is None
                       and status.get(s.update_hash) in (training.UPDATE_OK, training.UPDATE_COPY)]
        if unavailable:  # cannot check is not a mismatch: the blob may still arrive (and copies need every blob)
            raise RoundUnavailable(f"{len(unavailable)} update(s) the block reports sound or copied are not in the "
                                   f"blob store yet (0x{unavailable[0].hex()[:16]}...)", code="round_update_missing")
        reported_copies = {update for update, fate in status.items() if fate == training.UPDATE_COPY}
        copy_problems = [f"update 0x{update.hex()}: reported a copy, but it is not one here"
                         for update in sorted(reported_copies - set(inputs.copies))]
        copy_problems += [f"update 0x{update.hex()}: a copy of {inputs.copies[update]}, reported otherwise"
                          for update in sorted(set(inputs.copies) - reported_copies)]
        if copy_problems:
            return copy_problems
        aggregated = training.round_aggregated(inputs.task.config, report)
        without: Mapping[bytes, Scores | None] = {bytes(s.update): to_scores(s.without) for s in report.scores
                                                  if bytes(s.update) not in reported_copies}
        excluded = training.excluded_updates(inputs.task.config, report.candidate, report.scores)
        try:
            result = self.verifier.verify_report(
                inputs.rules, inputs.base, inputs.weighted(aggregated), inputs.held_out, inputs.seed,
                previous=inputs.previous, publish=published,
                reported_base=to_scores(report.base), reported_candidate=to_scores(report.candidate),
                reported_without=without, accepted=aggregated, excluded=excluded,
                reported_kept_candidate=to_scores(report.kept_candidate),
                reported_kept={bytes(s.update): to_scores(s.kept) for s in report.scores if s.kept is not None},
                reported_aggregate_hash=None if report.new_model is None else bytes(report.new_model),
                reported_aggregate_score=to_scores(report.new_model_score))
        except UsefulWorkError as error:
            return [f"cannot be reproduced ({error.code}: {error})"]
        if result.ok and aggregated:
            outcome = self.verifier.aggregate_round(inputs.rules, inputs.base, inputs.weighted(aggregated), aggregated,
                                                    inputs.held_out, inputs.seed, previous=inputs.previous)
            self._store_model(outcome.model)
        return result.reasons


def reports_in(block: Block) -> list[RoundReport]:
    """The useful-work reports of a block (in its report_useful_work inherent, if any)."""
    found: list[RoundReport] = []
    for extrinsic in block.extrinsics:
        call = extrinsic.call
        if extrinsic.signed is None and call.pallet_index == training.pallet.index and \
                call.call_index == training.report_useful_work.index:
            found.extend(call.args[0])
    return found
