"""Threads whose failures fail the test: pytest only warns about an exception in a thread, so a test that
starts threads runs them through `ThreadRunner`, which re-raises the first failure in the test's thread."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class ThreadRunner:
    """Starts threads and joins them under a deadline; `join_all` raises the first exception any of them
    raised, and an AssertionError naming any thread still running."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def start(self, target: Callable[..., Any], *args: Any, name: str | None = None) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # kept for the test's thread, which re-raises it
                with self._lock:
                    self.errors.append(exc)

        thread = threading.Thread(target=run, name=name or getattr(target, "__name__", None), daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join_all(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0))
        self.raise_errors()
        running = [thread.name for thread in self.threads if thread.is_alive()]
        assert not running, f"threads still running after {timeout} s: {running}"

    def raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]
