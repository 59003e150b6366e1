"""The finality service: runs the GRANDPA-style voter (consensus/finality) for this node.

The voter is synchronous and reads the chain store, so every call into it runs on
the chain thread (`ChainService.call`), one job at a time with imports. This
service only decides *when*: after a gossiped finality message arrives, after a
block is imported or authored, and at the voter's next timer. Gossip goes out
through a `NetworkPort` (the network service's finality topic, or nothing on a
node without peers: a lone validator still finalizes with its own votes).

Equivocation evidence the voter finds is signed with this validator's key and
put in the pool as an offences.report_vote_equivocation transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import structlog

from consensus.finality.justification import FinalityProof, Justification
from consensus.finality.ports import DISPUTED, VERIFIED, NetworkPort
from consensus.finality.store_environment import StoreEnvironment, prove_finality
from consensus.finality.voter import Voter, VoterConfig
from node.chain_service import ChainService
from node.service import Service
from runtime.crypto import Keypair
from runtime import codec
from runtime.dispatch import Call
from runtime.executive import sign_extrinsic
from runtime.pallets import system
from runtime.state import Overlay
from runtime.types import Block, Header
from storage.vote_journal import DatabaseVoteJournal

log = structlog.get_logger("finality")
MAX_INBOX = 4096  # gossiped finality messages waiting for the chain thread; more are dropped


class SilentNetwork:
    """The port of a node without peers: messages go nowhere."""

    def broadcast(self, message: bytes) -> None:
        pass


def voter_config_for(slot_duration_ms: int) -> VoterConfig:
    """Round timers from the slot: T = a quarter slot, so a round of 4T fits in about one slot."""
    gossip = max(50, slot_duration_ms // 4)
    return VoterConfig(gossip_ms=gossip, rebroadcast_ms=max(1000, 4 * slot_duration_ms))


class FinalityService(Service):
    name = "finality"

    def __init__(self, chain: ChainService, keypair: Keypair | None, clock: Any, *,
                 network: NetworkPort | None = None, config: VoterConfig | None = None) -> None:
        self.chain = chain
        self.keypair = keypair
        self.clock = clock
        self.network = network or SilentNetwork()
        self.config = config or voter_config_for(chain.config.slot_duration_ms)
        self.voter: Voter | None = None
        self.finalized_listeners: list[Callable[[list[Header], Justification], None]] = []  # chain thread
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(MAX_INBOX)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.chain.call(self._make_voter)
        self.chain.block_listeners.append(self._on_block_chain_thread)

    def _make_voter(self) -> None:
        store = self.chain.store
        env = StoreEnvironment(store, now_ms=self.clock.now_ms, block_status=self._block_status,
                               submit_evidence=self._submit_evidence, on_finalized=self._on_finalized)
        self.voter = Voter(env, self.network, DatabaseVoteJournal(store.db), self.keypair, self.config)

    async def run(self) -> None:
        while True:
            woken = asyncio.create_task(self._wake.wait())
            timer = asyncio.create_task(self.clock.sleep_until(self.voter.next_wakeup_ms()))
            try:
                await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                timer.cancel()
            self._wake.clear()
            await self.step()

    async def step(self) -> None:
        """Hand the waiting messages to the voter and let it make every step that is due."""
        messages = []
        while not self._inbox.empty():
            messages.append(self._inbox.get_nowait())
        await self.chain.call(self._step, messages)

    def _step(self, messages: list[bytes]) -> None:
        for message in messages:
            self.voter.on_message(message)
        self.voter.poll()

    async def stop(self) -> None:
        if self._on_block_chain_thread in self.chain.block_listeners:
            self.chain.block_listeners.remove(self._on_block_chain_thread)

    # --- inputs -------------------------------------------------------------------

    def deliver(self, message: bytes) -> bool:
        """Hand over a gossiped finality message (from the asyncio loop); False if the inbox is full."""
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        self._wake.set()
        return True

    def _on_block_chain_thread(self, block: Block, how: str) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    # --- the environment's hooks (chain thread) --------------------------------------------

    def _block_status(self, block_hash: bytes) -> str:
        # Until the import pipeline keeps a status per block: what this node disputes is disputed,
        # everything it imported was checked during import.
        return DISPUTED if self.chain.store.dispute_evidence(block_hash) is not None else VERIFIED

    def _on_finalized(self, headers: list[Header], justification: Justification) -> None:
        self.chain.metrics.finalized_height.set(headers[-1].number)
        for listener in self.finalized_listeners:
            listener(headers, justification)

    def _submit_evidence(self, call: Call) -> None:
        if self.keypair is None:
            return
        store = self.chain.store
        info = system.Account.get(Overlay(store.state_view(store.best_hash)), self.keypair.public)
        nonce = info.nonce if info else 0
        pooled = {x.signed.nonce for x in self.chain.pool.ready() if x.signed and x.signed.signer == self.keypair.public}
        while nonce in pooled:
            nonce += 1
        extrinsic = sign_extrinsic(self.keypair, call, nonce=nonce, genesis_hash=store.genesis_hash)
        try:
            self.chain.pool.submit(extrinsic, at_block=store.best_header().number)
            log.warning("submitted equivocation evidence", call=call.name)
        except Exception as error:  # noqa: BLE001 - evidence is best effort; the voter goes on
            log.warning("equivocation evidence refused by the pool", error=str(error))

    # --- reads for RPC (chain thread) ---------------------------------------------------------

    def round_state(self) -> dict[str, Any]:
        """grandpa_roundState's answer, shaped like Substrate's (accounts as raw bytes)."""
        voter = self.voter
        voters = voter.voters

        def round_json(round_) -> dict[str, Any]:
            def stage(votes) -> dict[str, Any]:
                heard = set(votes.first)
                return {"currentWeight": sum(voters.weight_of(v) for v in heard),
                        "missing": [who for who, _ in voters.voters if who not in heard]}
            return {"round": round_.number, "totalWeight": voters.total_weight,
                    "thresholdWeight": voters.threshold, "prevotes": stage(round_.prevotes),
                    "precommits": stage(round_.precommits)}
        background = [round_json(voter.background)] if voter.background is not None else []
        return {"setId": voters.set_id, "best": round_json(voter.current), "background": background}

    def prove_finality(self, number: int) -> bytes | None:
        """grandpa_proveFinality's answer: an encoded FinalityProof, or None."""
        proof = prove_finality(self.chain.store, number)
        return None if proof is None else codec.encode(proof, FinalityProof)
