"""HTTP clients for the calls between closeflow's own services, presenting the service token.

One shape for all of them, with a small connection pool: httpcore looks over every pooled
connection (a readiness check each) whenever it hands a request one, so a client keeping many
connections spends more of its CPU on the pool than on the requests. Timed on the project's
machine, 50 requests at a time to one FastAPI process: 1.2 ms of the client's CPU a request with
8 connections, 1.7 ms with 16, 2.3 ms with httpx's default of 100 (docs/benchmarks.md, eighth
pass). A peer is one process per replica answering on one event loop: more connections to it
only queue there instead of here.
"""

from __future__ import annotations

import httpx

from shared.auth import API_KEY_HEADER
from shared.tls import client_context

PEER_CONNECTIONS = 8


def peer_client(
    key: str,
    *,
    timeout: float,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client sending `key` (the service token) with every request."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={API_KEY_HEADER: key},
        timeout=timeout,
        transport=transport,
        verify=client_context(),
        limits=httpx.Limits(
            max_connections=PEER_CONNECTIONS, max_keepalive_connections=PEER_CONNECTIONS
        ),
    )
