"""Requests the server makes to addresses that users choose (the reps' notification webhooks;
later the event subscriptions): a key holder must not turn a service into a client of internal
addresses (the metadata service, the database, the cluster's API) nor into a port scanner.

Two checks, both needed:
  * at save, `check_url`: the URL's shape. https in production, no userinfo, an IP address only
    in its canonical spelling (`2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1` are refused: a
    resolver reads them as 127.0.0.1), no single-label or internal names (`metadata`,
    `postgres`, `*.svc`, `*.cluster.local`, `*.internal`, `*.local`, `localhost`), and an IP
    address that is public;
  * at connect, `PinnedTransport`: the host is resolved once, EVERY address it resolves to must be
    public, and the connection goes to the checked address (the Host header and the TLS server
    name stay the original host, so the certificate is verified against it). A name that resolves
    to a public address at save and to 127.0.0.1 at send (DNS rebinding, `*.nip.io`) is refused.
Redirects are never followed (a 3xx is a failure), and what a caller shows the key holder is
`failure_category(err)`, never the exception's text.

Outside production loopback addresses and any names pass, and http is allowed: the dev stack's
and the tests' receivers listen on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.errors import invalid
from shared.tls import client_context

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host -> its addresses (as text); the system's resolver unless a test injects one
Resolver = Callable[[str], Awaitable[Sequence[str]]]

INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localhost")
INTERNAL_NAMES = frozenset({"localhost"})
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# a last label that is a number (decimal, hex or octal): the host is an IP address, however spelt
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

# what a key holder may read about a failed attempt
BLOCKED, CONNECTION_FAILED, TIMEOUT, TLS_ERROR, REDIRECT = (
    "blocked address",
    "connection failed",
    "timeout",
    "tls error",
    "redirect refused",
)


class OutboundBlocked(Exception):
    """The destination is not a public address; the message is for the server's log only."""


@dataclass(frozen=True)
class OutboundPolicy:
    production: bool
    resolver: Resolver | None = field(default=None, compare=False)
    # hosts the operator allows although internal (CLOSEFLOW_WEBHOOK_INTERNAL_HOSTS)
    internal_hosts: frozenset[str] = frozenset()

    async def resolve(self, host: str) -> Sequence[str]:
        return await (self.resolver or system_resolver)(host)


async def system_resolver(host: str) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refused_address(ip: IPAddress, *, production: bool, named: bool = False) -> str | None:
    """Why the server may not connect to `ip`, or None when it may. `named`: the host is one
    the operator allowed although internal: only the metadata service is refused."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
            return refused_address(ip.ipv4_mapped, production=production, named=named)
        if ip in NAT64:  # 64:ff9b::7f00:1 reaches 127.0.0.1 through a NAT64 gateway
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            return refused_address(embedded, production=production, named=named)
    if ip in METADATA:
        return "the cloud metadata service"
    if named:
        return None
    if ip.is_loopback:
        return None if not production else "a loopback address"
    kinds = (
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private or not ip.is_global),
    )
    for kind, found in kinds:
        if found:
            return f"a {kind} address"
    return None


def _ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal in its canonical spelling; None for a name;
    ValueError for any other spelling of an address."""
    if ":" in host:
        ip6 = ipaddress.IPv6Address(host)  # urlsplit strips the brackets
        return ip6
    if not _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        return None  # no top-level domain is a number: this is a name
    ip4 = ipaddress.IPv4Address(host)  # strict: four decimal parts, no leading zeros
    if str(ip4) != host:
        raise ValueError(host)
    return ip4


