"""Validator keys on disk: one JSON file per key, readable by its owner only (0600).

    {"secret_uri": "<mnemonic or 0x seed>[//path]", "public": "0x...", "address": "..."}

A key file readable by group or others is refused: a validator's key signs
blocks and votes, and whoever reads it can equivocate in the validator's name.
The secret never reaches a log line: `Keypair`'s repr shows only the public key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from runtime import crypto
from runtime.errors import GradchainError


class KeystoreError(GradchainError):
    code = "keystore"


def write_key_file(path: Path, secret_uri: str, prefix: int) -> crypto.Keypair:
    keypair = crypto.keypair_from_uri(secret_uri)
    body = {"secret_uri": secret_uri, "public": "0x" + keypair.public.hex(),
            "address": crypto.encode_address(keypair.public, prefix)}
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(body, handle, indent=2)
        handle.write("\n")
    return keypair


def load_key_file(path: Path) -> crypto.Keypair:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeystoreError(f"key file {path} is readable by others (mode {oct(mode & 0o777)}); "
                            f"run: chmod 600 {path}")
    try:
        body = json.loads(path.read_text())
        keypair = crypto.keypair_from_uri(body["secret_uri"])
    except (ValueError, KeyError, TypeError):
        raise KeystoreError(f"key file {path} is not a gradchain key file") from None
    except crypto.CryptoError as exc:
        raise KeystoreError(f"key file {path}: {exc.message}") from None
    if body.get("public") not in (None, "0x" + keypair.public.hex()):
        raise KeystoreError(f"key file {path}: the public key does not match the secret")
    return keypair
