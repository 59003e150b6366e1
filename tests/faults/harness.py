"""Run one fault scenario on a real local testnet under transfer load, then the invariant checker.

    testnet up (every node >= N-1 peers, best >= 3) -> load starts -> warm-up (some
    transfers acknowledged) -> fault held for its duration -> healed -> load stops ->
    invariants (tests/faults/invariants.py)

Every wait has a deadline; the nodes' log tails go into every failure message;
every process is stopped by pid at the end, whatever happened.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from node.testnet.processes import ROOT, LocalTestnet
from tests.faults import invariants
from tests.faults.invariants import Outcome
from tests.faults.load import TransferLoad
from tests.faults.scenarios import KILL, PARTITION, PAUSE, WRAPPERS, Scenario


def run_scenario(scenario: Scenario, base: Path) -> tuple[Outcome, str]:
    """The scenario's outcome and the nodes' log tails (for a failure message)."""
    testnet = LocalTestnet(base, scenario.validators, slot_ms=scenario.slot_ms)
    outcome = Outcome(scenario.name)
    load = None
    try:
        testnet.start()
        peers = len(testnet.nodes) - 1
        testnet.wait_until(lambda: all(n.call("system_health")["peers"] >= peers and invariants.best(n) >= 3
                                       for n in testnet.nodes), 120, f"every node with {peers} peers at best >= 3")
        genesis = bytes.fromhex(testnet.nodes[0].call("chain_getBlockHash", 0)[2:])
        targets = [n for n in testnet.nodes if n.name not in scenario.faulted]
        load = TransferLoad(targets, genesis).start()
        testnet.wait_until(lambda: len(load.acknowledged()) >= 8, 60, "the first transfers acknowledged")
        finality_before = max(invariants.finalized(n) for n in testnet.nodes)
        healed_at = apply_fault(testnet, scenario, outcome.measured)
        fault_end_best = max(invariants.best(n) for n in testnet.nodes)
        outcome.measured["best_at_fault_end"] = fault_end_best
        time.sleep(2 * scenario.slot_ms / 1000)  # a little load after the fault too (scenario data, not a wait)
        load.stop()
        invariants.check_no_crash(testnet, outcome)
        invariants.check_progress(testnet, outcome, fault_end_best, finality_before, healed_at)
        invariants.check_finality_agrees(testnet, outcome)
        invariants.check_transfers(testnet, outcome, load.acknowledged(), load.expected_nonces())
        invariants.check_issuance(testnet, outcome)
        if scenario.fault.kind in WRAPPERS:  # a byzantine node: the double voter, the lying author
            invariants.check_slashed(testnet, outcome, scenario.fault.nodes)
        invariants.check_no_crash(testnet, outcome)
    except Exception as error:  # noqa: BLE001 — reported with the log tails below
        outcome.violations.append(f"harness: {type(error).__name__}: {error}")
    finally:
        if load is not None:
            load.stop()
        tails = testnet.tails(30)
        testnet.stop()
    return outcome, tails


def apply_fault(testnet: LocalTestnet, scenario: Scenario, measured: dict) -> float:
    """Hold the fault for its duration, heal it; returns the time.monotonic() of the heal."""
    fault = scenario.fault
    nodes = [testnet.node(name) for name in fault.nodes]
    if fault.kind == KILL:
        for node in nodes:
            node.stop(signal.SIGKILL)
        time.sleep(fault.duration_s)
        healed_at = time.monotonic()
        for node in nodes:
            testnet.restart(node)
        return healed_at
    elif fault.kind == PAUSE:
        for node in nodes:
            node.send(signal.SIGSTOP)
        time.sleep(fault.duration_s)
        measured["paused_best"] = {n.name: invariants.best(n) for n in testnet.nodes if n not in nodes}
        for node in nodes:
            node.send(signal.SIGCONT)
        return time.monotonic()
    elif fault.kind == PARTITION:
        side = set(fault.nodes)
        pairs = [(a, b) for a in testnet.nodes for b in testnet.nodes if (a.name in side) != (b.name in side)]
        for a, b in pairs:
            a.call("system_banPeer", b.peer_id, int(fault.duration_s) + 60)
        time.sleep(fault.duration_s)
        # the fault took effect: the two sides built different blocks on the height both reached
        inside, outside = pairs[0]
        height = min(invariants.best(inside), invariants.best(outside))
        measured["sides_diverged"] = (invariants.hash_at(inside, height) != invariants.hash_at(outside, height))
        for a, b in pairs:
            a.call("system_unbanPeer", b.peer_id)
        return time.monotonic()
    if fault.kind in WRAPPERS:  # the node restarts as its byzantine wrapper until the others report it
        entry = [sys.executable, str(ROOT / WRAPPERS[fault.kind])]
        for node in nodes:
            node.stop()
            testnet.restart(node, entry=entry)
        started = time.monotonic()
        try:
            testnet.wait_until(lambda: all(invariants.offences_of(testnet.nodes[0], n) for n in nodes),
                               fault.duration_s, f"{fault.nodes} to be reported ({fault.kind})")
        except Exception as error:  # noqa: BLE001 — check_slashed reports it with the rest
            measured["not_reported"] = str(error).splitlines()[0]
        measured["reported_after_s"] = round(time.monotonic() - started, 1)
        return time.monotonic()
    raise ValueError(f"unknown fault kind {fault.kind!r}")
