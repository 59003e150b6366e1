"""In-memory implementations of the finality ports, and a driver over a fake clock.

For tests and simulations: each node has its own view of the block tree (what it
imported), its own verification statuses and finality; the network delivers
gossip between nodes that are online, and can partition them. Nothing here reads
the real clock: `FakeClock.now_ms` moves only when the driver moves it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from consensus.finality.justification import Justification, verify_justification
from consensus.finality.ports import DISPUTED, VERIFIED, VoterSet
from consensus.finality.voter import Voter, VoterConfig
from consensus.finality.votes import ancestry
from runtime.crypto import Keypair
from runtime.errors import GradchainError
from runtime.finality import SignedVote
from runtime.types import AccountId, BlockHash, BlockNumber, Digest, Hash, Header, Seal, Slot


class FinalityRefused(GradchainError):
    code = "finality_refused"


@dataclass
class FakeClock:
    now: int = 0

    def now_ms(self) -> int:
        return self.now


class MemoryJournal:
    """A vote journal in a dict; share one object across a 'restart' to keep the votes."""

    def __init__(self) -> None:
        self.votes: dict[tuple[int, int, int], SignedVote] = {}

    def saved_vote(self, set_id: int, round_number: int, stage: int) -> SignedVote | None:
        return self.votes.get((set_id, round_number, stage))

    def save_vote(self, vote: SignedVote) -> None:
        key = (vote.set_id, vote.round, vote.stage)
        if key in self.votes and self.votes[key] != vote:
            raise AssertionError("the journal would hold two different votes for one round and stage")
        self.votes[key] = vote

    def last_round(self, set_id: int) -> int:
        return max((r for s, r, _ in self.votes if s == set_id), default=0)

    def forget_before_round(self, set_id: int, round_number: int) -> int:
        doomed = [k for k in self.votes if k[0] < set_id or (k[0] == set_id and k[1] < round_number)]
        for key in doomed:
            del self.votes[key]
        return len(doomed)


class MemoryEnvironment:
    """One node's chain: the headers it imported, its verification statuses and its finality."""

    def __init__(self, genesis: Header, clock: FakeClock, voter_sets: dict[bytes, VoterSet]) -> None:
        self.genesis_hash = genesis.hash
        self.clock = clock
        self.headers: dict[bytes, Header] = {genesis.hash: genesis}
        self.order: dict[bytes, int] = {genesis.hash: 0}  # arrival order, for fork-choice ties
        self.status: dict[bytes, str] = {genesis.hash: VERIFIED}
        self.voter_sets = voter_sets  # shared: block hash -> the set its state records (a change there)
        self.finalized_block = (genesis.hash, 0)
        self.justifications: dict[bytes, Justification] = {}
        self.finalized_log: list[tuple[bytes, int]] = []
        self.equivocations: list[tuple[SignedVote, SignedVote]] = []

    def import_block(self, header: Header, status: str = VERIFIED) -> None:
        self.headers[header.hash] = header
        self.order.setdefault(header.hash, len(self.order))
        self.status[header.hash] = status

    # --- Environment ---
    def now_ms(self) -> int:
        return self.clock.now

    def header(self, block_hash: bytes) -> Header | None:
        return self.headers.get(block_hash)

    def best_chain_head(self, base_hash: bytes) -> bytes:
        """Longest chain containing the base and no block this node disputes (first seen wins ties)."""
        base = self.headers.get(base_hash)
        if base is None:
            return base_hash
        best = (base.number, -self.order[base_hash], base_hash)
        for block_hash, header in self.headers.items():
            if header.number <= best[0]:
                continue
            path = ancestry(self.header, (base_hash, base.number), (block_hash, header.number))
            if path is not None and all(self.status.get(h) != DISPUTED for h in path):
                candidate = (header.number, -self.order[block_hash], block_hash)
                best = max(best, candidate)
        return best[2]

    def block_status(self, block_hash: bytes) -> str:
        return self.status.get(block_hash, "pending")

    def voter_set_at(self, block_hash: bytes) -> VoterSet:
        while block_hash not in self.voter_sets:
            block_hash = self.headers[block_hash].parent_hash
        return self.voter_sets[block_hash]

    def finalized(self) -> tuple[bytes, int]:
        return self.finalized_block

    def finalize_block(self, block_hash: bytes, number: int, justification: Justification) -> None:
        if number <= self.finalized_block[1]:
            raise FinalityRefused(f"#{number} is not above the finalized #{self.finalized_block[1]}")
        if ancestry(self.header, self.finalized_block, (block_hash, number)) is None:
            raise FinalityRefused(f"#{number} does not descend from the finalized block")
        verify_justification(justification, self.genesis_hash, self.voter_set_at(self.finalized_block[0]))
        self.finalized_block = (block_hash, number)
        self.justifications[block_hash] = justification
        self.finalized_log.append((block_hash, number))

    def report_equivocation(self, first: SignedVote, second: SignedVote) -> None:
        self.equivocations.append((first, second))

    def is_finalized(self, block_hash: bytes) -> bool:
        """Whether the block is the finalized one or one of its ancestors."""
        header = self.headers.get(block_hash)
        return header is not None and header.number <= self.finalized_block[1] and ancestry(
            self.header, (block_hash, header.number), self.finalized_block) is not None


