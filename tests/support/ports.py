"""Ports for the servers a test starts, disjoint between pytest-xdist workers.

Every port comes from below the kernel's ephemeral range: a port from bind(0) could be taken as the
local port of an outgoing connection before the test's server binds it (seen in CI as uvicorn's
"address already in use"). Each xdist worker draws from its own slice of that range and walks it in
order, so two workers never pick the same port and a worker does not reuse one until it has used
the whole slice."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

LOW = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice() -> range:
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    size = (_ephemeral_low() - LOW) // count
    return range(LOW + index * size, LOW + (index + 1) * size)


_SLICE = _worker_slice()
_next = random.randrange(len(_SLICE))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port of this worker's slice that is free now and was not handed out recently."""
    global _next
    for _ in range(len(_SLICE)):
        port = _SLICE[_next % len(_SLICE)]
        _next += 1
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {_SLICE}")


def hold_dead_port() -> tuple[socket.socket, int]:
    """A port bound and never listened on: connecting to it is refused at once, and no other
    server can take it while the socket is held. Settings point every URL a test does not set
    here, so a forgotten URL fails fast instead of reaching a developer's running stack."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", free_port()))
    return sock, int(sock.getsockname()[1])


DEAD_SOCKET, DEAD_PORT = hold_dead_port()
DEAD_URL = f"http://127.0.0.1:{DEAD_PORT}"
