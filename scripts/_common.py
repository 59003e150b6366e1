"""What the wallet and the explorer share: the chain's token and address format, amounts,
blocks with named events, value rendering by the runtime's declared types, and one-line errors.

Scripts are clients: they reach a node through `rpc.client` only, and use `runtime` for
types, the codec and call constructors (never node/, storage/ or consensus/).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from rpc.client import Client, NodeUnreachable, RpcCallError
from runtime import codec, crypto
from runtime.dispatch import PALLETS
from runtime.errors import CliError, GradchainError
from runtime.executive import Executive  # noqa: F401  (imports every pallet, so every event and call decodes)
from runtime.pallets import system, validators
from runtime.types import IMMORTAL, Era

DEFAULT_URL = "http://127.0.0.1:9944"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "GRADCHAIN_DEBUG"

# JSON-RPC codes of the transaction pool (Substrate's author_* errors).
POOL_ERRORS = {1010: "as invalid", 1011: "as of unknown validity", 1012: "as temporarily banned",
               1013: "as already imported", 1014: "for too low a priority", 1016: "because its pool is full"}


# --- running a command ---------------------------------------------------------------------


def run_command(handler: Callable[[], int | None]) -> int:
    """Run a command; every failure becomes one line on stderr and exit code 2, never a traceback."""
    try:
        return handler() or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RpcCallError as exc:
        print(f"error: {describe_rpc_error(exc)}", file=sys.stderr)
    except GradchainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except Exception as exc:  # a bug or an unexpected answer: still one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
              file=sys.stderr)
    return EXIT_ERROR


def describe_rpc_error(exc: RpcCallError) -> str:
    message = exc.message.removesuffix(f" (code {exc.rpc_code})")
    reason = exc.data if isinstance(exc.data, str) and exc.data else None
    if exc.rpc_code in POOL_ERRORS:
        # "Invalid Transaction: nonce 0 is used ..." -> the part after the label says what to do
        detail = re.sub(r"^(Invalid|Unknown) Transaction( Validity)?: ", "", message)
        label = POOL_ERRORS[exc.rpc_code]
        reason = None if reason and reason.replace("_", " ") in label else reason
        return f"the node rejected the transaction {label}{f' ({reason})' if reason else ''}: {detail}"
    return f"the node answered an error: {message} (code {exc.rpc_code}{f', {reason}' if reason else ''})"


def connect(url: str) -> Client:
    if not re.match(r"https?://[^/\s]+", url or ""):
        raise CliError(f"bad --url {url!r}: give the node's RPC address like {DEFAULT_URL}")
    return Client(url, timeout=30)


# --- mortality ---------------------------------------------------------------------------
# A transaction signed with a mortal era is valid only for `period` blocks after its birth
# block, and signs that block's hash: once it expires it can never be included again, even
# after its account was reaped (nonce back to 0) and refunded. An immortal one stays valid
# for ever, so a reaped account's old transfers would replay. The runtime keeps the hashes of
# the last system.BLOCK_HASH_COUNT blocks, so a period is 4..BLOCK_HASH_COUNT blocks.

DEFAULT_ERA_PERIOD = 64
MAX_FINALITY_LAG = 5  # born on the finalized block if it is this close to the best: no reorg can drop it


def signing_era(client: Client, period: int | None = DEFAULT_ERA_PERIOD) -> tuple[Era, bytes | None]:
    """(era, birth block hash) to sign with: mortal for `period` blocks, or IMMORTAL for None.

    The birth block is the finalized one when it is recent, so a reorg cannot make the
    transaction invalid, else the best block (born on an abandoned fork it would be refused,
    never misapplied)."""
    if period is None:
        return IMMORTAL, None
    if not 4 <= period <= system.BLOCK_HASH_COUNT:
        raise CliError(f"bad era period {period}: give 4..{system.BLOCK_HASH_COUNT} blocks")
    best = client.header()
    finalized = client.header(client.finalized_hash())
    birth = finalized if finalized is not None and best.number - finalized.number <= MAX_FINALITY_LAG else best
    return Era(birth.number, period), birth.hash


def add_era_options(parser) -> None:
    """--era-period N and --immortal, for every command that signs."""
    parser.add_argument("--era-period", type=int, default=DEFAULT_ERA_PERIOD, metavar="BLOCKS",
                        help=f"the transaction is valid for this many blocks (default {DEFAULT_ERA_PERIOD}; "
                             f"4..{system.BLOCK_HASH_COUNT})")
    parser.add_argument("--immortal", action="store_true",
                        help="sign a transaction that never expires (unsafe: it can be replayed if the account "
                             "is ever emptied and refunded)")


def era_period_of(args) -> int | None:
    """The era period the flags ask for (None: immortal, with a warning on stderr)."""
    if getattr(args, "immortal", False):
        print("warning: --immortal: this transaction never expires; if the account is ever emptied and refunded "
              "it can be replayed", file=sys.stderr)
        return None
    period = getattr(args, "era_period", DEFAULT_ERA_PERIOD)
    if not 4 <= period <= system.BLOCK_HASH_COUNT:
        raise CliError(f"bad --era-period {period}: give 4..{system.BLOCK_HASH_COUNT} blocks")
    return period


# --- the chain's token and addresses -------------------------------------------------------


@dataclass(frozen=True)
class ChainInfo:
    """What system_properties says about amounts and addresses on this chain."""

    symbol: str
    decimals: int
    ss58_prefix: int
    exact: bool = False  # amounts to the last planck (--exact), else rounded as people read them

    @classmethod
    def of(cls, client: Client, *, exact: bool = False) -> "ChainInfo":
        properties = client.properties() or {}
        return cls(str(properties.get("tokenSymbol", "UNIT")), int(properties.get("tokenDecimals", 0)),
                   int(properties.get("ss58Format", 42)), exact)

    def format_balance(self, planck: int | str) -> str:
        return format_balance(int(planck), self.decimals, self.symbol, exact=self.exact)

    def parse_amount(self, text: str) -> int:
        return parse_amount(text, self.decimals, self.symbol)

    def address(self, account: bytes | str) -> str:
        public = bytes.fromhex(account[2:]) if isinstance(account, str) else account
        return crypto.encode_address(public, self.ss58_prefix)

    def parse_account(self, text: str) -> bytes:
        try:
            return crypto.parse_account(text, self.ss58_prefix)
        except crypto.AddressError as exc:
            raise CliError(f"bad address: {exc.message}") from None


DISPLAY_DECIMALS = 4        # a rounded amount of a token or more keeps this many decimals ...
DISPLAY_SIGNIFICANT = 4     # ... and one under a token this many significant digits


def format_balance(planck: int, decimals: int, symbol: str, *, exact: bool = True) -> str:
    """1500000000000 with 12 decimals -> '1.5 GRAD'; no floats. Exact to the planck, or with
    exact=False rounded (half up) to what people read: 899999999999998 -> '900 GRAD',
    1234567890 -> '0.001235 GRAD'. A rounded amount is never shown as 0 unless it is 0."""
    if not exact:
        planck = round_for_display(planck, decimals)
    sign = "-" if planck < 0 else ""
    whole, fraction = divmod(abs(planck), 10 ** decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole:,}{'.' + digits if digits else ''} {symbol}"


def round_for_display(planck: int, decimals: int) -> int:
    """`planck` rounded half up (away from zero) to DISPLAY_DECIMALS decimals of a token, or to
    DISPLAY_SIGNIFICANT significant digits when under one token."""
    magnitude = abs(planck)
    if magnitude == 0:
        return 0
    keep = DISPLAY_DECIMALS if magnitude >= 10 ** decimals else \
        decimals - len(str(magnitude)) + DISPLAY_SIGNIFICANT  # decimals up to the 4th significant digit
    drop = decimals - keep
    if drop <= 0:
        return planck
    step = 10 ** drop
    rounded = (magnitude + step // 2) // step * step
    return rounded if planck > 0 else -rounded


def parse_amount(text: str, decimals: int, symbol: str) -> int:
    """An amount in planck: a whole number is planck; a decimal (or a number with the symbol) is tokens."""
    value = (text or "").strip().replace("_", "").replace(",", "")
    in_tokens = value.upper().endswith(symbol.upper()) and bool(symbol)
    if in_tokens:
        value = value[: -len(symbol)].strip()
    if re.fullmatch(r"[0-9]+", value) and not in_tokens:
        return int(value)
    match = re.fullmatch(r"([0-9]*)\.?([0-9]*)", value)
    if not value or match is None or not (match.group(1) or match.group(2)):
        raise CliError(f"bad amount {text!r}: give planck as a whole number (1500000000000) or {symbol} as a "
                       f"decimal (1.5 or '1.5 {symbol}')")
    whole, fraction = match.group(1) or "0", match.group(2).rstrip("0")
    if len(fraction) > decimals:
        raise CliError(f"bad amount {text!r}: {symbol} has {decimals} decimal places")
    return int(whole) * 10 ** decimals + int(fraction.ljust(decimals, "0") or "0")


def short_hex(value: str, keep: int = 10) -> str:
    return value if len(value) <= keep + 2 else value[: keep + 2] + "…"


def format_time(ms: int | None, *, date: bool = True) -> str:
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if date else "%H:%M:%S")


# --- blocks with named events ----------------------------------------------------------


def event_name(event: Any) -> str:
    return f"{type(event).pallet_name}.{type(event).__name__}"


def get_explorer_block(client: Client, at: str | None) -> dict | None:
    """explorer_block, with every event carrying its "event" name.

    explorer_block drops the names (rpc.shapes.plain looks for Event.qualified_name, which
    pallet events do not inherit), so when one is missing the names come from the block's
    own Events storage, decoded with the runtime's codec.
    """
    value = client.call("explorer_block", at)
    if value is None:
        return None
    groups = [x["events"] for x in value["extrinsics"]] + [value["blockEvents"]]
    if any("event" not in event for group in groups for event in group):
        by_index: dict[int | None, list[Any]] = {}
        for record in decode_block_events(client, value["header"]["hash"]):
            by_index.setdefault(record.extrinsic_index, []).append(record.event)
        for index, extrinsic in enumerate(value["extrinsics"]):
            extrinsic["events"] = _named(extrinsic["events"], by_index.get(index, []))
        value["blockEvents"] = _named(value["blockEvents"], by_index.get(None, []))
    return value


def decode_block_events(client: Client, block_hash: str) -> tuple:
    try:
        raw = client.call("state_getStorage", "0x" + system.Events.key.hex(), block_hash)
    except RpcCallError:
        return ()  # the block's state is pruned
    return () if raw is None else codec.decode(system.Events.value_type, bytes.fromhex(raw[2:]))


def _named(events: list[dict], decoded: list[Any]) -> list[dict]:
    named = []
    for position, event in enumerate(events):
        if "event" not in event:
            match = decoded[position] if position < len(decoded) else None
            fields = None if match is None else {f.name for f in dataclasses.fields(match)}
            name = event_name(match) if fields == set(event) else _event_name_from_fields(event)
            event = {"event": name, **event}
        named.append(event)
    return named


def _event_name_from_fields(event: dict) -> str:
    candidates = [f"{p.name}.{cls.__name__}" for p in PALLETS.values() for cls in p.events.values()
                  if {f.name for f in dataclasses.fields(cls)} == set(event)]
    return candidates[0] if len(candidates) == 1 else "(unnamed event)"


def block_timestamp(block: dict) -> int | None:
    for extrinsic in block["extrinsics"]:
        if extrinsic["call"] == "timestamp.set":
            return int(extrinsic["args"]["now"])
    return None


def block_number(block: dict) -> int:
    return int(block["header"]["number"], 16)


def extrinsic_failure(extrinsic: dict) -> str | None:
    """The dispatch error's name if the extrinsic was included but its call failed."""
    for event in extrinsic["events"]:
        if event.get("event") == "system.ExtrinsicFailed":
            error = event.get("error")
            return error.get("name", "failed") if isinstance(error, dict) else "failed"
    return None


