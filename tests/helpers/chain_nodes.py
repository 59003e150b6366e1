"""Two validators' chain services driven by hand on the test's thread with one fake clock: an author
whose every block the follower imports (the useful-work, attack and verification-status tests)."""

from __future__ import annotations

from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import FakeClock
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.pallets import system
from runtime.state import Overlay

ALICE = crypto.dev_keypair("Alice")
BOB = crypto.dev_keypair("Bob")


def build_empty_block_on(chain: ChainService, parent: bytes, slot: int):
    """Bob's empty block on `parent`, built but not committed: the test imports it through the pipeline
    (a fork that retracts the chain's own blocks)."""
    from consensus.authorship import build_block

    return build_block(chain.store, chain.executive, parent, author=BOB, slot=slot,
                       timestamp_ms=slot * chain.config.slot_duration_ms, transactions=[]).block


class Node:
    """A ChainService driven by hand on the test's thread, with a fake clock."""

    def __init__(self, path, clock: FakeClock, *, finalize: bool) -> None:
        self.config = load_chain_spec(None, dev=True)
        self.clock = clock
        self.service = ChainService(self.config, ChainPaths(path, self.config.chain_id), clock=clock,
                                    finalize_own_blocks=finalize, validator_key=ALICE, inline_useful_work=True)
        self.service._open()

    @property
    def store(self):
        return self.service.store

    def author(self):
        slot_ms = self.config.slot_duration_ms
        slot = self.clock.now_ms() // slot_ms + 1
        self.clock.time_ms = slot * slot_ms
        return self.service._author(slot, ALICE, self.clock.now_ms() + 60_000).block

    def send(self, keypair, call, nonce_offset: int = 0):
        account = system.Account.get(Overlay(self.store.state_view(self.store.best_hash)), keypair.public)
        nonce = (0 if account is None else account.nonce) + nonce_offset
        self.service._submit(sign_extrinsic(keypair, call, nonce=nonce, genesis_hash=self.store.genesis_hash))

    def close(self):
        self.service._close()


def author_and_follower(path):
    """Alice authoring (and finalizing her own verified blocks) and a follower that only imports."""
    clock = FakeClock()
    return Node(path / "a", clock, finalize=True), Node(path / "b", clock, finalize=False)


def author_and_import(author: Node, follower: Node, transactions=()):
    """Send `transactions` ((keypair, call) pairs, each signer's in nonce order) to the author, author a
    block, and import it into the follower, where it must become the best block; returns the block."""
    sent: dict[bytes, int] = {}
    for keypair, call in transactions:
        author.send(keypair, call, sent.get(keypair.public, 0))
        sent[keypair.public] = sent.get(keypair.public, 0) + 1
    block = author.author()
    assert follower.service.import_block_now(block).is_best
    return block
