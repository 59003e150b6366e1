"""runtime.crypto as a specification: Ed25519 signatures, secret URIs, SS58 addresses."""

from __future__ import annotations

import copy
import hashlib
import pickle

import base58
import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings, strategies as st
from mnemonic import Mnemonic

from runtime import crypto
from runtime.crypto import AddressError, KeyDerivationError

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
# Pinned: a change of DEV_PHRASE, the mnemonic seed or the HDKD scheme moves every dev account.
ALICE_PUBLIC_HEX = "518a7f608b55418da896709bb9ca403e1ec1fb90671088b7a0ecefa1298bc5d9"
ALICE = crypto.dev_keypair("Alice")

seeds = st.binary(min_size=32, max_size=32)
publics = st.binary(min_size=32, max_size=32)
prefixes = st.one_of(st.sampled_from([0, 1, 42, 63, 64, 255, 256, 16383]), st.integers(0, crypto.MAX_SS58_PREFIX))


def reference_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """The slow, obvious twin of crypto.verify: pynacl's high-level API."""
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def reference_address(prefix_bytes: bytes, public: bytes) -> str:
    """SS58 written out from its definition, with the prefix bytes given by hand."""
    payload = prefix_bytes + public
    checksum = hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]
    return base58.b58encode(payload + checksum).decode()


def flip_bit(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    return data[:bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1:]


# --- signatures ---------------------------------------------------------------------


@given(seeds, st.binary(max_size=200))
@settings(max_examples=50)
def test_a_signature_verifies_for_its_key_and_message(seed, message):
    keypair = crypto.Keypair.from_seed(seed)
    signature = keypair.sign(message)
    assert len(signature) == crypto.SIGNATURE_LENGTH
    assert crypto.verify(keypair.public, message, signature) is True


@given(seeds, st.binary(min_size=1, max_size=64), st.integers(0, 2**16), st.sampled_from(["message", "signature",
                                                                                          "key"]))
@settings(max_examples=150)
def test_a_tampered_message_signature_or_key_does_not_verify(seed, message, bit, what):
    keypair = crypto.Keypair.from_seed(seed)
    public, signature = keypair.public, keypair.sign(message)
    if what == "message":
        message = flip_bit(message, bit)
    elif what == "signature":
        signature = flip_bit(signature, bit)
    else:
        public = flip_bit(public, bit)
    assert crypto.verify(public, message, signature) is False


@given(seeds, st.binary(max_size=64), st.integers(0, 511), st.booleans())
@settings(max_examples=150)
def test_verify_agrees_with_the_reference_verifier(seed, message, bit, tamper):
    keypair = crypto.Keypair.from_seed(seed)
    signature = keypair.sign(message)
    if tamper:
        signature = flip_bit(signature, bit)
    assert crypto.verify(keypair.public, message, signature) == reference_verify(keypair.public, message, signature)


@pytest.mark.parametrize("secret,public,message,signature", [
    # RFC 8032, section 7.1, tests 1-3: our keys and signatures are standard Ed25519.
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),  # noqa: E501
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),  # noqa: E501
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),  # noqa: E501
])
def test_keys_and_signatures_match_rfc8032_vectors(secret, public, message, signature):
    keypair = crypto.Keypair.from_seed(bytes.fromhex(secret))
    assert keypair.public.hex() == public
    assert keypair.sign(bytes.fromhex(message)).hex() == signature
    assert crypto.verify(keypair.public, bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.parametrize("public,message,signature", [
    (b"", b"m", b""),
    (ALICE.public[:31], b"m", ALICE.sign(b"m")),
    (ALICE.public + b"\x00", b"m", ALICE.sign(b"m")),
    (ALICE.public, b"m", ALICE.sign(b"m")[:63]),
    (ALICE.public, b"m", ALICE.sign(b"m") + b"\x00"),
    (b"\xff" * 32, b"m", b"\xff" * 64),  # not a curve point
    (bytes(32), b"m", bytes(64)),
    (None, b"m", ALICE.sign(b"m")),
    (ALICE.public, None, ALICE.sign(b"m")),
    (ALICE.public, 1, ALICE.sign(b"m")),
    (ALICE.public.hex(), b"m", ALICE.sign(b"m")),
    (ALICE.public, "m", ALICE.sign(b"m")),
    (ALICE.public, b"m", ALICE.sign(b"m").hex()),
    (12345, b"m", 67890),
])
def test_verify_returns_false_and_never_raises_on_junk(public, message, signature):
    assert crypto.verify(public, message, signature) is False


def test_verify_accepts_bytes_like_inputs():
    signature = ALICE.sign(b"message")
    assert crypto.verify(bytearray(ALICE.public), memoryview(b"message"), bytearray(signature)) is True


def test_a_small_order_public_key_cannot_sign_for_everyone():
    # The identity point with R = identity and S = 0 satisfies the cofactorless equation for
    # every message; libsodium rejects small-order keys, so no such universal signature exists.
    identity = b"\x01" + bytes(31)
    assert crypto.verify(identity, b"any message at all", identity + bytes(32)) is False


def test_a_malleated_signature_with_non_canonical_s_is_rejected():
    signature = ALICE.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + ED25519_ORDER).to_bytes(32, "little")
    assert crypto.verify(ALICE.public, b"message", signature)
    assert crypto.verify(ALICE.public, b"message", malleated) is False


