"""The chain spec: strict loading with the failing field named, and a stable genesis hash."""

from __future__ import annotations

import copy
import json

import pytest

from runtime.errors import GenesisError
from runtime.genesis import build_genesis_state, load_genesis, parse_genesis
from storage.chainstore import ChainStore
from tests.helpers.chain import GENESIS_PATH

SPEC = json.loads(GENESIS_PATH.read_text())


def with_change(path: list, value):
    spec = copy.deepcopy(SPEC)
    target = spec
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


@pytest.mark.parametrize("path,value,named", [
    (["ss58_prefix"], "x", "ss58_prefix"),
    (["validators", 1, "stake"], -5, r"validators\[1\].stake"),
    (["endowed", 0, "account"], "5NotAnAddress", r"endowed\[0\].account"),
    (["parameters", "fee_burn_ppm"], 2_000_000, "parameters"),
    (["parameters", "base_fee"], KeyError, "missing field 'base_fee'"),
    (["token", "colour"], "blue", "unknown field 'colour'"),
    (["id"], "Has Spaces", "id"),
    (["validators"], [], "validators"),
    (["sudo"], 42, "sudo"),
])
def test_a_bad_field_is_named_in_the_error(path, value, named):
    with pytest.raises(GenesisError, match=named):
        parse_genesis(with_change(path, value))


def test_unreadable_and_non_json_files_get_clear_errors(tmp_path):
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(bad)


def test_genesis_hash_is_stable_for_a_given_file(tmp_path):
    hashes = []
    for i in range(2):
        chain = ChainStore.open(tmp_path / f"db{i}")
        hashes.append(chain.initialize(build_genesis_state(load_genesis(GENESIS_PATH))))
        chain.close()
    assert hashes[0] == hashes[1]
    changed = ChainStore.open(tmp_path / "db2")
    other = changed.initialize(build_genesis_state(parse_genesis(with_change(["endowed", 4, "balance"], 2 * 10**18))))
    changed.close()
    assert other != hashes[0]
