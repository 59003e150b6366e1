"""Signed blob uploads: what an uploader signs so a node can count the upload against its account.

A node admits an upload the chain does not refer to yet only from an account it can
weigh (its balance on chain) and within that account's quota (node/blob_admission.py).
The uploader proves the account by signing blake2b-256 of a domain tag, the chain's
genesis hash and the blob's hash: a signature for one chain is worthless on another, and
replaying it can only upload the same blob again.
"""

from __future__ import annotations

from runtime.hashing import blake2b_256

UPLOAD_DOMAIN = b"gradchain/blob-upload/v1"
ACCOUNT_HEADER = "X-Gradchain-Account"      # 0x and the uploader's 32-byte public key
SIGNATURE_HEADER = "X-Gradchain-Signature"  # 0x and its 64-byte signature of upload_message


def upload_message(genesis_hash: bytes, blob_hash: bytes) -> bytes:
    """The 32 bytes an uploader signs for one blob on one chain."""
    return blake2b_256(UPLOAD_DOMAIN + genesis_hash + blob_hash)


__all__ = ["UPLOAD_DOMAIN", "ACCOUNT_HEADER", "SIGNATURE_HEADER", "upload_message"]
