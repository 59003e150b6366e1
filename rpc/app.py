"""Build the RPC server with every namespace, one module per namespace (rpc/methods/)."""

from __future__ import annotations

from rpc.facade import NodeFacade
from rpc.methods import author, chain, explorer, state, system, training
from rpc.server import RpcLimits, RpcServer


def build_server(node: NodeFacade, *, host: str = "127.0.0.1", port: int = 9944, unsafe_methods: bool = False,
                 cors: list[str] | None = None, limits: RpcLimits | None = None) -> RpcServer:
    server = RpcServer(host=host, port=port, limits=limits, unsafe_methods=unsafe_methods, cors=cors)
    for namespace in (system, chain, state, author, explorer, training):
        namespace.register(server, node)
    server.blobs = node.blobs
    return server
