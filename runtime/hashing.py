"""The chain's one hash function: blake2b with a 256-bit digest."""

from hashlib import blake2b

HASH_LENGTH = 32
ZERO_HASH = bytes(HASH_LENGTH)


def blake2b_256(data: bytes) -> bytes:
    return blake2b(data, digest_size=32).digest()


def blake2b_128(data: bytes) -> bytes:
    return blake2b(data, digest_size=16).digest()
