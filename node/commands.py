"""The subcommands: key, build-spec, purge-chain, export-blocks, import-blocks, check-block (and testnet,
in node/testnet/).

Block files (export/import): the 8 bytes b"GRADBLK1", then per block a 4-byte
big-endian length and the block's canonical encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consensus.import_queue import BAD, IMPORTED, KNOWN, MISSING_PARENT, ImportQueue
from consensus.signatures import SignatureVerifier
from node.chain_setup import ChainPaths, chains_under, load_chain_spec, open_chain, opened, other_chains, spec_json
from node.keystore import write_key_file
from rpc.key_sources import SECRET_ENV, keypair_from_args
from runtime import crypto
from runtime.errors import CodecError, GradchainError
from runtime.executive import Executive
from runtime.types import MAX_BLOCK_BYTES, decode_block, encode_block
from storage.block_status import DISPUTED, VERIFIED

BLOCK_FILE_MAGIC = b"GRADBLK1"


class CommandError(GradchainError):
    code = "command"


def run(args: argparse.Namespace) -> int:
    if args.command == "testnet":
        from node.testnet.command import run as run_testnet

        return run_testnet(args)
    handlers = {"key": key, "build-spec": build_spec, "purge-chain": purge_chain, "export-blocks": export_blocks,
                "import-blocks": import_blocks, "check-block": check_block}
    return handlers[args.command](args)


# --- key ---------------------------------------------------------------------------


def generate_node_key(args: argparse.Namespace) -> int:
    """A new libp2p node key: written to --file (0600), its peer id printed (as Substrate's command does)."""
    from node.network.config import node_peer_id, write_node_key

    seed = write_node_key(args.file)
    print(node_peer_id(seed))
    return 0


def key(args: argparse.Namespace) -> int:
    if args.key_command == "generate-node-key":
        return generate_node_key(args)
    if args.key_command == "generate":
        phrase = crypto.generate_mnemonic(args.words)
        keypair = crypto.keypair_from_uri(phrase)
        if args.output_file is not None:
            if args.output_file.exists():
                raise CommandError(f"{args.output_file} exists; refusing to overwrite a key file")
            write_key_file(args.output_file, phrase, args.ss58_prefix)
        print(f"Secret phrase:  {phrase}")
    else:
        keypair = keypair_from_args(args, uri_label="URI", prompt=True)
        if args.uri is not None:  # a dev account's URI is public; a secret from elsewhere is not echoed
            print(f"Secret URI:     {args.uri.strip()}")
        else:
            print(f"Key from:       {key_source(args)}")
    print(f"Public key:     0x{keypair.public.hex()}")
    print(f"Address (SS58): {crypto.encode_address(keypair.public, args.ss58_prefix)}")
    return 0


# --- build-spec and purge-chain --------------------------------------------------------


def key_source(args: argparse.Namespace) -> str:
    if args.wallet is not None:
        return f"wallet entry {args.wallet}"
    if args.key_file is not None:
        return f"key file {args.key_file}"
    return f"${SECRET_ENV}" if os.environ.get(SECRET_ENV) else "the prompt"


def build_spec(args: argparse.Namespace) -> int:
    sys.stdout.write(spec_json(load_chain_spec(args.chain, dev=args.dev)))
    return 0


def chain_paths(args: argparse.Namespace) -> tuple[ChainPaths, object]:
    if args.base_path is None:
        raise CommandError(f"{args.command} needs --base-path (the node's data directory)")
    config = load_chain_spec(args.chain, dev=args.dev)
    return ChainPaths(args.base_path, config.chain_id), config


# --- which chain a command opened ------------------------------------------------------
# A base path can hold several chains (chains/<id>/db): every message names the chain a
# command opened and the chains that do exist there (node/chain_setup.py: other_chains).


def open_existing_chain(paths: ChainPaths, config, *, pruning: int | None, command: str):
    """Open a chain database that must exist already (export, check): never create an empty one."""
    if not paths.database.is_dir():
        raise CommandError(f"{command}: {opened(paths, config)} has no database under {paths.base}, so it holds "
                           f"no blocks; {other_chains(paths)}")
    return open_chain(paths, config, pruning=pruning)


def purge_chain(args: argparse.Namespace) -> int:
    paths, config = chain_paths(args)
    if not paths.database.exists():
        if chains_under(paths.base):
            raise CommandError(f"purge-chain: {opened(paths, config)} has no database under {paths.base}; nothing "
                               f"was deleted; {other_chains(paths)}")
        print(f"{paths.database} does not exist; nothing to purge")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("purge-chain asks for confirmation; pass -y to run without a terminal")
        if input(f"Delete {paths.database}? [y/N] ").strip().lower() != "y":
            print("Aborted")
            return 1
    shutil.rmtree(paths.database)
    print(f"{paths.database} removed")
    return 0


# --- block files ---------------------------------------------------------------------


def export_blocks(args: argparse.Namespace) -> int:
    paths, config = chain_paths(args)
    store = open_existing_chain(paths, config, pruning=None, command="export-blocks")
    try:
        best = store.best_header().number
        last = best if args.last is None else min(args.last, best)
        if best == 0 and args.first > 0:
            raise CommandError(f"export-blocks: {opened(paths, config)} under {paths.base} holds no blocks but its "
                               f"genesis; {other_chains(paths)}")
        if args.first < 0 or args.first > last:
            raise CommandError(f"--from {args.first} is outside 0..{last} of {opened(paths, config)}")
        count = 0
        with open(args.file, "wb") as out:
            out.write(BLOCK_FILE_MAGIC)
            for number in range(args.first, last + 1):
                encoded = encode_block(store.block(store.hash_at(number)))
                out.write(struct.pack(">I", len(encoded)) + encoded)
                count += 1
        print(f"exported blocks {args.first}..{last} ({count}) to {args.file}", file=sys.stderr)
    finally:
        store.close()
    return 0


def read_block_file(handle: BinaryIO) -> Iterator[bytes]:
    if handle.read(len(BLOCK_FILE_MAGIC)) != BLOCK_FILE_MAGIC:
        raise CommandError("not a gradchain block file (bad magic)")
    index = 0
    while True:
        prefix = handle.read(4)
        if not prefix:
            return
        if len(prefix) != 4:
            raise CommandError(f"block file truncated after {index} blocks")
        (length,) = struct.unpack(">I", prefix)
        if length > MAX_BLOCK_BYTES:
            raise CommandError(f"block {index} in the file claims {length} bytes, over the limit")
        encoded = handle.read(length)
        if len(encoded) != length:
            raise CommandError(f"block file truncated inside block {index}")
        yield encoded
        index += 1


def check_file_is_of_chain(handle: BinaryIO, store, paths: ChainPaths, config) -> None:
    """Refuse, before importing anything, a block file whose first block is not of the opened chain."""
    first = next(read_block_file(handle), None)
    handle.seek(0)
    if first is None:
        return
    try:
        header = decode_block(first).header
    except CodecError:
        return  # the import names the malformed block
    if header.number == 0 and header.hash != store.genesis_hash:
        problem = f"the file's genesis 0x{header.hash.hex()[:16]}.. is not the genesis of {opened(paths, config)}"
    elif header.number > 0 and store.header(header.parent_hash) is None:
        problem = f"block #{header.number}, the file's first, does not build on {opened(paths, config)}"
    else:
        return
    raise CommandError(f"import-blocks: {problem}; {other_chains(paths)}")


def import_blocks(args: argparse.Namespace) -> int:
    """Import a block file through the node's import pipeline (signatures on a second core).

    A block is finalized only once its useful work was checked here and reproduced:
    import stops, exit 2, at a block whose report does not reproduce (disputed), and
    finality stops before the first block whose useful work this node could not check
    (no validator key for it, or data missing), though import goes on."""
    from consensus.useful_work.rounds import RoundWork
    from consensus.verification import InlineRunner, UsefulWorkCheck, run_now
    from node.run import validator_key
    from storage.blobs import BlobStore

    paths, config = chain_paths(args)
    try:
        handle = open(args.file, "rb")
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    keypair = validator_key(argparse.Namespace(key_file=args.key_file, dev=args.dev, validator=False))
    created = not paths.database.exists()
    store = open_chain(paths, config, pruning=args.pruning)
    try:
        check_file_is_of_chain(handle, store, paths, config)
    except GradchainError:
        store.close()
        handle.close()
        if created:  # a refused import leaves nothing behind, not even an empty database
            shutil.rmtree(paths.database, ignore_errors=True)
        raise
    imported = skipped = 0
    unfinalized: str | None = None  # why finality stopped, if it did
    started = time.perf_counter()
    try:
        total = sum(1 for _ in read_block_file(handle))
        handle.seek(0)
        importer = ImportQueue(store, Executive(store.genesis_hash), slot_duration_ms=config.slot_duration_ms)
        work = RoundWork(BlobStore(store.db), keypair)  # scores are exact: no tolerance
        UsefulWorkCheck(store, work, runner=InlineRunner(), deliver=run_now,
                        deadline_blocks=config.useful_work_availability_blocks).attach(importer)
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as progress, \
                SignatureVerifier() as verifier:
            task = progress.add_task("blocks", total=total)
            for result in importer.import_run(_decoded_blocks(handle), verifier):
                progress.advance(task)
                if result.outcome == KNOWN:
                    skipped += 1
                    continue
                if result.outcome in (BAD, MISSING_PARENT):
                    raise CommandError(f"block #{result.number} 0x{result.hash.hex()} cannot be imported "
                                       f"({result.error.code}): {result.error.message}")
                assert result.outcome == IMPORTED
                imported += 1
                status = store.verification_status(result.hash)
                if status.state == DISPUTED:
                    raise CommandError(f"block #{result.number} 0x{result.hash.hex()} is disputed: its useful-work "
                                       f"report does not reproduce here ({'; '.join(status.reasons)}); "
                                       f"import stopped at it")
                if unfinalized is None and (status.state != VERIFIED or status.unchecked):
                    unfinalized = (f"block #{result.number}: useful work " +
                                   ("not checked here: " + "; ".join(status.unchecked) if status.state == VERIFIED
                                    else status.state))
                if unfinalized is None and store.best_hash == result.hash:
                    store.set_finalized(result.hash)
    finally:
        handle.close()
        best = store.best_header()
        finalized = store.finalized_header().number
        store.close()
    elapsed = time.perf_counter() - started
    rate = imported / elapsed if elapsed > 0 else 0.0
    if unfinalized is not None:
        print(f"finality stopped at #{finalized}: {unfinalized}", file=sys.stderr)
    print(f"imported {imported} blocks ({skipped} already known) in {elapsed:.2f} s, {rate:.1f} blocks/s; "
          f"best #{best.number} state root 0x{best.state_root.hex()}", file=sys.stderr)
    return 0


def _decoded_blocks(handle: BinaryIO) -> Iterator:
    for index, encoded in enumerate(read_block_file(handle)):
        try:
            yield decode_block(encoded)
        except CodecError as exc:
            raise CommandError(f"block {index} in the file is malformed: {exc.message}") from None


def check_block(args: argparse.Namespace) -> int:
    paths, config = chain_paths(args)
    store = open_existing_chain(paths, config, pruning=args.pruning, command="check-block")
    try:
        text = args.block
        block_hash = store.hash_at(int(text)) if text.isdigit() else _parse_hash(text)
        block = store.block(block_hash) if block_hash else None
        if block is None:
            best = store.best_header().number
            others = f"; {other_chains(paths)}" if best == 0 else ""
            raise CommandError(f"check-block: block {text} is not in {opened(paths, config)}, whose best block is "
                               f"#{best}{others}")
        if block.header.number == 0:
            print("block #0 is the genesis block")
            return 0
        importer = ImportQueue(store, Executive(store.genesis_hash), slot_duration_ms=config.slot_duration_ms)
        started = time.perf_counter()
        importer.check_block(block, check_finality=False)
        print(json.dumps({"number": block.header.number, "hash": "0x" + block.hash.hex(), "valid": True,
                          "extrinsics": len(block.extrinsics),
                          "check_ms": round((time.perf_counter() - started) * 1000, 1)}))
    finally:
        store.close()
    return 0


def _parse_hash(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise CommandError(f"{text!r} is neither a block number nor a 0x hash") from None
    if len(value) != 32:
        raise CommandError(f"{text!r} is not a 32-byte hash")
    return value
