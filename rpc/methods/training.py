"""training_*: tasks, rounds, updates, model versions, leaderboard and blobs, for trainers and explorers."""

from __future__ import annotations

from rpc import params as p
from rpc.errors import invalid_params
from rpc.server import CallContext, Method, RpcServer
from rpc.shapes import plain

MAX_TASK_LIST = 1000


def _task_id(value, name: str = "task") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise invalid_params(f"{name} must be a task id (a whole number)")
    return value


def register(server: RpcServer, node) -> None:
    async def training_tasks(ctx: CallContext):
        return [dict(id=task_id, **plain(task)) for task_id, task in await node.tasks(MAX_TASK_LIST)]

    async def training_task(ctx: CallContext, task):
        found = await node.task(_task_id(task))
        return None if found is None else dict(id=task, **plain(found))

    async def training_updates(ctx: CallContext, task, round):
        updates = await node.round_updates(_task_id(task), _task_id(round, "round"))
        return [{"update": p.to_hex(h), **plain(record)} for h, record in updates]

    async def training_models(ctx: CallContext, task):
        return [{"round": r, **plain(version)} for r, version in await node.model_versions(_task_id(task))]

    async def training_rounds(ctx: CallContext, task):
        return [{"round": r, **plain(summary)} for r, summary in await node.rounds(_task_id(task))]

    async def training_leaderboard(ctx: CallContext):
        return [{"account": p.to_hex(who), "address": node.address(who), "earned": str(amount)}
                for who, amount in await node.leaderboard()]

    async def training_blobInfo(ctx: CallContext, hash):
        info = await node.blob_info(p.hex_bytes(hash, "hash", length=32))
        return None if info is None else {"size": info.size, "uploadedAt": info.uploaded_at}

    for handler in (training_tasks, training_task, training_updates, training_models, training_rounds,
                    training_leaderboard, training_blobInfo):
        server.register(Method(handler.__name__, handler))
