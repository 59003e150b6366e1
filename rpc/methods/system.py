"""system_* and rpc_methods."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import INTERNAL_ERROR, INVALID_PARAMS, TOO_MANY_SUBSCRIPTIONS, RpcError
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer
from runtime.errors import GradchainError


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

    async def system_syncState(ctx: CallContext) -> dict:
        return await node.sync_state()

    async def system_localPeerId(ctx: CallContext) -> str:
        return await _networked(node.local_peer_id())

    async def system_localListenAddresses(ctx: CallContext) -> list:
        return await _networked(node.local_listen_addresses())

    for handler in (system_syncState, system_localPeerId, system_localListenAddresses):
        server.register(Method(handler.__name__, handler))

    # unsafe: they change whom this node talks to (partition tests use them)
    async def system_addReservedPeer(ctx: CallContext, peer) -> None:
        if not isinstance(peer, str) or "/p2p/" not in peer:
            raise p.invalid_params("peer must be a multiaddress ending in /p2p/<peer id>")
        await _networked(node.add_reserved_peer(peer))

    async def system_removeReservedPeer(ctx: CallContext, peer_id) -> None:
        await _networked(node.remove_reserved_peer(_peer_id(peer_id)))

    async def system_banPeer(ctx: CallContext, peer_id, seconds=3600) -> None:
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 365 * 86400:
            raise p.invalid_params("seconds must be a whole number from 1 to 31536000")
        await _networked(node.ban_peer(_peer_id(peer_id), seconds))

    async def system_unbanPeer(ctx: CallContext, peer_id) -> bool:
        return await _networked(node.unban_peer(_peer_id(peer_id)))

    for handler in (system_addReservedPeer, system_removeReservedPeer, system_banPeer, system_unbanPeer):
        server.register(Method(handler.__name__, handler, unsafe=True))


def _peer_id(value) -> str:
    if not isinstance(value, str) or not 30 <= len(value) <= 80 or not value.isalnum():
        raise p.invalid_params("peer_id must be a base58 libp2p peer id")
    return value


async def _networked(call):
    try:
        return await call
    except GradchainError as exc:  # no networking, or a bad multiaddress
        raise RpcError(INTERNAL_ERROR if exc.code == "network_disabled" else INVALID_PARAMS, exc.message) from None
