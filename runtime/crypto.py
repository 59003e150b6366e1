"""Keys, signatures and addresses.

- Signatures are Ed25519 (pynacl, i.e. libsodium): 32-byte public keys, 64-byte
  detached signatures. `verify` never raises: junk of any length is just invalid.
- An address is SS58 as Substrate defines it: base58(prefix ++ public ++ checksum),
  checksum = blake2b-512(b"SS58PRE" ++ prefix ++ public)[:2]; the network prefix
  (from genesis) is one byte below 64 and Substrate's two-byte form up to 16383.
- Secret URIs as Substrate spells them: "<mnemonic>[//hard...][///password]",
  "//Alice" (the public DEV_PHRASE + "//Alice"), or "0x<64 hex seed>[//hard...]".
  A BIP-39 mnemonic gives its standard PBKDF2 seed; the first 32 bytes are the
  Ed25519 seed. A hard junction derives blake2b-256(b"Ed25519HDKD" ++ seed ++ j),
  where j is the junction's UTF-8 text, or its 8-byte little-endian form when it
  is a decimal number. Ed25519 has no soft derivation, so "/x" is refused.
  These are not Substrate's sr25519 dev keys: the addresses differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from hashlib import blake2b

import base58
import nacl.bindings
import nacl.exceptions
import nacl.signing
from mnemonic import Mnemonic

from runtime.errors import GradchainError
from runtime.hashing import blake2b_256

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
SEED_LENGTH = 32
# Public and insecure: anyone can derive the dev accounts from it. Never hold value with it.
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ACCOUNT_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
MNEMONIC_WORD_COUNTS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}

_MNEMONIC = Mnemonic("english")
_JUNCTION = re.compile(r"//?[^/]+")


class CryptoError(GradchainError):
    code = "crypto"


class AddressError(CryptoError):
    code = "bad_address"


class KeyDerivationError(CryptoError):
    code = "bad_key_uri"


@dataclass(frozen=True)
class Keypair:
    seed: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> "Keypair":
        if len(seed) != SEED_LENGTH:
            raise KeyDerivationError(f"a seed is {SEED_LENGTH} bytes, got {len(seed)}")
        signing_key = nacl.signing.SigningKey(seed)
        keypair = cls(bytes(seed), bytes(signing_key.verify_key))
        object.__setattr__(keypair, "_signing_key", signing_key)  # expanding the key costs more than signing
        return keypair

    def sign(self, message: bytes) -> bytes:
        signing_key = self.__dict__.get("_signing_key") or nacl.signing.SigningKey(self.seed)
        return signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"Keypair(public=0x{self.public.hex()})"

    __str__ = __repr__


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError, TypeError):
        return False
    return True


# --- secret URIs ------------------------------------------------------------------


def _derive_hard(seed: bytes, junction: str) -> bytes:
    if junction.isdigit():
        encoded = int(junction).to_bytes(8, "little") if int(junction) < 2**64 else junction.encode()
    else:
        encoded = junction.encode()
    return blake2b_256(b"Ed25519HDKD" + seed + encoded)


def keypair_from_uri(uri: str) -> Keypair:
    if not isinstance(uri, str) or not uri.strip():
        raise KeyDerivationError("empty secret URI")
    uri = uri.strip()
    password = ""
    if "///" in uri:
        uri, password = uri.split("///", 1)
    split = uri.find("/")
    phrase, path = (uri, "") if split < 0 else (uri[:split], uri[split:])
    if phrase == "":
        phrase = DEV_PHRASE
    if phrase.startswith("0x"):
        try:
            seed = bytes.fromhex(phrase[2:])
        except ValueError:
            raise KeyDerivationError("a 0x seed must be 64 hex characters") from None
        if len(seed) != SEED_LENGTH:
            raise KeyDerivationError("a 0x seed must be 64 hex characters")
    else:
        words = phrase.split()
        if not _MNEMONIC.check(" ".join(words)):
            unknown = [w for w in words if w not in _MNEMONIC.wordlist]
            problem = f"unknown word {unknown[0]!r}" if unknown else "bad checksum or word count"
            raise KeyDerivationError(f"invalid mnemonic: {problem}")
        seed = Mnemonic.to_seed(" ".join(words), password)[:SEED_LENGTH]
    position = 0
    for match in _JUNCTION.finditer(path):
        if match.start() != position:
            break
        part = match.group()
        if not part.startswith("//"):
            raise KeyDerivationError(f"soft junction {part!r}: Ed25519 keys derive only hard junctions ('//')")
        seed = _derive_hard(seed, part[2:])
        position = match.end()
    if position != len(path):
        raise KeyDerivationError(f"cannot parse derivation path {path!r}")
    return Keypair.from_seed(seed)


def dev_keypair(name: str) -> Keypair:
    return keypair_from_uri("//" + name.capitalize())


def generate_mnemonic(words: int = 12) -> str:
    if words not in MNEMONIC_WORD_COUNTS:
        raise KeyDerivationError(f"a mnemonic has 12, 15, 18, 21 or 24 words, not {words}")
    return _MNEMONIC.generate(MNEMONIC_WORD_COUNTS[words])


def is_valid_mnemonic(phrase: str) -> bool:
    try:
        return _MNEMONIC.check(phrase)
    except (ValueError, LookupError):
        return False


# --- SS58 addresses -------------------------------------------------------------


def _prefix_bytes(prefix: int) -> bytes:
    if 0 <= prefix < 64:
        return bytes((prefix,))
    if 64 <= prefix < 16384:
        first = ((prefix & 0b0000_0000_1111_1100) >> 2) | 0b0100_0000
        second = (prefix >> 8) | ((prefix & 0b0000_0000_0000_0011) << 6)
        return bytes((first, second))
    raise AddressError(f"network prefix {prefix} is outside 0..16383")


def _checksum(payload: bytes) -> bytes:
    return blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]


def encode_address(public: bytes, prefix: int) -> str:
    if len(public) != PUBLIC_KEY_LENGTH:
        raise AddressError(f"a public key is {PUBLIC_KEY_LENGTH} bytes, got {len(public)}")
    payload = _prefix_bytes(prefix) + public
    return base58.b58encode(payload + _checksum(payload)).decode()


def decode_address(address: str, prefix: int | None = None) -> bytes:
    try:
        raw = base58.b58decode(address.encode("ascii"))
    except (ValueError, UnicodeEncodeError, AttributeError):
        raise AddressError(f"{address!r} is not base58") from None
    if len(raw) == 1 + PUBLIC_KEY_LENGTH + 2 and raw[0] < 64:
        found, prefix_length = raw[0], 1
    elif len(raw) == 2 + PUBLIC_KEY_LENGTH + 2 and 64 <= raw[0] < 128:
        lower = ((raw[0] & 0b0011_1111) << 2) | (raw[1] >> 6)
        found, prefix_length = lower | ((raw[1] & 0b0011_1111) << 8), 2
    else:
        raise AddressError(f"{address!r} has the wrong length for an account address")
    payload, checksum = raw[:-2], raw[-2:]
    if _checksum(payload) != checksum:
        raise AddressError(f"{address!r} has a bad checksum (a typo?)")
    if _prefix_bytes(found) != raw[:prefix_length]:
        raise AddressError(f"{address!r} does not use the canonical prefix encoding")
    if prefix is not None and found != prefix:
        raise AddressError(f"{address!r} is for network prefix {found}, this chain uses {prefix}")
    return payload[prefix_length:]


def parse_account(text: str, prefix: int) -> bytes:
    """An SS58 address, a 0x public key, or a dev URI like //Alice -> 32-byte public key."""
    text = text.strip()
    if text.startswith("//"):
        try:
            return keypair_from_uri(text).public
        except KeyDerivationError as exc:
            raise AddressError(exc.message) from None
    if text.startswith("0x"):
        try:
            public = bytes.fromhex(text[2:])
        except ValueError:
            raise AddressError(f"{text!r} is not hex") from None
        if len(public) != PUBLIC_KEY_LENGTH:
            raise AddressError(f"a public key is {PUBLIC_KEY_LENGTH} bytes, got {len(public)}")
        return public
    return decode_address(text, prefix)
