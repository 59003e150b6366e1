"""The quick start's main job until the node binary lands: a real chain on LevelDB.

Builds the genesis of the chain spec, authors blocks of signed transfers among
the dev accounts (each block sealed by the validator whose slot it is), imports
every block into a second, independent database through the full import
pipeline, and prints each block's hash with both nodes' state roots.

    python -m node.demo_chain [--blocks 5] [--transfers 200] [--base-path DIR] [--chain genesis.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from consensus.authorship import build_block
from consensus.block_import import BlockImporter, expected_author
from runtime import crypto
from runtime.errors import GradchainError
from runtime.executive import Executive, sign_extrinsic
from runtime.genesis import build_genesis_state, load_genesis
from runtime.pallets import balances
from runtime.pallets.system import Account, AccountInfo
from runtime.state import Overlay
from storage.chainstore import ChainStore

DEFAULT_CHAIN = Path(__file__).resolve().parent.parent / "genesis.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m node.demo_chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=5, help="blocks to author (default 5)")
    parser.add_argument("--transfers", type=int, default=200, help="transfers per block (default 200)")
    parser.add_argument("--base-path", type=Path, help="where the two databases go (default: a temporary directory)")
    parser.add_argument("--chain", type=Path, default=DEFAULT_CHAIN, help="chain spec (default: genesis.json)")
    args = parser.parse_args(argv)
    if args.blocks < 1 or args.transfers < 0:
        parser.error("--blocks must be at least 1 and --transfers at least 0")
    return args


def run(args: argparse.Namespace, base: Path) -> None:
    config = load_genesis(args.chain)
    genesis_state = build_genesis_state(config)
    author_store = ChainStore.open(base / "author" / "db")
    follower_store = ChainStore.open(base / "follower" / "db")
    try:
        genesis_hash = author_store.initialize(genesis_state)
        follower_store.initialize(genesis_state)
        executive = Executive(genesis_hash)
        importer = BlockImporter(follower_store, executive, slot_duration_ms=config.slot_duration_ms,
                                 finalize_imported=True)
        keys = {kp.public: kp for kp in map(crypto.dev_keypair, crypto.DEV_ACCOUNT_NAMES)}
        senders = [k for k in keys.values() if _account(author_store, k.public).free > 0]
        print(f"chain {config.name!r} genesis {genesis_hash.hex()}")
        print(f"databases under {base}")
        print(f"{'block':>6}  {'hash':<66}  {'txs':>4}  {'import ms':>9}  state roots agree")
        # Slots from the recent past, so no block is ahead of the clock.
        slot = int(time.time() * 1000) // config.slot_duration_ms - args.blocks
        nonces = {k.public: _account(author_store, k.public).nonce for k in senders}
        for _ in range(args.blocks):
            slot += 1
            transfers = []
            for i in range(args.transfers):
                sender = senders[i % len(senders)]
                dest = senders[(i + 1) % len(senders)].public
                transfers.append(sign_extrinsic(sender, balances.transfer_keep_alive(dest, 1_000 + i),
                                                nonce=nonces[sender.public], genesis_hash=genesis_hash))
                nonces[sender.public] += 1
            parent = author_store.best_hash
            authorities = executive.authorities(author_store.state_view(parent))
            built = build_block(author_store, executive, parent, author=keys[expected_author(authorities, slot)],
                                slot=slot, timestamp_ms=slot * config.slot_duration_ms,
                                transactions=transfers, signatures_checked=False)
            author_store.commit_block(built.block, built.view, make_best=True, finalize=True)
            result = importer.import_block(built.block)
            follower_root = follower_store.best_header().state_root
            agree = "yes" if follower_root == built.block.header.state_root else "NO"
            print(f"{built.block.header.number:>6}  0x{built.block.hash.hex()}  {len(built.block.extrinsics):>4}  "
                  f"{result.import_ms:>9.1f}  {agree}")
        print(f"best block #{author_store.best_header().number}, state root 0x{author_store.best_header().state_root.hex()}")
    finally:
        author_store.close()
        follower_store.close()


def _account(store: ChainStore, who: bytes) -> AccountInfo:
    return Account.get(Overlay(store.state_view(store.best_hash)), who) or AccountInfo(0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.base_path:
            run(args, args.base_path)
        else:
            with tempfile.TemporaryDirectory(prefix="gradchain-") as tmp:
                run(args, Path(tmp))
    except GradchainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
