"""Shared builders for tests: a dev chain on a real LevelDB with a fake clock, signed transfers, blocks."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

from consensus.authorship import BuiltBlock, build_block
from consensus.import_queue import ImportQueue, expected_author
from consensus.signatures import SignatureVerifier
from runtime import crypto
from runtime.context import BlockContext
from runtime.executive import Executive, sign_extrinsic
from runtime.genesis import GenesisConfig, build_genesis_state, load_genesis
from runtime.pallets import balances, system
from runtime.state import Overlay
from runtime.types import IMMORTAL, Block, Digest, Era, Extrinsic, Header, Seal

ROOT = Path(__file__).resolve().parents[2]
GENESIS_PATH = ROOT / "genesis.json"
DEV_KEYS = {name: crypto.dev_keypair(name) for name in crypto.DEV_ACCOUNT_NAMES}
KEY_BY_PUBLIC = {kp.public: kp for kp in DEV_KEYS.values()}


def dev_genesis() -> GenesisConfig:
    return load_genesis(GENESIS_PATH)


class TestChain:
    """A chain on a real LevelDB with a fake clock: slot n is at n * slot_duration ms."""

    __test__ = False

    def __init__(self, path: Path, config: GenesisConfig | None = None, *, pruning: int | None = 256,
                 finalize: bool = True) -> None:
        from storage.chainstore import ChainStore

        self.config = config or dev_genesis()
        self.chain = ChainStore.open(path, pruning=pruning)
        self.genesis_hash = self.chain.initialize(build_genesis_state(self.config))
        self.executive = Executive(self.genesis_hash)
        self.slot_ms = self.config.slot_duration_ms
        self.importer = ImportQueue(self.chain, self.executive, slot_duration_ms=self.slot_ms,
                                    clock_ms=lambda: 10**15)
        self.finalize = finalize
        self.slot = self.chain.best_header().digest.slot

    def close(self) -> None:
        self.chain.close()

    # --- state reads ---
    def overlay(self, block_hash: bytes | None = None) -> Overlay:
        return Overlay(self.chain.state_view(block_hash or self.chain.best_hash))

    def account(self, who: bytes, block_hash: bytes | None = None):
        return system.Account.get(self.overlay(block_hash), who)

    def free(self, who: bytes) -> int:
        info = self.account(who)
        return info.free if info else 0

    def nonce(self, who: bytes) -> int:
        info = self.account(who)
        return info.nonce if info else 0

    def total_issuance(self) -> int:
        return balances.TotalIssuance.get(self.overlay())

    def state_root(self) -> bytes:
        return self.chain.best_header().state_root

    # --- transactions ---
    def sign(self, keypair: crypto.Keypair, call, *, nonce: int | None = None, tip: int = 0,
             era: Era = IMMORTAL, birth_hash: bytes | None = None) -> Extrinsic:
        if nonce is None:
            nonce = self.nonce(keypair.public)
        return sign_extrinsic(keypair, call, nonce=nonce, tip=tip, era=era, birth_hash=birth_hash,
                              genesis_hash=self.genesis_hash)

    def transfer(self, sender: crypto.Keypair, dest: bytes, value: int, **kwargs) -> Extrinsic:
        return self.sign(sender, balances.transfer(dest, value), **kwargs)

    # --- blocks ---
    def build(self, transactions=(), *, parent: bytes | None = None, slot: int | None = None,
              useful_work: tuple = ()) -> BuiltBlock:
        parent = parent or self.chain.best_hash
        slot = slot if slot is not None else max(self.slot, self.chain.header(parent).digest.slot) + 1
        self.slot = max(self.slot, slot)
        authorities = self.executive.authorities(self.chain.state_view(parent))
        author = KEY_BY_PUBLIC[expected_author(authorities, slot)]
        return build_block(self.chain, self.executive, parent, author=author, slot=slot,
                           timestamp_ms=slot * self.slot_ms, transactions=transactions, signatures_checked=False,
                           useful_work=useful_work)

    def author_block(self, transactions=(), **kwargs) -> BuiltBlock:
        """Build a block and import it as the author does (no re-execution), finalizing it if best."""
        built = self.build(transactions, **kwargs)
        result = self.importer.import_block(built.block, authored=built.state).raise_for_error()
        if self.finalize and result.is_best:
            self.chain.set_finalized(built.block.hash)
        return built

    def import_block(self, block):
        """Import a block through the pipeline, finalizing it if it became best (and is verified)."""
        result = self.importer.import_block(block)
        if self.finalize and result.is_best and result.status.state == "verified":
            self.chain.set_finalized(block.hash)
        return result

    def validate(self, extrinsic: Extrinsic):
        best = self.chain.best_header()
        vctx = self.executive.validation_context(self.chain.state_view(best.hash), best.number, best.hash)
        return self.executive.validate_transaction(vctx, extrinsic)


def next_block_context(chain: TestChain) -> BlockContext:
    """A context for the block after the best, authored by Alice: for calling a pallet's functions directly."""
    best = chain.chain.best_header()
    state = Overlay(chain.chain.state_view(best.hash))
    return BlockContext(state, best.number + 1, best.hash, DEV_KEYS["Alice"].public, best.digest.slot + 1,
                        system.Params.get(state), chain.genesis_hash)


def resealed(block: Block, header: Header, keypair: crypto.Keypair | None = None) -> Block:
    """`block` with `header`, sealed again by `keypair` (default: the header's author, when we hold its key)."""
    keypair = keypair or KEY_BY_PUBLIC[header.digest.author]
    unsealed = dataclasses.replace(header, digest=Digest(header.digest.slot, keypair.public, Seal(b"")))
    seal = Seal(keypair.sign(unsealed.pre_seal_hash()))
    return Block(dataclasses.replace(unsealed, digest=Digest(header.digest.slot, keypair.public, seal)),
                 block.extrinsics)


@contextmanager
def imported_alone_and_as_run(path: Path, blocks: list[Block]):
    """Import `blocks` one at a time into one fresh chain and as a two-core run into another; yields
    (alone, as_run, their results) for a test to compare, and closes both chains."""
    alone, as_run = TestChain(path / "inline", finalize=False), TestChain(path / "shared", finalize=False)
    try:
        expected = [alone.importer.import_block(b) for b in blocks]
        with SignatureVerifier() as verifier:
            got = list(as_run.importer.import_run(blocks, verifier))
        yield alone, as_run, expected, got
    finally:
        alone.close()
        as_run.close()
