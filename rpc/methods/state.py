"""state_*: storage reads, key listing, read proofs, runtime version and metadata."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import TOO_MANY_SUBSCRIPTIONS, RpcError
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer

MAX_KEYS_PAGE = 1000
MAX_PROOF_KEYS = 64
MAX_WATCHED_KEYS = 64


def _proof_json(proof) -> list:
    def convert(item):
        if isinstance(item, bytes):
            return p.to_hex(item)
        if isinstance(item, list):
            return [convert(x) for x in item]
        return item
    return convert(proof)


def register(server: RpcServer, node: NodeFacade) -> None:
    async def state_getStorage(ctx: CallContext, key, hash=None):
        value = await node.storage(p.hex_bytes(key, "key"), p.block_hash(hash))
        return None if value is None else p.to_hex(value)

    async def state_getKeysPaged(ctx: CallContext, prefix, count, startKey=None, hash=None):
        keys = await node.storage_keys(p.hex_bytes(prefix, "prefix"), p.positive_count(count, "count", MAX_KEYS_PAGE),
                                       p.hex_bytes(startKey, "startKey", optional=True), p.block_hash(hash))
        return [p.to_hex(k) for k in keys]

    async def state_getReadProof(ctx: CallContext, keys, hash=None):
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_PROOF_KEYS:
            raise p.invalid_params(f"keys must be a list of 1 to {MAX_PROOF_KEYS} hex keys")
        parsed = [p.hex_bytes(k, f"keys[{i}]") for i, k in enumerate(keys)]
        at, proofs = await node.read_proof(parsed, p.block_hash(hash))
        return {"at": p.to_hex(at), "proof": [_proof_json(x) for x in proofs]}

    async def state_getRuntimeVersion(ctx: CallContext, hash=None):
        p.block_hash(hash)
        return await node.runtime_version()

    async def state_getMetadata(ctx: CallContext, hash=None):
        p.block_hash(hash)
        return await node.metadata()

    for handler in (state_getStorage, state_getKeysPaged, state_getReadProof, state_getRuntimeVersion,
                    state_getMetadata):
        server.register(Method(handler.__name__, handler))

    async def state_subscribeStorage(ctx: CallContext, keys):
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_WATCHED_KEYS:
            raise p.invalid_params(f"keys must be a list of 1 to {MAX_WATCHED_KEYS} hex keys")
        watched = [p.hex_bytes(k, f"keys[{i}]") for i, k in enumerate(keys)]
        connection = ctx.connection
        if len(connection.subscriptions) >= server.limits.max_subscriptions:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS, "too many subscriptions on this connection")
        subscription = connection.new_subscription_id()
        last: dict[bytes, bytes | None] = {}

        async def report(header) -> None:
            changes = []
            for key in watched:
                value = await node.storage(key, header.hash)
                if key not in last or last[key] != value:
                    last[key] = value
                    changes.append([p.to_hex(key), None if value is None else p.to_hex(value)])
            if changes:
                connection.notify("state_storage", subscription, {"block": p.to_hex(header.hash),
                                                                  "changes": changes})

        def on_block(which: str, header) -> None:
            if which == "new":
                server.spawn(report(header))

        connection.subscriptions[subscription] = node.on_blocks(on_block)
        best = await node.header(None)
        server.spawn(report(best))
        return subscription

    from rpc.methods.chain import unsubscribe

    server.register(Method("state_subscribeStorage", state_subscribeStorage, subscription="state_storage"))
    server.register(Method("state_unsubscribeStorage", unsubscribe, unsubscribe=True))
