"""The wallet CLI against a real dev node: keys encrypted at rest, transfers and bonds followed to
finalized with exact balance changes, and every failure as one line with exit code 2.

Alice authors every dev block and earns fee shares, so money is sent from Charlie and Dave."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import balances, validators
from scripts import wallet
from scripts._common import CliError, format_balance, parse_amount
from tests.helpers.chain import DEV_KEYS
from tests.helpers.wallet import GRAD, PASSPHRASE, WalletCli, address, assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent
CHARLIE, DAVE = DEV_KEYS["Charlie"], DEV_KEYS["Dave"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The module's wallet directory and passphrase file."""
    base = tmp_path_factory.mktemp("wallet")
    passphrase_file = base / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    return base / "keys", passphrase_file


@pytest.fixture(scope="module")
def run(node, home):
    cli = WalletCli(node.url, *home)
    cli.import_keys({"alice": "//Alice", "charlie": "//Charlie", "dave": "//Dave"})
    return cli


@pytest.fixture(scope="module")
def funded(run, node):
    """A wallet "funded" holding exactly 1.5 GRAD, sent by Charlie (whose nonce is then past 0)."""
    options = ["--url", run.url, "--wallet-dir", str(run.directory), "--passphrase-file", str(run.passphrase_file)]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert wallet.main([*options, "create", "funded"]) == 0
    assert wallet.main([*options, "transfer", "charlie", "funded", "1.5", "--watch"]) == 0
    assert node.client.account(created_address(out.getvalue(), "funded")).free == 3 * GRAD // 2
    return "funded"


def created_address(out: str, name: str) -> str:
    return re.search(rf"^{name}: (\w+)$", out, re.M).group(1)


# --- keys at rest --------------------------------------------------------------------------


def test_create_prints_the_phrase_once_and_stores_only_an_encrypted_key(run, capsys):
    code, out, err = run(capsys, "create", "fresh", "--words", "24")
    assert code == 0, err
    phrase = re.search(r"^    ([a-z ]+)$", out, re.M).group(1)
    assert len(phrase.split()) == 24
    keypair = crypto.keypair_from_uri(phrase)
    assert created_address(out, "fresh") == address(keypair.public)

    path = run.directory / "fresh.json"
    text = path.read_text()
    assert phrase not in text and " ".join(phrase.split()[:3]) not in text
    assert keypair.seed.hex() not in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert run.directory.stat().st_mode & 0o077 == 0

    code, out, _ = run(capsys, "list")
    assert code == 0 and re.search(rf"^fresh\s+{address(keypair.public)}$", out, re.M)
    assert re.search(rf"^charlie\s+{address(CHARLIE.public)}$", out, re.M)


def test_creating_a_name_twice_is_refused(run, capsys):
    assert run(capsys, "create", "twice")[0] == 0
    assert_one_line_error(*run(capsys, "create", "twice")[::2], "already exists")


def test_import_of_the_dev_uri_gives_alices_address_and_a_mnemonic_from_stdin_works(run, capsys, monkeypatch):
    code, out, _ = run(capsys, "list")
    assert re.search(rf"^alice\s+{address(DEV_KEYS['Alice'].public)}$", out, re.M)
    phrase = crypto.generate_mnemonic()
    monkeypatch.setattr(sys, "stdin", io.StringIO(phrase + "\n"))
    code, out, err = run(capsys, "import", "from-stdin")
    assert code == 0, err
    assert created_address(out, "from-stdin") == address(crypto.keypair_from_uri(phrase).public)
    assert phrase not in (run.directory / "from-stdin.json").read_text()


def test_import_of_a_bad_mnemonic_is_one_line(run, capsys):
    assert_one_line_error(*run(capsys, "import", "bad", "--uri", "not a real phrase at all")[::2], "mnemonic")


