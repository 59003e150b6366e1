"""The one narrow interface between the RPC server and the node.

RPC handlers see the node only through this protocol; the node implements it
(node/rpc_facade.py). Block hashes are 32-byte `bytes`; `at=None` means the best
block. Every method is safe to call concurrently: the node serializes what must be.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from runtime.types import Block, Extrinsic, Header


class NodeFacade(Protocol):
    # --- who we are
    node_name: str
    node_version: str
    chain_name: str
    chain_type: str
    properties: dict[str, Any]
    genesis_hash: bytes

    async def health(self) -> dict[str, Any]:
        """{"peers": int, "isSyncing": bool, "shouldHavePeers": bool}"""

    async def peers(self) -> list[dict[str, Any]]:
        """Connected peers (empty until networking lands)."""

    # --- blocks
    async def header(self, at: bytes | None) -> Header | None: ...
    async def block(self, at: bytes | None) -> Block | None: ...
    async def block_hash(self, number: int | None) -> bytes | None:
        """Canonical hash at `number`; the best block's for None."""
    async def finalized_hash(self) -> bytes: ...
    async def justification(self, block_hash: bytes) -> bytes | None:
        """The encoded finality justification stored with a block, if any."""
    async def round_state(self) -> dict[str, Any] | None:
        """The finality voter's current rounds (grandpa_roundState), or None without a gadget."""
    async def prove_finality(self, number: int) -> bytes | None:
        """An encoded finality proof of the canonical block at `number` (grandpa_proveFinality)."""

    # --- state
    async def storage(self, key: bytes, at: bytes | None) -> bytes | None: ...
    async def storage_keys(self, prefix: bytes, count: int, start_key: bytes | None, at: bytes | None) -> list[bytes]:
        """Up to `count` keys with `prefix`, in key order, after `start_key`."""
    async def read_proof(self, keys: list[bytes], at: bytes | None) -> tuple[bytes, list[Any]]:
        """(the block hash the proof is for, one trie proof per key)."""
    async def events(self, at: bytes | None) -> list[Any]: ...
    async def account(self, account: bytes, at: bytes | None) -> Any:
        """AccountInfo or None."""
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

    # --- training (runtime/pallets/training records, decoded)
    async def tasks(self, limit: int) -> list[tuple[int, Any]]: ...
    async def task(self, task_id: int) -> Any: ...
    async def round_updates(self, task_id: int, round_number: int) -> list[tuple[bytes, Any]]:
        """(update hash, UpdateRecord once scored, else its Reveal) in order of reveal."""
    async def model_versions(self, task_id: int) -> list[tuple[int, Any]]: ...
    async def rounds(self, task_id: int) -> list[tuple[int, Any]]:
        """(round, RoundSummary) of every closed round."""
    async def leaderboard(self, limit: int = 100) -> list[tuple[bytes, int]]: ...
    async def blob_info(self, blob_hash: bytes) -> Any: ...

    # --- notifications (callbacks run on the RPC server's event loop)
    def on_blocks(self, callback: Callable[[str, Header], None]) -> Callable[[], None]:
        """callback("new" | "finalized", header) for each new best / finalized block; returns unsubscribe."""
    def watch_extrinsic(self, extrinsic_hash: bytes,
                        callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """Status changes of one pooled transaction: future, ready, inBlock, finalized, dropped, invalid, usurped."""
