"""Held-out secrecy: only validators can read the data updates are scored on.

The task creator encodes the held-out set as a tensor blob ``{"features": float32
[n, d], "labels": int64 [n]}``, encrypts it once with a fresh random 32-byte key
(NaCl SecretBox: XSalsa20-Poly1305, random nonce prepended), and seals that key
to each validator (NaCl SealedBox to the Curve25519 form of the validator's
Ed25519 public key). The ciphertext goes to the blob store and its hash on chain;
each validator gets its 80-byte sealed key (32-byte key + 48 bytes of SealedBox).
A trainer, holding no validator's secret, sees only ciphertext.

A validator opens its sealed key with the Curve25519 form of its Ed25519 secret
key, derived from the `Keypair`'s seed. A new validator joining later needs the
creator (or any validator) to seal the key to it: the key itself never goes on
chain.
"""

from __future__ import annotations

from collections.abc import Iterable

import nacl.bindings
import nacl.exceptions
import nacl.utils
import torch
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox

from consensus.useful_work.errors import HeldOutError, TensorFormatError
from consensus.useful_work.tensors import decode_tensors, encode_tensors
from runtime.crypto import Keypair

HELD_OUT_NAMES = ("features", "labels")
MAX_HELD_OUT_BYTES = 256 << 20


def encrypt_held_out(features: torch.Tensor, labels: torch.Tensor,
                     validator_publics: Iterable[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """(ciphertext, {validator Ed25519 public key: sealed key}) for the held-out set."""
    plaintext = held_out_plaintext(features, labels)
    key = nacl.utils.random(SecretBox.KEY_SIZE)
    ciphertext = bytes(SecretBox(key).encrypt(plaintext))
    sealed = {}
    for public in validator_publics:
        try:
            curve_public = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(bytes(public))
        except (nacl.exceptions.CryptoError, TypeError, ValueError):
            raise HeldOutError(f"0x{bytes(public).hex()} is not a valid Ed25519 public key; seal the key only "
                               f"to validators' public keys", code="held_out_bad_public_key") from None
        sealed[bytes(public)] = SealedBox(PublicKey(curve_public)).encrypt(key)
    return ciphertext, sealed


def held_out_plaintext(features: torch.Tensor, labels: torch.Tensor) -> bytes:
    """The tensor blob that is encrypted; its hash is what a creator declares on chain
    (held_out_keys.declare_held_out_plaintext), so no key opens the ciphertext to other data."""
    return encode_tensors({"features": features.to(torch.float32).contiguous(),
                           "labels": labels.to(torch.int64).contiguous()})


def open_held_out(ciphertext: bytes, sealed_key: bytes, keypair: Keypair, *,
                  max_bytes: int = MAX_HELD_OUT_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of an encrypted held-out set, with the key sealed to `keypair`."""
    _, secret_key = nacl.bindings.crypto_sign_seed_keypair(keypair.seed)
    curve_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret_key)
    try:
        key = SealedBox(PrivateKey(curve_secret)).decrypt(sealed_key)
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        raise HeldOutError(f"the sealed key was not sealed to validator 0x{keypair.public.hex()}; ask the task "
                           f"creator to seal the held-out key to this validator", code="held_out_not_sealed_to_us"
                           ) from None
    if len(ciphertext) > max_bytes + SecretBox.NONCE_SIZE + SecretBox.MACBYTES:
        raise HeldOutError(f"held-out ciphertext of {len(ciphertext)} bytes exceeds {max_bytes}",
                           code="held_out_too_large")
    try:
        plaintext = SecretBox(key).decrypt(ciphertext)
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        raise HeldOutError("the held-out ciphertext does not decrypt with its sealed key: it is corrupt or "
                           "belongs to another task; fetch the blob again by its hash",
                           code="held_out_corrupt") from None
    try:
        tensors = decode_tensors(plaintext, max_bytes=max_bytes, max_tensors=len(HELD_OUT_NAMES),
                                 max_elements=max_bytes // 4)
    except TensorFormatError as error:
        raise HeldOutError(f"the held-out set is not a valid tensor blob ({error.code}: {error})",
                           code="held_out_malformed") from None
    features, labels = tensors.get("features"), tensors.get("labels")
    if (features is None or labels is None or features.dtype != torch.float32 or features.dim() != 2
            or labels.dtype != torch.int64 or labels.dim() != 1 or labels.shape[0] != features.shape[0]):
        raise HeldOutError("the held-out set must hold features float32 [n, d] and labels int64 [n]",
                           code="held_out_malformed")
    return features, labels