def test_keypair_repr_and_str_show_the_public_key_but_never_the_seed():
    for text in (repr(ALICE), str(ALICE), f"{ALICE}", repr([ALICE])):
        assert ALICE.seed.hex() not in text and ALICE.seed.hex().upper() not in text
        assert ALICE.public.hex() in text


def test_a_keypair_survives_pickling_and_copying():
    for copy_of_alice in (pickle.loads(pickle.dumps(ALICE)), copy.deepcopy(ALICE)):
        assert copy_of_alice == ALICE and copy_of_alice.sign(b"m") == ALICE.sign(b"m")


def test_a_keypair_must_hold_the_public_key_of_its_seed():
    assert crypto.Keypair(ALICE.seed, ALICE.public) == ALICE
    with pytest.raises(crypto.CryptoError, match="does not belong to the seed"):
        crypto.Keypair(ALICE.seed, crypto.dev_keypair("bob").public)
    with pytest.raises(KeyDerivationError, match="32 bytes, got 31 bytes"):
        crypto.Keypair.from_seed(bytes(31))


# --- secret URIs and dev accounts -----------------------------------------------------


def test_dev_keys_are_pinned_and_derive_by_the_documented_scheme():
    assert ALICE.public.hex() == ALICE_PUBLIC_HEX
    assert crypto.encode_address(ALICE.public, 42) == "5DucstVZXbTsbtPFYseviQXJ4Bj7mGXQHwY2AVp5aW5poq6m"
    # Written out: BIP-39 seed of DEV_PHRASE (empty password), first 32 bytes, then one hard junction.
    phrase_seed = Mnemonic.to_seed(crypto.DEV_PHRASE, "")[:32]
    alice_seed = hashlib.blake2b(b"Ed25519HDKD" + phrase_seed + b"\x01Alice", digest_size=32).digest()
    assert ALICE == crypto.Keypair.from_seed(alice_seed)
    assert crypto.keypair_from_uri(crypto.DEV_PHRASE + "//Alice") == ALICE
    assert crypto.keypair_from_uri("//Alice") == crypto.dev_keypair("alice") == crypto.dev_keypair("ALICE") == ALICE


def test_every_dev_account_is_distinct():
    keys = [crypto.dev_keypair(name).public for name in crypto.DEV_ACCOUNT_NAMES]
    assert len(set(keys)) == len(crypto.DEV_ACCOUNT_NAMES) == 6


def test_a_deeper_path_is_a_different_key():
    stash = crypto.keypair_from_uri("//Alice//stash")
    assert stash != ALICE
    assert stash.public != crypto.keypair_from_uri("//stash").public
    assert stash.public != crypto.keypair_from_uri("//stash//Alice").public
    assert stash == crypto.Keypair.from_seed(
        hashlib.blake2b(b"Ed25519HDKD" + ALICE.seed + b"\x01stash", digest_size=32).digest())


@pytest.mark.parametrize("junction,junction_bytes", [
    ("0", b"\x00" + (0).to_bytes(8, "little")),
    ("7", b"\x00" + (7).to_bytes(8, "little")),
    ("007", b"\x00" + (7).to_bytes(8, "little")),  # like Substrate: the number, not its spelling
    (str(2**64 - 1), b"\x00" + (2**64 - 1).to_bytes(8, "little")),
    (str(2**64), b"\x01" + str(2**64).encode()),  # too big for u64: text
    ("7a", b"\x01" + b"7a"),
    ("\u0661", b"\x01" + "\u0661".encode()),  # an Arabic-Indic digit is text, not a number
    ("stash", b"\x01" + b"stash"),
    ("ünïcode name", b"\x01" + "ünïcode name".encode()),
])
def test_a_hard_junction_hashes_its_type_byte_and_its_text_or_u64(junction, junction_bytes):
    seed = bytes(range(32))
    expected = hashlib.blake2b(b"Ed25519HDKD" + seed + junction_bytes, digest_size=32).digest()
    assert crypto.keypair_from_uri(f"0x{seed.hex()}//{junction}").seed == expected


