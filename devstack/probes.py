"""Is it up yet: the readiness checks of the stack's processes (TCP, HTTP, Temporal namespace)."""

from __future__ import annotations

import socket
import urllib.request


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to `host` (a wildcard is not a destination)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def url_host(host: str) -> str:
    host = connect_host(host)
    return f"[{host}]" if ":" in host else host


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (CLOSEFLOW_TEMPORAL_ADDRESS) as where to connect and the port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return connect_host(host.strip("[]")), int(port)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


# No proxies: the stack is on loopback, and an HTTP(S)_PROXY in the environment must not matter.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str) -> bool:
    try:
        with _direct.open(url, timeout=1.0) as response:
            return 200 <= int(response.status) < 300
    except (OSError, ValueError):
        return False
