"""Keys, signatures and addresses.

Signatures
    Ed25519 through pynacl (libsodium): 32-byte public keys, 64-byte detached
    signatures. Validity is libsodium's strict rule set, and every node must apply
    the same one: S must be canonical (so a signature cannot be malleated into a
    second valid one), the public key and R must be canonical points of large order,
    and the equation is the cofactorless one. `verify` never raises: junk of any
    length or type is simply not a valid signature.

Addresses
    An address is Substrate's SS58 text for a 32-byte public key on one network:
    ``base58(prefix ++ public ++ checksum)`` with
    ``checksum = blake2b-512(b"SS58PRE" ++ prefix ++ public)[:2]``. The network
    prefix (from genesis) is one byte when below 64, else Substrate's two-byte form
    (up to 16383, bit layout at `_encode_prefix`). The same key has a different
    address on every network; a mistyped character fails the checksum with
    probability 1 - 2**-16.

Secret URIs (Substrate's syntax)
    ``<mnemonic>[//junction...][///password]``, ``//Alice`` (= ``DEV_PHRASE//Alice``),
    ``0x<64 hex>[//junction...]`` (a raw seed). A BIP-39 mnemonic gives its
    standard seed (PBKDF2-HMAC-SHA512, 2048 rounds, salt "mnemonic" + password);
    its first 32 bytes are the Ed25519 seed. Each hard junction ``//j`` derives
    ``child = blake2b-256(b"Ed25519HDKD" ++ parent_seed ++ j_bytes)``, where
    ``j_bytes`` is 0x01 ++ the junction's UTF-8 text, or, when it is a decimal number
    below 2**64 (ASCII digits), 0x00 ++ its 8-byte little-endian form (the type byte
    keeps ``//abcdefgh`` and the number with the same 8 bytes apart): ``//7`` and ``//007`` are the
    same key (as in Substrate), ``//18446744073709551616`` is text. Ed25519 has no
    soft derivation, so ``/j`` is refused.

These keys are NOT Substrate's: Substrate's dev accounts are sr25519, and even its
ed25519 keys derive from the mnemonic's entropy (not the BIP-39 seed) with
SCALE-encoded chain codes. The same ``//Alice`` gives a different key and address here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b

import base58
import nacl.bindings
import nacl.exceptions
import nacl.utils
from mnemonic import Mnemonic

from runtime.errors import GradchainError
from runtime.hashing import blake2b_256

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
SEED_LENGTH = 32

# Substrate's well-known development phrase. PUBLIC AND INSECURE: anyone can derive
# every dev account from it. Never hold value with a key derived from it.
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ACCOUNT_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")

MNEMONIC_WORD_COUNTS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}  # words -> bits of entropy
HDKD_DOMAIN = b"Ed25519HDKD"
SS58_CHECKSUM_DOMAIN = b"SS58PRE"
SS58_CHECKSUM_LENGTH = 2
MAX_SS58_PREFIX = 16383

_MNEMONIC = Mnemonic("english")
_WORDS = frozenset(_MNEMONIC.wordlist)
_DEV_WORDS = DEV_PHRASE.split()
_PATH = re.compile(r"(?://?[^/]+)*")
_JUNCTION = re.compile(r"(//?)([^/]+)")
_DECIMAL = re.compile(r"[0-9]+")
_HEX_32 = re.compile(r"[0-9a-fA-F]{64}")
_BASE58_ALPHABET = frozenset(base58.BITCOIN_ALPHABET.decode())
_MAX_ADDRESS_CHARS = 64  # real ones have at most 49; bounds the quadratic base58 decode of hostile input


class CryptoError(GradchainError):
    """A key, signature or address that cannot be used."""

    code = "crypto"


class AddressError(CryptoError):
    """Text that is not a valid account address (or public key) for this network."""

    code = "bad_address"


class KeyDerivationError(CryptoError):
    """A secret URI, mnemonic, seed or derivation path that cannot be used."""

    code = "bad_key_uri"


# --- keys and signatures ------------------------------------------------------------


@dataclass(frozen=True)
class Keypair:
    """An Ed25519 key pair. `seed` is the secret; repr and str show only the public key."""

    seed: bytes = field(repr=False)
    public: bytes
    # libsodium's expanded signing key (seed ++ public), kept so sign() skips the expansion.
    _secret_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_LENGTH:
            raise KeyDerivationError(f"an Ed25519 seed is {SEED_LENGTH} bytes, got {_describe(self.seed)}")
        public, secret_key = nacl.bindings.crypto_sign_seed_keypair(self.seed)
        if not isinstance(self.public, bytes) or public != self.public:
            raise CryptoError("the public key does not belong to the seed; build keypairs with Keypair.from_seed")
        object.__setattr__(self, "_secret_key", secret_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_LENGTH:
            raise KeyDerivationError(f"an Ed25519 seed is {SEED_LENGTH} bytes, got {_describe(seed)}")
        public, _ = nacl.bindings.crypto_sign_seed_keypair(bytes(seed))
        return cls(bytes(seed), public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of `message`."""
        return nacl.bindings.crypto_sign(_to_bytes(message), self._secret_key)[:SIGNATURE_LENGTH]

    def __repr__(self) -> str:
        return f"Keypair(public=0x{self.public.hex()})"

    __str__ = __repr__


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `public`'s Ed25519 signature of `message`. Never raises."""
    try:
        if len(public) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
            return False
        # pynacl binds no verify_detached; crypto_sign_open(signature ++ message) runs the
        # same libsodium check and measured as fast (the curve arithmetic is ~60 us).
        nacl.bindings.crypto_sign_open(_to_bytes(signature) + _to_bytes(message), _to_bytes(public))
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        return False
    return True


