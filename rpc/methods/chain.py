"""chain_*: headers, blocks, hashes, and head subscriptions."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import INTERNAL_ERROR, TOO_MANY_SUBSCRIPTIONS, RpcError
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer
from rpc.shapes import block_json, header_json

MAX_HASH_LIST = 1024


def register(server: RpcServer, node: NodeFacade) -> None:
    async def chain_getHeader(ctx: CallContext, hash=None):
        header = await node.header(p.block_hash(hash))
        return None if header is None else header_json(header)

    async def chain_getBlock(ctx: CallContext, hash=None):
        block = await node.block(p.block_hash(hash))
        return None if block is None else block_json(block)

    async def chain_getBlockHash(ctx: CallContext, number=None):
        if isinstance(number, list):
            if len(number) > MAX_HASH_LIST:
                raise p.invalid_params(f"at most {MAX_HASH_LIST} block numbers at once")
            found = [await node.block_hash(p.block_number(n, f"number[{i}]")) for i, n in enumerate(number)]
            return [None if h is None else p.to_hex(h) for h in found]
        found = await node.block_hash(p.block_number(number))
        return None if found is None else p.to_hex(found)

    async def chain_getFinalizedHead(ctx: CallContext):
        return p.to_hex(await node.finalized_hash())

    async def chain_getBlockVerification(ctx: CallContext, hash=None):
        """{hash, status: pending|verified|disputed|unverifiable, reasons, missing, since, unchecked} or null."""
        return await node.block_verification(p.block_hash(hash))

    for handler in (chain_getHeader, chain_getBlock, chain_getBlockHash, chain_getFinalizedHead,
                    chain_getBlockVerification):
        server.register(Method(handler.__name__, handler))
    server.register(Method("chain_getHead", chain_getBlockHash))

    def head_subscription(kind: str, notification: str):
        async def subscribe(ctx: CallContext):
            connection = ctx.connection
            if len(connection.subscriptions) >= server.limits.max_subscriptions:
                raise RpcError(TOO_MANY_SUBSCRIPTIONS, "too many subscriptions on this connection")
            subscription = connection.new_subscription_id()

            def on_block(which: str, header) -> None:
                if which == kind:
                    connection.notify(notification, subscription, header_json(header))

            connection.subscriptions[subscription] = node.on_blocks(on_block)
            return subscription
        return subscribe

    for kind, name, notification in (("new", "chain_subscribeNewHeads", "chain_newHead"),
                                     ("finalized", "chain_subscribeFinalizedHeads", "chain_finalizedHead")):
        server.register(Method(name, head_subscription(kind, notification), subscription=notification))
        unsubscribe_name = name.replace("subscribe", "unsubscribe")
        server.register(Method(unsubscribe_name, unsubscribe, unsubscribe=True))


async def unsubscribe(ctx: CallContext, subscription) -> bool:
    cancel = ctx.connection.subscriptions.pop(subscription, None) if isinstance(subscription, str) else None
    if cancel is None:
        return False
    cancel()
    return True
