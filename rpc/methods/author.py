"""author_*: submitting and watching transactions; payment_queryInfo."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import (
    POOL_INVALID_TRANSACTION, POOL_UNKNOWN_VALIDITY, TOO_MANY_SUBSCRIPTIONS, RpcError, invalid_params,
)
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer
from runtime.errors import CodecError, GradchainError
from runtime.types import Extrinsic, decode_extrinsic
from runtime.validity import InvalidTransaction, UnknownTransaction


def parse_extrinsic(value, name: str = "extrinsic") -> Extrinsic:
    data = p.hex_bytes(value, name)
    try:
        return decode_extrinsic(data)
    except CodecError as exc:
        raise invalid_params(f"{name} is not a valid extrinsic: {exc.message}") from None


def pool_error(exc: GradchainError) -> RpcError:
    """Substrate's author_* error codes: 1010 invalid (with the reason), 1011 unknown, 1012-1016 pool."""
    if isinstance(exc, InvalidTransaction):
        return RpcError(POOL_INVALID_TRANSACTION, f"Invalid Transaction: {exc.message}", exc.reason.name.lower())
    if isinstance(exc, UnknownTransaction):
        return RpcError(POOL_UNKNOWN_VALIDITY, f"Unknown Transaction Validity: {exc.message}",
                        exc.reason.name.lower())
    rpc_code = getattr(exc, "rpc_code", None)
    if rpc_code is not None:
        return RpcError(rpc_code, exc.message, exc.code)
    raise exc


def register(server: RpcServer, node: NodeFacade) -> None:
    async def author_submitExtrinsic(ctx: CallContext, extrinsic):
        parsed = parse_extrinsic(extrinsic)
        try:
            return p.to_hex(await node.submit(parsed))
        except GradchainError as exc:
            raise pool_error(exc) from None

    async def author_pendingExtrinsics(ctx: CallContext):
        return [p.to_hex(x.encoded) for x in await node.pending()]

    async def payment_queryInfo(ctx: CallContext, extrinsic, hash=None):
        p.block_hash(hash)
        info = await node.query_info(parse_extrinsic(extrinsic))
        return {"weight": info["weight"], "class": "normal", "partialFee": str(info["partialFee"])}

    async def author_rotateKeys(ctx: CallContext):
        return p.to_hex(await node.rotate_keys())

    for handler in (author_submitExtrinsic, author_pendingExtrinsics, payment_queryInfo):
        server.register(Method(handler.__name__, handler))
    server.register(Method("author_rotateKeys", author_rotateKeys, unsafe=True))

    async def author_submitAndWatchExtrinsic(ctx: CallContext, extrinsic):
        parsed = parse_extrinsic(extrinsic)
        connection = ctx.connection
        if len(connection.subscriptions) >= server.limits.max_subscriptions:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS, "too many subscriptions on this connection")
        subscription = connection.new_subscription_id()

        def on_status(status: str, info) -> None:
            result = status if info is None else {status: p.to_hex(info) if isinstance(info, bytes) else info}
            connection.notify("author_extrinsicUpdate", subscription, result)
            if status in ("finalized", "dropped", "invalid", "usurped"):
                cancel = connection.subscriptions.pop(subscription, None)
                if cancel is not None:
                    cancel()

        connection.subscriptions[subscription] = node.watch_extrinsic(parsed.hash, on_status)
        try:
            await node.submit(parsed)
        except GradchainError as exc:
            connection.subscriptions.pop(subscription)()
            raise pool_error(exc) from None
        return subscription

    from rpc.methods.chain import unsubscribe

    server.register(Method("author_submitAndWatchExtrinsic", author_submitAndWatchExtrinsic,
                           subscription="author_extrinsicUpdate"))
    server.register(Method("author_unwatchExtrinsic", unsubscribe, unsubscribe=True))
