"""A JSON-RPC client for gradchain nodes, sync (`Client`) and async (`AsyncClient`).

Every script uses it, so none writes JSON-RPC by hand. A node's error becomes
`RpcCallError` with the JSON-RPC `code` (e.g. 1010 for an invalid transaction)
and `data`; a node that cannot be reached becomes `NodeUnreachable`. Typed
helpers return the chain's own types (Header, Block, AccountInfo).
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, AsyncIterator

from rpc.digest import parse_digest
from runtime.errors import GradchainError
from runtime.hashing import blake2b_256 as _blake2b_256
from runtime.types import Block, Digest, Extrinsic, Header, decode_extrinsic


class RpcClientError(GradchainError):
    code = "rpc_client"


class NodeUnreachable(RpcClientError):
    code = "node_unreachable"


class RpcCallError(RpcClientError):
    """The node answered with a JSON-RPC error."""

    code = "rpc_call"

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {rpc_code})")
        self.rpc_code = rpc_code
        self.data = data


@dataclass(frozen=True)
class AccountState:
    account: bytes
    address: str
    nonce: int
    free: int
    reserved: int


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def header_from_json(value: dict) -> Header:
    """A header from chain_getHeader's JSON; its digest logs decoded back to slot, author and seal."""
    return Header(_unhex(value["parentHash"]), int(value["number"], 16), _unhex(value["stateRoot"]),
                  _unhex(value["extrinsicsRoot"]), parse_digest(value["digest"]))


def digest_of(header: dict) -> Digest:
    """The slot, author and seal of a header in chain_getHeader's JSON (decoded from its digest logs)."""
    return parse_digest(header["digest"])


def block_from_json(value: dict) -> Block:
    inner = value["block"]
    return Block(header_from_json(inner["header"]), tuple(decode_extrinsic(_unhex(x)) for x in inner["extrinsics"]))


def account_from_json(value: dict) -> AccountState:
    return AccountState(_unhex(value["account"]), value["address"], value["nonce"], int(value["free"]),
                        int(value["reserved"]))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise RpcClientError(f"the node's answer is not JSON: {raw[:80]!r}") from None


def _result(answer: Any) -> Any:
    if not isinstance(answer, dict):
        raise RpcClientError(f"unexpected answer from the node: {answer!r:.200}")
    if "error" in answer:
        error = answer["error"]
        raise RpcCallError(error.get("code", 0), error.get("message", "error"), error.get("data"))
    return answer.get("result")


class Client:
    """Synchronous client over HTTP POST."""

    def __init__(self, url: str = "http://127.0.0.1:9944", timeout: float = 30) -> None:
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        request = urllib.request.Request(self.url, data=body.encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _result(_json(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                return _result(json.loads(exc.read()))
            except ValueError:
                raise RpcClientError(f"the node answered HTTP {exc.code}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise NodeUnreachable(f"cannot reach a node at {self.url}: {getattr(exc, 'reason', exc)}") from None
        except ValueError as exc:  # a malformed URL
            raise RpcClientError(f"bad node URL {self.url!r}: {exc}") from None

    # --- typed helpers
    def header(self, at: bytes | None = None) -> Header | None:
        value = self.call("chain_getHeader", None if at is None else "0x" + at.hex())
        return None if value is None else header_from_json(value)

    def block(self, at: bytes | None = None) -> Block | None:
        value = self.call("chain_getBlock", None if at is None else "0x" + at.hex())
        return None if value is None else block_from_json(value)

    def block_hash(self, number: int | None = None) -> bytes | None:
        value = self.call("chain_getBlockHash", number)
        return None if value is None else _unhex(value)

    def finalized_hash(self) -> bytes:
        return _unhex(self.call("chain_getFinalizedHead"))

    def genesis_hash(self) -> bytes:
        return self.block_hash(0)

    def account(self, account: str) -> AccountState:
        return account_from_json(self.call("explorer_account", account))

    def next_index(self, account: str) -> int:
        return self.call("system_accountNextIndex", account)

    def properties(self) -> dict:
        return self.call("system_properties")

    def submit(self, extrinsic: Extrinsic) -> bytes:
        return _unhex(self.call("author_submitExtrinsic", "0x" + extrinsic.encoded.hex()))

    def query_fee(self, extrinsic: Extrinsic) -> int:
        return int(self.call("payment_queryInfo", "0x" + extrinsic.encoded.hex())["partialFee"])

    # --- blobs (binary bodies over HTTP, beside JSON-RPC on the same port)
    def put_blob(self, data: bytes, *, headers: dict[str, str] | None = None) -> bytes:
        """Upload a blob; its blake2b-256 hash (the node checks it before storing anything). A blob the
        chain does not refer to yet needs the uploader's signature headers (runtime.uploads)."""
        blob_hash = _blake2b_256(data)
        self._blob_request("PUT", blob_hash, data, headers)
        return blob_hash

    def get_blob(self, blob_hash: bytes) -> bytes | None:
        """A blob by its hash, checked against it; None if the node does not have it."""
        data = self._blob_request("GET", blob_hash, None)
        if data is not None and _blake2b_256(data) != blob_hash:
            raise RpcClientError(f"the node sent other bytes for blob 0x{blob_hash.hex()}")
        return data

    def _blob_request(self, method: str, blob_hash: bytes, data: bytes | None,
                      headers: dict[str, str] | None = None) -> bytes | None:
        url = f"{self.url.rstrip('/')}/blobs/0x{blob_hash.hex()}"
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/octet-stream", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            detail = exc.read().decode(errors="replace").strip()
            raise RpcClientError(f"blob {method} refused with HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise NodeUnreachable(f"cannot reach a node at {self.url}: {getattr(exc, 'reason', exc)}") from None


class AsyncClient:
    """Asynchronous client: HTTP for calls, one WebSocket for subscriptions."""

    def __init__(self, url: str = "http://127.0.0.1:9944", timeout: float = 30) -> None:
        import aiohttp

        self.url = url
        self.ws_url = url.replace("http://", "ws://").replace("https://", "wss://")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        self._ids = itertools.count(1)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def call(self, method: str, *params: Any) -> Any:
        import aiohttp

        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            async with self._session.post(self.url, json=body) as response:
                return _result(await response.json(content_type=None))
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise NodeUnreachable(f"cannot reach a node at {self.url}: {exc}") from None

    async def subscribe(self, method: str, *params: Any) -> AsyncIterator[Any]:
        """Yield each notification's result until the caller stops iterating."""
        import aiohttp

        try:
            socket = await self._session.ws_connect(self.ws_url)
        except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError) as exc:
            raise NodeUnreachable(f"cannot reach a node at {self.ws_url}: {exc}") from None
        try:
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
            early: list[dict] = []  # notifications that arrived before the reply (older servers)
            while True:
                message = await socket.receive_json()
                if message.get("id") == 1:
                    subscription = _result(message)
                    break
                early.append(message)
            for payload in early:
                if payload.get("params", {}).get("subscription") == subscription:
                    yield payload["params"]["result"]
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                payload = json.loads(message.data)
                if payload.get("params", {}).get("subscription") == subscription:
                    yield payload["params"]["result"]
        finally:
            await socket.close()

    async def header(self, at: bytes | None = None) -> Header | None:
        value = await self.call("chain_getHeader", None if at is None else "0x" + at.hex())
        return None if value is None else header_from_json(value)

    async def submit(self, extrinsic: Extrinsic) -> bytes:
        return _unhex(await self.call("author_submitExtrinsic", "0x" + extrinsic.encoded.hex()))

    async def account(self, account: str) -> AccountState:
        return account_from_json(await self.call("explorer_account", account))
