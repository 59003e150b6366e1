"""The node's service tree: startup -> run -> shutdown, and a service on its own thread.

A `Service` has three steps. `start` prepares it (open files, bind ports) and
may fail, which aborts the node before anything runs. `run` is its main loop.
`stop` releases what it holds; it is called once for every started service, in
reverse order of starting, also when another service failed.

`ServiceTree.run` starts the services in order, runs them side by side, and
returns when the stop event is set (SIGINT/SIGTERM) or re-raises the first
failure of any service, after stopping them all within a shutdown timeout.

`LoopThread` runs an asyncio event loop on its own thread; `TrioThread` runs
trio on its own thread, because py-libp2p is trio and fails under asyncio
(DESIGN.md, "py-libp2p facts"). Calls cross into either with `call` (an
asyncio future for the caller; a trio cancel scope enforces the timeout on the
trio side), and trio code hands events back with `ThreadQueue.put_threadsafe`
(loop.call_soon_threadsafe into a bounded asyncio queue, counting what it drops)
or awaits an asyncio coroutine with `TrioThread.await_asyncio`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any, Awaitable, Callable, Coroutine

import structlog
import trio

from runtime.errors import GradchainError

log = structlog.get_logger("service")


class ServiceFailed(GradchainError):
    code = "service_failed"


class Service:
    name = "service"

    async def start(self) -> None:
        """Prepare; raise to abort the node before anything runs."""

    async def run(self) -> None:
        """The main loop; by default, wait to be cancelled."""
        await asyncio.Event().wait()

    async def stop(self) -> None:
        """Release what the service holds. Called once, even after a failure."""


class ServiceTree:
    def __init__(self, services: list[Service], *, shutdown_timeout: float = 10.0) -> None:
        self.services = services
        self.shutdown_timeout = shutdown_timeout
        self.started = asyncio.Event()  # set once every service has started

    async def run(self, stop: asyncio.Event) -> None:
        started: list[Service] = []
        failure: BaseException | None = None
        tasks: dict[asyncio.Task, Service] = {}
        try:
            for service in self.services:
                await service.start()
                started.append(service)
            self.started.set()
            tasks = {asyncio.create_task(s.run(), name=s.name): s for s in started}
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    failure = task.exception()
                    log.error("service failed", service=tasks[task].name, error=str(failure))
                    break
        except BaseException as exc:  # a start failed, or we were cancelled
            failure = exc
        finally:
            await self._shutdown(tasks, started)
        if failure is not None:
            if isinstance(failure, GradchainError):
                raise failure
            raise ServiceFailed(f"{type(failure).__name__}: {failure}") from failure

    async def _shutdown(self, tasks: dict[asyncio.Task, Service], started: list[Service]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_timeout)
        for service in reversed(started):
            try:
                await asyncio.wait_for(service.stop(), self.shutdown_timeout)
            except Exception as exc:  # keep stopping the others
                log.error("service did not stop cleanly", service=service.name, error=str(exc))


class LoopThread:
    """An asyncio event loop on a dedicated thread (the pattern a trio service uses too)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def call(self, coroutine: Coroutine[Any, Any, Any], *, timeout: float | None = None) -> Any:
        """Run a coroutine on this thread's loop; await its result from the caller's loop."""
        return await asyncio.wait_for(asyncio.wrap_future(self.submit(coroutine)), timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


class TrioThread:
    """`trio.run` on a dedicated thread, with a nursery that outlives each call.

    `call(fn, *args, timeout=)` runs `await fn(*args)` on the trio thread and
    returns its result (or raises its exception) on the caller's asyncio loop;
    the timeout is a trio cancel scope, so the trio side really stops, and a
    cancelled asyncio caller cancels the trio task too. `start(fn)` runs a
    long-lived task (`fn(task_status)`, trio's `nursery.start` protocol) and
    returns what it passed to `task_status.started`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            trio.run(self._root)
        except BaseException as exc:  # recorded for the owner; the thread just ends
            self.error = exc
            log.error("trio thread ended with an error", thread=self.name, error=repr(exc))
        finally:
            self._ready.set()

    async def _root(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def start_thread(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._token is None:
            raise ServiceFailed(f"trio thread {self.name} did not start: {self.error!r}")

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._token is not None

    def _run_soon(self, function: Callable[[], None]) -> None:
        if self._token is None:
            raise ServiceFailed(f"trio thread {self.name} is not running")
        try:
            self._token.run_sync_soon(function)
        except trio.RunFinishedError:
            raise ServiceFailed(f"trio thread {self.name} has stopped") from None

    async def call(self, function: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None = None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        scope = trio.CancelScope()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        async def task() -> None:
            outcome: tuple[Any, BaseException | None] = (None, ServiceFailed(f"trio thread {self.name} stopped"))
            try:
                with scope:
                    with trio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
                        outcome = (await function(*args), None)
                if scope.cancelled_caught:
                    outcome = (None, asyncio.CancelledError())
            except trio.TooSlowError:
                outcome = (None, TimeoutError(f"{getattr(function, '__name__', 'call')} took over {timeout} s"))
            except Exception as exc:
                outcome = (None, exc)
            finally:  # also when the thread's nursery is cancelled: the caller must not wait forever
                _post(loop, settle, *outcome)

        self._run_soon(lambda: self._nursery.start_soon(task))
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():  # the asyncio caller gave up: stop the trio side
                try:
                    self._run_soon(scope.cancel)
                except ServiceFailed:
                    pass
            raise

    async def start(self, function: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None = None) -> Any:
        """Start `function(*args, task_status=...)` in the thread's nursery; return what it reports started."""
        async def starter() -> Any:
            return await self._nursery.start(_with_status(function), *args)
        return await self.call(starter, timeout=timeout)

    async def await_asyncio(self, loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """From trio code on this thread: run `coroutine` on the asyncio `loop` and wait for it here."""
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)

        def wake(_: concurrent.futures.Future) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass
        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive() and self._token is not None:
            try:
                self._token.run_sync_soon(self._stop.set)
            except trio.RunFinishedError:
                pass
            self._thread.join(timeout)


def _with_status(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def started(*args: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> Any:
        return await function(*args, task_status=task_status)
    return started


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the asyncio loop closed: nobody is waiting any more
        pass


class ThreadQueue:
    """A bounded asyncio queue that another thread fills without blocking.

    `put_threadsafe` never blocks the producer (the trio thread must not wait on
    asyncio): when the queue is full the item is dropped and counted in
    `dropped`, so a slow consumer shows up in metrics instead of as lag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.dropped = 0

    def put_threadsafe(self, item: Any) -> None:
        _post(self.loop, self._put, item)

    def _put(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> Any:
        return await self.queue.get()

    def qsize(self) -> int:
        return self.queue.qsize()


async def in_thread(executor: concurrent.futures.Executor, function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)


__all__ = ["Service", "ServiceTree", "ServiceFailed", "LoopThread", "TrioThread", "ThreadQueue", "in_thread"]
