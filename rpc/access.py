"""Who may reach the node over RPC and how: what the server checks before a handler runs.

- HTTP bodies are JSON-RPC only when sent as `application/json`: a browser posts
  `text/plain`, form and multipart bodies cross-site without a CORS preflight, never JSON.
- An unsafe method answers a loopback client (any client with `--rpc-methods unsafe`)
  that names the node by a loopback host name (any name when the node listens beyond
  loopback, `--rpc-external`: a DNS-rebound page reaches 127.0.0.1 under its own name),
  from no browser page or from one whose Origin `--rpc-cors` allows.
- A blob upload may carry its uploader's account and signature (runtime.uploads).
"""

from __future__ import annotations

import ipaddress
from typing import Mapping

from runtime.uploads import ACCOUNT_HEADER, SIGNATURE_HEADER

LOOPBACK_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
JSON_CONTENT_TYPE = "application/json"


def host_name_of(host: str | None) -> str | None:
    """A Host header without its port (and an IPv6 literal without its brackets), lowercased."""
    if host is None:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_address(host: str) -> bool:
    if host in LOOPBACK_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_call_refusal(name: str, *, from_loopback: bool, host: str | None, origin: str | None,
                        unsafe_methods: bool, external: bool, origin_allowed: bool) -> str | None:
    """Why the unsafe method `name` must not answer this caller, or None when it may."""
    if not unsafe_methods and not from_loopback:
        return f"{name} is an unsafe method; it answers only on loopback unless the node runs with --rpc-methods unsafe"
    host_name = host_name_of(host)
    if host_name is not None and not external and host_name not in LOOPBACK_HOST_NAMES:
        return (f"{name} is an unsafe method; the request names the node as {host!r}, not a loopback name "
                "(a DNS-rebound page?); run the node with --rpc-external to serve other names")
    if origin is not None and not origin_allowed:
        return f"{name} is an unsafe method; the page at {origin!r} may not call it (allow its origin with --rpc-cors)"
    return None


def uploader_from_headers(headers: Mapping[str, str]) -> tuple[bytes, bytes] | None:
    """(account, signature) from a signed upload's headers; None when unsigned. ValueError when malformed."""
    account, signature = headers.get(ACCOUNT_HEADER), headers.get(SIGNATURE_HEADER)
    if account is None and signature is None:
        return None
    try:
        public = bytes.fromhex((account or "").removeprefix("0x"))
        signed = bytes.fromhex((signature or "").removeprefix("0x"))
    except ValueError:
        raise ValueError(f"{ACCOUNT_HEADER} and {SIGNATURE_HEADER} must be 0x and hex") from None
    if len(public) != 32 or len(signed) != 64:
        raise ValueError(f"{ACCOUNT_HEADER} is a 32-byte and {SIGNATURE_HEADER} a 64-byte hex value")
    return public, signed


__all__ = ["LOOPBACK_HOST_NAMES", "JSON_CONTENT_TYPE", "host_name_of", "is_loopback_address", "unsafe_call_refusal",
           "uploader_from_headers"]
