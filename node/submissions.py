"""Transactions submitted at about the same time go to the chain thread together.

A hop to the chain thread and back costs more than validating a transfer, and each hop also
waits behind whatever the chain thread is doing (a block being imported). So submissions that
arrive together (an RPC batch, which the server takes concurrently, or many clients at once) are
queued on the event loop and validated in chunks of CHUNK per chain-thread job; each caller
still gets its own answer, or its own error raised.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

CHUNK = 256  # submissions validated per chain-thread job (about 30 ms of work)


class SubmissionQueue:
    def __init__(self, submit_many: Callable[[list[Any]], Awaitable[list]]) -> None:
        """`submit_many(items)` -> one result per item: its answer, or the exception that refused it."""
        self._submit_many = submit_many
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self._running = False

    async def submit(self, item: Any) -> Any:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if not self._running:
            self._running = True
            asyncio.create_task(self._drain())  # starts after the rest of a batch has queued
        return await answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                chunk, self._waiting = self._waiting[:CHUNK], self._waiting[CHUNK:]
                try:
                    results = await self._submit_many([item for item, _ in chunk])
                except asyncio.CancelledError:  # the loop is closing: every caller hears
                    for _, answer in chunk + self._waiting:
                        answer.cancel()
                    self._waiting = []
                    raise
                except Exception as exc:  # the chain thread is shut down (or the pool has a bug)
                    results = [exc] * len(chunk)
                for (_, answer), result in zip(chunk, results):
                    if answer.done():  # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self._running = False
