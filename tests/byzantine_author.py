"""A validator node that lies about useful work, for the network tests (test-only, like tests/double_voter.py).

    python tests/byzantine_author.py <the usual gradchain arguments>

It runs the real node, except that the first round it reports that had updates revealed
is not measured at all: its report is made up. Every sound update "contributed" the whole
gain from a base of 50% accuracy to a candidate of 99%, and the round "adopted" a model
nobody computed. The report is well formed, so the runtime takes it and the block is
valid; every honest validator re-measures the round, disputes the block and signs a
dispute. Making the report up costs no time, so the liar is ready before honest authors
have measured, and it makes sure it authors the first block after a round's seed block:
until then it withholds its own blocks (skips its slot) whenever authoring would not put
its next slot right after the seed block (each skip shifts the later blocks by a slot).
After the first made-up report goes into a block of its own, the node is honest again.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus import verification  # noqa: E402
from consensus.useful_work import rounds  # noqa: E402
from node import chain_service  # noqa: E402
from runtime import api as runtime_api  # noqa: E402
from runtime.hashing import blake2b_256  # noqa: E402
from runtime.pallets import training  # noqa: E402
from runtime.pallets.training import RoundReport, Score, UpdateScore  # noqa: E402
from runtime.state import Overlay  # noqa: E402

MADE_UP_BASE = Score(500_000, 2_000_000)
MADE_UP_CANDIDATE = Score(990_000, 100_000)
_honest_measure = rounds.RoundWork.measure
_honest_ready = verification.RoundMeasurements.ready
_honest_author = chain_service.ChainService._author
_made_up: set[int] = set()  # ids of the reports this node made up and has not authored yet
_authored = False


def made_up_report(inputs: rounds.RoundInputs) -> RoundReport:
    """A well-formed report of the round with every number invented: made-up contributions and adoption."""
    scores = tuple(UpdateScore(s.update_hash, training.UPDATE_COPY, None) if s.update_hash in inputs.copies
                   else UpdateScore(s.update_hash, training.UPDATE_OK, MADE_UP_BASE) for s in inputs.submissions)
    sound = [s for s in scores if s.status == training.UPDATE_OK]
    if not sound:
        return RoundReport(inputs.task_id, inputs.task.round, inputs.seed, MADE_UP_BASE, None, scores, None, None)
    model = blake2b_256(b"a model nobody computed" + inputs.seed)
    return RoundReport(inputs.task_id, inputs.task.round, inputs.seed, MADE_UP_BASE, MADE_UP_CANDIDATE, scores,
                       model, MADE_UP_CANDIDATE)


def _lying_measure(self, inputs: rounds.RoundInputs) -> RoundReport:
    if _authored or not inputs.submissions:
        return _honest_measure(self, inputs)
    report = made_up_report(inputs)
    _made_up.add(id(report))
    rounds.log.warning("made up a useful-work report on purpose (test byzantine author)", task=inputs.task_id,
                       round=inputs.task.round, updates=len(inputs.submissions))
    return report


def _ready(self, parent_state, parent):
    global _authored
    reports = _honest_ready(self, parent_state, parent)
    lies = [r for r in reports if id(r) in _made_up]
    if lies and not _authored:
        _authored = True  # from here on this node measures honestly
        rounds.log.warning("authoring a made-up report on purpose (test byzantine author)",
                           number=parent.number + 1, task=lies[0].task, round=lies[0].round)
    return reports


def _author(self, slot: int, keypair, deadline_ms: int):
    if not _authored:
        parent = self.store.best_header()
        view = self.store.state_view(parent.hash)
        state, authors = Overlay(view), len(self.executive.authorities(view))
        for task_id in runtime_api.active_task_ids(state):
            # blocks from the one this slot would author to the round's seed block, exclusive
            before_seed = training.round_windows(runtime_api.task(state, task_id))[2] - (parent.number + 1)
            if before_seed >= 0 and (before_seed + 1) % authors:
                rounds.log.warning("withholding a block on purpose (test byzantine author)", slot=slot,
                                   number=parent.number + 1, task=task_id)
                return None
    return _honest_author(self, slot, keypair, deadline_ms)


rounds.RoundWork.measure = _lying_measure
verification.RoundMeasurements.ready = _ready
chain_service.ChainService._author = _author

if __name__ == "__main__":
    from node.cli import main

    sys.exit(main())
