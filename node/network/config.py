"""Network settings and the node key (the libp2p identity, stable across restarts)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from node.network.host import GossipLimits, peer_id_of_seed
from node.network.wire import ROLE_FULL
from runtime.errors import GradchainError

NODE_KEY_FILE = "secret_ed25519"


class NodeKeyError(GradchainError):
    code = "node_key"


@dataclass(frozen=True)
class NetworkConfig:
    node_key_seed: bytes
    listen_host: str = "0.0.0.0"
    port: int = 30333
    bootnodes: tuple[str, ...] = ()
    reserved_nodes: tuple[str, ...] = ()
    reserved_only: bool = False
    roles: int = ROLE_FULL
    gossip: GossipLimits = field(default_factory=GossipLimits)
    max_peers: int = 50  # reserved peers are always accepted on top
    handshake_deadline_s: float = 10.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 5.0
    max_failed_pings: int = 2
    request_timeout_s: float = 15.0
    dial_interval_s: float = 2.0
    # Every gossip message costs the trio thread a signature, a protobuf frame and a yamux write on each
    # peer, whatever its size: at 1,000 transfers/s, batches every 50 ms were ~60 messages/s in and out
    # per node, and on a loaded machine the thread fell behind; blocks, on the same pubsub streams, then
    # reached peers tens of seconds late. A quarter second is a fifth of those messages (and 250 ms of
    # transaction latency, well inside a slot).
    tx_batch_interval_s: float = 0.25


class PeerAddressError(GradchainError):
    code = "peer_address"


def check_peer_address(text: str) -> str:
    """A dialable peer address (/ip4/A/tcp/P/p2p/<peer id>, or /dns...); its peer id. Else PeerAddressError."""
    import multiaddr

    try:
        address = multiaddr.Multiaddr(text)
        peer = address.value_for_protocol("p2p")
    except Exception:
        raise PeerAddressError(f"{text!r} is not a multiaddress like /ip4/127.0.0.1/tcp/30333/p2p/<peer id>") from None
    if not peer:
        raise PeerAddressError(f"{text!r} does not end in /p2p/<peer id>")
    return str(peer)


def write_node_key(path: Path, seed: bytes | None = None) -> bytes:
    """Write a new node key (32 raw bytes, mode 0600) and return it; refuses to overwrite one."""
    seed = seed if seed is not None else secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise NodeKeyError(f"{path} already exists; remove it first to make a new node key") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(seed)
    return seed


def read_node_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NodeKeyError(f"cannot read the node key {path}: {exc.strerror}") from None
    if len(data) == 64:  # also accept the key as hex text
        try:
            data = bytes.fromhex(data.decode())
        except ValueError:
            pass
    if len(data) != 32:
        raise NodeKeyError(f"{path} is not a node key (expected 32 bytes, got {len(data)}); "
                           "make one with: gradchain key generate-node-key --file PATH")
    if path.stat().st_mode & 0o077:
        raise NodeKeyError(f"{path} is readable by other users; run: chmod 600 {path}")
    return data


def load_or_create_node_key(network_dir: Path, key_file: Path | None) -> bytes:
    """--node-key-file if given; else <base>/chains/<id>/network/secret_ed25519, made on first start."""
    if key_file is not None:
        return read_node_key(key_file)
    path = network_dir / NODE_KEY_FILE
    if path.exists():
        return read_node_key(path)
    return write_node_key(path)


def node_peer_id(seed: bytes) -> str:
    return peer_id_of_seed(seed)
