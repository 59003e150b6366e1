"""The one invariant checker run after every fault scenario, over the nodes' JSON-RPC.

1. No node crashed (every node runs, none exited on its own).
2. No conflicting finality: for every height two nodes both finalized, equal hashes.
3. The chain goes on: once finality works (some node finalized past genesis), the nodes
   the fault spared finalize past the fault's end within 10 slots of it, and the faulted
   nodes catch up to that within 30 slots; until then every node's best chain agrees on
   one block at least as high as the highest best at the fault's end.
4. Every transfer a node acknowledged is included exactly once on the common chain.
5. TotalIssuance equals the sum of all balances, and fell from genesis by exactly the
   amounts burned (fee burns, Burned and DustLost events).
6. (double vote) the offender was reported and lost part of its bond.
7. (the training task in flight) a round that closed after the fault's end is verified by
   every live validator (chain_getBlockVerification: verified, nothing unchecked) and
   finalized on every node; no closed round's block is disputed by any node.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from node.testnet.processes import STAKE, LocalTestnet, TestnetNode
from rpc.client import block_from_json
from runtime import codec
from runtime.pallets import balances, system

FINALITY_SLOTS = 10
CATCH_UP_SLOTS = 30  # a faulted node's sync, blob fetches and re-verification after the fault's end
UPDATE_FATES = {0: "ok", 1: "missing", 2: "malformed", 3: "copy"}  # training_updates' status
BURN_FIELDS = {"payment.FeesDistributed": "burned", "balances.Burned": "amount", "balances.DustLost": "amount"}
# where the burns came from (each is also one of the burns above) and what moved without changing the issuance
BURN_SOURCES = {"payment.FeesDistributed": ("fees", "burned"), "training.BondSlashed": ("training_bonds", "amount"),
                "offences.OffenceReported": ("offences", "burned"), "balances.DustLost": ("dust", "amount"),
                "training.RoundClosed": ("training_paid_to_pot", "paid")}


@dataclass
class Outcome:
    """What the checker measured; `violations` empty means every invariant held."""

    scenario: str
    violations: list[str] = field(default_factory=list)
    measured: dict = field(default_factory=dict)


def number_of(node: TestnetNode, block_hash: str) -> int:
    return int(node.call("chain_getHeader", block_hash)["number"], 16)


def best(node: TestnetNode) -> int:
    return int(node.call("chain_getHeader")["number"], 16)


def finalized(node: TestnetNode) -> int:
    return number_of(node, node.call("chain_getFinalizedHead"))


def hash_at(node: TestnetNode, number: int) -> str | None:
    return node.call("chain_getBlockHash", number)


def check_no_crash(testnet: LocalTestnet, outcome: Outcome) -> None:
    for node in testnet.nodes:
        if not node.is_running():
            outcome.violations.append(f"{node.name} is not running (exit code {node.exit_code()})")


def check_finality_agrees(testnet: LocalTestnet, outcome: Outcome) -> None:
    heights = {n.name: finalized(n) for n in testnet.nodes}
    outcome.measured["finalized"] = heights
    nodes = testnet.nodes
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            for number in range(1, min(heights[a.name], heights[b.name]) + 1):
                if hash_at(a, number) != hash_at(b, number):
                    outcome.violations.append(f"{a.name} and {b.name} finalized different blocks at #{number}")
                    break


def check_progress(testnet: LocalTestnet, outcome: Outcome, fault_end_best: int, finality_before: int,
                   healed_at: float, faulted: tuple[str, ...] = ()) -> None:
    """Finality resumes within 10 slots of the fault's end (or, before finality exists, best chains converge).

    "Finality resumes" is read on the nodes the fault did not touch (all of them when `faulted` is empty);
    a faulted node (restarted, resumed, partitioned) must then catch up within CATCH_UP_SLOTS: it syncs
    the blocks it missed and fetches the training blobs they name before it may finalize them."""
    slot_s = testnet.slot_ms / 1000
    spared = [n for n in testnet.nodes if n.name not in faulted] or list(testnet.nodes)
    caught_up = [n for n in testnet.nodes if n not in spared]
    target = fault_end_best
    if finality_before > 0:
        what = f"the nodes the fault spared to finalize #{target}"
        condition = lambda: all(finalized(n) >= target for n in spared)  # noqa: E731
        limit = FINALITY_SLOTS * slot_s
    else:
        what = f"every node's best chain to agree on one block at or above #{target}"
        condition = lambda: _common_block(testnet) >= target  # noqa: E731
        limit = 6 * FINALITY_SLOTS * slot_s  # sync after a partition takes longer than a slot per block
    outcome.measured["progress_rule"] = "finality" if finality_before > 0 else "best chains converge"
    try:
        testnet.wait_until(condition, max(1.0, limit - (time.monotonic() - healed_at)), what)
        outcome.measured["recovered_s"] = round(time.monotonic() - healed_at, 1)
    except Exception as error:  # noqa: BLE001 — a violation to report with the others, not a crash
        outcome.violations.append(f"no recovery: {str(error).splitlines()[0]}")
        try:  # how late it came, for the report (bounded like a catch-up)
            testnet.wait_until(condition, max(1.0, CATCH_UP_SLOTS * slot_s - (time.monotonic() - healed_at)), what)
            outcome.measured["recovered_late_s"] = round(time.monotonic() - healed_at, 1)
        except Exception:  # noqa: BLE001
            pass
        return
    if finality_before > 0 and caught_up:
        names = ", ".join(n.name for n in caught_up)
        try:
            testnet.wait_until(lambda: all(finalized(n) >= target for n in caught_up),
                               max(1.0, CATCH_UP_SLOTS * slot_s - (time.monotonic() - healed_at)),
                               f"{names} to catch up and finalize #{target}")
            outcome.measured["caught_up_s"] = round(time.monotonic() - healed_at, 1)
        except Exception as error:  # noqa: BLE001
            outcome.violations.append(f"no catch-up: {str(error).splitlines()[0]}")


def _common_block(testnet: LocalTestnet) -> int:
    """The highest height at which every node's canonical chain has the same block (checked near the bests)."""
    low = min(best(n) for n in testnet.nodes)
    for number in range(low, max(0, low - 5), -1):
        if len({hash_at(n, number) for n in testnet.nodes}) == 1:
            return number
    return 0


