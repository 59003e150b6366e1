"""Held-out keys for validators elected after a task was created (runtime/pallets/held_out_keys.py).

A holder opens its sealed key, checks that it opens the task's ciphertext to the
declared plaintext, and seals it to each validator of the current set that lacks
one; a newcomer tries every key sealed to it and keeps the first that passes the
same check (a sealer that lied is simply skipped). No torch here: only NaCl.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox

from runtime.crypto import Keypair
from runtime.dispatch import Call
from runtime.hashing import blake2b_256
from runtime.pallets import held_out_keys, training, validators


def open_sealed_key(sealed: bytes, keypair: Keypair) -> bytes | None:
    """The task key in a SealedBox to `keypair`'s Curve25519 form, or None if it is not ours or is junk."""
    _, secret_key = nacl.bindings.crypto_sign_seed_keypair(keypair.seed)
    curve_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret_key)
    try:
        key = SealedBox(PrivateKey(curve_secret)).decrypt(bytes(sealed))
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        return None
    return key if len(key) == SecretBox.KEY_SIZE else None


def seal_key(key: bytes, validator_public: bytes) -> bytes:
    curve_public = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(bytes(validator_public))
    return bytes(SealedBox(PublicKey(curve_public)).encrypt(key))


def key_opens(key: bytes, ciphertext: bytes, ciphertext_hash: bytes, plaintext_hash: bytes | None) -> bool:
    """Whether `key` decrypts the task's ciphertext (the blob whose hash the task records) to the
    plaintext whose hash the creator declared (any authentic plaintext if none was declared)."""
    if blake2b_256(ciphertext) != bytes(ciphertext_hash):
        return False
    try:
        plaintext = SecretBox(key).decrypt(ciphertext)
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        return False
    return plaintext_hash is None or blake2b_256(plaintext) == bytes(plaintext_hash)


def usable_sealed_keys(state, task_id: int, keypair: Keypair, ciphertext: bytes | None) -> list[tuple[bytes, bytes]]:
    """(sealed, key) for every key sealed to `keypair` for the task that opens its held-out blob to the
    declared plaintext; empty means: keep waiting for another sealer (the task's rounds are unverifiable here)."""
    task = training.Tasks.get(state, task_id)
    if task is None or ciphertext is None:
        return []
    plaintext_hash = held_out_keys.PlaintextHash.get(state, task_id)
    usable = []
    for sealed in held_out_keys.sealed_keys_for(state, task_id, keypair.public):
        key = open_sealed_key(sealed, keypair)
        if key is not None and key_opens(key, ciphertext, task.config.held_out, plaintext_hash):
            usable.append((sealed, key))
    return usable


def working_key(state, task_id: int, keypair: Keypair, ciphertext: bytes | None) -> bytes | None:
    """The first key sealed to `keypair` for the task that opens its held-out blob, or None (keep waiting)."""
    usable = usable_sealed_keys(state, task_id, keypair, ciphertext)
    return usable[0][1] if usable else None


@dataclass(frozen=True)
class Reseal:
    task: int
    validator: bytes
    call: Call


def reseal_calls(state, keypair: Keypair, blob_of) -> list[Reseal]:
    """The `reseal_held_out_key` calls this validator should submit now: for every active task whose key it
    holds (and checked), one per validator of the current set that holds none. `blob_of(hash)` reads a blob."""
    members = [v.account for v in validators.Validators.get(state)]
    if keypair.public not in members:
        return []
    calls = []
    for task_id in range(training.NextTaskId.get(state)):
        task = training.Tasks.get(state, task_id)
        if task is None or task.status != training.STATUS_ACTIVE:
            continue
        lacking = [v for v in members if v != keypair.public and not _holds_any_key(state, task, task_id, v)]
        if not lacking:
            continue
        key = working_key(state, task_id, keypair, blob_of(task.config.held_out))
        if key is None:
            continue
        calls.extend(Reseal(task_id, v, held_out_keys.reseal_held_out_key(task_id, v, seal_key(key, v)))
                     for v in lacking)
    return calls


def _holds_any_key(state, task, task_id: int, validator: bytes) -> bool:
    return bool(held_out_keys.sealed_keys_for(state, task_id, validator))
