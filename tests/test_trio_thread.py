"""The asyncio <-> trio bridge that hosts py-libp2p (node/service.py: TrioThread, ThreadQueue)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from node.service import ServiceFailed, ThreadQueue, TrioThread


@pytest.fixture
def trio_thread():
    thread = TrioThread("test-trio")
    thread.start_thread()
    yield thread
    thread.stop()


def test_call_runs_on_the_trio_thread_and_returns_to_asyncio(trio_thread):
    async def where() -> str:
        await trio.sleep(0)
        return threading.current_thread().name

    async def main() -> tuple[str, str]:
        return await trio_thread.call(where), threading.current_thread().name

    trio_side, asyncio_side = asyncio.run(main())
    assert trio_side == "test-trio" and asyncio_side != "test-trio"


def test_an_exception_on_the_trio_side_is_raised_to_the_caller(trio_thread):
    async def fail() -> None:
        raise ValueError("bad peer")

    async def main() -> None:
        await trio_thread.call(fail)

    with pytest.raises(ValueError, match="bad peer"):
        asyncio.run(main())


def test_a_timeout_is_a_trio_cancel_scope_that_really_stops_the_trio_task(trio_thread):
    finished = threading.Event()

    async def slow() -> None:
        await trio.sleep(10)
        finished.set()

    async def main() -> None:
        await trio_thread.call(slow, timeout=0.1)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert not finished.wait(0.3)


def test_a_cancelled_asyncio_caller_cancels_the_trio_task(trio_thread):
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            cancelled.set()
            raise

    async def main() -> None:
        task = asyncio.create_task(trio_thread.call(slow))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled.wait(2)


def test_start_keeps_a_long_lived_task_running_after_it_reports_started(trio_thread):
    ticks: list[int] = []

    async def ticker(first: int, *, task_status) -> None:
        task_status.started("up")
        for i in range(first, first + 3):
            ticks.append(i)
            await trio.sleep(0.01)

    async def main() -> str:
        started = await trio_thread.start(ticker, 5)
        for _ in range(100):
            if len(ticks) == 3:
                break
            await asyncio.sleep(0.01)
        return started

    assert asyncio.run(main()) == "up"
    assert ticks == [5, 6, 7]


def test_trio_code_can_await_an_asyncio_coroutine(trio_thread):
    async def on_asyncio(x: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return x * 2, threading.current_thread().name

    async def main() -> tuple[int, str]:
        loop = asyncio.get_running_loop()

        async def from_trio() -> tuple[int, str]:
            return await trio_thread.await_asyncio(loop, on_asyncio(21))
        return await trio_thread.call(from_trio)

    value, thread = asyncio.run(main())
    assert value == 42 and thread != "test-trio"


def test_events_from_trio_land_in_a_bounded_asyncio_queue_and_overflow_is_counted(trio_thread):
    async def main() -> tuple[list[int], int]:
        queue = ThreadQueue(asyncio.get_running_loop(), maxsize=4)

        async def produce() -> None:
            for i in range(10):
                queue.put_threadsafe(i)
        await trio_thread.call(produce)
        for _ in range(100):
            if queue.qsize() + queue.dropped == 10:
                break
            await asyncio.sleep(0.01)
        return [queue.queue.get_nowait() for _ in range(queue.qsize())], queue.dropped

    got, dropped = asyncio.run(main())
    assert got == [0, 1, 2, 3] and dropped == 6


def test_a_call_after_stop_fails_clearly():
    thread = TrioThread("stopped-trio")
    thread.start_thread()
    thread.stop()

    async def noop() -> None:
        return None

    async def main() -> None:
        await thread.call(noop)

    with pytest.raises(ServiceFailed):
        asyncio.run(main())