def _to_bytes(value: bytes) -> bytes:
    # memoryview refuses int and str, where bytes() would turn 5 into five zero bytes.
    return value if type(value) is bytes else memoryview(value).tobytes()


# --- secret URIs --------------------------------------------------------------------


def keypair_from_uri(uri: str) -> Keypair:
    """The keypair of a secret URI: "<mnemonic>[//hard...][///password]", "//Alice", "0x<seed>[//hard...]"."""
    if not isinstance(uri, str) or not uri.strip():
        raise KeyDerivationError("empty secret URI; give a mnemonic, //Name for a dev account, or 0x and a 64-hex seed")
    text = uri.strip()
    body, password = text.split("///", 1) if "///" in text else (text, None)
    slash = body.find("/")
    phrase, path = (body, "") if slash < 0 else (body[:slash].strip(), body[slash:])
    if phrase.startswith("0x"):
        if password is not None:
            raise KeyDerivationError("a password ('///...') applies to a mnemonic, not to a 0x seed")
        seed = _seed_from_hex(phrase)
    else:
        seed = _seed_from_mnemonic(phrase or DEV_PHRASE, password or "")
    for junction in _hard_junctions(path):
        seed = _derive_hard(seed, junction)
    return Keypair.from_seed(seed)


def dev_keypair(name: str) -> Keypair:
    """A development account: "alice" or "Alice" -> keypair_from_uri("//Alice"). Public and insecure."""
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise KeyDerivationError(f"a dev account name is one word like 'Alice', got {name!r}")
    return keypair_from_uri("//" + name.capitalize())


