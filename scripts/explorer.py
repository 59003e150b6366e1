#!/usr/bin/env python3
"""gradchain explorer: blocks, extrinsics, events, accounts and validators from any node's RPC.

    python scripts/explorer.py blocks [--count 10] [--html OUT.html]
    python scripts/explorer.py block NUMBER|HASH
    python scripts/explorer.py account ADDRESS [--depth 100]
    python scripts/explorer.py validators
    python scripts/explorer.py stats [--count 50] [--html OUT.html]
    python scripts/explorer.py follow [--limit N]
    python scripts/explorer.py tasks
    python scripts/explorer.py task ID [--html OUT.html] [--baseline ACC]
    python scripts/explorer.py leaderboard

`--html` writes one self-contained page (inline CSS and SVG plots of block times and
transactions per block; no scripts, no network). Every error is one line, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from rpc.client import AsyncClient, Client, digest_of  # noqa: E402
from rpc.digest import describe_logs  # noqa: E402
from scripts._explorer_render import (  # noqa: E402
    describe_verification, key_value_table, render_page, short_address, stats_rows,
)
from scripts._common import (  # noqa: E402
    DEFAULT_URL, ChainInfo, CliError, block_number, block_timestamp, call_param_types, connect, event_field_types,
    extrinsic_failure, extrinsic_fee, format_time, get_explorer_block, get_ledger, render_fields, run_command, short_hex,
)

MAX_WINDOW = 1024  # blocks one command reads (chain_getBlockHash takes up to 1024 numbers at once)
HISTORY_PAGE = 100  # explorer_accountHistory's page cap


@dataclass(frozen=True)
class BlockSummary:
    number: int
    hash: str
    author: str
    timestamp_ms: int | None
    extrinsics: int
    transactions: int  # signed extrinsics
    events: int
    interval_ms: int | None  # since the parent block, when both have a timestamp


@dataclass(frozen=True)
class WindowStats:
    best: int
    finalized: int
    blocks: int
    average_interval_ms: float | None
    min_interval_ms: int | None
    max_interval_ms: int | None
    extrinsics_per_block: float
    transactions_per_block: float
    transactions: int
    transactions_per_second: float | None


class Explorer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client: Client = connect(args.url)
        self.chain = ChainInfo.of(self.client, exact=getattr(args, "exact", False))
        self.console = Console(highlight=False)
        self.finalized = 0  # the finalized height when the last window of blocks was read

    # --- reading ---------------------------------------------------------------------

    def finalized_number(self) -> int:
        return self.client.header(self.client.finalized_hash()).number

    def latest_blocks(self, count: int) -> list[BlockSummary]:
        """The newest `count` blocks, newest first, each with its time since its parent."""
        if not 1 <= count <= MAX_WINDOW:
            raise CliError(f"--count must be 1 to {MAX_WINDOW}")
        self.finalized = self.finalized_number()  # read before the best block, so it is never above it
        best = self.client.header().number
        first = max(0, best - count + 1)
        numbers = list(range(max(0, first - 1), best + 1))  # one more: the oldest block's parent
        hashes = self.client.call("chain_getBlockHash", numbers)
        raw = [self.client.call("explorer_block", h) for h in hashes if h is not None]
        summaries, parent_time = [], None
        for block in raw:
            time_ms = block_timestamp(block)
            if block_number(block) >= first:
                summaries.append(self.summarize(block, time_ms, parent_time))
            parent_time = time_ms
        return summaries[::-1]

    def summarize(self, block: dict, time_ms: int | None, parent_time_ms: int | None) -> BlockSummary:
        extrinsics = block["extrinsics"]
        interval = None if time_ms is None or parent_time_ms is None else time_ms - parent_time_ms
        events = sum(len(x["events"]) for x in extrinsics) + len(block["blockEvents"])
        return BlockSummary(block_number(block), block["header"]["hash"],
                            self.chain.address(digest_of(block["header"]).author), time_ms, len(extrinsics),
                            sum(1 for x in extrinsics if x["signer"]), events, interval)

    def window_stats(self, blocks: list[BlockSummary]) -> WindowStats:
        intervals = [b.interval_ms for b in blocks if b.interval_ms is not None]
        transactions = sum(b.transactions for b in blocks)
        span_s = sum(intervals) / 1000  # the time in which the window's blocks were made
        return WindowStats(
            best=blocks[0].number if blocks else 0, finalized=self.finalized, blocks=len(blocks),
            average_interval_ms=sum(intervals) / len(intervals) if intervals else None,
            min_interval_ms=min(intervals, default=None), max_interval_ms=max(intervals, default=None),
            extrinsics_per_block=sum(b.extrinsics for b in blocks) / max(1, len(blocks)),
            transactions_per_block=transactions / max(1, len(blocks)), transactions=transactions,
            transactions_per_second=transactions / span_s if span_s else None)

    def find_block(self, text: str) -> dict:
        if re.fullmatch(r"0x[0-9a-fA-F]{64}", text):
            at = text.lower()
        elif re.fullmatch(r"[0-9]+", text):
            found = self.client.block_hash(int(text))
            if found is None:
                raise CliError(f"no block #{text}: the best block is #{self.client.header().number}")
            at = "0x" + found.hex()
        else:
            raise CliError(f"bad block {text!r}: give a block number or a 0x and 64-hex block hash")
        block = get_explorer_block(self.client, at)
        if block is None:
            raise CliError(f"the node has no block {at}")
        return block

    # --- commands ----------------------------------------------------------------------

    def cmd_blocks(self) -> None:
        blocks = self.latest_blocks(self.args.count)
        self.console.print(self.blocks_table(blocks))
        self.write_html(blocks)

    def cmd_stats(self) -> None:
        blocks = self.latest_blocks(self.args.count)
        self.console.print(self.stats_table(self.window_stats(blocks)))
        self.write_html(blocks)

    def cmd_block(self) -> None:
        block = self.find_block(self.args.block)
        header, number = block["header"], block_number(block)
        digest = digest_of(header)
        overview = key_value_table(f"Block #{number}")
        for key, value in (("hash", header["hash"]), ("parent", header["parentHash"]),
                           ("state root", header["stateRoot"]), ("extrinsics root", header["extrinsicsRoot"]),
                           ("slot", str(digest.slot)), ("author", self.chain.address(digest.author)),
                           ("seal", short_hex("0x" + digest.seal.hex(), 18) if digest.seal else "(unsealed)"),
                           ("digest logs", "\n".join(describe_logs(header["digest"]))),
                           ("time", format_time(block_timestamp(block))),
                           ("finalized", "yes" if number <= self.finalized_number() else "not yet"),
                           ("useful work", describe_verification(
                               self.client.call("chain_getBlockVerification", header["hash"])))):
            overview.add_row(key, Text(value))
        self.console.print(overview)
        extrinsics = Table(title="Extrinsics", title_justify="left")
        for name in ("#", "hash", "call", "arguments", "signer", "nonce", "result", "fee"):
            extrinsics.add_column(name, overflow="fold")
        events = Table(title="Events", title_justify="left")
        for name in ("extrinsic", "event", "fields"):
            events.add_column(name, overflow="fold")
        for index, x in enumerate(block["extrinsics"]):
            failure = extrinsic_failure(x)
            extrinsics.add_row(str(index), short_hex(x["hash"], 12), x["call"],
                               Text(render_fields(x["args"], call_param_types(x["call"]), self.chain)),
                               Text(self.chain.address(x["signer"]) if x["signer"] else "(inherent)"),
                               "" if x["nonce"] is None else str(x["nonce"]),
                               Text("ok" if failure is None else f"failed: {failure}",
                                    style="green" if failure is None else "red"),
                               self.chain.format_balance(extrinsic_fee(x)) if x["signer"] else "")
            for event in x["events"]:
                events.add_row(str(index), *self.event_cells(event))
        for event in block["blockEvents"]:
            events.add_row("(block)", *self.event_cells(event))
        self.console.print(extrinsics)
        self.console.print(events)

    def event_cells(self, event: dict) -> tuple[str, Text]:
        name = event.get("event", "(unnamed event)")
        return name, Text(render_fields(event, event_field_types(name), self.chain, skip=("event",)))

    def cmd_account(self) -> None:
        account = self.chain.parse_account(self.args.account)
        address = self.chain.address(account)
        state = self.client.account(address)
        overview = key_value_table("Account")
        for key, value in (("address", address), ("public key", "0x" + account.hex()),
                           ("free", self.chain.format_balance(state.free)),
                           ("reserved", self.chain.format_balance(state.reserved)), ("nonce", str(state.nonce))):
            overview.add_row(key, Text(value))
        ledger = get_ledger(self.client, account)
        if ledger is not None:
            unlocking = sum(chunk.value for chunk in ledger.unlocking)
            overview.add_row("bonded", f"{self.chain.format_balance(ledger.active)} "
                                       f"(unlocking {self.chain.format_balance(unlocking)})")
        self.console.print(overview)
        history = Table(title=f"History (the last {self.args.depth} blocks involving the account)",
                        title_justify="left")
        for name in ("block", "time", "extrinsic", "call", "role", "result", "events naming the account"):
            history.add_column(name, overflow="fold")
        for row in self.account_history("0x" + account.hex(), self.args.depth):
            history.add_row(*row)
        if not history.row_count:
            history.caption = "no extrinsics or events of this account"
        self.console.print(history)

    def account_history(self, account_hex: str, depth: int) -> list[tuple]:
        """Extrinsics signed by the account and events naming it, newest first, in the last `depth` blocks
        that involve it (the node's account index says which: no scan of blocks)."""
        if not 1 <= depth <= MAX_WINDOW:
            raise CliError(f"--depth must be 1 to {MAX_WINDOW}")
        entries: list[dict] = []
        before = None
        while len(entries) < depth:
            wanted = min(HISTORY_PAGE, depth - len(entries))
            page = self.client.call("explorer_accountHistory", account_hex, before, wanted)
            entries += page
            if len(page) < wanted:
                break
            before = page[-1]["number"]
        rows = []
        for entry in entries:
            block = get_explorer_block(self.client, entry["hash"])
            if block is None:
                continue
            when, number = format_time(block_timestamp(block), date=False), str(block_number(block))
            for index, x in enumerate(block["extrinsics"]):
                naming = [e for e in x["events"] if account_hex in e.values()]
                if x["signer"] != account_hex and not naming:
                    continue
                role = "signer" if x["signer"] == account_hex else "named"
                result = extrinsic_failure(x) or "ok"
                rows.append((number, when, str(index), x["call"], role, result, self.events_text(naming)))
            naming = [e for e in block["blockEvents"] if account_hex in e.values()]
            if naming:
                rows.append((number, when, "(block)", "", "named", "", self.events_text(naming)))
        return rows

    def events_text(self, events: list[dict]) -> Text:
        lines = []
        for event in events:
            name, fields = self.event_cells(event)
            lines.append(f"{name}({fields.plain})")
        return Text("\n".join(lines))

    def cmd_validators(self) -> None:
        validators = self.client.call("explorer_validators")
        total = sum(int(v["stake"]) for v in validators) or 1
        table = Table(title=f"Validators ({len(validators)})", title_justify="left")
        for name, justify in (("#", "right"), ("address", "left"), ("stake", "right"), ("share", "right")):
            table.add_column(name, justify=justify, overflow="fold")
        for index, v in enumerate(validators):
            table.add_row(str(index), Text(v["address"]), self.chain.format_balance(v["stake"]),
                          f"{100 * int(v['stake']) / total:.1f}%")
        self.console.print(table)

    def cmd_follow(self) -> None:
        try:
            asyncio.run(self.follow(self.args.limit))
        except KeyboardInterrupt:
            pass  # Ctrl-C is how `follow` ends

    async def follow(self, limit: int | None) -> None:
        """Print each new block as chain_subscribeNewHeads announces it; fill any gap in the numbers."""
        shown, last, parent_time = 0, None, None
        async with AsyncClient(self.args.url) as client:
            while limit is None or shown < limit:
                try:
                    async for head in client.subscribe("chain_subscribeNewHeads"):
                        number = int(head["number"], 16)
                        first = number if last is None else last + 1
                        for n in range(first, number + 1):
                            block = await client.call("explorer_block", await client.call("chain_getBlockHash", n))
                            time_ms = block_timestamp(block)
                            self.console.print(self.follow_line(self.summarize(block, time_ms, parent_time)))
                            parent_time, last, shown = time_ms, n, shown + 1
                            if limit is not None and shown >= limit:
                                return
                # AsyncClient.subscribe takes the first message for the reply; when a notification
                # wins that race it fails with KeyError. Subscribe again; the gap fill covers it.
                except KeyError:
                    continue

    def follow_line(self, b: BlockSummary) -> Text:
        interval = "" if b.interval_ms is None else f"  +{b.interval_ms / 1000:.2f} s"
        return Text(f"#{b.number:<7} {short_hex(b.hash, 10)}  {b.extrinsics} ext  {b.transactions} tx  "
                    f"by {short_address(b.author)}  {format_time(b.timestamp_ms, date=False)}{interval}")

    # --- views ------------------------------------------------------------------------

    def blocks_table(self, blocks: list[BlockSummary]) -> Table:
        table = Table(title=f"Latest blocks (finalized #{self.finalized})", title_justify="left")
        for name, justify in (("number", "right"), ("hash", "left"), ("ext", "right"), ("tx", "right"),
                              ("events", "right"), ("author", "left"), ("time (UTC)", "left"),
                              ("interval", "right")):
            table.add_column(name, justify=justify, no_wrap=True)
        for b in blocks:
            table.add_row(str(b.number), short_hex(b.hash, 8), str(b.extrinsics), str(b.transactions),
                          str(b.events), short_address(b.author), format_time(b.timestamp_ms, date=False),
                          "" if b.interval_ms is None else f"{b.interval_ms / 1000:.2f} s")
        return table

    def stats_table(self, stats: WindowStats) -> Table:
        table = key_value_table(f"Chain statistics over the last {stats.blocks} blocks")
        for key, value in stats_rows(stats):
            table.add_row(key, value)
        return table

    def write_html(self, blocks: list[BlockSummary]) -> None:
        if not self.args.html:
            return
        chain_name = self.client.call("system_chain")
        page = render_page(chain_name, blocks, stats_rows(self.window_stats(blocks)))
        path = Path(self.args.html)
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from None
        self.console.print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explorer.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the node's JSON-RPC address (default {DEFAULT_URL})")
    parser.add_argument("--exact", action="store_true", help="amounts to the last planck (default: rounded)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    blocks = commands.add_parser("blocks", help="the latest blocks")
    blocks.add_argument("--count", type=int, default=10)
    blocks.add_argument("--html", metavar="OUT.html", help="also write a static page with plots")
    blocks.set_defaults(handler=Explorer.cmd_blocks)
    block = commands.add_parser("block", help="one block: header, extrinsics and events")
    block.add_argument("block", metavar="NUMBER|HASH")
    block.set_defaults(handler=Explorer.cmd_block)
    account = commands.add_parser("account", help="balance, nonce and recent history of an account")
    account.add_argument("account", metavar="ADDRESS")
    account.add_argument("--depth", type=int, default=100,
                         help="how many of the blocks that involve the account to show (default 100)")
    account.set_defaults(handler=Explorer.cmd_account)
    commands.add_parser("validators", help="the validator set and stakes").set_defaults(handler=Explorer.cmd_validators)
    stats = commands.add_parser("stats", help="heights, block time and extrinsics per block")
    stats.add_argument("--count", type=int, default=50, help="blocks to average over (default 50)")
    stats.add_argument("--html", metavar="OUT.html", help="also write a static page with plots")
    stats.set_defaults(handler=Explorer.cmd_stats)
    follow = commands.add_parser("follow", help="print new blocks as they arrive (Ctrl-C to stop)")
    follow.add_argument("--limit", type=int, help="stop after this many blocks")
    follow.set_defaults(handler=Explorer.cmd_follow)
    commands.add_parser("tasks", help="training tasks").set_defaults(handler=training_view("cmd_tasks"))
    task = commands.add_parser("task", help="one training task: rounds, updates, models and trainers")
    task.add_argument("task", type=int, metavar="ID")
    task.add_argument("--html", metavar="OUT.html", help="also write a static page with an accuracy plot")
    task.add_argument("--baseline", type=float, metavar="ACC", help="centralized accuracy to plot, e.g. 0.962")
    task.set_defaults(handler=training_view("cmd_task"))
    commands.add_parser("leaderboard", help="accounts by rewards earned").set_defaults(
        handler=training_view("cmd_leaderboard"))
    return parser


def training_view(name: str):
    """A command of scripts/explorer_tasks.py, imported when it runs (that module imports this one)."""
    def handler(explorer: Explorer) -> None:
        from scripts import explorer_tasks
        getattr(explorer_tasks, name)(explorer)
    return handler


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.handler(Explorer(args)))


if __name__ == "__main__":
    sys.exit(main())
