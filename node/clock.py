"""The node's clock, injectable so tests run slots as fast as the CPU allows."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, time_ms: int) -> None:
        delay = (time_ms - self.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """Time moves only when someone sleeps: sleeping until t sets the time to t."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.time_ms = start_ms

    def now_ms(self) -> int:
        return self.time_ms

    async def sleep_until(self, time_ms: int) -> None:
        self.time_ms = max(self.time_ms, time_ms)
        await asyncio.sleep(0)