def extrinsic_fee(extrinsic: dict) -> int:
    for event in extrinsic["events"]:
        if event.get("event") in ("system.ExtrinsicSuccess", "system.ExtrinsicFailed"):
            return int(event.get("fee", 0))
    return 0


# --- rendering values by their declared types ------------------------------------------------


def event_field_types(name: str) -> dict[str, Any]:
    pallet_name, _, event = name.partition(".")
    for pallet in PALLETS.values():
        if pallet.name == pallet_name:
            for cls in pallet.events.values():
                if cls.__name__ == event:
                    return {f.name: f.type for f in dataclasses.fields(cls)}
    return {}


def call_param_types(name: str) -> dict[str, Any]:
    pallet_name, _, call = name.partition(".")
    for pallet in PALLETS.values():
        if pallet.name == pallet_name:
            for definition in pallet.calls.values():
                if definition.name == call:
                    return dict(definition.params)
    return {}


def render_value(value: Any, declared: Any, chain: ChainInfo) -> str:
    """A JSON value as a person reads it: accounts as addresses, balances in tokens, hashes shortened."""
    # Event fields are declared under postponed annotations, so their types arrive as names.
    declared_name = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    if declared_name == "AccountId" and isinstance(value, str) and re.fullmatch(r"0x[0-9a-f]{64}", value):
        return chain.address(value)
    if declared_name == "Balance":
        try:
            return chain.format_balance(int(value))
        except (TypeError, ValueError):
            pass
    if isinstance(value, dict):
        if "name" in value and "pallet_index" in value:  # a DispatchError
            return str(value["name"])
        return "{" + ", ".join(f"{k}: {render_value(v, None, chain)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v, None, chain) for v in value) + "]"
    if isinstance(value, str) and value.startswith("0x"):
        return short_hex(value, 16 if declared_name in ("Hash", "BlockHash") else 12)
    return str(value)


