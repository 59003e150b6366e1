"""explorer_*: decoded blocks, events and accounts, for block explorers and wallets."""

from __future__ import annotations

from rpc import params as p
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer
from rpc.shapes import extrinsic_json, header_json, plain

MAX_HISTORY_PAGE = 100


def register(server: RpcServer, node: NodeFacade) -> None:
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

    async def explorer_accountHistory(ctx: CallContext, account, before=None, count=None):
        """Canonical blocks that involve the account (signed an extrinsic, named in an event), newest first,
        below block `before`: page on with `before` = the last number of the previous page."""
        who = p.account(account, node)
        below = None if before is None else p.block_number(before, "before")
        limit = MAX_HISTORY_PAGE if count is None else p.positive_count(count, "count", MAX_HISTORY_PAGE)
        return [{"number": number, "hash": p.to_hex(block_hash), "extrinsics": extrinsics, "events": events}
                for number, block_hash, extrinsics, events in await node.account_history(who, below, limit)]

    async def explorer_validators(ctx: CallContext, hash=None):
        return [{"account": p.to_hex(v.account), "address": node.address(v.account), "stake": str(v.stake)}
                for v in await node.validators(p.block_hash(hash))]

    for handler in (explorer_block, explorer_events, explorer_account, explorer_accountHistory, explorer_validators):
        server.register(Method(handler.__name__, handler))