class MemoryNetwork:
    """Gossip between named nodes; an offline node neither sends nor receives."""

    def __init__(self) -> None:
        self.inboxes: dict[str, deque[bytes]] = {}
        self.online: dict[str, bool] = {}
        self.bytes_sent: dict[str, int] = {}

    def port(self, name: str) -> "MemoryPort":
        self.inboxes[name] = deque()
        self.online[name] = True
        self.bytes_sent[name] = 0
        return MemoryPort(self, name)

    def send_from(self, sender: str, message: bytes) -> None:
        if not self.online[sender]:
            return
        self.bytes_sent[sender] += len(message)
        for name, inbox in self.inboxes.items():
            if name != sender and self.online[name]:
                inbox.append(message)


@dataclass
class MemoryPort:
    network: MemoryNetwork
    name: str

    def broadcast(self, message: bytes) -> None:
        self.network.send_from(self.name, message)


@dataclass
class SimNode:
    name: str
    keypair: Keypair
    env: MemoryEnvironment
    journal: MemoryJournal
    voter: Voter
    running: bool = True


@dataclass
class Simulation:
    """N validators over a MemoryNetwork and one FakeClock, driven step by step."""

    keypairs: list[Keypair]
    weights: list[int] | None = None
    config: VoterConfig = field(default_factory=VoterConfig)
    step_ms: int = 100

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.network = MemoryNetwork()
        weights = self.weights or [1] * len(self.keypairs)
        self.genesis = make_header(BlockHash(bytes(32)), 0, b"genesis")
        self.voter_sets = {self.genesis.hash: VoterSet(0, tuple((k.public, w) for k, w in zip(self.keypairs, weights)))}
        self.nodes: dict[str, SimNode] = {}
        for i, keypair in enumerate(self.keypairs):
            name = f"v{i}"
            env = MemoryEnvironment(self.genesis, self.clock, self.voter_sets)
            journal = MemoryJournal()
            port = self.network.port(name)
            self.nodes[name] = SimNode(name, keypair, env, journal, Voter(env, port, journal, keypair, self.config))

    def add_block(self, parent: bytes, tag: bytes = b"", *, to: list[str] | None = None,
                  status: dict[str, str] | None = None) -> Header:
        """A new block on `parent`, imported by the nodes `to` (all by default), verified unless `status` says."""
        number = self.nodes["v0"].env.headers.get(parent) or next(
            n.env.headers[parent] for n in self.nodes.values() if parent in n.env.headers)
        header = make_header(BlockHash(parent), number.number + 1, tag)
        for name in to or list(self.nodes):
            self.nodes[name].env.import_block(header, (status or {}).get(name, VERIFIED))
        return header

    def set_status(self, block_hash: bytes, status: str, names: list[str] | None = None) -> None:
        for name in names or list(self.nodes):
            self.nodes[name].env.status[block_hash] = status

    def take_offline(self, *names: str) -> None:
        for name in names:
            self.network.online[name] = False
            self.network.inboxes[name].clear()
            self.nodes[name].running = False

    def bring_online(self, *names: str) -> None:
        for name in names:
            self.network.online[name] = True
            self.nodes[name].running = True

    def restart(self, name: str) -> None:
        """Replace the node's voter by a fresh one over the same chain and journal (a kill -9 and start)."""
        node = self.nodes[name]
        node.voter = Voter(node.env, MemoryPort(self.network, name), node.journal, node.keypair, self.config)

    def step(self) -> None:
        for _ in range(1000):  # deliver and react until quiet
            moved = False
            for node in self.nodes.values():
                if not node.running:
                    continue
                inbox = self.network.inboxes[node.name]
                while inbox:
                    node.voter.on_message(inbox.popleft())
                    moved = True
                node.voter.poll()
            if not moved and not any(self.network.inboxes[n].__len__() for n in self.nodes if self.nodes[n].running):
                break
        self.clock.now += self.step_ms

    def run_until(self, condition: Callable[[], bool], max_ms: int) -> bool:
        deadline = self.clock.now + max_ms
        while self.clock.now < deadline:
            self.step()
            if condition():
                return True
        return False

    def finalized_number(self, name: str) -> int:
        return self.nodes[name].env.finalized()[1]


def make_header(parent: BlockHash, number: int, tag: bytes) -> Header:
    """A header for simulations: the tag (and parent) make forks at one height distinct."""
    root = Hash(BlockHash((tag + bytes(32))[:32]) if tag else bytes(32))
    return Header(parent, BlockNumber(number), root, Hash(bytes(32)), Digest(Slot(number), AccountId(bytes(32)), Seal(b"")))