def test_a_hex_seed_uri_is_the_raw_seed():
    seed = bytes(range(32))
    assert crypto.keypair_from_uri("0x" + seed.hex()) == crypto.Keypair.from_seed(seed)
    assert crypto.keypair_from_uri("0x" + seed.hex().upper()) == crypto.Keypair.from_seed(seed)


def test_a_mnemonic_gives_its_bip39_seed_and_a_password_changes_it():
    phrase = "abandon " * 11 + "about"
    # BIP-39's reference vector: this phrase with passphrase "TREZOR".
    assert crypto.keypair_from_uri(phrase + "///TREZOR").seed.hex() == \
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e5349553"
    assert crypto.keypair_from_uri(phrase).seed == Mnemonic.to_seed(phrase)[:32]
    assert crypto.keypair_from_uri(f"  {phrase.replace(' ', '   ')}  ") == crypto.keypair_from_uri(phrase)
    assert crypto.keypair_from_uri("//Alice///secret") != ALICE
    assert crypto.keypair_from_uri(f"{phrase}//x///pw").seed == hashlib.blake2b(
        b"Ed25519HDKD" + Mnemonic.to_seed(phrase, "pw")[:32] + b"\x01x", digest_size=32).digest()


@pytest.mark.parametrize("uri,reason", [
    ("//Alice/soft", "soft junction '/soft'.*no soft derivation"),
    ("/Alice", "soft junction"),
    ("//Alice//stash/x", "soft junction '/x'"),
    ("//", "bad derivation path"),
    ("//Alice//", "bad derivation path"),
    ("//Alice/", "bad derivation path"),
    ("", "empty secret URI"),
    ("   ", "empty secret URI"),
    ("0x1234", "64 hex characters after '0x', got 4 hex"),
    ("0x" + "zz" * 32, "got 64 characters, not all hex"),
    ("0x" + "00" * 32 + "///pw", "password .* applies to a mnemonic"),
    ("Alice", r"unknown word 'Alice' \(for the dev account write '//Alice'\)"),
    ("Bottom drive obey lake curtain smoke basket hold race lonely fit walk", "'Bottom'.*lower case"),
    (" ".join(crypto.DEV_PHRASE.split()[:-1] + ["notaword"]), "unknown word 'notaword'"),
    (" ".join(crypto.DEV_PHRASE.split()[:-1] + ["abandon"]), "invalid mnemonic: bad checksum"),
    (" ".join(crypto.DEV_PHRASE.split()[:11]), "11 words; a mnemonic has 12, 15, 18, 21 or 24"),
])
def test_a_bad_secret_uri_is_rejected_with_the_reason(uri, reason):
    with pytest.raises(KeyDerivationError, match=reason) as error:
        crypto.keypair_from_uri(uri)
    assert error.value.code == "bad_key_uri"


def test_a_bad_seed_is_not_echoed_in_the_error():
    secret = "0x" + "ab" * 31 + "zz"
    with pytest.raises(KeyDerivationError) as error:
        crypto.keypair_from_uri(secret)
    assert "abab" not in error.value.message


@pytest.mark.parametrize("words", [12, 15, 18, 21, 24])
def test_generated_mnemonics_are_valid_and_derive_keys(words):
    phrases = {crypto.generate_mnemonic(words) for _ in range(3)}
    assert len(phrases) == 3
    for phrase in phrases:
        assert len(phrase.split()) == words and crypto.is_valid_mnemonic(phrase)
        assert crypto.keypair_from_uri(phrase) == crypto.keypair_from_uri(phrase)


@pytest.mark.parametrize("words", [0, 11, 13, 25, "12", True, 12.0])
def test_a_mnemonic_length_that_bip39_lacks_is_refused(words):
    with pytest.raises(KeyDerivationError, match="12, 15, 18, 21 or 24 words"):
        crypto.generate_mnemonic(words)


def test_is_valid_mnemonic_agrees_with_what_keypair_from_uri_accepts():
    assert crypto.is_valid_mnemonic(crypto.DEV_PHRASE)
    assert crypto.is_valid_mnemonic("  " + crypto.DEV_PHRASE.replace(" ", "\n") + " ")
    assert not crypto.is_valid_mnemonic(" ".join(crypto.DEV_PHRASE.split()[:-1] + ["abandon"]))
    assert not crypto.is_valid_mnemonic(crypto.DEV_PHRASE.upper())
    assert not crypto.is_valid_mnemonic("")
    assert not crypto.is_valid_mnemonic(None)
    assert not crypto.is_valid_mnemonic(b"abandon")


