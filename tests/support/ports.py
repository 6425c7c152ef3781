"""Ports for the servers a test starts: devstack's allocator, which gives each pytest-xdist
worker a slice of its own below the ephemeral range."""

from __future__ import annotations

import socket

from devstack.env import free_ports


def free_port() -> int:
    """A port free now that this process has not handed out before (until its slice wraps)."""
    return free_ports(1)[0]


def hold_dead_port() -> tuple[socket.socket, int]:
    """A port bound and never listened on: connecting to it is refused at once, and no other
    server can take it while the socket is held. Settings point every URL a test does not set
    here, so a forgotten URL fails fast instead of reaching a developer's running stack."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", free_port()))
    return sock, int(sock.getsockname()[1])


DEAD_SOCKET, DEAD_PORT = hold_dead_port()
DEAD_URL = f"http://127.0.0.1:{DEAD_PORT}"
