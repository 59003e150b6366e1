"""The gradchain binary as an operator meets it: subprocesses, flags, signals, exit codes."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from node.chain_setup import dev_spec
from runtime import crypto
from tests.helpers.chain import GENESIS_PATH
from tests.helpers.processes import NodeProcess, gradchain, one_line_error

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_subcommands():
    result = gradchain("--help")
    assert result.returncode == 0
    for command in ("key", "build-spec", "purge-chain", "export-blocks", "import-blocks", "check-block"):
        assert command in result.stdout
    assert gradchain("export-blocks", "--help").returncode == 0


def test_bad_flag_is_one_line_and_exit_code_2():
    assert "unrecognized arguments: --bogus" in one_line_error(gradchain("--bogus"))
    assert "not a port number" in one_line_error(gradchain("--dev", "--rpc-port", "70000"))
    assert "archive" in one_line_error(gradchain("--dev", "--pruning", "sometimes"))


def test_bad_chain_spec_is_one_line_naming_the_field(tmp_path):
    spec = json.loads(GENESIS_PATH.read_text())
    spec["slot_duration_ms"] = "soon"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    assert "slot_duration_ms" in one_line_error(gradchain("--chain", str(bad), "--base-path", str(tmp_path)))
    assert "cannot read" in one_line_error(gradchain("--chain", str(tmp_path / "none.json")))


def test_key_generate_writes_an_owner_only_key_file_and_inspect_agrees(tmp_path):
    key_file = tmp_path / "validator.json"
    result = gradchain("key", "generate", "--output-file", str(key_file))
    assert result.returncode == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    phrase = result.stdout.splitlines()[0].split(":", 1)[1].strip()
    inspected = gradchain("key", "inspect", "--key-file", str(key_file))  # never the phrase on argv
    assert inspected.stdout.splitlines()[1:] == result.stdout.splitlines()[1:]
    os.chmod(key_file, 0o644)
    message = one_line_error(gradchain("--validator", "--key-file", str(key_file), "--base-path", str(tmp_path)))
    assert "chmod 600" in message


def test_build_spec_prints_a_loadable_spec(tmp_path):
    result = gradchain("build-spec", "--dev")
    assert json.loads(result.stdout)["id"] == "gradchain_dev"


@pytest.mark.slow
def test_dev_node_blocks_survive_export_and_import_with_the_same_state_root(tmp_path):
    with NodeProcess(tmp_path / "a", "--no-prometheus") as node:
        node.wait_for("authored block", count=4, timeout=60)
        code = node.stop()
    assert code == 0 and node.events("database closed")
    blocks_file = tmp_path / "blocks.bin"
    assert gradchain("export-blocks", "--dev", "--base-path", str(tmp_path / "a"), str(blocks_file)).returncode == 0
    imported = gradchain("import-blocks", "--dev", "--base-path", str(tmp_path / "b"), str(blocks_file))
    assert imported.returncode == 0, imported.stderr
    root = imported.stderr.strip().split("state root ")[-1]
    check = gradchain("check-block", "--dev", "--base-path", str(tmp_path / "a"), "2")
    assert json.loads(check.stdout)["valid"] is True
    reexport = tmp_path / "again.bin"
    gradchain("export-blocks", "--dev", "--base-path", str(tmp_path / "b"), str(reexport))
    assert reexport.read_bytes() == blocks_file.read_bytes()
    assert root.startswith("0x") and len(root) == 66


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_a_restart_resumes_from_the_stored_best_block(tmp_path):
    with NodeProcess(tmp_path, "--no-prometheus") as node:
        node.wait_for("authored block", count=3)
        code = node.stop(signal.SIGTERM)
    assert code == 0
    best = max(r["number"] for r in node.events("authored block"))
    with NodeProcess(tmp_path, "--no-prometheus") as restarted:
        opened = restarted.wait_for("chain opened")
        assert opened["best"] == best
        authored = restarted.wait_for("authored block")
        assert authored["number"] == best + 1
        code = restarted.stop(signal.SIGINT)
    assert code == 0


@pytest.mark.slow
def test_a_database_in_use_or_of_another_chain_is_refused_with_one_line(tmp_path):
    with NodeProcess(tmp_path, "--no-prometheus") as node:
        node.wait_for("chain opened")
        assert "in use by another process" in one_line_error(
            gradchain("--dev", "--base-path", str(tmp_path), "--no-prometheus", "--rpc-port", "0"))
    spec = dev_spec(json.loads(GENESIS_PATH.read_text()))
    spec["endowed"][0]["balance"] = spec["endowed"][0]["balance"] + 1  # same id, another genesis
    other = tmp_path / "other.json"
    other.write_text(json.dumps(spec))
    assert "belongs to another chain" in one_line_error(
        gradchain("--chain", str(other), "--base-path", str(tmp_path), "--no-prometheus", "--rpc-port", "0"))


@pytest.mark.slow
def test_sigterm_under_transaction_load_leaves_a_database_that_restarts_cleanly(tmp_path):
    from rpc.client import Client, RpcClientError
    from runtime.executive import sign_extrinsic
    from runtime.pallets import balances
    from tests.helpers.chain import DEV_KEYS
    from tests.helpers.threads import ThreadRunner

    submitted: list[int] = []
    stop_feeding, feeder = threading.Event(), ThreadRunner()

    def feed(client: Client, genesis: bytes) -> None:
        nonce = 0
        while not stop_feeding.is_set():
            transfer = sign_extrinsic(DEV_KEYS["Bob"], balances.transfer(bytes([nonce % 200 + 1]) * 32, 10**11),
                                      nonce=nonce, genesis_hash=genesis)
            try:
                client.submit(transfer)
            except RpcClientError:
                return  # the node is going away
            submitted.append(nonce)
            nonce += 1

    with NodeProcess(tmp_path, "--no-prometheus") as node:
        try:
            port = node.wait_for("rpc listening")["port"]
            node.wait_for("authored block")
            client = Client(f"http://127.0.0.1:{port}", timeout=5)
            feeder.start(feed, client, client.genesis_hash())
            node.wait_for("authored block", count=3)
            code = node.stop(signal.SIGTERM)
        finally:
            stop_feeding.set()  # the feeder stops within one submit (its thread is a daemon)
    feeder.join_all(30)  # only now, so a failure of the feeder never hides the test's own
    assert code == 0 and len(submitted) > 20
    best = max(r["number"] for r in node.events("authored block"))
    check = gradchain("check-block", "--dev", "--base-path", str(tmp_path), str(best))
    assert json.loads(check.stdout)["valid"] is True, check.stderr
    with NodeProcess(tmp_path, "--no-prometheus", "--no-rpc") as restarted:
        assert restarted.wait_for("chain opened")["best"] == best
        assert restarted.wait_for("authored block")["number"] == best + 1


def test_a_validator_key_never_reaches_the_logs(tmp_path):
    key_file = tmp_path / "key.json"
    generated = gradchain("key", "generate", "--output-file", str(key_file))
    phrase = generated.stdout.splitlines()[0].split(":", 1)[1].strip()
    with NodeProcess(tmp_path / "base", "--validator", "--key-file", str(key_file), "--log-level", "debug",
                     "--no-prometheus", "--no-rpc") as node:
        authoring = node.wait_for("authoring")  # the dev chain's validator is Alice, so this key never authors
        node.stop()
    keypair = crypto.keypair_from_uri(phrase)
    assert authoring["validator"] == "0x" + keypair.public.hex()[:16]
    text = "\n".join(node.log.lines)
    assert phrase not in text and keypair.seed.hex() not in text