def render_fields(values: dict, types: dict[str, Any], chain: ChainInfo, skip: Sequence[str] = ()) -> str:
    return ", ".join(f"{name}={render_value(value, types.get(name), chain)}"
                     for name, value in values.items() if name not in skip)


# --- reading storage a command needs --------------------------------------------------------


def get_parameters(client: Client) -> system.Parameters | None:
    """The runtime parameters (existential deposit, fees), read from state: no RPC method serves them."""
    raw = client.call("state_getStorage", "0x" + system.Params.key.hex())
    return None if raw is None else codec.decode(system.Parameters, bytes.fromhex(raw[2:]))


def get_ledger(client: Client, account: bytes, at: str | None = None) -> validators.Ledger | None:
    """The account's staking ledger (bonded and unlocking stake), read from state."""
    raw = client.call("state_getStorage", "0x" + validators.Ledgers.key_of(account).hex(), at)
    return None if raw is None else codec.decode(validators.Ledger, bytes.fromhex(raw[2:]))


__all__ = ["DEFAULT_URL", "EXIT_ERROR", "CliError", "ChainInfo", "NodeUnreachable", "run_command", "connect",
           "format_balance", "parse_amount", "short_hex", "format_time", "get_explorer_block", "block_timestamp",
           "block_number", "extrinsic_failure", "extrinsic_fee", "event_field_types", "call_param_types",
           "render_value", "render_fields", "get_parameters", "get_ledger", "describe_rpc_error", "signing_era",
           "add_era_options", "era_period_of", "DEFAULT_ERA_PERIOD", "round_for_display"]