def check_transfers(testnet: LocalTestnet, outcome: Outcome, acknowledged: dict[bytes, str],
                    nonces: dict[str, int]) -> None:
    reader = testnet.nodes[0]

    def settled() -> int:
        """The common block once every acknowledged transfer's nonce is used on the chain up to it."""
        common = _common_block(testnet)
        at = hash_at(reader, common)
        return common if all(reader.call("explorer_account", a, at)["nonce"] >= n for a, n in nonces.items()) else 0

    try:
        common = testnet.wait_until(settled, 60, "the acknowledged transfers on every node's chain")
    except Exception:  # noqa: BLE001 — the exact count below says what is missing
        common = _common_block(testnet)
    included: Counter = Counter()
    for number in range(1, common + 1):
        block = block_from_json(reader.call("chain_getBlock", hash_at(reader, number)))
        included.update(x.hash for x in block.extrinsics if x.hash in acknowledged)
    missing = [h for h in acknowledged if included[h] == 0]
    twice = [h for h, c in included.items() if c > 1]
    outcome.measured["transfers_acknowledged"] = len(acknowledged)
    outcome.measured["transfers_included"] = sum(1 for h in acknowledged if included[h] == 1)
    if missing:
        outcome.violations.append(f"{len(missing)} acknowledged transfers not included by #{common}, e.g. "
                                  f"0x{missing[0].hex()} from {acknowledged[missing[0]]}")
    if twice:
        outcome.violations.append(f"{len(twice)} transfers included more than once")
    outcome.measured["checked_up_to"] = common


def check_issuance(testnet: LocalTestnet, outcome: Outcome) -> None:
    node = testnet.nodes[0]
    number = outcome.measured.get("checked_up_to") or best(node)
    at = hash_at(node, number)
    issuance = _issuance(node, at)
    total = 0
    start = None
    prefix = "0x" + system.Account.prefix.hex()
    while True:
        keys = node.call("state_getKeysPaged", prefix, 500, start, at)
        for key in keys:
            info = system.Account.decode_value(bytes.fromhex(node.call("state_getStorage", key, at)[2:]))
            total += info.free + info.reserved
        if len(keys) < 500:
            break
        start = keys[-1]
    burned = 0
    sources = Counter()
    for n in range(1, number + 1):
        for event in node.call("explorer_events", hash_at(node, n)):
            field_name = BURN_FIELDS.get(event.get("event"))
            if field_name:
                burned += int(event[field_name])
            source = BURN_SOURCES.get(event.get("event"))
            if source:
                sources[source[0]] += int(event[source[1]])
    genesis_issuance = _issuance(node, hash_at(node, 0))
    outcome.measured["burned"] = burned
    outcome.measured["issuance_drop"] = genesis_issuance - issuance
    outcome.measured["burned_by"] = dict(sources)
    if issuance != total:
        outcome.violations.append(f"at #{number} TotalIssuance {issuance} != sum of balances {total}")
    if genesis_issuance - issuance != burned:
        outcome.violations.append(f"TotalIssuance fell by {genesis_issuance - issuance} by #{number}, "
                                  f"but {burned} was burned")


