"""The one narrow interface between the RPC server and the node.

RPC handlers (rpc/methods/*) and the server's blob routes see the node only
through `NodeFacade`; the node implements it (node/rpc_facade.py). Everything a
handler uses is declared here: tests/test_rpc_facade.py fails if a handler reaches
for a name this protocol does not declare, or if the node's facade misses one.

Block hashes are 32-byte `bytes`; `at=None` means the best block. Every method is
safe to call concurrently: the node serializes what must be. Lists that grow with
the chain are read a page at a time (`count`, at most the method's cap), from an
index, so no call walks the whole state or chain.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Protocol

from runtime.types import Block, Extrinsic, Header


class BlobEndpoints(Protocol):
    """The /blobs/0x<hash> routes: download and upload of content-addressed blobs."""

    max_blob_bytes: int

    async def get(self, blob_hash: bytes) -> bytes | None:
        """The blob's bytes, or None if this node does not hold it."""

    async def put(self, blob_hash: bytes, data: bytes) -> bool:
        """Store a blob whose bytes hash to `blob_hash`; False if it was stored already. Raises BlobError."""


class NodeFacade(Protocol):
    # --- who we are
    node_name: str
    node_version: str
    chain_name: str
    chain_type: str
    properties: dict[str, Any]
    genesis_hash: bytes
    blobs: BlobEndpoints

    def parse_account(self, text: Any) -> bytes:
        """An SS58 address (this chain's prefix) or 0x public key; raises a GradchainError otherwise."""

    def address(self, who: bytes) -> str:
        """The account's SS58 address on this chain."""

    async def health(self) -> dict[str, Any]:
        """{"peers": int, "isSyncing": bool, "shouldHavePeers": bool}"""

    async def peers(self) -> list[dict[str, Any]]:
        """Connected peers that completed the handshake: peerId, roles, bestHash, bestNumber, reputation."""
    async def sync_state(self) -> dict[str, int]:
        """{"startingBlock", "currentBlock", "highestBlock"} as Substrate's system_syncState."""
    async def local_peer_id(self) -> str:
        """This node's libp2p peer id (base58); raises a GradchainError without networking."""
    async def local_listen_addresses(self) -> list[str]:
        """Full multiaddresses (with /p2p/<peer id>) this node listens on."""
    async def add_reserved_peer(self, address: str) -> None:
        """Keep a peer (a multiaddress ending in /p2p/<peer id>) connected."""
    async def remove_reserved_peer(self, peer_id: str) -> None: ...
    async def ban_peer(self, peer_id: str, seconds: float) -> None:
        """Disconnect a peer and refuse it for `seconds`."""
    async def unban_peer(self, peer_id: str) -> bool:
        """Lift a ban; False if the peer was not banned."""

    # --- blocks
    async def header(self, at: bytes | None) -> Header | None: ...

    async def block(self, at: bytes | None) -> Block | None: ...

    async def block_hash(self, number: int | None) -> bytes | None:
        """Canonical hash at `number`; the best block's for None."""

    async def finalized_hash(self) -> bytes: ...
    async def block_verification(self, at: bytes | None) -> dict[str, Any] | None:
        """The block's useful-work verification status as JSON (None: no such block)."""

    # --- finality
    async def justification(self, block_hash: bytes) -> bytes | None:
        """The encoded finality justification stored with a block, if any."""

    async def round_state(self) -> dict[str, Any] | None:
        """The finality voter's current rounds (grandpa_roundState), or None without a gadget."""

    async def prove_finality(self, number: int) -> bytes | None:
        """An encoded finality proof of the canonical block at `number` (grandpa_proveFinality)."""

    async def justified_by(self, number: int) -> dict[str, Any] | None:
        """Who finalized the canonical block at `number` (grandpa_justifiedBy): {block, justified: {hash,
        number}, setId, round, signers (account bytes), signedWeight, totalWeight, voters}, or None."""

    # --- state
    async def storage(self, key: bytes, at: bytes | None) -> bytes | None: ...

    async def storage_keys(self, prefix: bytes, count: int, start_key: bytes | None, at: bytes | None) -> list[bytes]:
        """Up to `count` keys with `prefix`, in key order, after `start_key` (from the key index)."""

    async def read_proof(self, keys: list[bytes], at: bytes | None) -> tuple[bytes, list[Any]]:
        """(the block hash the proof is for, one trie proof per key)."""

    async def events(self, at: bytes | None) -> list[Any]: ...

    async def account(self, account: bytes, at: bytes | None) -> Any:
        """AccountInfo or None."""

    async def account_history(self, account: bytes, before: int | None,
                              count: int) -> list[tuple[int, bytes, list, list]]:
        """(number, hash, extrinsic indices, event indices) of canonical blocks below `before` that involve
        the account, newest first."""

    async def validators(self, at: bytes | None) -> list[Any]:
        """The validator set (account, stake) in authoring order."""

    async def runtime_version(self) -> dict[str, Any]: ...

    async def metadata(self) -> dict[str, Any]: ...

    # --- transactions
    async def submit(self, extrinsic: Extrinsic) -> bytes:
        """Into the pool; raises the pool's or runtime's validity errors."""

    async def pending(self) -> list[Extrinsic]: ...

    async def next_index(self, account: bytes) -> int:
        """The account's next nonce, counting its transactions already in the pool."""

    async def query_info(self, extrinsic: Extrinsic) -> dict[str, Any]:
        """{"weight": int, "partialFee": int} as the runtime would charge it."""

    async def rotate_keys(self) -> bytes:
        """A new session key in the node's keystore; its public key (an unsafe method)."""

    # --- training (runtime/pallets/training records, decoded)
    async def tasks(self, before: int | None, count: int) -> list[tuple[int, Any]]:
        """The newest `count` tasks with ids below `before` (None: all), in ascending id order."""

    async def task(self, task_id: int) -> Any: ...

    async def round_updates(self, task_id: int, round_number: int) -> list[tuple[bytes, Any]]:
        """(update hash, UpdateRecord once scored, else its Reveal) in order of reveal."""

    async def model_versions(self, task_id: int, start: int, count: int) -> list[tuple[int, Any]]:
        """(round, ModelVersion) of rounds start .. start + count - 1 that adopted a model."""

    async def rounds(self, task_id: int, start: int, count: int) -> list[tuple[int, Any]]:
        """(round, RoundSummary) of the closed rounds start .. start + count - 1."""

    async def leaderboard(self, count: int) -> list[tuple[bytes, int]]:
        """(account, all rewards earned), largest first."""

    async def task_leaderboard(self, task_id: int, count: int) -> list[tuple[bytes, int]]:
        """(trainer, rewards earned in this task), largest first."""

    async def blob_info(self, blob_hash: bytes) -> Any: ...

    # --- notifications (callbacks run on the RPC server's event loop)
    def on_blocks(self, callback: Callable[[str, Header], None]) -> Callable[[], None]:
        """callback("new" | "finalized", header) for each new best / finalized block; returns unsubscribe."""

    def watch_extrinsic(self, extrinsic_hash: bytes,
                        callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """Status changes of one pooled transaction: future, ready, inBlock, finalized, dropped, invalid, usurped."""


def protocol_members(protocol: type) -> dict[str, bool]:
    """Every name a protocol declares -> whether it is a coroutine method (for the conformance tests)."""
    members: dict[str, bool] = {}
    for cls in reversed(protocol.__mro__):
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        members.update({name: False for name in cls.__dict__.get("__annotations__", {})})
        members.update({name: inspect.iscoroutinefunction(value) for name, value in cls.__dict__.items()
                        if callable(value) and not name.startswith("_")})
    return members