def generate_mnemonic(words: int = 12) -> str:
    """A new random BIP-39 English mnemonic (OS randomness; never called by block execution)."""
    if type(words) is not int or words not in MNEMONIC_WORD_COUNTS:
        raise KeyDerivationError(f"a mnemonic has 12, 15, 18, 21 or 24 words, not {words!r}")
    return _MNEMONIC.to_mnemonic(nacl.utils.random(MNEMONIC_WORD_COUNTS[words] // 8))


def is_valid_mnemonic(phrase: str) -> bool:
    """Whether `phrase` is a BIP-39 English mnemonic that keypair_from_uri accepts (any whitespace)."""
    return isinstance(phrase, str) and _mnemonic_problem(phrase.split()) is None


def _mnemonic_problem(words: list[str]) -> str | None:
    for word in words:
        if word not in _WORDS:
            if word.lower() in _WORDS:
                return f"unknown word {word!r} (mnemonic words are lower case)"
            if word.capitalize() in DEV_ACCOUNT_NAMES and len(words) == 1:
                return f"unknown word {word!r} (for the dev account write '//{word.capitalize()}')"
            return f"unknown word {word!r} (not in the BIP-39 English word list)"
    if len(words) not in MNEMONIC_WORD_COUNTS:
        return f"{len(words)} words; a mnemonic has 12, 15, 18, 21 or 24"
    if not _MNEMONIC.check(" ".join(words)):
        return "bad checksum (a word is wrong or out of order)"
    return None


def _seed_from_mnemonic(phrase: str, password: str) -> bytes:
    words = phrase.split()
    if password == "" and words == _DEV_WORDS:
        return _dev_phrase_seed()
    problem = _mnemonic_problem(words)
    if problem is not None:
        raise KeyDerivationError(f"invalid mnemonic: {problem}")
    return Mnemonic.to_seed(" ".join(words), password)[:SEED_LENGTH]


@lru_cache(maxsize=1)
def _dev_phrase_seed() -> bytes:
    # PBKDF2 costs ~2.5 ms and tests derive dev accounts constantly; this seed is public anyway.
    return Mnemonic.to_seed(DEV_PHRASE, "")[:SEED_LENGTH]


def _seed_from_hex(text: str) -> bytes:
    digits = text[2:]
    if not _HEX_32.fullmatch(digits):
        # Never echo the text: it is a secret.
        kind = "hex" if all(c in "0123456789abcdefABCDEF" for c in digits) else "characters, not all hex"
        raise KeyDerivationError(f"a 0x seed is 64 hex characters after '0x', got {len(digits)} {kind}")
    return bytes.fromhex(digits)


def _hard_junctions(path: str) -> list[str]:
    if not _PATH.fullmatch(path):
        raise KeyDerivationError(f"bad derivation path {path!r}: write each junction as '//name' "
                                 "(no empty junctions, no trailing '/')")
    junctions = []
    for slashes, name in _JUNCTION.findall(path):
        if slashes == "/":
            raise KeyDerivationError(f"soft junction '/{name}' in {path!r}: Ed25519 keys have no soft "
                                     f"derivation; use a hard junction '//{name}'")
        junctions.append(name)
    return junctions


def _derive_hard(seed: bytes, junction: str) -> bytes:
    # A type byte keeps a number junction and an 8-byte text junction apart.
    if _DECIMAL.fullmatch(junction) and int(junction) < 2**64:
        junction_bytes = b"\x00" + int(junction).to_bytes(8, "little")
    else:
        try:
            junction_bytes = b"\x01" + junction.encode("utf-8")
        except UnicodeEncodeError:
            raise KeyDerivationError(f"junction {junction!r} is not valid text") from None
    return blake2b_256(HDKD_DOMAIN + seed + junction_bytes)


# --- SS58 addresses -----------------------------------------------------------------


def encode_address(public: bytes, prefix: int) -> str:
    """The SS58 address of a 32-byte public key on the network with this prefix."""
    if not isinstance(public, (bytes, bytearray)) or len(public) != PUBLIC_KEY_LENGTH:
        raise AddressError(f"a public key is {PUBLIC_KEY_LENGTH} bytes, got {_describe(public)}")
    payload = _encode_prefix(prefix) + bytes(public)
    return base58.b58encode(payload + _checksum(payload)).decode("ascii")


def decode_address(address: str, prefix: int | None = None) -> bytes:
    """The public key in an SS58 address; with `prefix`, the address must be for that network."""
    if prefix is not None:
        _encode_prefix(prefix)  # validates the expected prefix itself
    found, public = decode_address_with_prefix(address)
    if prefix is not None and found != prefix:
        raise AddressError(f"{_quote(address)} is for network prefix {found}, this chain uses {prefix}")
    return public


def decode_address_with_prefix(address: str) -> tuple[int, bytes]:
    """(network prefix, public key) of an SS58 address, whatever its network."""
    if not isinstance(address, str) or not address:
        raise AddressError(f"an address is a non-empty string, got {address!r}")
    bad = next((c for c in address if c not in _BASE58_ALPHABET), None)
    if bad is not None:
        raise AddressError(f"{_quote(address)} is not base58: {bad!r} is not a base58 character "
                           "(base58 has no 0, O, I, l, spaces or punctuation)")
    if len(address) > _MAX_ADDRESS_CHARS:
        raise AddressError(f"an address is at most 49 characters, got {len(address)}")
    raw = base58.b58decode(address)
    one_byte, two_byte = (n + PUBLIC_KEY_LENGTH + SS58_CHECKSUM_LENGTH for n in (1, 2))
    if len(raw) not in (one_byte, two_byte):
        raise AddressError(f"{_quote(address)} has the wrong length: it decodes to {len(raw)} bytes, an account "
                           f"address is {one_byte} or {two_byte} (a character missing or extra?)")
    if raw[0] >= 128:
        raise AddressError(f"{_quote(address)} starts with byte {raw[0]}, which is not an SS58 prefix "
                           "(bytes 128..255 are reserved)")
    prefix_length, expected = (1, one_byte) if raw[0] < 64 else (2, two_byte)
    if len(raw) != expected:
        raise AddressError(f"{_quote(address)} has the wrong length: it decodes to {len(raw)} bytes, an account "
                           f"address with a {prefix_length}-byte prefix is {expected}")
    payload, checksum = raw[:-SS58_CHECKSUM_LENGTH], raw[-SS58_CHECKSUM_LENGTH:]
    if _checksum(payload) != checksum:
        raise AddressError(f"{_quote(address)} has a bad checksum (a mistyped character?)")
    prefix = _decode_prefix(payload[:prefix_length])
    if prefix_length == 2 and prefix < 64:
        raise AddressError(f"{_quote(address)} writes prefix {prefix} in the two-byte form; "
                           "SS58 writes prefixes below 64 in one byte")
    return prefix, payload[prefix_length:]


def parse_account(text: str, prefix: int) -> bytes:
    """A 32-byte account id from an SS58 address, a 0x public key, or a dev account ("//Alice", "alice")."""
    if not isinstance(text, str) or not text.strip():
        raise AddressError("empty account; give an SS58 address, 0x and a 64-hex public key, or //Alice")
    text = text.strip()
    if text.startswith("//"):
        try:
            return keypair_from_uri(text).public
        except KeyDerivationError as exc:
            raise AddressError(f"{_quote(text)}: {exc.message}") from None
    if text.capitalize() in DEV_ACCOUNT_NAMES:
        return dev_keypair(text).public
    if text[:2] in ("0x", "0X"):
        if "/" in text:
            raise AddressError("that is a secret seed URI, not an account; give the account's address or public key")
        if not _HEX_32.fullmatch(text[2:]):
            raise AddressError(f"{_quote(text)} is not a public key: expected 0x and 64 hex characters")
        return bytes.fromhex(text[2:])
    if len(text.split()) > 1:
        raise AddressError("that looks like a secret phrase, not an account; give the account's address instead")
    if any(c not in _BASE58_ALPHABET for c in text):
        raise AddressError(f"{_quote(text)} is not an account: expected an SS58 address, 0x and a 64-hex public "
                           f"key, or a dev account ({', '.join(DEV_ACCOUNT_NAMES)}, or a URI like //Alice)")
    return decode_address(text, prefix)


def _encode_prefix(prefix: int) -> bytes:
    if not isinstance(prefix, int) or isinstance(prefix, bool) or not 0 <= prefix <= MAX_SS58_PREFIX:
        raise AddressError(f"network prefix {prefix!r} is outside 0..{MAX_SS58_PREFIX}")
    if prefix < 64:
        return bytes((prefix,))
    # Substrate's two-byte form: the prefix as a little-endian u16 [low, high] (high < 64)
    # is written as the bits 01aaaaaa bbcccccc, where low = aaaaaabb and high = 00cccccc.
    low, high = prefix & 0xFF, prefix >> 8
    return bytes((0b0100_0000 | (low >> 2), ((low & 0b11) << 6) | high))


def _decode_prefix(prefix_bytes: bytes) -> int:
    if len(prefix_bytes) == 1:
        return prefix_bytes[0]
    first, second = prefix_bytes
    low = ((first & 0b0011_1111) << 2) | (second >> 6)
    return low | ((second & 0b0011_1111) << 8)


def _checksum(payload: bytes) -> bytes:
    return blake2b(SS58_CHECKSUM_DOMAIN + payload, digest_size=64).digest()[:SS58_CHECKSUM_LENGTH]


def _quote(text: str) -> str:
    return repr(text) if len(text) <= 64 else repr(text[:61] + "...")


def _describe(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__


__all__ = [
    "PUBLIC_KEY_LENGTH", "SIGNATURE_LENGTH", "SEED_LENGTH", "DEV_PHRASE", "DEV_ACCOUNT_NAMES", "MAX_SS58_PREFIX",
    "CryptoError", "AddressError", "KeyDerivationError", "Keypair", "verify", "keypair_from_uri", "dev_keypair",
    "generate_mnemonic", "is_valid_mnemonic", "encode_address", "decode_address", "decode_address_with_prefix",
    "parse_account",
]
