"""The finality service: runs the GRANDPA-style voter (consensus/finality) for this node.

The voter is synchronous and reads the chain store, so every call into it runs on
the chain thread (`ChainService.call`), one job at a time with imports. This
service only decides *when*: after a gossiped finality message arrives, after a
block is imported or authored, and at the voter's next timer. Gossip goes out
through a `NetworkPort` (the network service's finality topic, or nothing on a
node without peers: a lone validator still finalizes with its own votes).

Evidence goes into the pool as transactions signed with this validator's key:
conflicting votes the voter saw (offences.report_vote_equivocation), two blocks
of one author in one slot (report_double_authoring), and, once dispute statements
of more than 2/3 of a set's stake are collected, a false useful-work report
(report_false_useful_work). This node's own disputes are signed and gossiped.
A validator re-seals the held-out keys it holds to validators elected later
(at each era change, and again while one lacks a key), and a newcomer checks
again the blocks it could not check before its key arrived (node/held_out_keys.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import structlog

from consensus.finality.catch_up import check_justification, set_change_blocks
from consensus.finality.disputes import DisputeCollector
from consensus.finality.justification import (
    BadJustification, FinalityProof, Justification, decode_justification,
)
from consensus.finality.messages import BadFinalityMessage, decode_message, encode_message
from consensus.finality.ports import DISPUTED, PENDING, UNVERIFIABLE, VERIFIED, NetworkPort
from consensus.finality.store_environment import StoreEnvironment, prove_finality, voter_set_of
from consensus.finality.voter import Voter, VoterConfig
from consensus.finality.votes import unknown_targets
from node.chain_service import ChainService
from node.held_out_keys import HeldOutKeys
from node.service import Service
from node.vote_blocks import VoteBlockFetcher
from runtime import codec
from runtime.crypto import Keypair
from runtime.dispatch import Call
from runtime.errors import GradchainError
from runtime.executive import sign_extrinsic
from runtime.finality import SignedDispute, sign_dispute
from runtime.hashing import blake2b_256
from runtime.pallets import offences, system
from runtime.state import Overlay
from runtime.types import Block, Header
from storage.block_status import VerificationStatus
from storage.vote_journal import DatabaseVoteJournal

log = structlog.get_logger("finality")
MAX_INBOX = 4096  # gossiped finality messages waiting for the chain thread; more are dropped
SLOT_MEMORY = 4096  # (slot, author) pairs remembered to catch two blocks in one slot


class SilentNetwork:
    """The port of a node without peers: messages go nowhere."""

    def broadcast(self, message: bytes) -> None:
        pass


class GossipPort:
    """The finality topic of the network service (node/network: publish, subscribe, report).

    The voter broadcasts from the chain thread; publishing is asyncio work, so each message
    hops to the loop. Incoming messages are read by `FinalityService.run_gossip`."""

    TOPIC = "finality"

    def __init__(self, network: Any, loop: asyncio.AbstractEventLoop, bytes_sent: Any) -> None:
        self.network = network
        self.loop = loop
        self.bytes_sent = bytes_sent  # a Prometheus counter

    def broadcast(self, message: bytes) -> None:
        self.bytes_sent.inc(len(message))
        self.loop.call_soon_threadsafe(self._publish, message)

    def _publish(self, message: bytes) -> None:
        task = self.loop.create_task(self.network.publish(self.TOPIC, message))
        task.add_done_callback(_log_publish_failure)


def _log_publish_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("finality gossip not sent", error=str(task.exception()))


def voter_config_for(slot_duration_ms: int) -> VoterConfig:
    """Round timers from the slot: T = a quarter slot, so a round of 4T fits in about one slot."""
    gossip = max(50, slot_duration_ms // 4)
    return VoterConfig(gossip_ms=gossip, rebroadcast_ms=max(1000, 4 * slot_duration_ms))


class FinalityService(Service):
    name = "finality"

    def __init__(self, chain: ChainService, keypair: Keypair | None, clock: Any, *,
                 network: NetworkPort | None = None, gossip: Any = None, config: VoterConfig | None = None) -> None:
        self.chain = chain
        self.keypair = keypair
        self.clock = clock
        self.network = network or SilentNetwork()
        self.gossip = gossip  # the network service (publish/subscribe/report), or None for a node without peers
        self.config = config or voter_config_for(chain.config.slot_duration_ms)
        self.voter: Voter | None = None
        self.finalized_listeners: list[Callable[[list[Header], Justification], None]] = []  # chain thread
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(MAX_INBOX)
        self._wake = asyncio.Event()
        self._origins: dict[bytes, str] = {}  # a gossiped message -> the peer it came from, until handled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._vote_blocks: VoteBlockFetcher | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.gossip is not None:
            self.network = GossipPort(self.gossip, self._loop, self.chain.metrics.finality_gossip_bytes)
            self._gossip_queue = self.gossip.subscribe(GossipPort.TOPIC)
            self._vote_blocks = VoteBlockFetcher(self.gossip)
        await self.chain.call(self._make_voter)
        self.chain.block_listeners.append(self._on_block_chain_thread)
        self.chain.status_listeners.append(self._on_status_chain_thread)

    def _make_voter(self) -> None:
        store = self.chain.store
        env = StoreEnvironment(store, now_ms=self.clock.now_ms, block_status=self._block_status,
                               submit_evidence=self._submit_call, on_finalized=self._on_finalized,
                               route_through=lambda block_hash: self.chain.importer.route_through(block_hash))
        self.voter = Voter(env, self.network, DatabaseVoteJournal(store.db), self.keypair, self.config)
        self.disputes = DisputeCollector(store.genesis_hash, store.header, self._authoring_set,
                                         self._submit_dispute_evidence)
        self._authored_slots: dict[tuple[int, bytes], Header] = {}
        self.held_out_keys = HeldOutKeys(self.chain, self.keypair, self._submit_call)

    async def run(self) -> None:
        if self.gossip is not None:
            reader = asyncio.create_task(self._read_gossip())
            try:
                await self._run_voter()
            finally:
                reader.cancel()
        else:
            await self._run_voter()

    async def _read_gossip(self) -> None:
        while True:
            origin, data = await self._gossip_queue.get()
            self._origins[data] = origin
            if not self.deliver(data):
                log.debug("finality inbox full: message dropped")

    async def _run_voter(self) -> None:
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
        unknown = await self.chain.call(self._step, messages)
        if unknown and self._vote_blocks is not None:
            self._vote_blocks.want(unknown, self.chain.store.finalized_header().number)

    def _step(self, messages: list[bytes]) -> list[tuple[bytes, int]]:
        for data in messages:
            origin = self._origins.pop(data, None)
            try:
                message = decode_message(data)
            except BadFinalityMessage:
                self._report(origin, "malformed finality message")
                continue
            accepted = self.disputes.add(message) if isinstance(message, SignedDispute) else \
                self.voter.on_decoded(message)
            if not accepted:
                self._report(origin, "forged or invalid finality message")
        self.voter.poll()
        voter = self.voter
        return unknown_targets(voter.env.header, voter.env.finalized()[1], [voter.background, voter.current])

    def _report(self, origin: str | None, reason: str) -> None:
        if origin is not None and self.gossip is not None:
            self._loop.call_soon_threadsafe(self.gossip.report, origin, "malformed", reason)

    async def stop(self) -> None:
        if self._vote_blocks is not None:
            self._vote_blocks.stop()
        if self._on_block_chain_thread in self.chain.block_listeners:
            self.chain.block_listeners.remove(self._on_block_chain_thread)
        if self._on_status_chain_thread in self.chain.status_listeners:
            self.chain.status_listeners.remove(self._on_status_chain_thread)

    # --- inputs -------------------------------------------------------------------

    def deliver(self, message: bytes) -> bool:
        """Hand over a gossiped finality message (from the asyncio loop); False if the inbox is full."""
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        self._wake.set()
        return True

    # --- justifications from peers (sync: consensus/finality/catch_up.py) ---------------------

    async def set_changes_to_prove(self) -> list[tuple[bytes, int]]:
        """The set-change blocks above finality, up to the best, whose justifications sync should fetch."""
        return await self.chain.call(set_change_blocks, self.chain.store)

    async def import_justification(self, data: bytes, block_hash: bytes | None = None) -> bool:
        """Finalize with a peer's justification (served as `block_hash`'s) if it proves its target final
        under the set this node derived (True: finality moved). Raises BadJustification if it does not verify."""
        return await self.chain.call(self._import_justification, data, block_hash)

    def _import_justification(self, data: bytes, block_hash: bytes | None) -> bool:
        if self.voter is None:
            return False  # not started yet (the network starts first): the next round of sync asks again
        justification = decode_justification(data)
        if block_hash is not None and justification.target_hash != block_hash:
            raise BadJustification(f"served as the justification of 0x{block_hash.hex()[:16]}, it is of "
                                   f"0x{justification.target_hash.hex()[:16]}")
        header = check_justification(self.chain.store, self.chain.store.genesis_hash, justification)
        if header is None:
            return False
        try:
            self.voter.env.finalize_block(header.hash, header.number, justification)
        except GradchainError as error:  # e.g. a block below it not verified here yet: later
            log.debug("a peer's justification cannot finalize yet", number=header.number, reason=error.message)
            return False
        log.info("finalized with a peer's justification", number=header.number, hash=header.hash.hex()[:16],
                 set_id=justification.set_id, round=justification.round)
        self._loop.call_soon_threadsafe(self._wake.set)  # the voter follows (a new set starts at round 1)
        return True

    def _on_block_chain_thread(self, block: Block, how: str) -> None:
        try:
            self._watch_block(block.header)
        except Exception:  # noqa: BLE001 - evidence is best effort: never fail an import for it
            log.exception("could not check a block for evidence", number=block.header.number)
        try:
            self.held_out_keys.on_block(block)
        except Exception:  # noqa: BLE001 - never fail an import for it; a later block seals again
            log.exception("could not handle the held-out keys of a block", number=block.header.number)
        self._loop.call_soon_threadsafe(self._wake.set)

    def _watch_block(self, header: Header) -> None:
        """Evidence a new block may carry (chain thread)."""
        key = (header.digest.slot, bytes(header.digest.author))
        seen = self._authored_slots.setdefault(key, header)
        if seen.hash != header.hash:
            log.warning("two blocks of one author in one slot", slot=header.digest.slot)
            self._submit_call(offences.report_double_authoring(seen, header))
        if len(self._authored_slots) > SLOT_MEMORY:
            del self._authored_slots[next(iter(self._authored_slots))]
        self.disputes.retry_pending()

    def _on_status_chain_thread(self, block_hash: bytes, status: VerificationStatus) -> None:
        """A verdict on a block's useful work: a dispute is signed and gossiped; any verdict may free a vote."""
        try:
            if status.state == DISPUTED:
                self._dispute(block_hash)
        except Exception:  # noqa: BLE001 - evidence is best effort
            log.exception("could not sign a dispute", hash=block_hash.hex()[:16])
        self._loop.call_soon_threadsafe(self._wake.set)

    def _dispute(self, block_hash: bytes) -> None:
        store = self.chain.store
        header, evidence = store.header(block_hash), store.dispute_evidence(block_hash)
        voters = self._authoring_set(header)
        if evidence is None or self.keypair is None or self.keypair.public not in voters:
            return
        dispute = sign_dispute(self.keypair, store.genesis_hash, voters.set_id, header, blake2b_256(evidence))
        self.disputes.add(dispute)
        self.network.broadcast(encode_message(dispute))

    def _authoring_set(self, header: Header):
        """The set that authored a block (and disputes it): the one in its parent's state."""
        return voter_set_of(Overlay(self.chain.store.state_view(header.parent_hash)))

    # --- the environment's hooks (chain thread) --------------------------------------------

    def _block_status(self, block_hash: bytes) -> str:
        """The import pipeline's verdict, as the voter's gate reads it. A block `verified` with rounds this
        validator could not check (the held-out key not sealed to it yet) is unverifiable here: no vote for
        it nor its descendants until its key arrives and the block is checked again (node/held_out_keys.py)."""
        status = self.chain.store.verification_status(block_hash)
        if status is None:
            return PENDING
        if status.state == VERIFIED and status.unchecked and self.keypair is not None:
            return UNVERIFIABLE
        return status.state

    def _on_finalized(self, headers: list[Header], justification: Justification) -> None:
        self.chain.metrics.finalized_height.set(headers[-1].number)
        for listener in self.finalized_listeners:
            listener(headers, justification)

    def _submit_dispute_evidence(self, header: Header, disputes: tuple[SignedDispute, ...]) -> None:
        log.warning("disputes of more than 2/3 of the stake: reporting the author", number=header.number)
        self._submit_call(offences.report_false_useful_work(header, disputes))

    def _submit_call(self, call: Call) -> None:
        """Sign a call with this validator's key and put it in the pool (best effort)."""
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
            log.info("submitted", call=call.name)
        except Exception as error:  # noqa: BLE001 - best effort; the voter goes on
            log.warning("the pool refused a call of this node", call=call.name, error=str(error))

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