def check_url(
    url: str,
    *,
    production: bool,
    field_name: str,
    allowed_hosts: Sequence[str] = (),
    internal_hosts: frozenset[str] = frozenset(),
) -> None:
    """422 naming `field_name` when the server may not send requests to `url`. A host of
    `internal_hosts` (the operator's) passes over http too, whatever it is, the metadata
    service excepted."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise invalid(field_name, "must be an http(s) URL")
    named = (parts.hostname or "").lower().rstrip(".") in internal_hosts
    if production and parts.scheme != "https" and not named:
        raise invalid(field_name, "must use https")
    if "@" in parts.netloc:
        raise invalid(field_name, "must not carry a user name or password")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise invalid(field_name, "needs a host, e.g. https://hooks.slack.com/services/...")
    try:
        _ = parts.port  # a port that is not a number is refused here, not at send
    except ValueError:
        raise invalid(field_name, "has a port that is not a number") from None
    try:
        ip = _ip_literal(host)
    except ValueError:
        raise invalid(
            field_name, f"host {host} is an IP address spelt in a non-canonical way"
        ) from None
    if named:
        if ip is not None and (why := refused_address(ip, production=production, named=True)):
            raise invalid(field_name, f"host {host} is {why}")
        return
    if allowed_hosts and not any(host == a or host.endswith("." + a) for a in allowed_hosts):
        allowed = ", ".join(allowed_hosts)
        raise invalid(field_name, f"host {host} is not one of the allowed hosts: {allowed}")
    if ip is not None:
        why = refused_address(ip, production=production)
        if why:
            raise invalid(field_name, f"host {host} is {why}")
    elif production and (
        "." not in host or host in INTERNAL_NAMES or host.endswith(INTERNAL_SUFFIXES)
    ):
        raise invalid(field_name, f"host {host} is an internal name, not a public one")


async def checked_address(host: str, policy: OutboundPolicy) -> IPAddress:
    """The address to connect to for `host`: every address it resolves to must be allowed
    (a name with one internal address among public ones is refused, whichever is tried)."""
    try:
        ip = _ip_literal(host)
    except ValueError:
        raise OutboundBlocked(f"non-canonical address {host}") from None
    addresses = (
        [ip] if ip is not None else [ipaddress.ip_address(a) for a in await policy.resolve(host)]
    )
    if not addresses:
        raise OutboundBlocked(f"{host} resolves to no address")
    named = host.lower().rstrip(".") in policy.internal_hosts
    for address in addresses:
        why = refused_address(address, production=policy.production, named=named)
        if why:
            raise OutboundBlocked(f"{host} resolves to {address}, {why}")
    return addresses[0]


class PinnedTransport(httpx.AsyncHTTPTransport):
    """Resolves each request's host, checks every address, and connects to the checked one: the
    URL's host becomes that address, the Host header stays (httpx set it from the original URL)
    and the TLS server name (SNI, and the name the certificate is verified against) is the
    original host, through httpcore's `sni_hostname` extension. Nothing resolves the name again
    between the check and the connection."""

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        timeout = (request.extensions.get("timeout") or {}).get("connect")
        try:
            address = await asyncio.wait_for(checked_address(host, self.policy), timeout)
        except TimeoutError as err:
            raise httpx.ConnectTimeout(f"resolving {host} timed out", request=request) from err
        except OSError as err:  # the name does not resolve
            raise httpx.ConnectError(f"resolving {host}: {err}", request=request) from err
        request.url = request.url.copy_with(host=str(address))
        request.extensions = {**request.extensions, "sni_hostname": host}
        return await super().handle_async_request(request)


def pinned_client(policy: OutboundPolicy, *, timeout: float, **kwargs: Any) -> httpx.AsyncClient:
    """A client whose every request goes through `PinnedTransport` and never follows a
    redirect (the redirect's target would escape the check)."""
    # no kept-alive connections: the pool keys them by address, so a second host on the same
    # address would reuse a TLS session verified for the first host's name
    kwargs.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
    kwargs.setdefault("verify", client_context())
    return httpx.AsyncClient(
        transport=PinnedTransport(policy, **kwargs), timeout=timeout, follow_redirects=False
    )


def _caused_by_tls(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def failure_category(err: BaseException) -> str:
    """What the key holder may read about a failed request: a category, never the exception's
    text (which names addresses, ports and the reasons a connection failed)."""
    if isinstance(err, OutboundBlocked):
        return BLOCKED
    if isinstance(err, httpx.TimeoutException | TimeoutError):
        return TIMEOUT
    if _caused_by_tls(err):
        return TLS_ERROR
    return CONNECTION_FAILED


def status_category(status: int) -> str:
    """The category of an answer that is not a success (a 3xx is one: redirects are refused)."""
    return REDIRECT if 300 <= status < 400 else f"http {status // 100}xx"


class DeliveryRefused(Exception):
    """A POST to a user's URL did not succeed. The message is a category the key holder may
    read (`failure_category`, `status_category`); `permanent`: retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


async def post_checked(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> int:
    """POST `body` to a user's URL through a `pinned_client`: the answer's status when it is a
    2xx, else `DeliveryRefused` (a blocked address is permanent; a timeout, a refused connection,
    a 408, a 429 or a 5xx may pass; a redirect is never followed, so it fails like a 4xx).

    The client's read timeout bounds the whole exchange, and the answer's body is never read:
    httpx's timeouts are per read, so a receiver sending a byte now and then (headers or a body
    that never end) would hold the caller's relay, and every other user's deliveries, for ever,
    and a body read whole could be as large as the receiver likes."""
    try:
        async with (
            asyncio.timeout(client.timeout.read),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status = response.status_code
    except (OutboundBlocked, httpx.HTTPError, OSError) as err:
        # the key holder reads the error back: a category only, or their key scans the network
        log.warning("POST to a user's URL failed: %s: %s", type(err).__name__, err)
        category = failure_category(err)
        raise DeliveryRefused(category, permanent=category == BLOCKED) from err
    if status >= 300:
        retryable = status in (408, 429) or status >= 500
        raise DeliveryRefused(status_category(status), permanent=not retryable, status=status)
    return status


class PinnedClientOwner:
    """For a relay whose items are POSTs to users' URLs: one `pinned_client` for as long as
    the relay runs (`open_client` at start, `close_client` at stop)."""

    outbound: OutboundPolicy
    _http: httpx.AsyncClient | None = None

    def open_client(self, timeout: float) -> None:
        if self._http is None:
            self._http = pinned_client(self.outbound, timeout=timeout)

    async def close_client(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "the relay is not started"
        return self._http
