"""The node side of rpc.facade.NodeFacade, and the service that serves JSON-RPC.

Reads and writes of the chain run on the chain service's thread; notifications
(new heads, pool statuses) are produced there and handed to the RPC event loop
with call_soon_threadsafe, so RPC callbacks never run on the chain thread.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from typing import Any, Callable

from node.chain_service import ChainService
from node.blob_admission import AdmissionLimits, BlobAdmission
from node.finality_service import FinalityService
from node.finality_summary import justified_by
from node.indexer import IndexUnavailable
from node.keystore import write_key_file
from node.service import Service
from rpc.app import build_server
from rpc.errors import RpcError
from runtime import api as runtime_api
from runtime import crypto
from runtime.errors import GradchainError
from runtime.executive import VERSION
from runtime.types import Block, Extrinsic, Header

NODE_VERSION = "0.1.0"


STATE_NOT_INDEXED = -32000  # state_getKeysPaged at a block the key index cannot answer for


class ChainFacade:
    """NodeFacade over the chain service: every read of chain state goes through runtime/api.py."""

    def __init__(self, chain: ChainService, *, node_name: str, chain_type: str, network=None,
                 finality: FinalityService | None = None) -> None:
        self.chain = chain
        self.network = network  # a NetworkService, or None for a node without networking
        self.finality = finality
        self.node_name = node_name
        self.node_version = NODE_VERSION
        self.chain_name = chain.config.name
        self.chain_type = chain_type
        self.properties = chain.config.properties()
        self.prefix = chain.config.ss58_prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._block_callbacks: dict[int, Callable[[str, Header], None]] = {}
        self._watchers: dict[bytes, list[Callable[[str, Any], None]]] = defaultdict(list)
        self._next_id = 0
        self.blobs = BlobEndpoints(chain)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start forwarding chain and pool events to the RPC loop (call after the chain started)."""
        self._loop = loop
        self.genesis_hash = self.chain.store.genesis_hash
        self.chain.block_listeners.append(self._on_block_chain_thread)
        self.chain.pool.subscribe(self._on_pool_chain_thread)
        if self.finality is not None:
            self.finality.finalized_listeners.append(self._on_finalized_chain_thread)

    # --- who we are -------------------------------------------------------------

    def parse_account(self, text: Any) -> bytes:
        return crypto.parse_account(text, self.prefix) if isinstance(text, str) else _bad_account()

    def address(self, who: bytes) -> str:
        return crypto.encode_address(who, self.prefix)

    async def health(self) -> dict[str, Any]:
        if self.network is None:
            return {"peers": 0, "isSyncing": False, "shouldHavePeers": False}
        return self.network.health()

    async def peers(self) -> list[dict[str, Any]]:
        return [] if self.network is None else self.network.peers_info()

    async def sync_state(self) -> dict[str, int]:
        if self.network is None:
            best = self.chain.store.best_header().number
            return {"startingBlock": best, "currentBlock": best, "highestBlock": best}
        return self.network.sync_state()

    async def local_peer_id(self) -> str:
        return self._network().peer_id

    async def local_listen_addresses(self) -> list[str]:
        return list(self._network().listen_addresses)

    async def add_reserved_peer(self, address: str) -> None:
        await self._network().add_reserved(address)

    async def remove_reserved_peer(self, peer_id: str) -> None:
        await self._network().remove_reserved(peer_id)

    async def ban_peer(self, peer_id: str, seconds: float) -> None:
        await self._network().ban(peer_id, seconds)

    async def unban_peer(self, peer_id: str) -> bool:
        return await self._network().unban(peer_id)

    def _network(self):
        if self.network is None:
            raise NetworkDisabled("this node runs without networking (--no-network)")
        return self.network

    # --- reads, on the chain thread ----------------------------------------------------

    def _at(self, at: bytes | None) -> bytes:
        return at if at is not None else self.chain.store.best_hash

    # Headers, bodies and the canonical index are immutable records in LevelDB, which is safe to
    # read from any thread: these reads skip the hop to the chain thread.

    async def header(self, at: bytes | None) -> Header | None:
        return self.chain.store.header(self._at(at))

    async def block(self, at: bytes | None) -> Block | None:
        return self.chain.store.block(self._at(at))

    async def block_hash(self, number: int | None) -> bytes | None:
        store = self.chain.store
        return store.best_hash if number is None else store.hash_at(number)

    async def finalized_hash(self) -> bytes:
        return self.chain.store.finalized_hash

    async def block_verification(self, at: bytes | None) -> dict[str, Any] | None:
        block_hash = self._at(at)
        status = await self.chain.call(self.chain.store.verification_status, block_hash)
        return None if status is None else {"hash": "0x" + block_hash.hex(), **status.to_json()}

    # --- finality (the gadget's justifications, rounds and proofs) ---------------------------

    async def justification(self, block_hash: bytes) -> bytes | None:
        return self.chain.store.justification(block_hash)

    async def round_state(self) -> dict[str, Any] | None:
        return None if self.finality is None else await self.chain.call(self.finality.round_state)

    async def prove_finality(self, number: int) -> bytes | None:
        return None if self.finality is None else await self.chain.call(self.finality.prove_finality, number)

    async def justified_by(self, number: int) -> dict[str, Any] | None:
        return await self.chain.call(justified_by, self.chain.store, number)

    def _state(self, at: bytes | None):
        return self.chain.store.state_view(self._at(at))

    async def storage(self, key: bytes, at: bytes | None) -> bytes | None:
        return await self.chain.call(lambda: self._view_or_none(at, lambda view: view.get(key)))

    def _view_or_none(self, at: bytes | None, read: Callable[[Any], Any]) -> Any:
        if at is not None and self.chain.store.header(at) is None:
            return None
        return read(self.chain.store.state_view(self._at(at)))

    async def storage_keys(self, prefix: bytes, count: int, start_key: bytes | None, at: bytes | None) -> list[bytes]:
        # The trie is ordered by key hash: key order comes from the node's key index (node/indexer.py).
        def read() -> list[bytes]:
            block_hash = self._at(at)
            if self.chain.store.stored_state(block_hash) is None:
                return []
            try:
                return self.chain.indexer.keys_page(block_hash, prefix, start_key, count)
            except IndexUnavailable as error:
                raise RpcError(STATE_NOT_INDEXED, f"cannot list keys at that block: {error}") from None
        return await self.chain.call(read)

    async def read_proof(self, keys: list[bytes], at: bytes | None) -> tuple[bytes, list[Any]]:
        def read() -> tuple[bytes, list[Any]]:
            store = self.chain.store
            block_hash = self._at(at)
            stored = store.stored_state(block_hash)
            return block_hash, [store.trie.prove(stored.ref, key) for key in keys]
        return await self.chain.call(read)

    async def events(self, at: bytes | None) -> list[Any]:
        return await self.chain.call(lambda: list(runtime_api.events(self._state(at))))

    async def account(self, account: bytes, at: bytes | None) -> Any:
        return await self.chain.call(lambda: runtime_api.account(self._state(at), account))

    async def account_history(self, account: bytes, before: int | None,
                              count: int) -> list[tuple[int, bytes, list, list]]:
        return await self.chain.call(self.chain.indexer.account_history, account, before, count)

    async def validators(self, at: bytes | None) -> list[Any]:
        return await self.chain.call(lambda: list(runtime_api.validator_set(self._state(at))))

    async def runtime_version(self) -> dict[str, Any]:
        return {"specName": VERSION.spec_name, "implName": VERSION.impl_name,
                "specVersion": VERSION.spec_version, "transactionVersion": VERSION.transaction_version}

    async def metadata(self) -> dict[str, Any]:
        return self.chain.executive.metadata()

    # --- training ----------------------------------------------------------------------

    async def tasks(self, before: int | None, count: int) -> list[tuple[int, Any]]:
        return await self.chain.call(lambda: runtime_api.tasks_page(self._state(None), before=before, count=count))

    async def task(self, task_id: int) -> Any:
        return await self.chain.call(lambda: runtime_api.task(self._state(None), task_id))

    async def round_updates(self, task_id: int, round_number: int) -> list[tuple[bytes, Any]]:
        return await self.chain.call(lambda: runtime_api.round_updates(self._state(None), task_id, round_number))

    async def model_versions(self, task_id: int, start: int, count: int) -> list[tuple[int, Any]]:
        return await self.chain.call(
            lambda: runtime_api.model_versions(self._state(None), task_id, start=start, count=count))

    async def rounds(self, task_id: int, start: int, count: int) -> list[tuple[int, Any]]:
        return await self.chain.call(
            lambda: runtime_api.round_summaries(self._state(None), task_id, start=start, count=count))

    async def leaderboard(self, count: int) -> list[tuple[bytes, int]]:
        return await self.chain.call(self.chain.indexer.leaderboard, count)

    async def task_leaderboard(self, task_id: int, count: int) -> list[tuple[bytes, int]]:
        return await self.chain.call(self.chain.indexer.task_leaderboard, task_id, count)

    async def blob_info(self, blob_hash: bytes) -> Any:
        return await self.chain.call(self.chain.blobs.info, blob_hash)

    # --- transactions ----------------------------------------------------------------

    async def submit(self, extrinsic: Extrinsic) -> bytes:
        transaction_hash, _ = await self.chain.submit(extrinsic)
        return transaction_hash

    async def pending(self) -> list[Extrinsic]:
        return await self.chain.call(lambda: list(self.chain.pool.ready()))

    async def next_index(self, account: bytes) -> int:
        def read() -> int:
            nonce = runtime_api.account_nonce(self._state(None), account)
            pooled = {x.signed.nonce for x in self.chain.pool.ready() if x.signed and x.signed.signer == account}
            while nonce in pooled:
                nonce += 1
            return nonce
        return await self.chain.call(read)

    async def query_info(self, extrinsic: Extrinsic) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            weight, fee = runtime_api.query_fee(self._state(None), extrinsic)
            return {"weight": weight, "partialFee": fee}
        return await self.chain.call(read)

    async def rotate_keys(self) -> bytes:
        keystore = self.chain.paths.keystore
        phrase = crypto.generate_mnemonic()
        path = keystore / f"key-{secrets.token_hex(4)}.json"
        return await self.chain.call(lambda: write_key_file(path, phrase, self.prefix).public)

    # --- notifications ----------------------------------------------------------------

    def on_blocks(self, callback: Callable[[str, Header], None]) -> Callable[[], None]:
        self._next_id += 1
        key = self._next_id
        self._block_callbacks[key] = callback
        return lambda: self._block_callbacks.pop(key, None)

    def watch_extrinsic(self, extrinsic_hash: bytes, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        self._watchers[extrinsic_hash].append(callback)

        def cancel() -> None:
            callbacks = self._watchers.get(extrinsic_hash, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(extrinsic_hash, None)
        return cancel

    def _on_block_chain_thread(self, block: Block, how: str) -> None:
        finalized = self.chain.store.finalized_header()
        self._loop.call_soon_threadsafe(self._dispatch_block, block, finalized)

    def _on_finalized_chain_thread(self, headers: list[Header], justification: Any) -> None:
        """Every block the gadget finalized, oldest first, with its extrinsics (read here, on the chain thread)."""
        store = self.chain.store
        finalized = [(header, [x.hash for x in store.body(header.hash) or ()]) for header in headers]
        self._loop.call_soon_threadsafe(self._dispatch_finalized, finalized)

    def _dispatch_finalized(self, finalized: list[tuple[Header, list[bytes]]]) -> None:
        for header, extrinsic_hashes in finalized:
            for callback in list(self._block_callbacks.values()):
                callback("finalized", header)
            for extrinsic_hash in extrinsic_hashes:
                self._dispatch_status(extrinsic_hash, "finalized", header.hash)

    def _on_pool_chain_thread(self, transaction_hash: bytes, status: str, info: Any) -> None:
        # Only a watched transaction wakes the loop: under load, thousands a second are not watched.
        # A watcher is added before its transaction is submitted, so none misses its first status.
        if transaction_hash in self._watchers:
            self._loop.call_soon_threadsafe(self._dispatch_status, transaction_hash, status, info)

    def _dispatch_block(self, block: Block, finalized: Header) -> None:
        for callback in list(self._block_callbacks.values()):
            callback("new", block.header)
            if finalized.hash == block.hash:
                callback("finalized", finalized)
        for extrinsic in block.extrinsics:
            self._dispatch_status(extrinsic.hash, "inBlock", block.hash)
            if finalized.hash == block.hash:
                self._dispatch_status(extrinsic.hash, "finalized", block.hash)

    def _dispatch_status(self, transaction_hash: bytes, status: str, info: Any) -> None:
        for callback in list(self._watchers.get(transaction_hash, ())):
            callback(status, info)


class BlobEndpoints:
    """What the RPC server's /blobs/ routes need: size limit, download, upload through the node's
    admission policy (node/blob_admission.py), on the chain thread."""

    def __init__(self, chain: ChainService, limits: AdmissionLimits = AdmissionLimits()) -> None:
        self.chain = chain
        self.limits = limits
        self.admission: BlobAdmission | None = None  # made on first use: the chain opens after this

    @property
    def max_blob_bytes(self) -> int:
        return self.chain.blobs.max_blob_bytes

    async def get(self, blob_hash: bytes) -> bytes | None:
        return await self.chain.call(self.chain.blobs.get, blob_hash)

    async def put(self, blob_hash: bytes, data: bytes, uploader: tuple[bytes, bytes] | None = None) -> bool:
        def store() -> bool:
            if self.admission is None:
                self.admission = BlobAdmission(self.chain.blobs, genesis_hash=self.chain.store.genesis_hash,
                                               limits=self.limits)
            best = self.chain.store.best_header()
            stored = self.admission.store(blob_hash, data, state=self.chain.store.state_view(best.hash),
                                          best_hash=best.hash, best_number=best.number, uploader=uploader)
            self.chain.blob_arrived_now(blob_hash)  # a block may have waited for it (unverifiable)
            return stored
        return await self.chain.call(store)


class NetworkDisabled(GradchainError):
    code = "network_disabled"


def _bad_account() -> bytes:
    raise crypto.AddressError("an account must be an SS58 address or a 0x public key")


class RpcService(Service):
    name = "rpc"

    def __init__(self, facade: ChainFacade, *, host: str, port: int, unsafe_methods: bool,
                 cors: list[str]) -> None:
        self.facade = facade
        self.server = build_server(facade, host=host, port=port, unsafe_methods=unsafe_methods, cors=cors)

    async def start(self) -> None:
        self.facade.attach(asyncio.get_running_loop())
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
