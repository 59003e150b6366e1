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
capped shares). When the first pass finds updates that do not make the aggregate better, they are
excluded and a second pass measures the rest (training.excluded_updates: a contribution below the task's minimum;
a zero update would otherwise dilute every honest step).

`RoundWork.measure_due` gives an author the `RoundReport`s for its block;
`RoundWork.verify_block` (round_checks.py) recomputes a block's reports and names every mismatch.
A node that holds no sealed key for a task (not one of its validators) can
neither measure nor check it: such rounds are skipped, and said so.

Models the chain adopts exist nowhere until an author aggregates them: every
node that computes one (author or verifier) stores its blob, so trainers can
download the global model from any node.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from consensus.useful_work.errors import HeldOutError, ModelError, UsefulWorkError
from consensus.useful_work.models import ModelSpec
from consensus.useful_work.key_resealing import usable_sealed_keys
from consensus.useful_work.round_checks import RoundCheck, RoundChecks, Verdict, reports_in  # noqa: F401 (re-exported)
from consensus.useful_work.round_inputs import (  # noqa: F401 (re-exported: rounds.py was their home)
    RoundInputs, RoundUnavailable, published, task_rules, to_score, to_scores,
)
from consensus.useful_work.secrecy import open_held_out
from consensus.useful_work.similarity import CopyCheck, CopyCheckUnavailable
from consensus.useful_work.verifier import HeldOutSet, ModelVersion, Submission, UsefulWorkVerifier
from runtime.crypto import Keypair
from runtime import api as runtime_api
from runtime.pallets import held_out_keys, training
from runtime.pallets.training import RoundReport, Score, Task, UpdateScore
from runtime.types import Header
from storage.blobs import VERIFIED, BlobStore

log = structlog.get_logger("useful_work")

UNUSABLE = {"update_missing": training.UPDATE_MISSING}  # every other rejection: UPDATE_MALFORMED
# On a network a revealed update's blob reaches the author through the blob fetcher, a few blocks behind its
# reveal when trainers upload to other validators. An author that measured at once would report such an
# update missing while the validators that have it dispute the block (and the honest trainer lose its bond):
# it waits up to this many blocks past the report's first block for every revealed blob, then reports.
UPDATE_BLOB_WAIT_BLOCKS = 10


class RoundWork(RoundChecks):
    """Measures and checks rounds for one node; holds the verifier's caches and opened held-out sets.
    The author's half is here; every validator's check of a block is RoundChecks (round_checks.py)."""

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

