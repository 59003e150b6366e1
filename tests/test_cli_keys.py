"""`gradchain key inspect` takes its secret the way the wallet tools do: from an encrypted wallet
entry, a 0600 key file or $GRADCHAIN_SECRET_URI, never from the command line (visible in `ps`)
except for a dev account like //Alice, with a warning. A secret from elsewhere is never echoed."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest
import structlog

from node import cli
from rpc.key_sources import SECRET_ENV
from rpc.wallet_store import WalletStore
from runtime import crypto
from tests.helpers.processes import GRADCHAIN, ROOT, gradchain, one_line_error, stop_process

PHRASE = "legal winner thank year wave sausage worth useful legal winner thank yellow"
KEYPAIR = crypto.keypair_from_uri(PHRASE)
ADDRESS = crypto.encode_address(KEYPAIR.public, 42)


@pytest.fixture(autouse=True)
def no_secret_in_the_environment(monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)


@pytest.fixture(autouse=True)
def logging_as_it_was():
    """cli.main configures structlog onto this test's captured stderr, closed after the test: put back
    what was there, or every later test's node would log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def inspect(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["key", "inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_inspected(out: str, keypair: crypto.Keypair = KEYPAIR) -> None:
    assert f"Public key:     0x{keypair.public.hex()}" in out
    assert f"Address (SS58): {crypto.encode_address(keypair.public, 42)}" in out


def test_a_secret_phrase_on_the_command_line_is_refused_and_not_echoed(capsys):
    code, out, err = inspect(capsys, PHRASE)
    assert code == 2 and out == ""
    assert "URI takes dev accounts only" in err and "visible to every user" in err and "--key-file" in err
    assert PHRASE not in err and "legal" not in err
    code, _, err = inspect(capsys, "0x" + "11" * 32)
    assert code == 2 and "visible to every user" in err


def test_a_dev_account_on_the_command_line_works_with_a_warning(capsys):
    code, out, err = inspect(capsys, "//Alice")
    assert code == 0
    assert_inspected(out, crypto.dev_keypair("Alice"))
    assert "Secret URI:     //Alice" in out and "warning: URI //Alice: a dev account" in err


def test_a_0600_key_file_gives_the_key_and_is_not_echoed(tmp_path, capsys):
    path = tmp_path / "secret.txt"
    path.write_text(PHRASE + "\n")
    path.chmod(0o600)
    code, out, _ = inspect(capsys, "--key-file", str(path))
    assert code == 0
    assert_inspected(out)
    assert PHRASE not in out and f"Key from:       key file {path}" in out


def test_a_validator_key_file_from_key_generate_gives_its_key(tmp_path, capsys):
    path = tmp_path / "validator.json"
    assert cli.main(["key", "generate", "--output-file", str(path)]) == 0
    generated = capsys.readouterr().out.splitlines()
    code, out, _ = inspect(capsys, "--key-file", str(path))
    assert code == 0 and out.splitlines()[1:] == generated[1:]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path, capsys, mode):
    path = tmp_path / "secret.txt"
    path.write_text(PHRASE)
    path.chmod(mode)
    code, out, err = inspect(capsys, "--key-file", str(path))
    assert code == 2 and out == "" and f"run: chmod 600 {path}" in err


def test_a_key_file_that_is_json_but_no_key_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text('{"seed": "x"}')
    path.chmod(0o600)
    code, _, err = inspect(capsys, "--key-file", str(path))
    assert code == 2 and "not a gradchain key file" in err


def test_the_environment_gives_the_key_and_is_not_echoed(monkeypatch, capsys):
    monkeypatch.setenv(SECRET_ENV, PHRASE)
    code, out, _ = inspect(capsys)
    assert code == 0
    assert_inspected(out)
    assert PHRASE not in out and f"Key from:       ${SECRET_ENV}" in out


def test_an_encrypted_wallet_entry_gives_the_key(tmp_path, capsys):
    WalletStore(tmp_path / "keys").save("validator", KEYPAIR, "wallet words")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("wallet words\n")
    wallet = ["--wallet", "validator", "--wallet-dir", str(tmp_path / "keys")]
    code, out, _ = inspect(capsys, *wallet, "--passphrase-file", str(passphrase))
    assert code == 0
    assert_inspected(out)
    assert "Key from:       wallet entry validator" in out
    passphrase.write_text("wrong\n")
    code, _, err = inspect(capsys, *wallet, "--passphrase-file", str(passphrase))
    assert code == 2 and "wrong passphrase" in err


def test_no_key_or_two_keys_is_a_clear_error(tmp_path, capsys):
    code, _, err = inspect(capsys)  # stdin is not a terminal here: no prompt
    assert code == 2 and "no signing key" in err and SECRET_ENV in err
    path = tmp_path / "secret.txt"
    path.write_text(PHRASE)
    path.chmod(0o600)
    code, _, err = inspect(capsys, "//Alice", "--key-file", str(path))
    assert code == 2 and "give one of --wallet, --key-file and URI, not --key-file and URI" in err


def test_the_binary_refuses_a_phrase_on_argv_in_one_line():
    message = one_line_error(gradchain("key", "inspect", PHRASE))
    assert "visible to every user" in message and "legal" not in message


def test_on_a_terminal_it_asks_for_the_uri_without_echoing_it():
    """No source given and a terminal on stdin: a prompt, as Substrate's `key inspect` does."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    process = subprocess.Popen([*GRADCHAIN, "key", "inspect"], stdin=slave, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT, env=environment)
    os.close(slave)
    try:
        prompt, deadline = b"", time.monotonic() + 60
        while b"Secret URI: " not in prompt:  # the answer must wait for the prompt (it flushes earlier input)
            ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
            assert ready and process.poll() is None, f"no prompt within 60 s: {prompt!r}"
            prompt += os.read(process.stderr.fileno(), 1024)
        os.write(master, PHRASE.encode() + b"\n")
        out, err = process.communicate(timeout=60)
    finally:
        os.close(master)
        if process.poll() is None:
            stop_process(process)
    assert process.returncode == 0, err
    assert f"Address (SS58): {ADDRESS}" in out.decode() and "Key from:       the prompt" in out.decode()
    assert PHRASE not in out.decode() + err.decode()