# --- SS58 addresses ---------------------------------------------------------------------


@pytest.mark.parametrize("public,prefix,address", [
    # Cross-checked against Substrate's subkey and polkadot-js (util-crypto address tests).
    ("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d", 42,
     "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
    ("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d", 0,
     "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"),
    ("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d", 2,
     "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"),
    ("3050f8456519829fe03302da802d22d3233a5f4037b9a3e2bcc403ccfcb2d735", 42,
     "5DA4D4GL5iakrn22h5uKoevgvo18Pqj5BcdEUv8etEDPdijA"),
    ("fc422da6c3bc6dfa2a436a506428072941662f816987baaa8914e02ff5947f4b", 252,
     "xw9Hca4RJTmBRgzJT4ieJBh7XCK9gE3NXBDSEmgGHd4TCrbnG"),
    ("66cd6cf085627d6c85af1aaf2bd10cf843033e929b4e3b1c2ba8e4aa46fe111b", 255,
     "yGF4JP7q5AK46d1FPCEm9sYQ4KooSjHMpyVAjLnsCSWVafPnf"),
    ("242fd5a078ac6b7c3c2531e9bcf1314343782aeb58e7bc6880794589e701db55", 255,
     "yGDYxQatQwuxqT39Zs4LtcTnpzE12vXb7ZJ6xpdiHv6gTu1hF"),
    ("88f01441682a17b52d6ae12d1a5670cf675fd254897efabaa5069eb3a701ab73", 14269,
     "r6Gr4gaMP8TsjhFbqvZhv3YvnasugLiRJpzpRHifsqqG18UXa"),
])
def test_addresses_match_substrate(public, prefix, address):
    assert crypto.encode_address(bytes.fromhex(public), prefix) == address
    assert crypto.decode_address_with_prefix(address) == (prefix, bytes.fromhex(public))
    assert crypto.decode_address(address, prefix) == crypto.decode_address(address) == bytes.fromhex(public)


@pytest.mark.parametrize("prefix,prefix_bytes", [
    (0, b"\x00"), (1, b"\x01"), (42, b"\x2a"), (63, b"\x3f"),  # one byte
    # Two bytes, 01aaaaaa bbcccccc for the little-endian u16 [aaaaaabb, 00cccccc]:
    (64, bytes([0b0101_0000, 0b0000_0000])),
    (65, bytes([0b0101_0000, 0b0100_0000])),
    (255, bytes([0b0111_1111, 0b1100_0000])),
    (256, bytes([0b0100_0000, 0b0000_0001])),
    (0x1234, bytes([0b0100_1101, 0b0001_0010])),
    (16382, bytes([0b0111_1111, 0b1011_1111])),
    (16383, bytes([0b0111_1111, 0b1111_1111])),
])
def test_prefix_bytes_follow_substrates_layout_in_both_directions(prefix, prefix_bytes):
    address = reference_address(prefix_bytes, ALICE.public)
    assert crypto.encode_address(ALICE.public, prefix) == address
    assert crypto.decode_address_with_prefix(address) == (prefix, ALICE.public)


def test_every_prefix_round_trips_to_itself():
    seen = set()
    for prefix in range(crypto.MAX_SS58_PREFIX + 1):
        address = crypto.encode_address(ALICE.public, prefix)
        assert crypto.decode_address_with_prefix(address) == (prefix, ALICE.public)
        seen.add(address)
    assert len(seen) == crypto.MAX_SS58_PREFIX + 1


@given(publics, prefixes)
@settings(max_examples=300)
def test_an_address_round_trips_for_any_key_and_prefix(public, prefix):
    address = crypto.encode_address(public, prefix)
    assert len(address) <= 49
    assert crypto.decode_address(address, prefix) == public


@pytest.mark.parametrize("prefix", [-1, crypto.MAX_SS58_PREFIX + 1, 2**16, True, "42", None])
def test_a_prefix_outside_0_to_16383_is_refused(prefix):
    with pytest.raises(AddressError, match="outside 0..16383"):
        crypto.encode_address(ALICE.public, prefix)


@pytest.mark.parametrize("public", [b"", bytes(31), bytes(33), "00" * 16, None])
def test_only_a_32_byte_public_key_has_an_address(public):
    with pytest.raises(AddressError, match="a public key is 32 bytes"):
        crypto.encode_address(public, 42)


def mutations(address: str):
    for position, original in enumerate(address):
        for replacement in BASE58:
            if replacement != original:
                yield address[:position] + replacement + address[position + 1:]


@pytest.mark.parametrize("prefix", [42, 0, 16383])
def test_every_single_character_change_of_alices_address_is_rejected(prefix):
    address = crypto.encode_address(ALICE.public, prefix)
    for changed in mutations(address):
        with pytest.raises(AddressError):
            crypto.decode_address(changed)


@given(publics, prefixes, st.data())
@settings(max_examples=200)
def test_a_changed_character_never_decodes_to_the_same_account(public, prefix, data):
    address = crypto.encode_address(public, prefix)
    position = data.draw(st.integers(0, len(address) - 1))
    replacement = data.draw(st.sampled_from(BASE58.replace(address[position], "")))
    changed = address[:position] + replacement + address[position + 1:]
    # The checksum is two bytes, as in Substrate: a change slips through with odds 2**-16,
    # and then it names another account or network, never the same one.
    try:
        decoded = crypto.decode_address_with_prefix(changed)
    except AddressError:
        return
    assert decoded != (prefix, public)


def test_a_wrong_network_prefix_error_names_both_prefixes():
    with pytest.raises(AddressError, match="is for network prefix 0, this chain uses 42"):
        crypto.decode_address(crypto.encode_address(ALICE.public, 0), 42)
    with pytest.raises(AddressError, match="is for network prefix 16383, this chain uses 64"):
        crypto.decode_address(crypto.encode_address(ALICE.public, 16383), 64)


@pytest.mark.parametrize("address,reason", [
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQ0", "not base58: '0'"),
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQl", "not base58: 'l'"),
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY ", "not base58: ' '"),
    ("", "non-empty string"),
    (None, "non-empty string"),
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQ", "decodes to 34 bytes, an account address is 35 or 36"),
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQYY", "wrong length: it decodes to 36 bytes.*1-byte prefix is 35"),
    ("y9EMHt34JJo4rWLSaxoLGdYXvjgSXEd4zHUnQgfNzwES8b", "wrong length"),
    ("5" * 65, "at most 49 characters, got 65"),
    ("5GoKvZWG5ZPYL1WUovuHW3zJBWBP5eT8CbqjdRY4Q6iMa9cj", "bad checksum"),
    ("5GoKvZWG5ZPYL1WUovuHW3zJBWBP5eT8CbqjdRY4Q6iMaDwU", "bad checksum"),
    (reference_address(b"\x80", bytes(32)), "byte 128, which is not an SS58 prefix"),
    (reference_address(b"\xff\xff", bytes(32)), "byte 255, which is not an SS58 prefix"),
    # 42 spelled in the two-byte form: Substrate never writes it, so one account has one address.
    (reference_address(bytes([0b0100_1010, 0b1000_0000]), bytes(32)), "prefix 42 in the two-byte form"),
])
def test_a_bad_address_is_rejected_saying_what_is_wrong(address, reason):
    with pytest.raises(AddressError, match=reason) as error:
        crypto.decode_address(address)
    assert error.value.code == "bad_address"


# --- accounts as people write them --------------------------------------------------------


def test_parse_account_takes_an_address_a_public_key_or_a_dev_account():
    spellings = [crypto.encode_address(ALICE.public, 42), "0x" + ALICE.public.hex(),
                 "0x" + ALICE.public.hex().upper(), "//Alice", "alice", "Alice", "  //Alice\n"]
    assert {crypto.parse_account(text, 42) for text in spellings} == {ALICE.public}
    assert crypto.parse_account("//Alice//stash", 42) == crypto.keypair_from_uri("//Alice//stash").public


@pytest.mark.parametrize("text,reason", [
    ("0x1234", "not a public key: expected 0x and 64 hex characters"),
    ("0x" + "zz" * 32, "not a public key"),
    ("0x" + "00" * 32 + "//Alice", "secret seed URI, not an account"),
    (crypto.DEV_PHRASE, "looks like a secret phrase"),
    ("//Alice/soft", "soft junction"),
    ("alcie", "expected an SS58 address, 0x and a 64-hex public key, or a dev account"),
    ("", "empty account"),
    (crypto.encode_address(ALICE.public, 0), "is for network prefix 0, this chain uses 42"),
])
def test_parse_account_rejects_what_is_not_an_account(text, reason):
    with pytest.raises(AddressError, match=reason):
        crypto.parse_account(text, 42)


def test_a_text_junction_never_derives_the_key_of_a_number_junction():
    text = "abcdefgh"
    number = str(int.from_bytes(text.encode(), "little"))
    assert crypto.keypair_from_uri("//" + text).public != crypto.keypair_from_uri("//" + number).public
