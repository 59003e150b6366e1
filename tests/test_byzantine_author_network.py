"""A byzantine author on a real 4-validator network (node processes, libp2p hosts on 127.0.0.1).

Dave runs tests/byzantine_author.py: a normal validator whose first report of a round with
updates is made up (contributions and an adopted model nobody computed). A training task runs
with two trainers (threads of this test, talking to Alice and Bob). The honest three re-measure
Dave's block, dispute it, build and finalize an honest fork at its height, and report Dave with
their signed disputes (> 2/3 of the stake) by themselves: Dave loses exactly slash_ppm of its bond,
the reporter gets exactly its share, the rest is burned, and TotalIssuance equals the sum of the
balances and fell by exactly what was burned.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from node.testnet.processes import ROOT, STAKE, LocalTestnet
from rpc.client import Client, block_from_json
from runtime import crypto
from runtime.pallets import offences
from tests.faults import invariants
from tests.helpers.processes import log_records

pytestmark = pytest.mark.slow
WRAPPER = [sys.executable, str(ROOT / "tests" / "byzantine_author.py")]
TRAINERS = ("//Eve", "//Ferdie")


def account_of(node) -> str:
    return json.loads(node.key_file.read_text())["public"]


def false_report_offence(reader, offender: str) -> tuple[str, dict] | None:
    """(block hash, event) of the OffenceReported of a false useful-work report naming `offender`."""
    for entry in reader.call("explorer_accountHistory", offender) or []:
        for event in reader.call("explorer_events", entry["hash"]) or []:
            if event.get("event") == "offences.OffenceReported" and event.get("offender") == offender \
                    and int(event["kind"]) == offences.KIND_FALSE_USEFUL_WORK:
                return entry["hash"], event
    return None


def start_training(testnet: LocalTestnet, stop: threading.Event) -> list[threading.Thread]:
    """A digits task (held-out key sealed to all four) created by Sender1; two trainers on Alice and Bob.

    A round lasts commit + reveal + 2 = 9 blocks: with 4 authors in turn, which of them authors the
    first block after a round's seed block moves by one each round (8 blocks would pin it), so the
    liar, whose made-up report is ready at once, gets a round to report within about four."""
    from consensus.useful_work import ModelSpec, build_model, state_of
    from scripts._tasks import ChainAccount, TaskOptions, demo_data, publish_task
    from scripts.trainer import Trainer, TrainerOptions

    alice, bob = testnet.node("Alice"), testnet.node("Bob")
    split, shards, _ = demo_data("digits", len(TRAINERS))
    spec = ModelSpec("mlp", input_dim=64, hidden=32, classes=10)
    creator = ChainAccount(Client(alice.rpc_url, timeout=30), crypto.keypair_from_uri("//Sender1"))
    task_id = publish_task(creator, spec, state_of(build_model(spec, 0)), split.held_out_features,
                           split.held_out_labels, TaskOptions(rounds=40, commit_blocks=4, reveal_blocks=3))
    threads = []
    for uri, node, (features, labels) in zip(TRAINERS, (alice, bob), shards):
        trainer = Trainer(Client(node.rpc_url, timeout=30), crypto.keypair_from_uri(uri), task_id, features, labels,
                          TrainerOptions(epochs=1), say=lambda _: None)
        thread = threading.Thread(target=_run_quietly, args=(trainer, stop), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _run_quietly(trainer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            trainer.run(stop)
            return
        except Exception:  # noqa: BLE001 - a busy node's RPC timeout: the trainer carries on from its state
            stop.wait(0.5)


def free_of(node, account: str, at: str) -> int:
    return int(node.call("explorer_account", account, at)["free"])


def reserved_of(node, account: str, at: str) -> int:
    return int(node.call("explorer_account", account, at)["reserved"])


def test_a_byzantine_author_is_never_finalized_an_honest_fork_is_and_it_is_slashed(tmp_path):
    started = time.monotonic()
    testnet = LocalTestnet(tmp_path / "net", 4, slot_ms=1000)
    alice, dave = testnet.node("Alice"), testnet.node("Dave")
    honest = [n for n in testnet.nodes if n is not dave]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for node in testnet.nodes:
            node.start(testnet.bootnodes_for(node), entry=WRAPPER if node is dave else None)
        testnet.wait_until(lambda: all(n.answers_rpc() for n in testnet.nodes), 90, "every node to answer RPC")
        testnet.wait_until(lambda: all(n.call("system_health")["peers"] >= 3 and invariants.finalized(n) >= 1
                                       for n in testnet.nodes), 120, "3 peers each and first finality")
        threads = start_training(testnet, stop)
        print(f"training from {time.monotonic() - started:.1f} s")
        liar = account_of(dave)
        found = testnet.wait_until(lambda: false_report_offence(alice, liar), 150,
                                   "Dave reported for a made-up useful-work report")
        stop.set()
        offence_hash, event = found
        offence_block = block_from_json(alice.call("chain_getBlock", offence_hash))
        report = offence_block.extrinsics[event["extrinsicIndex"]]  # others' copies of the evidence fail: punished once
        assert report.call.name == "offences.report_false_useful_work"
        lie = report.call.args_dict()["header"]
        assert "0x" + bytes(lie.digest.author).hex() == liar
        assert "made up a useful-work report on purpose" in dave.log_path.read_text()
        # the evidence: disputes of the lie's block, signed by honest validators holding more than 2/3 of the stake
        disputes = report.call.args_dict()["disputes"]
        stake = {v["account"]: int(v["stake"]) for v in alice.call("explorer_validators", "0x" + lie.parent_hash.hex())}
        signers = {"0x" + bytes(d.validator).hex() for d in disputes}
        assert all(d.block_hash == lie.hash for d in disputes) and liar not in signers
        assert 3 * sum(stake[s] for s in signers) > 2 * sum(stake.values())

        # the lie: every honest node disputed its block (its verdict is logged: finality pruned the fork with
        # the block and its status); an honest fork at its height is final everywhere
        authored = log_records(dave, "authoring a made-up report on purpose (test byzantine author)")
        assert [r["number"] for r in authored] == [lie.number]  # one lie, in this block
        for node in honest:
            verdicts = [r for r in log_records(node, "useful-work report does not reproduce: block disputed, "
                                               "never best, never final") if r["hash"] == lie.hash.hex()[:16]]
            assert verdicts and any("reported" in reason for reason in verdicts[0]["reasons"]), (node.name, verdicts)
        testnet.wait_until(lambda: all(invariants.finalized(n) >= lie.number for n in testnet.nodes), 60,
                           f"every node to finalize #{lie.number}")
        final = {invariants.hash_at(n, lie.number) for n in testnet.nodes}
        assert len(final) == 1 and "0x" + lie.hash.hex() not in final

        # the slash, the reward and the burn, exactly
        parent = "0x" + bytes(offence_block.header.parent_hash).hex()
        params = json.loads(testnet.spec_path.read_text())["offences"]
        bond = reserved_of(alice, liar, parent)
        assert bond == STAKE
        slashed = bond * params["slash_ppm"] // 1_000_000
        reward = slashed * params["reporter_share_ppm"] // 1_000_000
        assert (int(event["slashed"]), int(event["reward"]), int(event["burned"])) == (slashed, reward,
                                                                                      slashed - reward)
        assert reserved_of(alice, liar, offence_hash) == bond - slashed
        reporter = event["reporter"]
        assert reporter in {account_of(n) for n in honest}
        events = alice.call("explorer_events", offence_hash)
        fees = sum(int(e["fee"]) for e in events if e["event"] in ("system.ExtrinsicSuccess", "system.ExtrinsicFailed")
                   and e["extrinsicIndex"] is not None
                   and offence_block.extrinsics[e["extrinsicIndex"]].signed is not None
                   and "0x" + bytes(offence_block.extrinsics[e["extrinsicIndex"]].signed.signer).hex() == reporter)
        as_author = sum(int(e["to_author"]) for e in events if e["event"] == "payment.FeesDistributed"
                        and e["author"] == reporter)
        assert free_of(alice, reporter, offence_hash) - free_of(alice, reporter, parent) == reward + as_author - fees
        burned_here = sum(int(e[field]) for e in events for name, field in invariants.BURN_FIELDS.items()
                          if e["event"] == name)
        assert any(e["event"] == "balances.Burned" and e["account"] == liar and int(e["amount"]) == slashed - reward
                   for e in events)
        issuance = {at: invariants._issuance(alice, at) for at in (parent, offence_hash)}
        assert issuance[parent] - issuance[offence_hash] == burned_here
        outcome = invariants.Outcome("byzantine author")
        outcome.measured["checked_up_to"] = invariants.number_of(alice, offence_hash)
        invariants.check_issuance(testnet, outcome)  # == sum of balances; fell from genesis by exactly the burns
        invariants.check_no_crash(testnet, outcome)
        assert outcome.violations == []
        print(f"byzantine author: lie at #{lie.number}, reported in #{outcome.measured['checked_up_to']}, "
              f"{time.monotonic() - started:.1f} s")
    except BaseException:
        print(testnet.tails(40))
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        testnet.stop()
