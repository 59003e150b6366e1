"""explorer_*: decoded blocks, events and accounts, for block explorers and wallets."""

from __future__ import annotations

from rpc import params as p
from rpc.server import CallContext, Method, RpcServer
from rpc.shapes import extrinsic_json, header_json, plain


def register(server: RpcServer, node) -> None:
    async def explorer_block(ctx: CallContext, hash=None):
        """A block with its extrinsics decoded and its events grouped by extrinsic."""
        block = await node.block(p.block_hash(hash))
        if block is None:
            return None
        events = await node.events(block.hash)
        by_index: dict = {}
        for record in events:
            by_index.setdefault(record.extrinsic_index, []).append(plain(record.event))
        return {
            "header": header_json(block.header),
            "extrinsics": [dict(extrinsic_json(x), events=by_index.get(i, []))
                           for i, x in enumerate(block.extrinsics)],
            "blockEvents": by_index.get(None, []),
        }

    async def explorer_events(ctx: CallContext, hash=None):
        return [{"extrinsicIndex": r.extrinsic_index, **plain(r.event)}
                for r in await node.events(p.block_hash(hash))]

    async def explorer_account(ctx: CallContext, account, hash=None):
        who = p.account(account, node)
        info = await node.account(who, p.block_hash(hash))
        return {"account": p.to_hex(who), "address": node.address(who),
                "nonce": info.nonce if info else 0,
                "free": str(info.free) if info else "0", "reserved": str(info.reserved) if info else "0"}

    async def explorer_validators(ctx: CallContext, hash=None):
        return [{"account": p.to_hex(v.account), "address": node.address(v.account), "stake": str(v.stake)}
                for v in await node.validators(p.block_hash(hash))]

    for handler in (explorer_block, explorer_events, explorer_account, explorer_validators):
        server.register(Method(handler.__name__, handler))
