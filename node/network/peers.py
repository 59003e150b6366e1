"""Who we are connected to, what they told us, how they behaved, and who is banned.

A peer counts (for gossip, sync and system_peers) only after its status
handshake matched our genesis. Misbehaviour lowers a peer's reputation by the
amount in MISBEHAVIOUR; at or below BAN_THRESHOLD the peer is disconnected and
banned for BAN_SECONDS. Reputation decays back towards zero over time, so a
peer that erred once is not punished forever. Reserved peers are kept
connected (redialled at once when they drop), and with --reserved-only no other
peer is accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from node.network.wire import Status

# reputation cost of each kind of misbehaviour (a peer starts at 0)
MISBEHAVIOUR = {
    "wrong_chain": -1000,
    "bad_block": -500,
    "bad_transaction": -100,  # provably forged (bad signature, an inherent), never a race
    "malformed": -250,
    "oversized": -500,
    "timeout": -20,
    "cut_short": -20,
    "flood": -250,
    "bad_blob": -500,
    "bad_justification": -500,  # a finality proof that does not verify: forged, never a race
    "unrequested": -50,
    "unknown_protocol": -100,
}
BAN_THRESHOLD = -400
BAN_SECONDS = 60.0
DECAY_PER_SECOND = 2.0


@dataclass
class Peer:
    peer_id: str
    status: Status | None = None  # None until the handshake completes
    reputation: float = 0.0
    connected_at: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    failed_pings: int = 0
    announcements: list[float] = field(default_factory=list)  # recent times, for flood detection

    @property
    def ready(self) -> bool:
        return self.status is not None


class PeerBook:
    def __init__(self, *, clock=time.monotonic) -> None:
        self.clock = clock
        self.peers: dict[str, Peer] = {}
        self.banned_until: dict[str, float] = {}
        self.reserved: dict[str, str] = {}  # peer id -> multiaddr
        self._decayed_at = clock()

    def connected(self, peer_id: str) -> Peer:
        return self.peers.setdefault(peer_id, Peer(peer_id))

    def disconnected(self, peer_id: str) -> None:
        self.peers.pop(peer_id, None)

    def ready_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.ready]

    def is_banned(self, peer_id: str) -> bool:
        until = self.banned_until.get(peer_id)
        if until is None:
            return False
        if self.clock() >= until:
            del self.banned_until[peer_id]
            return False
        return True

    def ban(self, peer_id: str, seconds: float = BAN_SECONDS) -> None:
        self.banned_until[peer_id] = self.clock() + seconds

    def unban(self, peer_id: str) -> bool:
        return self.banned_until.pop(peer_id, None) is not None

    def report(self, peer_id: str, misbehaviour: str) -> bool:
        """Lower the peer's reputation; True when it fell to the ban threshold (the caller bans it)."""
        self._decay()
        peer = self.peers.get(peer_id)
        cost = MISBEHAVIOUR.get(misbehaviour, -100)
        if peer is None:
            return cost <= BAN_THRESHOLD
        peer.reputation += cost
        return peer.reputation <= BAN_THRESHOLD

    def _decay(self) -> None:
        now = self.clock()
        recovered = (now - self._decayed_at) * DECAY_PER_SECOND
        self._decayed_at = now
        for peer in self.peers.values():
            if peer.reputation < 0:
                peer.reputation = min(0.0, peer.reputation + recovered)

    def note_announcement(self, peer_id: str, *, window_s: float = 1.0, limit: int = 20) -> bool:
        """Record an announcement; True when the peer sent more than `limit` within `window_s` (a flood)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return False
        now = self.clock()
        peer.announcements = [t for t in peer.announcements if now - t < window_s]
        peer.announcements.append(now)
        return len(peer.announcements) > limit
