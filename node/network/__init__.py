"""gradchain's peer-to-peer network on py-libp2p (0.8.1, trio, on its own thread).

Modules
  wire.py           protocol names, messages, frames and limits (the wire contract)
  host.py           the trio side: the libp2p host (Noise + yamux only), gossipsub, streams
  libp2p_repairs.py what gradchain changes in py-libp2p (drop counting, logs, serialized pubsub writes)
  service.py        NetworkService (asyncio): handshake, gossip, requests
  peering.py        reputation and bans, reserved and boot peers dialled, the application ping
  sync.py           catching up with peers and following announcements
  justification_sync.py  finality after sync: set-change blocks' and the head's justifications
  peers.py          the peer book: statuses, reputation, bans, reserved peers
  chain_adapter.py  the one seam to the chain service (imports, pool, blobs, notifications)
  config.py         NetworkConfig and the node key

The gossip port (for consensus/finality and anything else that gossips)
-----------------------------------------------------------------------
NetworkService implements `GossipPort` below. Topic names are short ("finality");
the service scopes them to the chain's genesis on the wire, so two chains never
share a topic. Messages are opaque bytes of at most wire.MAX_GOSSIP_BYTES (1 MiB);
the sender is the libp2p peer id (base58 text) of the message's signed origin.

    port.subscribe("finality") -> asyncio.Queue of (peer_id, data); bounded: when
        the consumer falls behind, messages are dropped and counted (metrics).
    await port.publish("finality", data)  gossip to all peers (paced on queue depth).
    port.report(peer_id, misbehaviour, reason="")  lower the peer's reputation; use
        "malformed" for undecodable or badly signed messages, "flood" for too many.
        At the threshold the peer is disconnected and banned for a while.

Consensus code should depend on this Protocol only (never on trio or libp2p);
tests use an in-memory implementation of the same three methods.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class GossipPort(Protocol):
    def subscribe(self, topic: str, maxsize: int = 1024) -> asyncio.Queue: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    def report(self, peer: str, misbehaviour: str, reason: str = "") -> None: ...


FINALITY_TOPIC = "finality"
