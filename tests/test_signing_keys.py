"""Where the trainer and the task tools get their signing key: an encrypted wallet entry, a 0600 key
file or the environment; the command line holds dev accounts only (with a warning)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import crypto
from scripts import wallet
from scripts._common import CliError
from rpc.key_sources import SECRET_ENV, add_key_options, keypair_from_args

ROOT = Path(__file__).resolve().parent.parent
PHRASE = "legal winner thank year wave sausage worth useful legal winner thank yellow"
EXPECTED = crypto.keypair_from_uri(PHRASE).public


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_key_options(parser)
    return parser.parse_args(argv)


def key_file(tmp_path: Path, mode: int, text: str = PHRASE + "\n") -> Path:
    path = tmp_path / "trainer.key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_0600_key_file_gives_the_key(tmp_path):
    assert keypair_from_args(parse("--key-file", str(key_file(tmp_path, 0o600)))).public == EXPECTED


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_or_write_is_refused_with_the_fix(tmp_path, mode):
    path = key_file(tmp_path, mode)
    with pytest.raises(CliError, match=f"chmod 600 {path}"):
        keypair_from_args(parse("--key-file", str(path)))


@pytest.mark.parametrize("text,problem", [("", "is empty"), ("not a phrase at all", "--key-file")])
def test_an_empty_or_bad_key_file_is_a_clear_error(tmp_path, text, problem):
    with pytest.raises(CliError, match=problem):
        keypair_from_args(parse("--key-file", str(key_file(tmp_path, 0o600, text))))


def test_a_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(CliError, match="cannot read key file"):
        keypair_from_args(parse("--key-file", str(tmp_path / "absent.key")))


def test_the_environment_gives_the_key(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, PHRASE)
    assert keypair_from_args(parse()).public == EXPECTED


def test_an_encrypted_wallet_entry_gives_the_key(tmp_path, monkeypatch):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("wallet words\n")
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    store = wallet.WalletStore(tmp_path / "keys")
    store.save("trainer1", crypto.keypair_from_uri(PHRASE), "wallet words")
    args = parse("--wallet", "trainer1", "--wallet-dir", str(tmp_path / "keys"), "--passphrase-file", str(passphrase))
    assert keypair_from_args(args).public == EXPECTED
    passphrase.write_text("wrong\n")
    with pytest.raises(CliError, match="wrong passphrase"):
        keypair_from_args(args)


def test_a_secret_phrase_on_the_command_line_is_refused():
    with pytest.raises(CliError, match="visible to every user"):
        keypair_from_args(parse("--uri", PHRASE))
    with pytest.raises(CliError, match="visible to every user"):
        keypair_from_args(parse("--uri", "0x" + "11" * 32))


def test_a_dev_uri_on_the_command_line_works_with_a_warning():
    warnings = []
    keypair = keypair_from_args(parse("--uri", "//Trainer1"), warn=warnings.append)
    assert keypair.public == crypto.keypair_from_uri("//Trainer1").public
    assert warnings and "dev account" in warnings[0]


def test_no_key_or_two_keys_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(CliError, match="no signing key"):
        keypair_from_args(parse())
    with pytest.raises(CliError, match="give one of"):
        keypair_from_args(parse("--uri", "//A", "--key-file", str(key_file(tmp_path, 0o600))))


def run_trainer(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/trainer.py", "--url", "http://127.0.0.1:9", "--task", "0",
                           "--shard", "1/2", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_trainer_takes_its_key_from_a_0600_file_and_refuses_a_readable_one(tmp_path):
    path = key_file(tmp_path, 0o644)
    refused = run_trainer("--key-file", str(path), "--state", str(tmp_path / "s.json"))
    assert refused.returncode == 2 and "chmod 600" in refused.stderr and "Traceback" not in refused.stderr
    path.chmod(0o600)
    started = run_trainer("--key-file", str(path), "--state", str(tmp_path / "s.json"))
    assert f"trainer {crypto.encode_address(EXPECTED, 42)}" in started.stdout  # then fails to reach the node
    from_env = run_trainer("--state", str(tmp_path / "s.json"), env={SECRET_ENV: PHRASE})
    assert f"trainer {crypto.encode_address(EXPECTED, 42)}" in from_env.stdout
    on_argv = run_trainer("--uri", PHRASE, "--state", str(tmp_path / "s.json"))
    assert on_argv.returncode == 2 and "visible to every user" in on_argv.stderr
