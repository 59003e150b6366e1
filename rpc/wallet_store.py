"""The wallet's keys at rest: one 0600 JSON file per key, the seed sealed with a passphrase.

    WalletStore        list, find, save and unlock the keys of one directory
    read_passphrase    --passphrase-file, $GRADCHAIN_WALLET_PASSPHRASE or a prompt
    write_private_file a 0600 file written through a temporary one (never half a key file)

Used by scripts/wallet.py (its commands) and rpc/key_sources.py (--wallet NAME of the trainer, the
task tools and `gradchain key inspect`). It lives beside the RPC client, not in scripts/, so that
node/ may use it too (node never imports scripts/).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from runtime import crypto
from runtime.errors import CliError

DEFAULT_WALLET_DIR = Path.home() / ".local" / "share" / "gradchain" / "wallet"
PASSPHRASE_ENV = "GRADCHAIN_WALLET_PASSPHRASE"
WALLET_FORMAT = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Argon2id with libsodium's INTERACTIVE limits (64 MiB, 2 passes; about 0.5 s on a small
# machine) rather than MODERATE (256 MiB, about 2 s here): every signing command derives the
# key once while the user waits, and the file is 0600 on the user's own disk, so the KDF
# only slows guessing of a file that was already stolen. The limits are stored in each
# file, so a later version can raise them and still open older wallets.
KDF_OPSLIMIT = argon2id.OPSLIMIT_INTERACTIVE
KDF_MEMLIMIT = argon2id.MEMLIMIT_INTERACTIVE
MAX_KDF_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE  # a crafted file cannot make us allocate more


# --- keys at rest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletEntry:
    name: str
    public: bytes
    path: Path


class WalletStore:
    """One JSON file per key, `<dir>/<name>.json`, mode 0600: the public key in clear, the seed sealed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, name: str) -> Path:
        if not NAME_PATTERN.fullmatch(name):
            raise CliError(f"bad wallet name {name!r}: use letters, digits, '.', '_' or '-' (up to 64)")
        return self.directory / f"{name}.json"

    def entries(self) -> list[WalletEntry]:
        if not self.directory.is_dir():
            return []
        return [self._read(path) for path in sorted(self.directory.glob("*.json"))
                if NAME_PATTERN.fullmatch(path.stem)]

    def check_new(self, name: str) -> None:
        """Before asking for anything: the name is usable and free."""
        if self.path_of(name).exists():
            raise CliError(f"a wallet named {name!r} already exists in {self.directory}")

    def find(self, name: str) -> WalletEntry | None:
        path = self.directory / f"{name}.json"
        return self._read(path) if NAME_PATTERN.fullmatch(name) and path.is_file() else None

    def load(self, name: str) -> WalletEntry:
        entry = self.find(name)
        if entry is None:
            raise CliError(f"no wallet named {name!r} in {self.directory} (see `wallet.py list`)")
        return entry

    def save(self, name: str, keypair: crypto.Keypair, passphrase: str) -> WalletEntry:
        self.check_new(name)
        path = self.path_of(name)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {"format": WALLET_FORMAT, "name": name, "public": "0x" + keypair.public.hex(),
                  **seal_seed(keypair.seed, passphrase)}
        write_private_file(path, json.dumps(record, indent=2) + "\n", exclusive=True)
        return WalletEntry(name, keypair.public, path)

    def unlock(self, entry: WalletEntry, passphrase: str) -> crypto.Keypair:
        if entry.path.stat().st_mode & 0o077:
            raise CliError(f"{entry.path} is readable by other users; run: chmod 600 {entry.path}")
        seed = open_seed(self._record(entry.path), passphrase, entry.name)
        keypair = crypto.Keypair.from_seed(seed)
        if keypair.public != entry.public:
            raise CliError(f"{entry.path} is damaged: its sealed key does not match its public key")
        return keypair

    def _record(self, path: Path) -> dict:
        try:
            record = json.loads(path.read_text())
            if record.get("format") != WALLET_FORMAT:
                raise ValueError(f"unknown format {record.get('format')!r}")
            return record
        except (OSError, ValueError, AttributeError) as exc:
            raise CliError(f"cannot read wallet file {path}: {exc}") from None

    def _read(self, path: Path) -> WalletEntry:
        record = self._record(path)
        try:
            return WalletEntry(path.stem, bytes.fromhex(record["public"][2:]), path)
        except (KeyError, TypeError, ValueError):
            raise CliError(f"wallet file {path} has no valid public key") from None


def seal_seed(seed: bytes, passphrase: str) -> dict:
    salt = nacl.utils.random(argon2id.SALTBYTES)
    key = argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt,
                       opslimit=KDF_OPSLIMIT, memlimit=KDF_MEMLIMIT)
    sealed = nacl.secret.SecretBox(key).encrypt(seed)  # a random 24-byte nonce, then the ciphertext
    return {"kdf": {"algorithm": "argon2id13", "salt": salt.hex(), "opslimit": KDF_OPSLIMIT,
                    "memlimit": KDF_MEMLIMIT},
            "cipher": "xsalsa20poly1305", "sealed_seed": sealed.hex()}


def open_seed(record: dict, passphrase: str, name: str) -> bytes:
    try:
        kdf = record["kdf"]
        salt, sealed = bytes.fromhex(kdf["salt"]), bytes.fromhex(record["sealed_seed"])
        opslimit, memlimit = int(kdf["opslimit"]), int(kdf["memlimit"])
    except (KeyError, TypeError, ValueError):
        raise CliError(f"wallet {name!r} is damaged: its kdf or sealed seed is missing") from None
    if kdf.get("algorithm") != "argon2id13" or not 0 < memlimit <= MAX_KDF_MEMLIMIT or len(salt) != 16:
        raise CliError(f"wallet {name!r} uses kdf settings this wallet does not accept")
    key = argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=opslimit,
                       memlimit=memlimit)
    try:
        return nacl.secret.SecretBox(key).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise CliError(f"wrong passphrase for wallet {name!r}") from None


def write_private_file(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write a 0600 file through a temporary one, so a crash never leaves half a key file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if the name was taken meanwhile
        else:
            os.replace(temporary, path)
    except FileExistsError:
        raise CliError(f"{path} already exists") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if args.passphrase_file:
        try:
            passphrase = Path(args.passphrase_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read --passphrase-file: {exc.strerror}: {args.passphrase_file}") from None
    elif os.environ.get(PASSPHRASE_ENV) is not None:
        passphrase = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        passphrase = getpass.getpass("wallet passphrase: ")
        if confirm and getpass.getpass("repeat the passphrase: ") != passphrase:
            raise CliError("the passphrases differ")
    else:
        raise CliError(f"no passphrase: give --passphrase-file FILE, set {PASSPHRASE_ENV}, or run in a terminal")
    if not passphrase:
        raise CliError("the passphrase is empty")
    return passphrase


__all__ = ["DEFAULT_WALLET_DIR", "PASSPHRASE_ENV", "WALLET_FORMAT", "NAME_PATTERN", "KDF_OPSLIMIT", "KDF_MEMLIMIT",
           "MAX_KDF_MEMLIMIT", "WalletEntry", "WalletStore", "seal_seed", "open_seed", "write_private_file",
           "read_passphrase"]
