"""The node's service tree: startup -> run -> shutdown, and a service on its own thread.

A `Service` has three steps. `start` prepares it (open files, bind ports) and
may fail, which aborts the node before anything runs. `run` is its main loop.
`stop` releases what it holds; it is called once for every started service, in
reverse order of starting, also when another service failed.

`ServiceTree.run` starts the services in order, runs them side by side, and
returns when the stop event is set (SIGINT/SIGTERM) or re-raises the first
failure of any service, after stopping them all within a shutdown timeout.

`LoopThread` runs an event loop on its own thread. py-libp2p needs trio on a
thread of its own (DESIGN.md, "py-libp2p facts"); the same holds for any
service that must not share the node's asyncio loop. Calls cross into it with
`call` (an asyncio future for the caller) and results come back the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable, Coroutine

import structlog

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


async def in_thread(executor: concurrent.futures.Executor, function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)


__all__ = ["Service", "ServiceTree", "ServiceFailed", "LoopThread", "in_thread"]
