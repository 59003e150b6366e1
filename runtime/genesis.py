"""The chain spec (genesis.json): parsed strictly, every error naming its field.

    {
      "name": "Gradchain Local Testnet", "id": "gradchain_local",
      "token": {"symbol": "GRAD", "decimals": 12},
      "ss58_prefix": 42, "slot_duration_ms": 2000, "genesis_time_ms": 0,
      "sudo": "<address>",
      "validators": [{"name": "Alice", "account": "<address>", "stake": 1000}],
      "endowed":    [{"name": "Alice", "account": "<address>", "balance": 100000}],
      "parameters": {"existential_deposit": 500, ...every field of system.Parameters...},
      "training": {"min_commit_bond": 100000000000, "max_samples_per_update": 1000000}   (optional)
    }

Balances may be JSON integers or strings of decimal digits (JavaScript clients
lose precision past 2**53). Unknown fields are errors, so a typo never silently
becomes a default. The genesis state is a pure function of the file's content.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import codec, crypto
from runtime.errors import GenesisError
from runtime.pallets import balances, sudo, system, timestamp, training, validators
from runtime.pallets.system import Parameters
from runtime.state import EmptyBackend, Overlay

MAX_GENESIS_BYTES = 16 * 1024 * 1024
_U128_MAX = (1 << 128) - 1
_ID_PATTERN = re.compile(r"^[a-z0-9_\-]{1,64}$")


# Blocks a report's data may stay unavailable here before the block is disputed ("data unavailable").
DEFAULT_USEFUL_WORK_AVAILABILITY_BLOCKS = 20
MAX_USEFUL_WORK_AVAILABILITY_BLOCKS = 1_000_000


class BadAvailabilityDeadline(GenesisError):
    """useful_work_availability_blocks is not a whole number of blocks in 1..1,000,000."""

    code = "genesis_availability_deadline"


@dataclass(frozen=True)
class GenesisConfig:
    name: str
    chain_id: str
    token_symbol: str
    token_decimals: int
    ss58_prefix: int
    slot_duration_ms: int
    genesis_time_ms: int
    sudo: bytes
    validators: tuple[tuple[bytes, int], ...]
    endowed: tuple[tuple[bytes, int], ...]
    parameters: Parameters
    spec: dict  # the file's JSON, for build-spec
    # an unverifiable block (a blob its report needs is missing here) is disputed this many blocks later
    useful_work_availability_blocks: int = DEFAULT_USEFUL_WORK_AVAILABILITY_BLOCKS
    training: training.TrainingLimits | None = None  # None: the pallet's defaults (and no genesis entry)

    def properties(self) -> dict[str, Any]:
        return {"ss58Format": self.ss58_prefix, "tokenDecimals": self.token_decimals,
                "tokenSymbol": self.token_symbol}


class _Reader:
    """Walks the JSON, naming the path of every field it complains about."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> GenesisError:
        return GenesisError(f"{self.source}: {path}: {problem}")

    def obj(self, value: Any, path: str, required: set[str], optional: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, "must be an object")
        unknown = set(value) - required - optional
        if unknown:
            raise self.fail(path, f"unknown field {sorted(unknown)[0]!r}")
        missing = required - set(value)
        if missing:
            raise self.fail(path, f"missing field {sorted(missing)[0]!r}")
        return value

    def integer(self, value: Any, path: str, low: int = 0, high: int = _U128_MAX) -> int:
        if isinstance(value, str) and value.isdigit() and value.isascii():
            value = int(value)
        if type(value) is not int:
            raise self.fail(path, "must be a whole number (or a string of digits)")
        if not low <= value <= high:
            raise self.fail(path, f"must be between {low} and {high}")
        return value

    def text(self, value: Any, path: str, max_length: int = 128) -> str:
        if not isinstance(value, str) or not value or len(value) > max_length:
            raise self.fail(path, f"must be a non-empty string of at most {max_length} characters")
        return value

    def account(self, value: Any, path: str, prefix: int) -> bytes:
        try:
            return crypto.parse_account(self.text(value, path, 200), prefix)
        except crypto.CryptoError as exc:
            raise self.fail(path, exc.message) from None

    def accounts_with_amount(self, value: Any, path: str, amount_field: str, prefix: int) -> tuple:
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        seen: set[bytes] = set()
        entries = []
        for i, item in enumerate(value):
            here = f"{path}[{i}]"
            item = self.obj(item, here, {"account", amount_field}, {"name"})
            who = self.account(item["account"], f"{here}.account", prefix)
            if who in seen:
                raise self.fail(f"{here}.account", "listed twice")
            seen.add(who)
            entries.append((who, self.integer(item[amount_field], f"{here}.{amount_field}", 1)))
        return tuple(entries)