def _issuance(node: TestnetNode, at: str) -> int:
    raw = node.call("state_getStorage", "0x" + balances.TotalIssuance.key.hex(), at)
    return 0 if raw is None else codec.unpack_trusted(bytes.fromhex(raw[2:]))


def offences_of(reader: TestnetNode, offender: TestnetNode) -> list[dict]:
    """OffenceReported events naming the offender, in the blocks of its account history (whose entries
    give event indices: the events themselves are read from the block)."""
    account = json.loads(offender.key_file.read_text())["public"]
    found = []
    for entry in reader.call("explorer_accountHistory", account) or []:
        events = reader.call("explorer_events", entry["hash"]) or []
        found += [e for e in events if e.get("event") == "offences.OffenceReported" and e.get("offender") == account]
    return found


def check_slashed(testnet: LocalTestnet, outcome: Outcome, names: tuple[str, ...]) -> None:
    reader = testnet.nodes[0]
    for name in names:
        offender = testnet.node(name)
        if not offences_of(reader, offender):
            outcome.violations.append(f"{name} double-voted but was never reported")
            continue
        account = json.loads(offender.key_file.read_text())["public"]
        reserved = int(reader.call("explorer_account", account)["reserved"])
        outcome.measured[f"{name}_bond_after"] = reserved
        if reserved >= STAKE:
            outcome.violations.append(f"{name} was reported but its bond {reserved} was not slashed")


def closed_rounds(node: TestnetNode, task_id: int) -> list[tuple[int, int]]:
    """(round, the number of the block that closed it) of every closed round of the task, on the node's best chain."""
    return [(int(r["round"]), int(r["closed_at"])) for r in node.call("training_rounds", task_id) or []]


def _verified_here(node: TestnetNode, block_hash: str) -> bool:
    status = node.call("chain_getBlockVerification", block_hash)
    return status is not None and status["status"] == "verified" and not status["unchecked"]


def check_round_after_fault(testnet: LocalTestnet, outcome: Outcome, task_id: int, fault_end_best: int,
                            timeout: float) -> None:
    """A round that closed after the fault's end is verified by every live validator and finalized on every node."""
    reader = testnet.nodes[0]

    def verified_and_final() -> tuple[int, int] | None:
        live = [n for n in testnet.nodes if n.is_running()]
        for number, closed_at in closed_rounds(reader, task_id):
            if closed_at <= fault_end_best:
                continue
            block_hash = hash_at(reader, closed_at)
            if all(finalized(n) >= closed_at and hash_at(n, closed_at) == block_hash for n in testnet.nodes) \
                    and all(_verified_here(n, block_hash) for n in live):
                return number, closed_at
        return None
    try:
        number, closed_at = testnet.wait_until(verified_and_final, timeout,
                                               f"a round closed after #{fault_end_best} verified by every "
                                               "validator and finalized")
        outcome.measured["round_after_fault"] = f"round {number} closed at #{closed_at}"
    except Exception as error:  # noqa: BLE001 — a violation to report with the others
        rounds = closed_rounds(reader, task_id)
        outcome.violations.append(f"no round after the fault verified and finalized everywhere (rounds closed at "
                                  f"{[c for _, c in rounds][-5:]}): {str(error).splitlines()[0]}")


def check_no_round_disputed(testnet: LocalTestnet, outcome: Outcome, task_id: int,
                            byzantine: tuple[str, ...] = ()) -> None:
    """No honest node disputes the block that closed a round on the common chain (every closed round up to
    the checked block). A byzantine node's own verdicts do not count; a lie's block is off that chain."""
    reader = testnet.nodes[0]
    up_to = outcome.measured.get("checked_up_to") or best(reader)
    rounds = [(r, c) for r, c in closed_rounds(reader, task_id) if c <= up_to]
    outcome.measured["rounds_closed"] = len(rounds)
    outcome.measured["rounds_after_fault"] = sum(1 for _, c in rounds if c > outcome.measured["best_at_fault_end"])
    fates: Counter = Counter()
    for number, _ in rounds:
        for update in reader.call("training_updates", task_id, number) or []:
            fates[UPDATE_FATES.get(update.get("status"), "?")] += 1
            fates["accepted"] += bool(update.get("accepted"))
    outcome.measured["updates"] = dict(fates)  # honest trainers: a bond burned ("missing") means a blob was late
    for number, closed_at in rounds:
        block_hash = hash_at(reader, closed_at)
        for node in testnet.nodes:
            if node.name in byzantine:
                continue
            status = node.call("chain_getBlockVerification", block_hash) if node.is_running() else None
            if status is not None and status["status"] == "disputed":
                outcome.violations.append(f"{node.name} disputes round {number}'s block #{closed_at}: "
                                          f"{status['reasons'][:2]}")