def test_a_wrong_passphrase_fails_cleanly_and_sends_nothing(run, node, capsys, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")
    nonce = node.client.next_index(address(CHARLIE.public))
    code, out, err = run(capsys, "transfer", "charlie", "//Eve", "1", passphrase_file=wrong)
    assert_one_line_error(code, err, "wrong passphrase", "charlie")
    assert node.client.next_index(address(CHARLIE.public)) == nonce


# --- transactions ---------------------------------------------------------------------------


def test_transfer_with_watch_reaches_finalized_and_moves_exactly_amount_and_fee(run, node, capsys):
    client = node.client
    code, out, _ = run(capsys, "create", "receiver")
    receiver = created_address(out, "receiver")
    charlie = address(CHARLIE.public)
    before, nonce = client.account(charlie), client.next_index(charlie)

    code, out, err = run(capsys, "transfer", "charlie", "receiver", "1.5", "--keep-alive", "--watch")

    assert code == 0, err
    statuses = [line.split()[0] for line in out.splitlines()]
    assert statuses.index("inBlock") < statuses.index("finalized") and "success:" in statuses
    signed = sign_extrinsic(CHARLIE, balances.transfer_keep_alive(crypto.decode_address(receiver), 3 * GRAD // 2),
                            nonce=nonce, genesis_hash=client.genesis_hash())
    fee = client.query_fee(signed)
    assert f"fee paid {format_balance(fee, 12, 'GRAD')}" in out
    assert client.account(receiver).free == 3 * GRAD // 2
    assert before.free - client.account(charlie).free == 3 * GRAD // 2 + fee


def test_balance_shows_free_reserved_and_nonce(run, capsys):
    code, out, err = run(capsys, "balance", "//Eve")
    assert code == 0, err
    assert "free      1,000,000 GRAD" in out and "nonce     0" in out


def test_transfer_without_watch_then_watch_follows_it_to_finalized(run, funded, capsys):
    code, out, err = run(capsys, "transfer", "charlie", funded, "2500")
    assert code == 0, err
    transaction_hash = re.search(r"^submitted (0x[0-9a-f]{64})$", out, re.M).group(1)
    code, out, err = run(capsys, "watch")
    assert code == 0, err
    assert transaction_hash in out and re.search(r"^finalized #\d+ 0x", out, re.M) and "success" in out
    code, out, err = run(capsys, "watch", transaction_hash)
    assert code == 0 and "finalized" in out
    code, out, err = run(capsys, "list")  # the record kept for `watch` is not a wallet
    assert code == 0 and funded in out, err


def test_bond_moves_free_to_reserved_and_unbond_starts_unlocking(run, node, capsys):
    client, dave = node.client, address(DAVE.public)
    before, nonce = client.account(dave), client.next_index(dave)

    code, out, err = run(capsys, "bond", "dave", "2 GRAD", "--watch")

    assert code == 0, err
    fee = client.query_fee(sign_extrinsic(DAVE, validators.bond(2 * GRAD), nonce=nonce,
                                          genesis_hash=client.genesis_hash()))
    after = client.account(dave)
    assert after.reserved - before.reserved == 2 * GRAD
    assert before.free - after.free == 2 * GRAD + fee

    code, out, err = run(capsys, "unbond", "dave", "0.5", "--watch")
    assert code == 0, err
    code, out, _ = run(capsys, "balance", "dave")
    assert "bonded    1.5 GRAD (unlocking: 0.5 GRAD at #" in out
    assert client.account(dave).reserved == before.reserved + 2 * GRAD  # unbonding stake stays reserved


# --- one-line errors ------------------------------------------------------------------------


def test_insufficient_funds_is_one_line(run, funded, capsys):
    code, _, err = run(capsys, "transfer", funded, "charlie", "100 GRAD")
    assert_one_line_error(code, err, "insufficient funds", funded)


def test_what_the_runtime_would_refuse_after_charging_the_fee_is_refused_before_the_passphrase(run, funded, capsys,
                                                                                              tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")  # never read: the checks come first
    code, _, err = run(capsys, "create", "empty")
    assert code == 0, err
    code, _, err = run(capsys, "transfer", "charlie", "empty", "5", passphrase_file=wrong)
    assert_one_line_error(code, err, "below the existential deposit")
    code, _, err = run(capsys, "transfer", funded, "charlie", "1.49", "--keep-alive", passphrase_file=wrong)
    assert_one_line_error(code, err, "--keep-alive", "existential deposit")


def test_a_bad_address_is_one_line(run, capsys):
    bad = address(CHARLIE.public)[:-1] + ("X" if address(CHARLIE.public)[-1] != "X" else "Y")
    assert_one_line_error(*run(capsys, "transfer", "charlie", bad, "1")[::2], "bad address", "checksum")
    assert_one_line_error(*run(capsys, "balance", "nobody")[::2], "neither a wallet")


def test_an_invalid_transaction_shows_the_nodes_reason(run, node, funded, capsys):
    assert node.client.account(address(CHARLIE.public)).nonce >= 1  # funding `funded` used Charlie's nonce 0
    code, _, err = run(capsys, "transfer", "charlie", "//Eve", "1", "--nonce", "0")
    assert_one_line_error(code, err, "rejected the transaction as invalid", "stale", "nonce 0 is used")


def test_bad_amounts_are_one_line(run, capsys):
    assert_one_line_error(*run(capsys, "transfer", "charlie", "//Eve", "1.0000000000001")[::2], "12 decimal")
    assert_one_line_error(*run(capsys, "transfer", "charlie", "//Eve", "0")[::2], "more than 0")
    assert_one_line_error(*run(capsys, "transfer", "nobody", "//Eve", "1")[::2], "no wallet named 'nobody'")


def test_node_unreachable_is_one_line_in_process_and_end_to_end(home, capsys, tmp_path):
    code = wallet.main(["--url", "http://127.0.0.1:1", "--wallet-dir", str(tmp_path), "balance", "//Alice"])
    assert_one_line_error(code, capsys.readouterr().err, "cannot reach a node at http://127.0.0.1:1")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "wallet.py"), "--url", "http://127.0.0.1:1",
                             "--wallet-dir", str(tmp_path), "balance", "//Alice"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=dict(os.environ))
    assert_one_line_error(result.returncode, result.stderr, "cannot reach a node")
    assert result.stdout == ""


def test_end_to_end_balance_in_a_subprocess(node, home, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "wallet.py"), "--url", node.url,
                             "--wallet-dir", str(tmp_path), "balance", address(DEV_KEYS["Ferdie"].public)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "free      0 GRAD" in result.stdout


# --- amounts and layering -------------------------------------------------------------------


@pytest.mark.parametrize("text,planck", [("1", 1), ("1500000000000", 1500000000000), ("1.5", 1500000000000),
                                         ("1.5 GRAD", 1500000000000), ("2GRAD", 2 * GRAD), (".25", GRAD // 4),
                                         ("0.000000000001", 1), ("1_000", 1000)])
def test_amounts_are_planck_when_whole_and_tokens_when_decimal(text, planck):
    assert parse_amount(text, 12, "GRAD") == planck


@pytest.mark.parametrize("text", ["", "-1", "1.2.3", "abc", "1e3", "0.0000000000001", "GRAD", "."])
def test_bad_amounts_are_refused(text):
    with pytest.raises(CliError):
        parse_amount(text, 12, "GRAD")


def test_balances_format_exactly():
    assert format_balance(1_500_000_000_000, 12, "GRAD") == "1.5 GRAD"
    assert format_balance(10**18 + 1, 12, "GRAD") == "1,000,000.000000000001 GRAD"
    assert format_balance(0, 12, "GRAD") == "0 GRAD"


def test_scripts_talk_to_nodes_over_rpc_only():
    """Scripts are clients: no node internals, no storage. The ML engine (consensus.useful_work) is a
    library a trainer or task creator runs on its own machine, so it (and torch) may be imported,
    but nothing else of consensus (block import, authorship)."""
    for path in (ROOT / "scripts").glob("*.py"):
        for statement in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in statement.names] if isinstance(statement, ast.Import) else \
                [statement.module] if isinstance(statement, ast.ImportFrom) and statement.module else []
            for name in names:
                assert name.split(".")[0] not in {"node", "storage"}, f"{path.name}: {name}"
                if name.split(".")[0] == "consensus":
                    assert name.startswith("consensus.useful_work"), f"{path.name}: {name}"
                    assert name != "consensus.useful_work.rounds", f"{path.name}: {name}"
