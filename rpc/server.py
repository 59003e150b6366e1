"""JSON-RPC 2.0 over HTTP POST and WebSocket on one port (aiohttp).

Contract with clients:
- A request body is one request object or a batch (a non-empty array of them);
  notifications (no "id") get no answer. A batch answers the non-notification
  members, in order.
- Bad input never reaches a handler and never gets an HTTP 5xx: invalid UTF-8,
  NaN/Infinity, duplicate object keys, nesting deeper than MAX_NESTING, numbers
  over MAX_NUMBER_DIGITS digits and malformed JSON are -32700; a structurally
  wrong request is -32600; a body over the size limit is -32600 with HTTP 413.
- HTTP answers only POSTs whose Content-Type is `application/json` (HTTP 415 and a
  -32600 error otherwise): a browser sends a `text/plain` or form POST cross-site
  without asking first (no CORS preflight), but never an `application/json` one.
- Methods marked unsafe answer only to loopback clients unless the server was
  started with `unsafe_methods=True` (`--rpc-methods unsafe`). They also refuse a
  request whose Host header is not a loopback name (a DNS-rebound page reaching
  127.0.0.1 under its own name) unless the server listens on a non-loopback
  address (`--rpc-external`), and one whose Origin header (sent by browsers, over
  HTTP and when opening a WebSocket) is not allowed by `cors` (`--rpc-cors`).
  Clients that are not browsers send no Origin and are unaffected.
- WebSocket connections may hold up to `max_subscriptions` subscriptions; a
  client that does not read its notifications is disconnected (close code 1008,
  "too slow") once `max_buffered_notifications` are waiting, instead of the
  server buffering without bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import WSMsgType, web

from rpc.access import (
    JSON_CONTENT_TYPE, host_name_of, is_loopback_address, unsafe_call_refusal, uploader_from_headers,
)
from rpc.errors import (
    INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, UNSAFE_METHOD, RpcError,
)
from rpc.json_body import JsonParseError, parse_json
from rpc.websocket import WsConnection
from runtime.errors import GradchainError

log = structlog.get_logger("rpc")


@dataclass
class RpcLimits:
    max_body_bytes: int = 15 * 1024 * 1024
    max_batch: int = 256
    max_connections: int = 1000
    max_subscriptions: int = 1024
    max_buffered_notifications: int = 4096


@dataclass
class Method:
    name: str
    handler: Callable[..., Awaitable[Any]]
    unsafe: bool = False
    subscription: str | None = None  # notification method name, for subscribe methods
    unsubscribe: bool = False


class CallContext:
    """Who is calling: a loopback address or not, the Host and Origin it named, and (over
    WebSocket) the connection."""

    def __init__(self, remote: str | None, connection: "WsConnection | None", *, host: str | None = None,
                 origin: str | None = None) -> None:
        self.remote = remote
        self.connection = connection
        self.host = host
        self.origin = origin

    @property
    def host_name(self) -> str | None:
        return host_name_of(self.host)

    @property
    def is_loopback(self) -> bool:
        try:
            return self.remote is not None and ipaddress.ip_address(self.remote).is_loopback
        except ValueError:
            return False


def error_response(request_id: Any, error: RpcError) -> dict:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


class RpcServer:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 9944, limits: RpcLimits | None = None,
                 unsafe_methods: bool = False, cors: list[str] | None = None) -> None:
        self.host, self.port = host, port
        self.limits = limits or RpcLimits()
        self.unsafe_methods = unsafe_methods
        self.cors = cors or []
        # listening beyond loopback (--rpc-external): clients name the node by other host names
        self.external = not is_loopback_address(host)
        self.methods: dict[str, Method] = {}
        self._runner: web.ServerRunner | None = None
        self._connections = 0
        self._tasks: set[asyncio.Task] = set()
        self.blobs: Any = None  # the node's blob endpoints (BlobEndpoints), if it serves blobs

    def register(self, method: Method) -> None:
        self.methods[method.name] = method

    def spawn(self, coroutine) -> None:
        """Run background work of a subscription; its failure is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rpc background task failed", error=repr(task.exception()))

    # --- serving ------------------------------------------------------------------

    async def start(self) -> None:
        # aiohttp's low-level server: no router or middlewares on a path that serves thousands of requests/s.
        # Body limits are enforced by the handlers (`_read_body`, the blob endpoints); access_log=None turns
        # aiohttp's per-request log line off (client_max_size is not a RequestHandler option).
        server = web.Server(self._route, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("rpc listening", host=self.host, port=self.port, unsafe=self.unsafe_methods)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/health" and request.method == "GET":
            return web.json_response({"ok": True})
        if request.path.startswith("/blobs/") and self.blobs is not None:
            return await self._blob(request)
        if request.path != "/":
            return web.json_response(error_response(None, RpcError(INVALID_REQUEST, "unknown path")), status=404)
        return await self._entry(request)

    def is_allowed_origin(self, origin: str) -> bool:
        return "all" in self.cors or origin in self.cors

    def _context(self, request: web.BaseRequest, connection: "WsConnection | None") -> CallContext:
        return CallContext(request.remote, connection, host=request.headers.get("Host"),
                           origin=request.headers.get("Origin"))

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin and self.is_allowed_origin(origin):
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Allow-Methods": "POST, GET, OPTIONS"}
        return {}

    async def _blob(self, request: web.BaseRequest) -> web.StreamResponse:
        """GET /blobs/0x<hash> downloads a blob; PUT uploads one, streamed, hash-checked before it is kept.
        Both count against the connection limit; an upload passes the node's admission policy
        (node/blob_admission.py: signed by an account unless the chain refers to the blob)."""
        if self._connections >= self.limits.max_connections:
            return web.json_response({"error": "too many connections", "code": "too_many_connections"}, status=503)
        self._connections += 1
        try:
            return await self._blob_request(request)
        finally:
            self._connections -= 1

    async def _blob_request(self, request: web.BaseRequest) -> web.StreamResponse:
        text = request.path[len("/blobs/"):]
        try:
            blob_hash = bytes.fromhex(text.removeprefix("0x"))
            if len(blob_hash) != 32:
                raise ValueError
        except ValueError:
            return web.json_response({"error": "the path must be /blobs/0x<32-byte hash>"}, status=400)
        if request.method == "GET":
            data = await self.blobs.get(blob_hash)
            if data is None:
                return web.json_response({"error": "no such blob"}, status=404)
            return web.Response(body=data, content_type="application/octet-stream")
        if request.method != "PUT":
            return web.json_response({"error": "use GET or PUT"}, status=405)
        try:
            uploader = uploader_from_headers(request.headers)
        except ValueError as exc:
            return web.json_response({"error": str(exc), "code": "blob_upload_unsigned"}, status=401)
        limit = self.blobs.max_blob_bytes
        if request.content_length is not None and request.content_length > limit:
            return web.json_response({"error": f"a blob may be at most {limit} bytes"}, status=413)
        hasher = hashlib.blake2b(digest_size=32)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                return web.json_response({"error": f"a blob may be at most {limit} bytes"}, status=413)
            hasher.update(chunk)
            chunks.append(chunk)
        if hasher.digest() != blob_hash:
            return web.json_response({"error": f"the body hashes to 0x{hasher.hexdigest()}, not 0x{blob_hash.hex()}"},
                                     status=400)
        try:
            created = await self.blobs.put(blob_hash, b"".join(chunks), uploader)
        except GradchainError as exc:
            return web.json_response({"error": exc.message, "code": exc.code},
                                     status=getattr(exc, "http_status", 400))
        return web.json_response({"hash": "0x" + blob_hash.hex(), "size": size, "created": created},
                                 status=201 if created else 200)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        if self._connections >= self.limits.max_connections:
            return web.json_response(error_response(None, RpcError(INVALID_REQUEST, "too many connections")),
                                     status=503)
        self._connections += 1
        try:
            if request.method == "OPTIONS":
                return web.Response(headers=self._cors_headers(request))
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request)
            if request.method != "POST":
                return web.json_response(error_response(None, RpcError(INVALID_REQUEST, "use POST or WebSocket")),
                                         status=405)
            if request.content_type != JSON_CONTENT_TYPE:
                return web.json_response(error_response(None, RpcError(
                    INVALID_REQUEST, f"Content-Type must be {JSON_CONTENT_TYPE}, not "
                                     f"{request.headers.get('Content-Type') or 'none'}")),
                    status=415, headers=self._cors_headers(request))
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return web.json_response(error_response(None, RpcError(
                    INVALID_REQUEST, f"request body over {self.limits.max_body_bytes} bytes")), status=413)
            answer = await self.handle_body(body, self._context(request, None))
            if answer is None:
                return web.Response(status=204, headers=self._cors_headers(request))
            return web.Response(text=answer, content_type="application/json", headers=self._cors_headers(request))
        finally:
            self._connections -= 1

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=self.limits.max_body_bytes, heartbeat=30)
        await socket.prepare(request)
        connection = WsConnection(socket, self.limits)
        context = self._context(request, connection)
        writer = asyncio.create_task(self._write_loop(connection))
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    body = message.data.encode("utf-8", "surrogatepass")
                elif message.type == WSMsgType.BINARY:
                    body = message.data
                else:
                    break
                connection.held = []
                try:
                    answer = await self.handle_body(body, context)
                finally:
                    held, connection.held = connection.held, None
                if answer is not None:
                    connection.queue.put_nowait(answer)
                for notification in held:
                    connection.send_text(notification)
                if connection.closed.is_set():
                    break
        finally:
            connection.closed.set()
            connection.drop_all()
            writer.cancel()
        return socket

    async def _write_loop(self, connection: WsConnection) -> None:
        while not connection.closed.is_set():
            text = await connection.queue.get()
            try:
                await connection.socket.send_str(text)
            except (ConnectionError, RuntimeError):
                connection.closed.set()
                return

    # --- the protocol ----------------------------------------------------------------

    async def handle_body(self, body: bytes, context: CallContext) -> str | None:
        try:
            payload = parse_json(body)
        except JsonParseError as exc:
            return json.dumps(error_response(None, RpcError(PARSE_ERROR, f"Parse error: {exc}")))
        if isinstance(payload, list):
            if not payload:
                return json.dumps(error_response(None, RpcError(INVALID_REQUEST, "empty batch")))
            if len(payload) > self.limits.max_batch:
                return json.dumps(error_response(None, RpcError(
                    INVALID_REQUEST, f"batch of {len(payload)} is over the limit of {self.limits.max_batch}")))
            # concurrently (JSON-RPC 2.0 lets a server take a batch in any order; answers keep the
            # requests' order): a batch of submissions reaches the node together and is validated in
            # one trip to its chain thread, not one trip each
            answers = [a for a in await asyncio.gather(*(self.handle_request(r, context) for r in payload))
                       if a is not None]
            return json.dumps(answers) if answers else None
        answer = await self.handle_request(payload, context)
        return None if answer is None else json.dumps(answer)

    async def handle_request(self, request: Any, context: CallContext) -> dict | None:
        if not isinstance(request, dict):
            return error_response(None, RpcError(INVALID_REQUEST, "Invalid request: not an object"))
        request_id = request.get("id")
        is_notification = "id" not in request
        if request_id is not None and not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            return error_response(None, RpcError(INVALID_REQUEST, "Invalid request: id must be a string or number"))
        if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str) or \
                set(request) - {"jsonrpc", "method", "params", "id"}:
            return error_response(request_id, RpcError(INVALID_REQUEST, "Invalid request: not JSON-RPC 2.0"))
        params = request.get("params", [])
        if not isinstance(params, (list, dict)):
            return error_response(request_id, RpcError(INVALID_REQUEST, "Invalid request: params must be an array"))
        try:
            result = await self.call(request["method"], params, context)
        except RpcError as exc:
            return None if is_notification else error_response(request_id, exc)
        except Exception:  # a bug in a handler: answer, log, and keep serving
            log.exception("rpc handler failed", method=request["method"])
            return None if is_notification else error_response(request_id, RpcError(INTERNAL_ERROR,
                                                                                    "Internal error"))
        return None if is_notification else {"jsonrpc": "2.0", "result": result, "id": request_id}

    async def call(self, name: str, params: list | dict, context: CallContext) -> Any:
        method = self.methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {name}")
        if method.unsafe:
            self.check_unsafe_caller(name, context)
        if (method.subscription or method.unsubscribe) and context.connection is None:
            raise RpcError(METHOD_NOT_FOUND, f"{name} needs a WebSocket connection (subscriptions)")
        if isinstance(params, dict):
            return await method.handler(context, **params) if _accepts(method.handler, params) else \
                await method.handler(context, *params.values())
        return await method.handler(context, *params)

    def check_unsafe_caller(self, name: str, context: CallContext) -> None:
        """rpc.access's rules for unsafe methods, with this server's settings."""
        refusal = unsafe_call_refusal(name, from_loopback=context.is_loopback, host=context.host,
                                      origin=context.origin, unsafe_methods=self.unsafe_methods,
                                      external=self.external, origin_allowed=context.origin is not None
                                      and self.is_allowed_origin(context.origin))
        if refusal is not None:
            raise RpcError(UNSAFE_METHOD, refusal)


def _accepts(handler: Callable, params: dict) -> bool:
    import inspect

    try:
        inspect.signature(handler).bind(None, **params)
        return True
    except TypeError:
        return False
