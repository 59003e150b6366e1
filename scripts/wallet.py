#!/usr/bin/env python3
"""gradchain wallet: keys encrypted at rest, balances, transfers, bonding, watching transactions.

    python scripts/wallet.py create NAME [--words 12]        new key; prints its phrase once
    python scripts/wallet.py import NAME [--uri URI]         mnemonic or secret URI (stdin, or //Alice for dev)
    python scripts/wallet.py list
    python scripts/wallet.py balance NAME|ADDRESS
    python scripts/wallet.py transfer FROM TO AMOUNT [--keep-alive] [--tip N] [--watch]
    python scripts/wallet.py bond FROM AMOUNT / unbond FROM AMOUNT [--watch]
    python scripts/wallet.py watch [TX_HASH]                 follow a transaction to finalized
    python scripts/wallet.py task create|watch|cancel|download ...   training tasks (scripts/wallet_tasks.py)
    python scripts/wallet.py claim NAME                      pay out accrued training rewards

Amounts: a whole number is planck; a decimal ("1.5") or "1.5 GRAD" is tokens, with the
decimals of the node's system_properties. Every error is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rpc.client import Client  # noqa: E402
from rpc.wallet_store import (  # noqa: E402,F401  (re-exported: the wallet's key store)
    DEFAULT_WALLET_DIR, KDF_MEMLIMIT, KDF_OPSLIMIT, MAX_KDF_MEMLIMIT, NAME_PATTERN, PASSPHRASE_ENV, WALLET_FORMAT,
    WalletEntry, WalletStore, open_seed, read_passphrase, seal_seed, write_private_file,
)
from runtime import crypto  # noqa: E402
from runtime.executive import sign_extrinsic  # noqa: E402
from runtime.hashing import blake2b_256  # noqa: E402
from runtime.pallets import balances, validators  # noqa: E402
from runtime.types import Extrinsic, SignedData  # noqa: E402
from scripts._common import (  # noqa: E402
    DEFAULT_URL, ChainInfo, CliError, add_era_options, connect, era_period_of, extrinsic_failure, extrinsic_fee,
    get_explorer_block, get_ledger, get_parameters, run_command, signing_era,
)

OFFLINE_SS58_PREFIX = 42  # Substrate's generic prefix, for create/import/list without a node
LAST_TRANSACTION = ".last-transaction.json"  # a dot: never taken for a wallet name
POLL_SECONDS = 0.25


# --- key commands ------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace, store: WalletStore) -> None:
    store.check_new(args.name)
    phrase = crypto.generate_mnemonic(args.words)
    entry = store.save(args.name, crypto.keypair_from_uri(phrase), read_passphrase(args, confirm=True))
    print(f"secret phrase (write it down; it is shown only this once and the wallet keeps only an "
          f"encrypted key):\n\n    {phrase}\n")
    print(f"{entry.name}: {crypto.encode_address(entry.public, args.ss58_prefix)}")


def cmd_import(args: argparse.Namespace, store: WalletStore) -> None:
    store.check_new(args.name)
    if args.uri is not None:
        if not args.uri.strip().startswith("//"):
            raise CliError("--uri takes dev accounts only (//Name): a mnemonic or seed on the command line is "
                           "visible to every user in `ps`; pipe it to stdin instead")
        print(f"warning: --uri {args.uri.strip()}: a dev account derived from the public dev phrase; anyone can "
              "sign as it", file=sys.stderr)
        uri = args.uri
    elif sys.stdin.isatty():
        uri = getpass.getpass("secret phrase or URI: ")
    else:
        uri = sys.stdin.read()
    keypair = crypto.keypair_from_uri(uri.strip())
    entry = store.save(args.name, keypair, read_passphrase(args, confirm=True))
    print(f"{entry.name}: {crypto.encode_address(entry.public, args.ss58_prefix)}")


def cmd_list(args: argparse.Namespace, store: WalletStore) -> None:
    entries = store.entries()
    if not entries:
        print(f"no wallets in {store.directory} (create one with `wallet.py create NAME`)")
    width = max((len(e.name) for e in entries), default=0)
    for entry in entries:
        print(f"{entry.name.ljust(width)}  {crypto.encode_address(entry.public, args.ss58_prefix)}")


# --- chain commands -----------------------------------------------------------------------


class Session:
    """A command's view of the node: the client, the chain's token and address format, the wallets."""

    def __init__(self, args: argparse.Namespace, store: WalletStore) -> None:
        self.args = args
        self.store = store
        self.client: Client = connect(args.url)
        self.chain = ChainInfo.of(self.client, exact=args.exact)

    def resolve(self, text: str) -> tuple[bytes, str]:
        """A wallet name, an SS58 address, a 0x public key or a dev account -> (account, label)."""
        entry = self.store.find(text) if NAME_PATTERN.fullmatch(text) else None
        if entry is not None:
            return entry.public, f"{entry.name} ({self.chain.address(entry.public)})"
        try:
            account = self.chain.parse_account(text)
        except CliError:
            if NAME_PATTERN.fullmatch(text) and len(text) < 40:  # meant as a wallet name, most likely
                raise CliError(f"{text!r} is neither a wallet in {self.store.directory} nor an address") from None
            raise
        return account, self.chain.address(account)

    def amount(self, text: str) -> int:
        value = self.chain.parse_amount(text)
        if value <= 0:
            raise CliError("the amount must be more than 0")
        return value


def cmd_balance(args: argparse.Namespace, store: WalletStore) -> None:
    session = Session(args, store)
    account, label = session.resolve(args.account)
    state = session.client.account(session.chain.address(account))
    fmt = session.chain.format_balance
    print(label)
    print(f"  free      {fmt(state.free)}  ({state.free} planck)")
    print(f"  reserved  {fmt(state.reserved)}")
    print(f"  total     {fmt(state.free + state.reserved)}")
    print(f"  nonce     {state.nonce}")
    ledger = get_ledger(session.client, account)
    if ledger is not None:
        unlocking = ", ".join(f"{fmt(c.value)} at #{c.unlock_at}" for c in ledger.unlocking) or "nothing"
        print(f"  bonded    {fmt(ledger.active)} (unlocking: {unlocking})")


def cmd_transfer(args: argparse.Namespace, store: WalletStore) -> int:
    session = Session(args, store)
    sender = store.load(args.sender)
    dest, dest_label = session.resolve(args.dest)
    value = session.amount(args.amount)
    call = (balances.transfer_keep_alive if args.keep_alive else balances.transfer)(dest, value)
    summary = f"transfer {session.chain.format_balance(value)} from {sender.name} to {dest_label}"
    return submit(session, sender, call, summary, spends=value,
                  check=lambda free, fee: check_transfer(session, sender, dest, value, free, fee))


def check_transfer(session: Session, sender: WalletEntry, dest: bytes, value: int, free: int, fee: int) -> None:
    """Refuse what the runtime would refuse only after charging the fee (a dispatch error)."""
    parameters = get_parameters(session.client)
    if parameters is None:
        return
    deposit, fmt = parameters.existential_deposit, session.chain.format_balance
    target = session.client.account(session.chain.address(dest))
    if target.free + target.reserved == 0 and value < deposit:
        raise CliError(f"{fmt(value)} is below the existential deposit {fmt(deposit)} needed to open the "
                       "receiving account")
    sender_state = session.client.account(session.chain.address(sender.public))
    if session.args.keep_alive and sender_state.reserved == 0 and free - fee - value < deposit:
        raise CliError(f"--keep-alive: {sender.name} would keep less than the existential deposit "
                       f"{fmt(deposit)}; send less, or leave out --keep-alive to close the account")


def cmd_bond(args: argparse.Namespace, store: WalletStore) -> int:
    session = Session(args, store)
    sender = store.load(args.sender)
    value = session.amount(args.amount)
    summary = f"bond {session.chain.format_balance(value)} of {sender.name}'s free balance"
    return submit(session, sender, validators.bond(value), summary, spends=value)


def cmd_unbond(args: argparse.Namespace, store: WalletStore) -> int:
    session = Session(args, store)
    sender = store.load(args.sender)
    value = session.amount(args.amount)
    ledger = get_ledger(session.client, sender.public)
    if ledger is None or ledger.active == 0:
        raise CliError(f"{sender.name} has no active bonded stake to unbond")
    if value > ledger.active:
        raise CliError(f"{sender.name} has only {session.chain.format_balance(ledger.active)} bonded")
    summary = f"unbond {session.chain.format_balance(value)} of {sender.name}'s stake"
    return submit(session, sender, validators.unbond(value), summary, spends=0)


def submit(session: Session, sender: WalletEntry, call, summary: str, *, spends: int,
           check: Callable[[int, int], None] | None = None) -> int:
    """Check what the node can tell us first (before asking for the passphrase), sign, submit."""
    args, client, chain = session.args, session.client, session.chain
    address = chain.address(sender.public)
    tip = chain.parse_amount(args.tip) if args.tip else 0
    nonce = args.nonce if args.nonce is not None else client.next_index(address)
    genesis_hash = client.genesis_hash()
    era, birth_hash = signing_era(client, era_period_of(args))
    free = client.account(address).free
    # The fee depends on the length, not on the signature's bytes: price a zero-signature twin,
    # so every check is done before the passphrase is asked for. payment_queryInfo leaves the tip out.
    twin = Extrinsic(SignedData(sender.public, bytes(crypto.SIGNATURE_LENGTH), era, nonce, tip), call)
    fee = client.query_fee(twin) + tip
    if free < spends + fee:
        raise CliError(f"insufficient funds: {sender.name} has {chain.format_balance(free)} free; this needs "
                       f"{chain.format_balance(spends)} + fee {chain.format_balance(fee)}")
    if check is not None:
        check(free, fee)
    keypair = session.store.unlock(sender, read_passphrase(args))
    extrinsic = sign_extrinsic(keypair, call, nonce=nonce, genesis_hash=genesis_hash, tip=tip, era=era,
                               birth_hash=birth_hash)
    print(f"{summary}; fee {chain.format_balance(fee)}, nonce {nonce}{describe_era(era)}")
    if args.watch:
        return watch_submission(session, extrinsic)
    best = client.header()
    transaction_hash = client.submit(extrinsic)
    remember_transaction(session, transaction_hash, best.number)
    print(f"submitted 0x{transaction_hash.hex()}")
    print(f"follow it with: wallet.py watch 0x{transaction_hash.hex()}")
    return 0


def describe_era(era) -> str:
    return ", immortal" if era.is_immortal else f", valid until block #{era.birth + era.period - 1}"


def remember_transaction(session: Session, transaction_hash: bytes, best_number: int) -> None:
    """Kept for `watch` without a hash: the hash and the best block when it was sent."""
    record = {"hash": "0x" + transaction_hash.hex(), "submitted_at": best_number, "url": session.args.url}
    session.store.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_file(session.store.directory / LAST_TRANSACTION, json.dumps(record) + "\n")


# --- watching ---------------------------------------------------------------------------
# Statuses are followed by polling the pool and the chain rather than through
# author_submitAndWatchExtrinsic: the node sends the "ready" notification before the
# subscription's reply, and AsyncClient.subscribe takes the first message on the socket
# for that reply, so the subscription breaks. Polling also serves `watch` of a hash sent earlier.


def watch_submission(session: Session, extrinsic: Extrinsic) -> int:
    best = session.client.header()
    transaction_hash = session.client.submit(extrinsic)
    remember_transaction(session, transaction_hash, best.number)
    print(f"submitted 0x{transaction_hash.hex()}", flush=True)
    return follow_transaction(session, "0x" + transaction_hash.hex(), best.number + 1)


def cmd_watch(args: argparse.Namespace, store: WalletStore) -> int:
    """Follow a transaction that was already sent: TX_HASH, or the last one sent from this wallet."""
    session = Session(args, store)
    if args.tx_hash:
        if not re.fullmatch(r"0x[0-9a-fA-F]{64}", args.tx_hash):
            raise CliError(f"bad transaction hash {args.tx_hash!r}: expected 0x and 64 hex characters")
        target, start = args.tx_hash.lower(), max(1, session.client.header().number - args.depth)
    else:
        try:
            record = json.loads((store.directory / LAST_TRANSACTION).read_text())
            target, start = str(record["hash"]), max(1, int(record["submitted_at"]) + 1)
        except (OSError, ValueError, KeyError, TypeError):
            raise CliError("no transaction sent from this wallet yet; give a TX_HASH") from None
    print(f"watching {target} from block #{start}")
    return follow_transaction(session, target, start)


def follow_transaction(session: Session, target: str, start: int) -> int:
    """Print ready / inBlock / finalized as they happen; blocks from `start` on are searched."""
    client, deadline = session.client, time.monotonic() + session.args.timeout
    seen_ready, found = False, None  # found: (block number, block hash)
    while True:
        best = client.header().number
        if found is None:
            found = find_in_blocks(client, target, start, best)
            start = best + 1
            if found is not None:
                print_status("inBlock", found[1], found[0])
            elif not seen_ready and target in pending_hashes(client):
                seen_ready = True
                print_status("ready", None, None)
        if found is not None:
            canonical = client.block_hash(found[0])
            if canonical is None or "0x" + canonical.hex() != found[1]:
                print_status("retracted", found[1], found[0])
                start, found = found[0], None
                continue
            if client.header(client.finalized_hash()).number >= found[0]:
                print_status("finalized", found[1], found[0])
                return report_outcome(session, target, found[1])
        if time.monotonic() > deadline:
            where = f"it is in block #{found[0]}" if found else "it is in no block yet"
            raise CliError(f"{target} was not finalized within {session.args.timeout:g} s ({where}); "
                           f"run `wallet.py watch {target}` to keep following it")
        time.sleep(POLL_SECONDS)


def find_in_blocks(client: Client, target: str, first: int, last: int) -> tuple[int, str] | None:
    for number in range(first, last + 1):
        block = client.block(client.block_hash(number))
        if block is not None and any("0x" + x.hash.hex() == target for x in block.extrinsics):
            return number, "0x" + block.hash.hex()
    return None


def pending_hashes(client: Client) -> set[str]:
    return {"0x" + blake2b_256(bytes.fromhex(x[2:])).hex() for x in client.call("author_pendingExtrinsics")}


def print_status(status: str, block_hash: str | None, number: int | None) -> None:
    where = "" if block_hash is None else f" #{number} {block_hash}"
    print(f"{status}{where}", flush=True)


def report_outcome(session: Session, target: str, block_hash: str) -> int:
    """Included is not the same as succeeded: a failed call still pays its fee."""
    block = get_explorer_block(session.client, block_hash)
    extrinsic = next((x for x in (block or {}).get("extrinsics", []) if x["hash"] == target), None)
    if extrinsic is None:
        raise CliError(f"block {block_hash} does not contain {target}")
    fee = session.chain.format_balance(extrinsic_fee(extrinsic))
    failure = extrinsic_failure(extrinsic)
    if failure is not None:
        raise CliError(f"the transaction is in the chain but its call failed: {failure} (it paid the fee {fee})")
    print(f"success: fee paid {fee}")
    return 0


# --- command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallet.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the node's JSON-RPC address (default {DEFAULT_URL})")
    parser.add_argument("--wallet-dir", type=Path, default=DEFAULT_WALLET_DIR,
                        help=f"where keys are kept (default {DEFAULT_WALLET_DIR})")
    parser.add_argument("--passphrase-file", help=f"read the passphrase from this file (else ${PASSPHRASE_ENV}, "
                                                  "else a prompt)")
    parser.add_argument("--exact", action="store_true", help="amounts to the last planck (default: rounded to 4 "
                                                             "decimals, or 4 significant digits under 1 token)")
    parser.add_argument("--ss58-prefix", type=int, default=OFFLINE_SS58_PREFIX,
                        help="address format for create/import/list, which need no node (default 42)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="make a new key from a new mnemonic")
    create.add_argument("name")
    create.add_argument("--words", type=int, default=12, choices=(12, 15, 18, 21, 24))
    create.set_defaults(handler=cmd_create)
    imported = commands.add_parser("import", help="add a key from a mnemonic or secret URI (stdin or --uri)")
    imported.add_argument("name")
    imported.add_argument("--uri", help="a dev account only, e.g. //Alice; a real secret phrase or seed is read "
                                        "from stdin (on the command line it would show in `ps` and shell history)")
    imported.set_defaults(handler=cmd_import)
    commands.add_parser("list", help="names and addresses").set_defaults(handler=cmd_list)
    balance = commands.add_parser("balance", help="free, reserved and bonded balance")
    balance.add_argument("account", metavar="NAME|ADDRESS")
    balance.set_defaults(handler=cmd_balance)

    def transaction(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("sender", metavar="FROM", help="a wallet name")
        sub.set_defaults(handler=handler)
        return sub

    def options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--tip", help="a tip for priority (planck, or tokens as a decimal)")
        sub.add_argument("--nonce", type=int, help="sign with this nonce (default: the node's next index)")
        sub.add_argument("--watch", action="store_true", help="follow the transaction to finalized")
        sub.add_argument("--timeout", type=float, default=120, help="seconds to wait with --watch")
        add_era_options(sub)

    transfer = transaction("transfer", "send tokens", cmd_transfer)
    transfer.add_argument("dest", metavar="TO", help="a wallet name, an address or a dev account")
    transfer.add_argument("amount", metavar="AMOUNT")
    transfer.add_argument("--keep-alive", action="store_true", help="fail rather than reap the sender's account")
    options(transfer)
    for name, text, handler in (("bond", "bond free balance as stake", cmd_bond),
                                ("unbond", "start unbonding stake", cmd_unbond)):
        sub = transaction(name, text, handler)
        sub.add_argument("amount", metavar="AMOUNT")
        options(sub)
    watch = commands.add_parser("watch", help="follow a sent transaction to finalized (default: the last one)")
    watch.add_argument("tx_hash", nargs="?", metavar="TX_HASH")
    watch.add_argument("--depth", type=int, default=100, help="blocks back to search for TX_HASH")
    watch.add_argument("--timeout", type=float, default=120, help="seconds to wait")
    watch.set_defaults(handler=cmd_watch)
    from scripts import wallet_tasks  # here, not at the top: it imports this module
    wallet_tasks.add_commands(commands, options)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = WalletStore(args.wallet_dir.expanduser())
    return run_command(lambda: args.handler(args, store))


if __name__ == "__main__":
    sys.exit(main())
