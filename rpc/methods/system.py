"""system_* and rpc_methods."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import INTERNAL_ERROR, TOO_MANY_SUBSCRIPTIONS, RpcError
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer


def register(server: RpcServer, node: NodeFacade) -> None:
    async def system_name(ctx: CallContext) -> str:
        return node.node_name

    async def system_version(ctx: CallContext) -> str:
        return node.node_version

    async def system_chain(ctx: CallContext) -> str:
        return node.chain_name

    async def system_chainType(ctx: CallContext) -> str:
        return node.chain_type

    async def system_properties(ctx: CallContext) -> dict:
        return node.properties

    async def system_health(ctx: CallContext) -> dict:
        return await node.health()

    async def system_peers(ctx: CallContext) -> list:
        return await node.peers()

    async def system_accountNextIndex(ctx: CallContext, account) -> int:
        return await node.next_index(p.account(account, node))

    async def rpc_methods(ctx: CallContext) -> dict:
        return {"methods": sorted(server.methods)}

    for handler in (system_name, system_version, system_chain, system_chainType, system_properties, system_health,
                    system_peers, system_accountNextIndex, rpc_methods):
        server.register(Method(handler.__name__, handler))

    async def system_addReservedPeer(ctx: CallContext, peer) -> None:
        if not isinstance(peer, str) or not peer:
            raise p.invalid_params("peer must be a multiaddress string")
        raise RpcError(INTERNAL_ERROR, "networking is not enabled in this node yet")

    server.register(Method("system_addReservedPeer", system_addReservedPeer, unsafe=True))
