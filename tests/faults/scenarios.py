"""Fault scenarios as data (CometBFT's e2e style): what to do to which nodes, for how long.

A scenario's durations are its data, not waits for a condition: the harness holds the
fault for `duration_s` and then heals it; everything after that waits on conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KILL = "kill"  # SIGKILL the nodes, start them again after duration_s (same base path, keys, ports)
PAUSE = "pause"  # SIGSTOP the nodes, SIGCONT after duration_s
PARTITION = "partition"  # the nodes named and the others ban each other (system_banPeer), unbanned after duration_s
# the node restarts as a test-only double voter (tests/double_voter.py, with the finality gadget) until the
# others report it; duration_s bounds that wait. The checker then requires it slashed.
DOUBLE_VOTE = "double_vote"
# the node restarts as a test-only byzantine author (tests/byzantine_author.py): its first report of a round
# of the training task in flight is made up; the others dispute its block and report it with their signed
# disputes (> 2/3 of the stake). duration_s bounds that wait; the checker then requires it slashed.
BYZANTINE_AUTHOR = "byzantine_author"
WRAPPERS = {DOUBLE_VOTE: "tests/double_voter.py", BYZANTINE_AUTHOR: "tests/byzantine_author.py"}


@dataclass(frozen=True)
class Fault:
    kind: str
    nodes: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    validators: int = 4
    slot_ms: int = 1000

    @property
    def faulted(self) -> tuple[str, ...]:
        """Nodes that may lose what they acknowledged (a killed node's pool is in memory): no load goes to them."""
        return self.fault.nodes if self.fault.kind in (KILL, PAUSE) else ()


# Held long enough for the faulted side to miss many blocks (1 s slots) and for the two sides of a partition
# to build different chains; longer holds showed nothing more and cost `make test` a minute.
SCENARIOS = (
    Scenario("kill -9 one validator, restart after 10 s", Fault(KILL, ("Dave",), 10)),
    Scenario("SIGSTOP one validator for 15 s, then SIGCONT", Fault(PAUSE, ("Charlie",), 15)),
    Scenario("2|2 partition for 20 s, then healed", Fault(PARTITION, ("Alice", "Bob"), 20)),
    Scenario("a validator double-votes (prevotes twice in one round)", Fault(DOUBLE_VOTE, ("Dave",), 120)),
)
# the lying author needs a round to lie about: it runs where the harness keeps a training task in flight
# (tests/faults/training.py, issue 15 item 3); without one it would wait in vain
if Path(__file__).with_name("training.py").exists():
    SCENARIOS += (Scenario("a validator authors a made-up useful-work report", Fault(BYZANTINE_AUTHOR, ("Dave",), 120)),)