def parse_genesis(spec: Any, source: str = "genesis") -> GenesisConfig:
    r = _Reader(source)
    top = r.obj(spec, "(top)", {"name", "id", "token", "ss58_prefix", "slot_duration_ms", "sudo", "validators",
                                "endowed", "parameters"}, {"genesis_time_ms", "useful_work_availability_blocks",
                                                             "training"})
    chain_id = r.text(top["id"], "id", 64)
    if not _ID_PATTERN.match(chain_id):
        raise r.fail("id", "must be lowercase letters, digits, '_' or '-'")
    token = r.obj(top["token"], "token", {"symbol", "decimals"})
    prefix = r.integer(top["ss58_prefix"], "ss58_prefix", 0, 16383)
    slot_duration = r.integer(top["slot_duration_ms"], "slot_duration_ms", 100, 3_600_000)
    hints = typing.get_type_hints(Parameters)
    names = {f.name for f in dataclasses.fields(Parameters)}
    raw_params = r.obj(top["parameters"], "parameters", names)
    params = Parameters(**{
        name: r.integer(raw_params[name], f"parameters.{name}", *codec.int_range(hints[name])) for name in names
    })
    try:
        system.check_parameters(params)
    except system.InvalidParameters as exc:
        raise r.fail("parameters", exc.message) from None
    config = GenesisConfig(
        name=r.text(top["name"], "name"),
        chain_id=chain_id,
        token_symbol=r.text(token["symbol"], "token.symbol", 12),
        token_decimals=r.integer(token["decimals"], "token.decimals", 0, 30),
        ss58_prefix=prefix,
        slot_duration_ms=slot_duration,
        genesis_time_ms=r.integer(top.get("genesis_time_ms", 0), "genesis_time_ms", 0, (1 << 63) - 1),
        sudo=r.account(top["sudo"], "sudo", prefix),
        validators=r.accounts_with_amount(top["validators"], "validators", "stake", prefix),
        endowed=r.accounts_with_amount(top["endowed"], "endowed", "balance", prefix),
        parameters=params,
        spec=spec,
        useful_work_availability_blocks=_availability_blocks(r, top),
        training=_training_limits(r, top["training"]) if "training" in top else None,
    )
    _check_consistency(r, config)
    return config


def _training_limits(r: _Reader, value: Any) -> training.TrainingLimits:
    raw = r.obj(value, "training", {"min_commit_bond", "max_samples_per_update"})
    return training.TrainingLimits(
        min_commit_bond=r.integer(raw["min_commit_bond"], "training.min_commit_bond", 1),
        max_samples_per_update=r.integer(raw["max_samples_per_update"], "training.max_samples_per_update", 1,
                                         (1 << 32) - 1))


def _availability_blocks(r: _Reader, top: dict) -> int:
    value = top.get("useful_work_availability_blocks", DEFAULT_USEFUL_WORK_AVAILABILITY_BLOCKS)
    if type(value) is not int or not 1 <= value <= MAX_USEFUL_WORK_AVAILABILITY_BLOCKS:
        raise BadAvailabilityDeadline(
            f"{r.source}: useful_work_availability_blocks: must be a whole number of blocks in "
            f"1..{MAX_USEFUL_WORK_AVAILABILITY_BLOCKS} (how long a report's data may stay unavailable before "
            f"the block is disputed), not {value!r}")
    return value


def _check_consistency(r: _Reader, config: GenesisConfig) -> None:
    if not config.validators:
        raise r.fail("validators", "at least one validator is needed to author blocks")
    endowed = dict(config.endowed)
    for i, (who, stake) in enumerate(config.validators):
        if endowed.get(who, 0) < stake + config.parameters.existential_deposit:
            raise r.fail(f"validators[{i}].stake", "must be covered by the account's endowment "
                                                   "plus the existential deposit")
        if stake < config.parameters.min_validator_stake:
            raise r.fail(f"validators[{i}].stake", "is below parameters.min_validator_stake")
    for i, (_, amount) in enumerate(config.endowed):
        if amount < config.parameters.existential_deposit:
            raise r.fail(f"endowed[{i}].balance", "is below parameters.existential_deposit")
    if sum(endowed.values()) > _U128_MAX:
        raise r.fail("endowed", "total issuance overflows 128 bits")


def load_genesis(path: str | Path) -> GenesisConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read the chain spec: {exc.strerror}") from None
    if len(raw) > MAX_GENESIS_BYTES:
        raise GenesisError(f"{path}: the chain spec is larger than {MAX_GENESIS_BYTES} bytes")
    try:
        spec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise GenesisError(f"{path}: not valid JSON: {exc}") from None
    return parse_genesis(spec, str(path))


def build_genesis_state(config: GenesisConfig) -> dict[bytes, bytes | None]:
    """The genesis state's key/value pairs."""
    state = Overlay(EmptyBackend())
    system.build_genesis(state, config.parameters, config.chain_id)
    balances.build_genesis(state, list(config.endowed), config.parameters.existential_deposit)
    validators.build_genesis(state, list(config.validators))
    timestamp.build_genesis(state, config.genesis_time_ms, config.slot_duration_ms)
    sudo.build_genesis(state, config.sudo)
    if config.training is not None:
        training.Limits.put(state, config.training)
    return dict(state.changes)
