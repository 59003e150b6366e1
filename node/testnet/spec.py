"""Chain specs of local networks: the repository's spec with a short slot and its own chain id.

`make_spec` is `gradchain testnet`'s: N equal-stake validators named like Substrate's dev
accounts, every dev account and the load accounts endowed. `write_spec` keeps the
repository's four validators and stakes (what the multi-node tests and the network
benchmarks run on) and changes only what they ask.
"""

from __future__ import annotations

import json
from pathlib import Path

from node.chain_setup import DEFAULT_CHAIN
from runtime import crypto
from runtime.genesis import parse_genesis

DEV_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
# accounts the harness and users send load from, endowed on every testnet (never validators)
LOAD_ACCOUNTS = ("Sender1", "Sender2", "Sender3", "Sender4")
ENDOWMENT = 10**18
STAKE = 10**17


def validator_names(count: int) -> list[str]:
    """Alice, Bob, ... as Substrate's dev accounts, then Validator7, Validator8, ..."""
    return [DEV_NAMES[i] if i < len(DEV_NAMES) else f"Validator{i + 1}" for i in range(count)]


def make_spec(names: list[str], *, slot_ms: int, chain_id: str = "gradchain_testnet") -> dict:
    """The repository's spec with `names` as equal-stake validators (keys //Name) and a slot of `slot_ms`."""
    spec = json.loads(DEFAULT_CHAIN.read_text())
    prefix = spec["ss58_prefix"]

    def address(name: str) -> str:
        return crypto.encode_address(crypto.keypair_from_uri(f"//{name}").public, prefix)

    endowed = dict.fromkeys([*names, *DEV_NAMES, *LOAD_ACCOUNTS])
    spec.update(name=f"Local Testnet ({len(names)} validators)", id=chain_id, slot_duration_ms=slot_ms,
                validators=[{"name": n, "account": address(n), "stake": STAKE} for n in names],
                endowed=[{"name": n, "account": address(n), "balance": ENDOWMENT} for n in endowed])
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=slot_ms // 2)
    parse_genesis(spec, "testnet spec")  # a bad spec fails here, not in N nodes at once
    return spec


def write_spec(path: Path, *, slot_ms: int = 1000, chain_id: str = "gradchain_nettest", extra_endowed=(),
               **changes) -> Path:
    """The repository's spec (four validators: Alice, Bob, Charlie, Dave) with a short slot and its own id."""
    spec = json.loads(DEFAULT_CHAIN.read_text())
    spec.update(name="Network Test", id=chain_id, slot_duration_ms=slot_ms, **changes)
    spec["endowed"] = spec["endowed"] + list(extra_endowed)
    spec["parameters"] = dict(spec["parameters"], minimum_period_ms=slot_ms // 2)
    path.write_text(json.dumps(spec, indent=2))
    return path
