"""Headers over RPC carry Substrate's digest shape: {"logs": [hex SCALE DigestItem, ..]}."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpc.client import AsyncClient, header_from_json
from rpc.digest import (
    DigestFormatError, decode_compact, describe_logs, digest_logs, encode_compact, parse_digest,
)
from rpc.shapes import header_json
from runtime.types import Digest, Header


def test_a_known_vector_derived_by_hand_from_scales_rules():
    digest = Digest(5, b"\x22" * 32, b"\x11" * 64)
    aura_slot = "0x06" + "61757261" + "20" + "0500000000000000"  # PreRuntime, b"aura", compact(8) = 8 << 2, u64 LE
    author = "0x06" + "47524441" + "80" + "22" * 32  # PreRuntime, b"GRDA", compact(32) = 32 << 2 = 0x80
    seal = "0x05" + "61757261" + "0101" + "11" * 64  # Seal, b"aura", compact(64): two bytes, (64 << 2) | 1 LE
    assert digest_logs(digest) == [aura_slot, author, seal]
    assert parse_digest({"logs": [aura_slot, author, seal]}) == digest


def test_compact_integers_by_hand():
    assert encode_compact(0) == b"\x00" and encode_compact(1) == b"\x04" and encode_compact(63) == b"\xfc"
    assert encode_compact(64) == b"\x01\x01" and encode_compact(16383) == b"\xfd\xff"
    assert encode_compact(16384) == b"\x02\x00\x01\x00"
    assert encode_compact(1 << 30) == b"\x03\x00\x00\x00\x40"


@given(st.integers(min_value=0, max_value=2**64))
def test_compact_round_trips(n):
    encoded = encode_compact(n)
    assert decode_compact(encoded) == (n, len(encoded))


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(min_size=32, max_size=32),
       st.one_of(st.just(b""), st.binary(min_size=64, max_size=64)))
def test_digests_round_trip(slot, author, seal):
    digest = Digest(slot, author, seal)
    assert parse_digest({"logs": digest_logs(digest)}) == digest


def test_an_unsealed_header_has_no_seal_log_and_round_trips_with_its_hash():
    header = Header(b"\x01" * 32, 7, b"\x02" * 32, b"\x03" * 32, Digest(9, b"\x04" * 32, b""))
    shaped = header_json(header)
    assert set(shaped["digest"]) == {"logs"} and len(shaped["digest"]["logs"]) == 2
    back = header_from_json(shaped)
    assert back == header and "0x" + back.hash.hex() == shaped["hash"]


@pytest.mark.parametrize("logs, reason", [
    (["0x0661757261"], "compact length is missing"),
    (["0x066175726120050000"], "not as long"),
    (["0x0661757261210500000000000000"], "not as long"),  # compact 8 written with a wrong mode
    (["0x06617572610101" + "00" * 64], "u64"),  # a 64-byte slot
    (["0x0661757261" + "2100" + "00" * 8], "shortest form"),  # 8 in two bytes: (8 << 2) | 1, 0
    (["0x07617572612000"], r"PreRuntime \(6\) or Seal \(5\)"),
    (["0xzz"], "not valid hex"),
    ([5], "0x-prefixed"),
    (["0x066175726120" + "00" * 8], "lacks"),  # no author item
])
def test_malformed_logs_are_refused_with_a_reason(logs, reason):
    with pytest.raises(DigestFormatError, match=reason):
        parse_digest({"logs": logs})


def test_a_digest_that_is_not_a_logs_object_is_refused():
    with pytest.raises(DigestFormatError):
        parse_digest({"slot": "0x1", "author": "0x00", "seal": "0x"})


def test_headers_blocks_and_subscriptions_from_a_node_carry_logs_the_client_decodes(node):
    client = node.client
    raw = client.call("chain_getHeader")
    assert set(raw["digest"]) == {"logs"} and all(log.startswith("0x") for log in raw["digest"]["logs"])
    header = client.header()
    assert "0x" + header.hash.hex() in (raw["hash"], client.call("chain_getHeader")["hash"])
    best = client.block(header.hash)
    assert best.header == header and len(best.header.digest.seal) == 64
    lines = describe_logs(raw["digest"])
    assert lines[0].startswith("PreRuntime(aura) slot ") and lines[1].startswith("PreRuntime(GRDA) author 0x")
    assert lines[2].startswith("Seal(aura) 64 bytes")

    async def first_heads():
        async with AsyncClient(node.url) as async_client:
            found = {}
            for method in ("chain_subscribeNewHeads", "chain_subscribeFinalizedHeads"):
                async for value in async_client.subscribe(method):
                    found[method] = value
                    break
            return found
    heads = asyncio.run(asyncio.wait_for(first_heads(), 30))
    for value in heads.values():
        decoded = header_from_json(value)
        assert "0x" + decoded.hash.hex() == value["hash"]  # the logs carry everything the hash covers


def test_the_explorer_shows_a_blocks_digest_logs(node, capsys, monkeypatch):
    from scripts import explorer

    monkeypatch.setenv("COLUMNS", "320")
    header = node.client.header()
    assert explorer.main(["--url", node.url, "block", str(header.number)]) == 0
    out = capsys.readouterr().out
    assert f"PreRuntime(aura) slot {header.digest.slot}" in out
    assert f"PreRuntime(GRDA) author 0x{header.digest.author.hex()}" in out and "Seal(aura) 64 bytes" in out
