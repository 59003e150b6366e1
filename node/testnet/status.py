"""What `gradchain testnet` shows of each node, read over the node's JSON-RPC only.

Blocks disputed and rounds verified are counted by scanning, once per block, the
node's verification status of each new canonical block (chain_getBlockVerification);
which blocks close a training round is chain content, the same on every node, so it
is read once per block hash (explorer_events) and shared between the nodes' readers.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.table import Table

from node.testnet.processes import TestnetNode
from runtime.errors import GradchainError

ROUND_CLOSED = "training.RoundClosed"
MAX_SCAN_PER_REFRESH = 50  # a node that synced 10 000 blocks is scanned over many refreshes


class NodeStatus(NamedTuple):
    name: str
    pid: int | None
    state: str  # running | stopped | exited N | unreachable
    best: int | None = None
    finalized: int | None = None
    peers: int | None = None
    pool: int | None = None
    disputed: int = 0
    rounds_verified: int = 0

    def to_json(self) -> dict:
        return self._asdict()


class RoundsOfBlocks:
    """{block hash: rounds its events close}, read once per hash from whichever node is asked first."""

    def __init__(self) -> None:
        self.known: dict[str, int] = {}

    def rounds_closed(self, node: TestnetNode, block_hash: str) -> int:
        if block_hash not in self.known:
            events = node.call("explorer_events", block_hash) or []
            self.known[block_hash] = sum(1 for e in events if e.get("event") == ROUND_CLOSED)
        return self.known[block_hash]


class StatusReader:
    """One node's status; its verification counts grow as the scan walks new blocks."""

    def __init__(self, node: TestnetNode, rounds: RoundsOfBlocks) -> None:
        self.node, self.rounds = node, rounds
        self.scanned = 0  # blocks 1..scanned have a final verdict counted
        self.disputed = 0
        self.rounds_verified = 0

    def read(self) -> NodeStatus:
        node = self.node
        if node.process is None:
            return NodeStatus(node.name, None, "not started")
        code = node.exit_code()
        if code is not None:
            return NodeStatus(node.name, node.pid, "stopped" if node.stopped_on_purpose else f"exited {code}",
                              disputed=self.disputed, rounds_verified=self.rounds_verified)
        try:
            best = int(node.call("chain_getHeader", timeout=3)["number"], 16)
            finalized_hash = node.call("chain_getFinalizedHead", timeout=3)
            finalized = int(node.call("chain_getHeader", finalized_hash, timeout=3)["number"], 16)
            peers = node.call("system_health", timeout=3)["peers"]
            pool = len(node.call("author_pendingExtrinsics", timeout=3))
            self._scan(best)
        except GradchainError:
            return NodeStatus(node.name, node.pid, "unreachable", disputed=self.disputed,
                              rounds_verified=self.rounds_verified)
        return NodeStatus(node.name, node.pid, "running", best, finalized, peers, pool, self.disputed,
                          self.rounds_verified)

    def _scan(self, best: int) -> None:
        """Count the verdicts of canonical blocks up to best; stop at the first still undecided."""
        for number in range(self.scanned + 1, min(best, self.scanned + MAX_SCAN_PER_REFRESH) + 1):
            block_hash = self.node.call("chain_getBlockHash", number, timeout=3)
            status = self.node.call("chain_getBlockVerification", block_hash, timeout=3) if block_hash else None
            if status is None or status["status"] in ("pending", "unverifiable"):
                return
            if status["status"] == "disputed":
                self.disputed += 1
            elif not status.get("unchecked"):
                self.rounds_verified += self.rounds.rounds_closed(self.node, block_hash)
            self.scanned = number


def status_table(statuses: list[NodeStatus], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("node", "pid", "state", "best", "finalized", "peers", "pool", "disputed", "rounds verified"):
        table.add_column(column, justify="left" if column in ("node", "state") else "right")

    def cell(value) -> str:
        return "-" if value is None else str(value)

    for s in statuses:
        table.add_row(s.name, cell(s.pid), s.state, cell(s.best), cell(s.finalized), cell(s.peers), cell(s.pool),
                      str(s.disputed), str(s.rounds_verified))
    return table
