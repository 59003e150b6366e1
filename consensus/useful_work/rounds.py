"""Useful work on the chain: the author's measurements and every validator's check of them.

This is where the chain's records (runtime/pallets/training) meet the engine
(`UsefulWorkVerifier`). For a round whose reveal window has closed, the inputs
come from the parent state and the node's blob store:

    rules        the task's config (architecture, update bounds, aggregation, subset size)
    base         the task's current model, from the blob store by its hash
    submissions  the round's revealed updates, in order of reveal, with their blobs (None if absent)
    held-out     the encrypted held-out blob, opened with this validator's sealed key
    seed         the randomness accumulator after the round's seed block (runtime/pallets/randomness.py)
    copies       which of the submissions are near-copies of an earlier update or model step
                 (similarity.py): reported UPDATE_COPY and left out of every aggregate

Leave-one-out weighs every sound update the same (the verifier's measure_round), so
a declared sample count never changes a contribution; the new model weighs the
updates it aggregates (training.aggregated_updates: the accepted ones and those under the
relative bar that still add something) by the runtime's `aggregation_weights` (capped counts,
capped shares). When the first pass finds updates that make the aggregate worse, they are
excluded and a second pass measures the rest (training.excluded_updates: a contribution below minus the acceptance bar).

`RoundWork.measure_due` gives an author the `RoundReport`s for its block;
`RoundWork.verify_block` recomputes a block's reports and names every mismatch.
A node that holds no sealed key for a task (not one of its validators) can
neither measure nor check it: such rounds are skipped, and said so.

Models the chain adopts exist nowhere until an author aggregates them: every
node that computes one (author or verifier) stores its blob, so trainers can
download the global model from any node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import structlog

from consensus.useful_work.aggregate import AggregationRule, ServerOptimizer
from consensus.useful_work.errors import HeldOutError, ModelError, UsefulWorkError
from consensus.useful_work.evaluate import Scores
from consensus.useful_work.models import ModelSpec
from consensus.useful_work.key_resealing import usable_sealed_keys
from consensus.useful_work.secrecy import open_held_out
from consensus.useful_work.similarity import CopyCheck, CopyCheckUnavailable
from consensus.useful_work.updates import UpdateLimits
from consensus.useful_work.verifier import HeldOutSet, ModelVersion, Submission, TaskRules, UsefulWorkVerifier
from runtime.crypto import Keypair
from runtime import api as runtime_api
from runtime.pallets import held_out_keys, training
from runtime.pallets.training import RoundReport, Score, Task, UpdateScore
from runtime.types import Block, Header
from storage.blobs import VERIFIED, BlobStore

log = structlog.get_logger("useful_work")

UNUSABLE = {"update_missing": training.UPDATE_MISSING}  # every other rejection: UPDATE_MALFORMED
# On a network a revealed update's blob reaches the author through the blob fetcher, a few blocks behind its
# reveal when trainers upload to other validators. An author that measured at once would report such an
# update missing while the validators that have it dispute the block (and the honest trainer lose its bond):
# it waits up to this many blocks past the report's first block for every revealed blob, then reports.
UPDATE_BLOB_WAIT_BLOCKS = 10


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


class RoundWork:
    """Measures and checks rounds for one node; holds the verifier's caches and opened held-out sets."""

    def __init__(self, blobs: BlobStore, keypair: Keypair | None, *,
                 verifier: UsefulWorkVerifier | None = None) -> None:
        self.blobs = blobs
        self.keypair = keypair
        self.verifier = verifier or UsefulWorkVerifier()
        self._held_out: dict[bytes, HeldOutSet] = {}
        self._models: dict[bytes, ModelVersion] = {}
        # near-copies, their vectors cached; the blob store is read through self.blobs (the node may set it later)
        self.copy_check = CopyCheck(lambda blob_hash: self.blobs.get(blob_hash), self._model)
        self._block_number = 0  # of the block being built or checked (the blob store dates blobs by it)
        self.deferred: list[ModelVersion] | None = None  # aggregates computed off the chain thread, to store

    # --- inputs ---------------------------------------------------------------

    def inputs(self, state, task_id: int, task: Task, seed: bytes) -> RoundInputs:
        """Everything a round's measurement needs; `RoundUnavailable` says what is missing."""
        rules = task_rules(task)
        held_out = self._open_held_out(state, task_id, task)
        base = self._model(rules.spec, task.model)
        submissions = []
        for update, reveal in runtime_api.round_reveals(state, task_id, task.round):
            blob = self.blobs.get(update)
            submissions.append(Submission(bytes(update), None if blob is None else bytes(blob), reveal.num_samples))
        try:
            copies = self.copy_check.copies(state, task_id, task, rules.spec, rules.update_limits, base,
                                            [(s.update_hash, s.update_blob) for s in submissions])
        except CopyCheckUnavailable as error:
            raise RoundUnavailable(str(error), code=error.code) from None
        previous = None
        if rules.server.momentum_ppm:
            previous_hash = runtime_api.previous_model(state, task_id)
            previous = None if previous_hash is None else self._model(rules.spec, previous_hash)
        return RoundInputs(task_id, task, rules, base, submissions, held_out, bytes(seed), copies, previous)

    def open_held_out(self, state, task_id: int) -> bool:
        """Open and keep a task's held-out set with a key sealed to this validator in `state` (a block later
        than the ones waiting): rounds of blocks whose parent state held no key for it can be checked now."""
        task = runtime_api.task(state, task_id)
        if task is None:
            return False
        try:
            self._open_held_out(state, task_id, task)
        except RoundUnavailable:
            return False
        return True

    def _open_held_out(self, state, task_id: int, task: Task) -> HeldOutSet:
        """The held-out set, opened with the first key sealed to this validator (the creator's, or one
        re-sealed later: runtime/pallets/held_out_keys.py) that opens the recorded blob to the declared
        plaintext; a wrong one is skipped, and with none the round is not checked here (waiting for a sealer)."""
        if self.keypair is None:
            raise RoundUnavailable("this node has no validator key", code="round_no_key")
        cached = self._held_out.get(task.config.held_out)
        if cached is not None:
            return cached
        if not held_out_keys.sealed_keys_for(state, task_id, self.keypair.public):
            raise RoundUnavailable("the held-out key is not sealed to this validator", code="round_not_sealed")
        ciphertext = self.blobs.get(task.config.held_out)
        if ciphertext is None:
            raise RoundUnavailable(f"the held-out blob 0x{bytes(task.config.held_out).hex()} is not in the blob store",
                                   code="round_held_out_missing", missing=(bytes(task.config.held_out),))
        usable = usable_sealed_keys(state, task_id, self.keypair, bytes(ciphertext))
        if not usable:
            raise RoundUnavailable("no key sealed to this validator opens the held-out set to its declared data; "
                                   "waiting for another validator to seal it", code="round_not_sealed")
        try:
            features, labels = open_held_out(bytes(ciphertext), bytes(usable[0][0]), self.keypair)
        except HeldOutError as error:
            raise RoundUnavailable(f"the held-out set cannot be opened ({error.code}: {error})",
                                   code="round_held_out_bad") from None
        held_out = HeldOutSet.from_tensors(features, labels)
        self._held_out[task.config.held_out] = held_out
        return held_out

    def _model(self, spec: ModelSpec, model_hash: bytes) -> ModelVersion:
        cached = self._models.get(bytes(model_hash))
        if cached is not None:
            return cached
        blob = self.blobs.get(model_hash)
        if blob is None:
            raise RoundUnavailable(f"the round's base model 0x{bytes(model_hash).hex()} is not in the blob store",
                                   code="round_model_missing", missing=(bytes(model_hash),))
        try:
            model = ModelVersion.from_blob(spec, bytes(blob))
        except (ModelError, UsefulWorkError) as error:
            raise RoundUnavailable(f"the base model blob does not fit the task ({error})",
                                   code="round_model_bad") from None
        self._remember(model)
        return model

    def _remember(self, model: ModelVersion) -> None:
        if len(self._models) >= 64:
            self._models.clear()
        self._models[model.model_hash] = model

    def _store_model(self, model: ModelVersion) -> None:
        """Keep a computed aggregate: trainers download the next round's base from any node.

        Off the chain thread (`deferred` set), the blob is written later by `store_deferred`
        on the chain thread, which owns every write to the database."""
        self._remember(model)
        if self.deferred is not None:
            self.deferred.append(model)
        elif self.blobs.info(model.model_hash) is None:
            # what this validator computed itself: stored even when uploads have filled the store
            self.blobs.put(model.model_hash, model.to_blob(), now_block=self._block_number, admission=VERIFIED)

    def store_deferred(self, models: list[ModelVersion], now_block: int) -> None:
        for model in models:
            if self.blobs.info(model.model_hash) is None:
                self.blobs.put(model.model_hash, model.to_blob(), now_block=now_block, admission=VERIFIED)

    # --- the author -------------------------------------------------------------

    def measure_due(self, parent_state, parent: Header) -> tuple[RoundReport, ...]:
        """The reports of every round due in the block after `parent` that this node can measure."""
        reports = []
        for inputs in self.due_inputs(parent_state, parent):
            try:
                reports.append(self.measure(inputs))
            except Exception:  # a bug measuring one task must not stop the node from authoring
                log.exception("measuring a round failed", task=inputs.task_id, round=inputs.task.round)
        return tuple(reports)

    def due_inputs(self, parent_state, parent: Header, *, skip=frozenset()) -> list[RoundInputs]:
        """The inputs of every round due in the block after `parent` that this node can measure
        (gathered on the chain thread; `measure` may then run anywhere). `skip`: (task, round) pairs."""
        gathered = []
        self._block_number = parent.number + 1
        room = runtime_api.parameters(parent_state).block_weight_limit // 2  # the rest is for transactions
        for task_id, task in runtime_api.rounds_due(parent_state, parent.number + 1):
            if (task_id, task.round) in skip:
                continue
            revealed = len(runtime_api.round_reveals(parent_state, task_id, task.round))
            # the most its report can weigh: a second pass over all but one update (task_work's bound)
            weight = training.round_work_weight(task.config, revealed, max(revealed - 1, 0))
            if weight > room:  # reported in a later block: the runtime refuses reports over the limit
                log.info("round waits for a later block", task=task_id, round=task.round, weight=weight)
                continue
            room -= weight
            seed = runtime_api.round_seed(parent_state, task)
            if seed is None:
                log.warning("cannot report round: its seed block left the randomness history", task=task_id,
                            round=task.round)
                continue
            try:
                inputs = self.inputs(parent_state, task_id, task, seed)
            except RoundUnavailable as error:
                log.warning("cannot report round", task=task_id, round=task.round, reason=str(error))
                continue
            absent = [s.update_hash for s in inputs.submissions if s.update_blob is None]
            if absent and parent.number + 1 < training.report_start(task) + UPDATE_BLOB_WAIT_BLOCKS:
                log.info("round waits for revealed updates' blobs", task=task_id, round=task.round,
                         missing=len(absent), first=f"0x{absent[0].hex()[:16]}")
                continue
            gathered.append(inputs)
        return gathered

    def measure(self, inputs: RoundInputs) -> RoundReport:
        measured = self.verifier.measure_round(inputs.rules, inputs.base, inputs.scored(), inputs.held_out,
                                               inputs.seed, previous=inputs.previous)
        scores = []
        for submission in inputs.submissions:
            update = submission.update_hash
            if update in inputs.copies:
                scores.append(UpdateScore(update, training.UPDATE_COPY, None))
            elif update in measured.rejected:
                status = UNUSABLE.get(measured.rejected[update], training.UPDATE_MALFORMED)
                scores.append(UpdateScore(update, status, None))
            else:
                scores.append(UpdateScore(update, training.UPDATE_OK, to_score(measured.without[update])))
        candidate = None if measured.candidate is None else to_score(measured.candidate)
        excluded = training.excluded_updates(inputs.task.config, candidate, scores)
        kept_candidate, scores = self._second_pass(inputs, excluded, scores)
        report = RoundReport(inputs.task_id, inputs.task.round, inputs.seed, to_score(measured.base), candidate,
                             tuple(scores), None, None, kept_candidate)
        accepted = training.round_accepted(inputs.task.config, report)
        aggregated = training.round_aggregated(inputs.task.config, report)  # the accepted ones and more
        outcome = self.verifier.aggregate_round(inputs.rules, inputs.base, inputs.weighted(aggregated), aggregated,
                                                inputs.held_out, inputs.seed, previous=inputs.previous)
        if outcome is not None:
            self._store_model(outcome.model)
            report = replace(report, new_model=outcome.model.model_hash, new_model_score=to_score(outcome.scores))
        log.info("measured round", task=inputs.task_id, round=inputs.task.round, updates=len(scores),
                 excluded=len(excluded), accepted=len(accepted), copies=len(inputs.copies),
                 base_accuracy=report.base.accuracy_ppm,
                 new_accuracy=None if outcome is None else outcome.scores.accuracy_ppm)
        return report

    def _second_pass(self, inputs: RoundInputs, excluded: list[bytes],
                     scores: list[UpdateScore]) -> tuple[Score | None, list[UpdateScore]]:
        """(the kept updates' aggregate, the scores with each kept update's second-pass score) when the
        first pass's integers exclude some update (training.excluded_updates), else (None, scores)."""
        if not excluded:
            return None, scores
        sound = {score.update for score in scores if score.status == training.UPDATE_OK} - set(excluded)
        kept = [s for s in inputs.scored() if s.update_hash in sound]
        if not kept:
            return None, scores
        second = self.verifier.measure_round(inputs.rules, inputs.base, kept, inputs.held_out, inputs.seed,
                                             previous=inputs.previous)
        return to_score(second.candidate), [
            replace(score, kept=to_score(second.without[score.update])) if score.update in sound else score
            for score in scores]

    # --- every validator ------------------------------------------------------------

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
