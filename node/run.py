"""Running the node: wire the services, handle signals, shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import structlog
import uvloop

from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, check_not_a_silent_new_chain, load_chain_spec
from node.clock import SystemClock
from node.finality_service import FinalityService
from node.keystore import KeystoreError, load_key_file
from node.metrics import MetricsService, NodeMetrics
from node.network.chain_adapter import ChainAdapter
from node.network.config import NetworkConfig, check_peer_address, load_or_create_node_key
from node.network.service import NetworkService
from node.network.wire import ROLE_AUTHORITY, ROLE_FULL
from node.rpc_facade import ChainFacade, RpcService
from node.service import Service, ServiceTree
from runtime import crypto

log = structlog.get_logger("node")
DEFAULT_BASE_PATH = Path.home() / ".local" / "share" / "gradchain"


def validator_key(args: argparse.Namespace) -> crypto.Keypair | None:
    if args.key_file is not None:
        return load_key_file(args.key_file)
    if args.dev:
        return crypto.dev_keypair("Alice")
    if args.validator:
        raise KeystoreError("--validator needs --key-file (create one with: gradchain key generate --output-file F)")
    return None


def run_node(args: argparse.Namespace) -> int:
    config = load_chain_spec(args.chain, dev=args.dev)
    keypair = validator_key(args)
    if args.base_path is not None:
        return _run(args, config, keypair, args.base_path)
    if args.dev:
        with tempfile.TemporaryDirectory(prefix="gradchain-dev-") as base:
            return _run(args, config, keypair, Path(base))
    return _run(args, config, keypair, DEFAULT_BASE_PATH)


def _run(args, config, keypair, base: Path) -> int:
    paths = ChainPaths(base, config.chain_id)
    check_not_a_silent_new_chain(paths, config, chain_given=args.dev or args.chain is not None)
    metrics = NodeMetrics()
    clock = SystemClock()
    chain = ChainService(config, paths, pruning=args.pruning, metrics=metrics, clock=clock, validator_key=keypair)
    services: list[Service] = [chain]
    network = None
    if not args.no_network:
        # after the chain (it serves blocks from LevelDB) and so stopped before it closes LevelDB
        network = NetworkService(ChainAdapter(chain), network_config(args, paths, keypair), metrics=metrics)
        services.append(network)
    # Every node follows finality; a validator also votes (a --dev node alone, through the same gadget).
    # After the network (it gossips on its finality topic), so stopped before it.
    voting = keypair if (args.validator or args.dev) else None
    finality = FinalityService(chain, voting, clock, gossip=network)
    services.append(finality)
    if network is not None:
        network.adapter.attach_finality(finality)  # sync finalizes with peers' justifications through it
    if not args.no_rpc:
        facade = ChainFacade(chain, node_name=args.name, chain_type="Development" if args.dev else "Live",
                             network=network, finality=finality)
        services.append(RpcService(facade, host="0.0.0.0" if args.rpc_external else "127.0.0.1",
                                   port=args.rpc_port, unsafe_methods=args.rpc_methods == "unsafe",
                                   cors=[o.strip() for o in args.rpc_cors.split(",") if o.strip()]))
    if not args.no_prometheus:
        services.append(MetricsService(metrics, args.prometheus_port))
    if keypair is not None and (args.validator or args.dev):
        services.append(AuthorshipService(chain, keypair, clock,
                                          major_syncing=network.sync.is_major_syncing if network else None))
    log.info("starting", node=args.name, chain=config.name, base_path=str(base),
             validator=("0x" + keypair.public.hex()[:16]) if keypair else None)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # libuv: several times less overhead per request
        runner.run(_serve(ServiceTree(services)))
    log.info("stopped")
    return 0


def leave_without_teardown(code: int) -> NoReturn:
    """End the process once the node stopped cleanly (every service stopped, LevelDB closed, the
    temporary --dev directory removed), skipping the interpreter's teardown.

    That teardown joins the useful-work thread (a measurement in hand runs to its end, though its
    result is dropped: the block is checked again at restart), then collects and frees every object
    and module (torch, scipy, the trie's caches): on a node that synced, seconds of CPU after "stopped",
    and on a busy machine longer than the 20 s a supervisor waits before SIGKILL. Nothing is left to
    write but the standard streams, which are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or its reader is gone: nothing more to say to it
            pass
    os._exit(code)


def network_config(args: argparse.Namespace, paths: ChainPaths, keypair) -> NetworkConfig:
    for address in (*args.bootnodes, *args.reserved_nodes):
        check_peer_address(address)  # a typo is a one-line error at start, not a silent failure to dial
    return NetworkConfig(node_key_seed=load_or_create_node_key(paths.network, args.node_key_file),
                         listen_host=args.p2p_host,
                         port=args.p2p_port if args.p2p_port is not None else (0 if args.dev else 30333), bootnodes=tuple(args.bootnodes),
                         reserved_nodes=tuple(args.reserved_nodes), reserved_only=args.reserved_only,
                         roles=ROLE_AUTHORITY if keypair is not None and (args.validator or args.dev) else ROLE_FULL)


async def _serve(tree: ServiceTree) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    try:
        await tree.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("shutting down", signal=signal.Signals(signum).name)
    stop.set()
