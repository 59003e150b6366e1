"""The invariant checker catches what it is there to catch: checked on nodes that answer JSON-RPC from a script.

(The real runs are in test_fault_scenarios.py; these show that a violation is reported,
which a healthy network never shows.)
"""

from __future__ import annotations

from tests.faults import invariants
from tests.faults.invariants import Outcome
from tests.faults.scripted import ScriptedTestnet


class ScriptedNode:
    """Answers the few RPC methods the checker reads, from a list of block hashes (index = height)."""

    def __init__(self, name: str, chain: list[str], finalized: int, running: bool = True) -> None:
        self.name, self.chain, self.finalized_number, self.running = name, chain, finalized, running

    def is_running(self) -> bool:
        return self.running

    def exit_code(self):
        return None if self.running else -9

    def call(self, method: str, *params):
        if method == "chain_getBlockHash":
            number = params[0]
            return self.chain[number] if number < len(self.chain) else None
        if method == "chain_getFinalizedHead":
            return self.chain[self.finalized_number]
        if method == "chain_getHeader":
            block_hash = params[0] if params else self.chain[-1]
            return {"number": hex(self.chain.index(block_hash))}
        raise AssertionError(f"unexpected call {method}")


def test_two_nodes_that_finalized_different_blocks_at_one_height_are_a_violation():
    common = ["g", "a1", "a2"]
    testnet = ScriptedTestnet([ScriptedNode("Alice", common + ["a3", "a4"], 4),
                               ScriptedNode("Bob", common + ["b3", "b4"], 3)])
    outcome = Outcome("conflicting finality")
    invariants.check_finality_agrees(testnet, outcome)
    assert outcome.violations == ["Alice and Bob finalized different blocks at #3"]


def test_forks_above_the_finalized_blocks_are_no_violation():
    common = ["g", "a1", "a2"]
    testnet = ScriptedTestnet([ScriptedNode("Alice", common + ["a3"], 2), ScriptedNode("Bob", common + ["b3"], 2)])
    outcome = Outcome("fork above finality")
    invariants.check_finality_agrees(testnet, outcome)
    assert outcome.violations == []


def test_a_node_that_exited_is_a_violation():
    testnet = ScriptedTestnet([ScriptedNode("Alice", ["g"], 0), ScriptedNode("Bob", ["g"], 0, running=False)])
    outcome = Outcome("crash")
    invariants.check_no_crash(testnet, outcome)
    assert outcome.violations == ["Bob is not running (exit code -9)"]


def test_best_chains_that_never_converge_are_no_recovery():
    testnet = ScriptedTestnet([ScriptedNode("Alice", ["g", "a1", "a2", "a3"], 0),
                               ScriptedNode("Bob", ["g", "b1", "b2", "b3"], 0)])
    outcome = Outcome("split")
    invariants.check_progress(testnet, outcome, fault_end_best=3, finality_before=0, healed_at=0.0)
    assert outcome.violations and outcome.violations[0].startswith("no recovery")
    assert outcome.measured["progress_rule"] == "best chains converge"


def test_once_finality_works_a_node_stuck_below_the_fault_end_is_no_recovery():
    chain = ["g", "1", "2", "3", "4"]
    testnet = ScriptedTestnet([ScriptedNode("Alice", chain, 4), ScriptedNode("Bob", chain, 1)])
    outcome = Outcome("stuck finality")
    invariants.check_progress(testnet, outcome, fault_end_best=3, finality_before=1, healed_at=0.0)
    assert outcome.violations and "finalize #3" in outcome.violations[0]
