"""Shared pieces of the in-memory finality tests (consensus.finality.memory.Simulation)."""

from __future__ import annotations

from consensus.finality.memory import Simulation


def one_way_cut(sim: Simulation, *, on: bool) -> dict[str, bool]:
    """While the returned switch's "on" is true, v2 and v3 hear nothing v0 and v1 send (v0 and v1 still hear
    them). The switch starts as `on`."""
    send, cut = sim.network.send_from, {"on": on}

    def send_from(sender: str, message: bytes) -> None:
        behind = [sim.network.inboxes[name] for name in ("v2", "v3")]
        before = [len(inbox) for inbox in behind]
        send(sender, message)
        if sender in ("v0", "v1") and cut["on"]:
            for inbox, length in zip(behind, before):
                while len(inbox) > length:
                    inbox.pop()
    sim.network.send_from = send_from
    return cut
