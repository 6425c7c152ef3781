"""Who the client is behind a reverse proxy: X-Forwarded-For is believed only from a trusted one.

CLOSEFLOW_TRUSTED_PROXIES lists the proxies' networks (CIDR; empty by default: nothing is
trusted and the direct peer is the client). When the direct peer is trusted, the client is the
rightmost address in X-Forwarded-For that is not itself a trusted proxy: every trusted hop
appended the address it saw, and anything to the left of the first untrusted one is whatever the
client chose to send. uvicorn's own proxy-header rewriting is off (closeflow/cli.py), so this is
the one place the client address is decided.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "x-forwarded-for"
UNKNOWN = "unknown"


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """Each entry as a network (a bare address is a /32 or /128); a malformed one is named."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as err:
            raise ValueError(
                f"CLOSEFLOW_TRUSTED_PROXIES: {entry!r} is not a network ({err})"
            ) from err
    return tuple(networks)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_client(peer: str, forwarded_for: str, networks: Sequence[Network]) -> str:
    """The client's address, given the direct peer and the X-Forwarded-For header (all of its
    values, comma-joined)."""
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    # every hop is a trusted proxy: the leftmost is the closest thing to a client there is
    return hops[0] if hops else peer


def client_ip(request: Request) -> str:
    peer = request.client.host if request.client else UNKNOWN
    networks: Sequence[Network] = request.app.state.settings.trusted_networks
    forwarded = ",".join(request.headers.getlist(FORWARDED_FOR))
    return forwarded_client(peer, forwarded, networks)
