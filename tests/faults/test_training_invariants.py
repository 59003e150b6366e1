"""The training invariants of the fault checker catch what they are there to catch, on scripted nodes.

(The real runs are in test_fault_scenarios.py, where a task with two trainers is in flight during every
fault; these show that an unverified, unfinalized or disputed round is reported.)
"""

from __future__ import annotations

from tests.faults import invariants
from tests.faults.invariants import Outcome
from tests.faults.scripted import ScriptedTestnet

CHAIN = ["g", "b1", "b2", "b3", "b4", "b5", "b6"]
VERIFIED = {"status": "verified", "reasons": [], "missing": [], "since": None, "unchecked": []}


class TrainingNode:
    """Answers the RPC methods the checker reads: a chain of hashes, a task's closed rounds, verdicts."""

    def __init__(self, name: str, finalized: int, verdicts: dict[str, dict] | None = None,
                 rounds: tuple[tuple[int, int], ...] = ((0, 2), (1, 5))) -> None:
        self.name, self.finalized_number, self.rounds = name, finalized, rounds
        self.verdicts = verdicts or {}

    def is_running(self) -> bool:
        return True

    def call(self, method: str, *params):
        if method == "chain_getBlockHash":
            return CHAIN[params[0]] if params[0] < len(CHAIN) else None
        if method == "chain_getFinalizedHead":
            return CHAIN[self.finalized_number]
        if method == "chain_getHeader":
            return {"number": hex(CHAIN.index(params[0] if params else CHAIN[-1]))}
        if method == "training_rounds":
            return [{"round": r, "closed_at": c} for r, c in self.rounds]
        if method == "training_updates":
            return [{"status": 0, "accepted": True}, {"status": 1, "accepted": False}]
        if method == "chain_getBlockVerification":
            return self.verdicts.get(params[0], VERIFIED)
        raise AssertionError(f"unexpected call {method}")


def test_a_round_after_the_fault_verified_everywhere_and_final_passes():
    testnet = ScriptedTestnet([TrainingNode("Alice", 6), TrainingNode("Bob", 5)])
    outcome = Outcome("ok")
    invariants.check_round_after_fault(testnet, outcome, 0, fault_end_best=3, timeout=1)
    assert outcome.violations == [] and outcome.measured["round_after_fault"] == "round 1 closed at #5"


def test_a_round_after_the_fault_that_one_node_has_not_finalized_is_a_violation():
    testnet = ScriptedTestnet([TrainingNode("Alice", 6), TrainingNode("Bob", 4)])
    outcome = Outcome("not final")
    invariants.check_round_after_fault(testnet, outcome, 0, fault_end_best=3, timeout=1)
    assert len(outcome.violations) == 1 and outcome.violations[0].startswith("no round after the fault")


def test_a_round_one_validator_could_not_check_is_not_verified_by_every_validator():
    unchecked = {**VERIFIED, "unchecked": ["task 0 round 1: the held-out key is not sealed to this validator"]}
    testnet = ScriptedTestnet([TrainingNode("Alice", 6), TrainingNode("Bob", 6, {"b5": unchecked})])
    outcome = Outcome("unchecked")
    invariants.check_round_after_fault(testnet, outcome, 0, fault_end_best=3, timeout=1)
    assert len(outcome.violations) == 1


def test_only_rounds_closed_before_the_fault_end_do_not_count():
    testnet = ScriptedTestnet([TrainingNode("Alice", 6), TrainingNode("Bob", 6)])
    outcome = Outcome("too early")
    invariants.check_round_after_fault(testnet, outcome, 0, fault_end_best=5, timeout=1)
    assert len(outcome.violations) == 1


def test_a_round_block_disputed_by_a_node_is_a_violation():
    disputed = {**VERIFIED, "status": "disputed", "reasons": ["round 0: update 0xab score differs"]}
    testnet = ScriptedTestnet([TrainingNode("Alice", 6), TrainingNode("Bob", 6, {"b2": disputed})])
    outcome = Outcome("disputed")
    outcome.measured.update(best_at_fault_end=3, checked_up_to=6)
    invariants.check_no_round_disputed(testnet, outcome, 0)
    assert outcome.violations == ["Bob disputes round 0's block #2: ['round 0: update 0xab score differs']"]
    assert outcome.measured["rounds_closed"] == 2 and outcome.measured["rounds_after_fault"] == 1
    assert outcome.measured["updates"] == {"ok": 2, "accepted": 2, "missing": 2}
