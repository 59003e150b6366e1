"""Keys, signatures and SS58 addresses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from runtime import crypto

ALICE = crypto.dev_keypair("alice")


def test_sign_and_verify_round_trip_and_tampering_fails():
    signature = ALICE.sign(b"message")
    assert crypto.verify(ALICE.public, b"message", signature)
    assert not crypto.verify(ALICE.public, b"messagE", signature)
    assert not crypto.verify(crypto.dev_keypair("bob").public, b"message", signature)
    assert not crypto.verify(ALICE.public, b"message", signature[:-1] + bytes([signature[-1] ^ 1]))


@pytest.mark.parametrize("public,signature", [(b"", b""), (b"\x00" * 31, b"\x00" * 64), (b"\x01" * 32, b"\x00" * 63),
                                              (b"\xff" * 32, b"\xff" * 64)])
def test_verify_returns_false_on_junk(public, signature):
    assert crypto.verify(public, b"m", signature) is False


def test_dev_keys_are_stable_and_distinct():
    publics = {crypto.dev_keypair(n).public for n in crypto.DEV_ACCOUNT_NAMES}
    assert len(publics) == len(crypto.DEV_ACCOUNT_NAMES)
    # Pinned: a change of the derivation scheme would move every dev account.
    assert crypto.encode_address(ALICE.public, 42) == "5DucstVZXbTsbtPFYseviQXJ4Bj7mGXQHwY2AVp5aW5poq6m"
    assert crypto.keypair_from_uri("//Alice//stash").public != ALICE.public
    assert crypto.keypair_from_uri(crypto.DEV_PHRASE + "//Alice").public == ALICE.public


def test_keypair_repr_hides_the_seed():
    assert ALICE.seed.hex() not in repr(ALICE) and ALICE.seed.hex() not in str(ALICE)


@given(st.binary(min_size=32, max_size=32), st.one_of(st.integers(0, 63), st.integers(64, 16383)))
@settings(max_examples=200)
def test_address_round_trips_for_every_prefix(public, prefix):
    address = crypto.encode_address(public, prefix)
    assert crypto.decode_address(address, prefix) == public


@given(st.integers(0, 47), st.sampled_from("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"))
@settings(max_examples=200)
def test_a_changed_character_is_rejected(position, replacement):
    address = crypto.encode_address(ALICE.public, 42)
    changed = address[:position] + replacement + address[position + 1:]
    if changed != address:
        with pytest.raises(crypto.AddressError):
            crypto.decode_address(changed, 42)


def test_wrong_prefix_error_names_both_prefixes():
    address = crypto.encode_address(ALICE.public, 0)
    with pytest.raises(crypto.AddressError, match="prefix 0, this chain uses 42"):
        crypto.decode_address(address, 42)


def test_mnemonics_generate_and_check():
    for words in (12, 15, 18, 21, 24):
        phrase = crypto.generate_mnemonic(words)
        assert len(phrase.split()) == words and crypto.is_valid_mnemonic(phrase)
        assert crypto.keypair_from_uri(phrase).public == crypto.keypair_from_uri(phrase).public
    with pytest.raises(crypto.KeyDerivationError):
        crypto.generate_mnemonic(13)


def test_bad_mnemonic_and_soft_junction_are_rejected_with_a_reason():
    words = crypto.DEV_PHRASE.split()
    bad_checksum = " ".join(words[:-1] + ["abandon"])
    with pytest.raises(crypto.KeyDerivationError, match="checksum"):
        crypto.keypair_from_uri(bad_checksum)
    with pytest.raises(crypto.KeyDerivationError, match="unknown word 'notaword'"):
        crypto.keypair_from_uri(" ".join(words[:-1] + ["notaword"]))
    with pytest.raises(crypto.KeyDerivationError, match="soft junction"):
        crypto.keypair_from_uri("//Alice/soft")


def test_parse_account_accepts_address_hex_and_dev_uri():
    address = crypto.encode_address(ALICE.public, 42)
    assert crypto.parse_account(address, 42) == crypto.parse_account("0x" + ALICE.public.hex(), 42) == \
        crypto.parse_account("//Alice", 42) == ALICE.public
    with pytest.raises(crypto.AddressError):
        crypto.parse_account("0x1234", 42)
