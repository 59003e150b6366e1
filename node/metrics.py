"""Prometheus metrics of one node, served as text on --prometheus-port."""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from node.service import Service

log = structlog.get_logger("metrics")


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.best_height = Gauge("gradchain_best_height", "Number of the best block", registry=self.registry)
        self.finalized_height = Gauge("gradchain_finalized_height", "Number of the last finalized block",
                                      registry=self.registry)
        self.pool_ready = Gauge("gradchain_txpool_ready", "Transactions ready for a block", registry=self.registry)
        self.pool_future = Gauge("gradchain_txpool_future", "Transactions waiting for a nonce gap",
                                 registry=self.registry)
        self.peers = Gauge("gradchain_peers", "Connected peers", registry=self.registry)
        self.import_seconds = Histogram("gradchain_block_import_seconds", "Time to import a block",
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                        registry=self.registry)
        self.blocks_authored = Counter("gradchain_blocks_authored", "Blocks this node authored",
                                       registry=self.registry)
        self.disputed_blocks = Counter("gradchain_disputed_blocks", "Imported blocks whose useful-work report did "
                                       "not reproduce here", registry=self.registry)
        self.verification = Counter("gradchain_block_verification", "Useful-work verification statuses written, "
                                    "by status (pending, verified, disputed, unverifiable)", ["status"],
                                    registry=self.registry)
        self.extrinsics_included = Counter("gradchain_extrinsics_included", "Extrinsics in imported blocks",
                                           registry=self.registry)

        # networking (node/network)
        self.p2p_bytes_in = Gauge("gradchain_p2p_bytes_in", "Bytes received from peers (requests, replies, gossip)",
                                  registry=self.registry)
        self.p2p_bytes_out = Gauge("gradchain_p2p_bytes_out", "Bytes sent to peers", registry=self.registry)
        self.gossip_dropped = Counter("gradchain_gossip_unsent", "Gossip messages not sent because peers' queues "
                                      "stayed full", registry=self.registry)
        self.gossip_dropped_by_libp2p = Gauge("gradchain_p2p_messages_dropped", "Messages dropped: by gossipsub's "
                                              "full outbound queues, and by this node's full inbound queues",
                                              registry=self.registry)
        self.peer_reports = Counter("gradchain_peer_misbehaviour", "Misbehaviour reported against peers",
                                    ["kind"], registry=self.registry)
        self.sync_target = Gauge("gradchain_sync_target", "Highest block number a peer has announced",
                                 registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsService(Service):
    name = "prometheus"

    def __init__(self, metrics: NodeMetrics, port: int, host: str = "127.0.0.1") -> None:
        self.metrics, self.port, self.host = metrics, port, host
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("prometheus listening", host=self.host, port=self.port)

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
