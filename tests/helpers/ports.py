"""Addresses for network tests: a free loopback port, and this machine's own non-loopback address (the
one way to be a remote-looking caller of a server on this machine)."""

from __future__ import annotations

import ipaddress
import socket

from node.testnet.processes import free_port as testnet_free_port


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for flags that cannot take 0), below the ephemeral range so no
    outgoing connection takes it before the node binds it (node.testnet.processes.free_port)."""
    return testnet_free_port()


def non_loopback_address() -> str | None:
    """This machine's IPv4 address on its default route, or None if it has none. Connecting a UDP socket
    sends nothing: it only asks the kernel which local address it would use."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never answered, only routed
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0" else address
