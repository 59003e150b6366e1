"""training_*: tasks, rounds, updates, model versions, leaderboard and blobs, for trainers and explorers."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import invalid_params
from rpc.facade import NodeFacade
from rpc.server import CallContext, Method, RpcServer
from rpc.shapes import plain

MAX_TASK_PAGE = 100
MAX_ROUND_PAGE = 1000
MAX_LEADERBOARD = 1000


def _task_id(value, name: str = "task") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise invalid_params(f"{name} must be a task id (a whole number)")
    return value


def _round(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise invalid_params(f"{name} must be a round number (a whole number)")
    return value


def _count(value, name: str, default: int, maximum: int) -> int:
    return default if value is None else p.positive_count(value, name, maximum)


def register(server: RpcServer, node: NodeFacade) -> None:
    async def training_tasks(ctx: CallContext, count=None, before=None):
        """The newest `count` tasks (default and cap 100) with ids below `before`, in id order:
        page back with `before` = the first id of the previous page."""
        page = await node.tasks(None if before is None else _task_id(before, "before"),
                                _count(count, "count", MAX_TASK_PAGE, MAX_TASK_PAGE))
        return [dict(id=task_id, **plain(task)) for task_id, task in page]

    async def training_task(ctx: CallContext, task):
        found = await node.task(_task_id(task))
        return None if found is None else dict(id=task, **plain(found))

    async def training_updates(ctx: CallContext, task, round):
        updates = await node.round_updates(_task_id(task), _round(round, "round"))
        return [{"update": p.to_hex(h), **plain(record)} for h, record in updates]

    async def training_models(ctx: CallContext, task, start=None, count=None):
        """Model versions of rounds start .. start + count - 1 (count default and cap 1000)."""
        versions = await node.model_versions(_task_id(task), 0 if start is None else _round(start, "start"),
                                             _count(count, "count", MAX_ROUND_PAGE, MAX_ROUND_PAGE))
        return [{"round": r, **plain(version)} for r, version in versions]

    async def training_rounds(ctx: CallContext, task, start=None, count=None):
        summaries = await node.rounds(_task_id(task), 0 if start is None else _round(start, "start"),
                                      _count(count, "count", MAX_ROUND_PAGE, MAX_ROUND_PAGE))
        return [{"round": r, **plain(summary)} for r, summary in summaries]

    async def training_leaderboard(ctx: CallContext, count=None):
        """Accounts by all rewards earned, largest first (from the node's index: no walk of the state)."""
        rows = await node.leaderboard(_count(count, "count", 100, MAX_LEADERBOARD))
        return [{"account": p.to_hex(who), "address": node.address(who), "earned": str(amount)}
                for who, amount in rows]

    async def training_taskLeaderboard(ctx: CallContext, task, count=None):
        """Trainers by rewards earned in one task, largest first."""
        rows = await node.task_leaderboard(_task_id(task), _count(count, "count", 100, MAX_LEADERBOARD))
        return [{"account": p.to_hex(who), "address": node.address(who), "earned": str(amount)}
                for who, amount in rows]

    async def training_blobInfo(ctx: CallContext, hash):
        info = await node.blob_info(p.hex_bytes(hash, "hash", length=32))
        return None if info is None else {"size": info.size, "uploadedAt": info.uploaded_at}

    for handler in (training_tasks, training_task, training_updates, training_models, training_rounds,
                    training_leaderboard, training_taskLeaderboard, training_blobInfo):
        server.register(Method(handler.__name__, handler))
