"""A testnet of scripted nodes for the invariant checker's own tests: the checker asks, the script answers."""

from __future__ import annotations


class ScriptedTestnet:
    slot_ms = 1000

    def __init__(self, nodes) -> None:
        self.nodes = nodes

    def wait_until(self, condition, timeout, what, interval=0.5):
        value = condition()  # scripted nodes never change: once is enough
        if not value:
            raise AssertionError(f"timed out waiting for {what}")
        return value
