"""Where a signing tool gets its secret key: never only from its command line.

A process's arguments are readable by every user of the machine (`ps`, /proc/<pid>/cmdline)
and land in shell history, so a secret there is a secret shared. The safe sources, in the
order `keypair_from_args` tries them:

    --wallet NAME        an encrypted wallet entry (scripts/wallet.py create/import), unlocked
                         with --passphrase-file FILE, $GRADCHAIN_WALLET_PASSPHRASE or a prompt
    --key-file FILE      a file holding the secret phrase or URI (or a validator key file written
                         by `gradchain key generate`); it must be 0600 (owner only)
    $GRADCHAIN_SECRET_URI  the secret phrase or URI in the environment (readable by the same user only)
    --uri //Name         dev accounts only (derived from the public dev phrase, so nothing secret
                         is exposed), with a warning; a phrase or seed on the command line is refused

Shared by the scripts (trainer, task tools) and `gradchain key inspect`: it sits beside the RPC
client, the one package of ours both may import.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import stat
import sys
from pathlib import Path

from rpc.wallet_store import DEFAULT_WALLET_DIR, PASSPHRASE_ENV, WalletStore, read_passphrase
from runtime import crypto
from runtime.errors import CliError

SECRET_ENV = "GRADCHAIN_SECRET_URI"


def add_key_options(parser: argparse.ArgumentParser, *, uri_option: bool = True) -> None:
    """--wallet, --key-file and (unless the command takes a URI argument of its own) --uri."""
    source = parser.add_argument_group("the signing key (one of; else $" + SECRET_ENV + ")")
    source.add_argument("--wallet", metavar="NAME", help="an encrypted wallet entry (scripts/wallet.py import NAME)")
    source.add_argument("--wallet-dir", type=Path, default=DEFAULT_WALLET_DIR, help=argparse.SUPPRESS)
    source.add_argument("--passphrase-file", help=f"the wallet's passphrase (else ${PASSPHRASE_ENV}, else a prompt)")
    source.add_argument("--key-file", type=Path, metavar="FILE",
                        help="a file (mode 0600) holding the secret phrase or URI")
    if uri_option:
        source.add_argument("--uri", help="dev accounts only, like //Trainer1 (visible in `ps`: never a real secret)")


def keypair_from_args(args: argparse.Namespace, *, warn=None, uri_label: str = "--uri",
                      prompt: bool = False) -> crypto.Keypair:
    """The keypair the flags name; CliError (with what to do) when none or more than one is given.

    `uri_label` names the command-line URI in messages (an option or a positional argument);
    `prompt`: with no source at all and a terminal on stdin, ask for the URI without echoing it."""
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    labels = {"wallet": "--wallet", "key_file": "--key-file", "uri": uri_label}
    given = [name for name in labels if getattr(args, name, None) is not None]
    if len(given) > 1:
        named = " and ".join(labels[g] for g in given)
        raise CliError(f"give one of --wallet, --key-file and {uri_label}, not {named}")
    if args.wallet is not None:
        store = WalletStore(Path(args.wallet_dir).expanduser())
        return store.unlock(store.load(args.wallet), read_passphrase(args))
    if args.key_file is not None:
        return keypair_from_uri_checked(read_key_file(args.key_file), f"--key-file {args.key_file}")
    if getattr(args, "uri", None) is not None:
        return keypair_from_command_line(args.uri, warn, uri_label)
    if os.environ.get(SECRET_ENV):
        return keypair_from_uri_checked(os.environ[SECRET_ENV], f"${SECRET_ENV}")
    if prompt and sys.stdin.isatty():
        return keypair_from_uri_checked(getpass.getpass("Secret URI: "), "the secret URI")
    raise CliError(f"no signing key: give --wallet NAME, --key-file FILE (mode 0600) or set {SECRET_ENV} "
                   f"({uri_label} only for dev accounts like //Alice)")


def read_key_file(path: Path) -> str:
    """The secret in `path`, after checking that only its owner can read or change it.

    The file holds the secret phrase or URI as text, or is a validator key file (JSON with
    "secret_uri", as `gradchain key generate --output-file` writes)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CliError(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CliError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise CliError(f"key file {path} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                       f"run: chmod 600 {path}")
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read key file {path}: {exc}") from None
    if not text:
        raise CliError(f"key file {path} is empty; put a secret phrase or URI in it")
    if text.startswith("{"):
        return _secret_of_validator_key_file(path, text)
    return text


def _secret_of_validator_key_file(path: Path, text: str) -> str:
    try:
        secret = json.loads(text)["secret_uri"]
    except (ValueError, KeyError, TypeError):
        raise CliError(f"key file {path} is JSON but not a gradchain key file (no \"secret_uri\")") from None
    if not isinstance(secret, str) or not secret.strip():
        raise CliError(f"key file {path}: \"secret_uri\" must be a secret phrase or URI")
    return secret.strip()


def keypair_from_command_line(uri: str, warn, label: str = "--uri") -> crypto.Keypair:
    """A URI on the command line: only a dev derivation (//Name), which exposes nothing; a phrase
    or a seed is refused."""
    text = uri.strip()
    if not text.startswith("//"):
        raise CliError(f"{label} takes dev accounts only (//Name): a secret phrase or seed on the command line is "
                       f"visible to every user in `ps`; use --wallet NAME, --key-file FILE or ${SECRET_ENV}")
    warn(f"{label} {text}: a dev account derived from the public dev phrase; anyone can sign as it")
    return keypair_from_uri_checked(text, label)


def keypair_from_uri_checked(uri: str, where: str) -> crypto.Keypair:
    try:
        return crypto.keypair_from_uri(uri)
    except crypto.CryptoError as exc:
        raise CliError(f"{where}: {exc.message}") from None


__all__ = ["SECRET_ENV", "add_key_options", "keypair_from_args", "read_key_file", "keypair_from_command_line"]
