"""Token buckets for the public pages reached by a link (the referral form, the booking page),
kept in memory per process.

Each key (a client IP, a referral token) owns a bucket of `capacity` requests that refills at
`capacity / per_seconds` a second. The scope is one process (one replica): the page's links are
unguessable, so the limit only has to stop floods and scripted spam, and with N replicas the
effective limit is N times the configured one (docs/guides/referrals.md and
docs/guides/meetings.md say so). The table holds
at most `max_keys` buckets: past that the least recently used one goes (LRU), so a flood of new
keys costs bounded memory.

The client IP is the one shared.proxies.client_ip finds: behind a trusted proxy the client's,
not the proxy's, so one client cannot lock out everyone who comes through the same ingress. An
IPv6 client is its /64 (`client_network`): it holds every address in it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from shared.proxies import client_ip

if TYPE_CHECKING:  # a type only: shared.auth, which shared.pages imports, uses these limits
    from shared.pages import Pages

IPV6_CLIENT_PREFIX = 64


def client_network(ip: str) -> str:
    """What one client holds: an IPv4 address, or an IPv6 /64 (the least a line or a VM is
    given: one address per request would walk past any per-address limit). Anything else (a
    test client's name) as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    capacity: int
    per_seconds: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)

    @property
    def _rate(self) -> float:
        return self.capacity / self.per_seconds

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.capacity, bucket.tokens + (now - bucket.updated) * self._rate)

    def wait(self, key: str) -> int:
        """Whole seconds until `key` may spend a request (0: now), spending nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        tokens = self._refilled(bucket, self.clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self._rate))

    def take(self, key: str) -> int:
        """Spend one request of `key`: 0 when allowed, else whole seconds until it would be."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)  # the least recently used
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens, bucket.updated = self._refilled(bucket, now), now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))


def app_limiter(state: Any, name: str, capacity: int, per_seconds: float) -> RateLimiter:
    """The app's limiter `name` (app.state), made at its first use."""
    limiter: RateLimiter | None = getattr(state, name, None)
    if limiter is None:
        limiter = RateLimiter(capacity, per_seconds)
        setattr(state, name, limiter)
    return limiter


def client_key(request: Request) -> str:
    """The bucket key of the client behind `request` (its network: client_network)."""
    return f"ip:{client_network(client_ip(request))}"


@dataclass
class FormLimits:
    """A link page's limits: per client IP (any token) and per token (any IP)."""

    per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(30, 600))
    per_token: RateLimiter = field(default_factory=lambda: RateLimiter(20, 600))

    def check(self, ip: str, token: str) -> int:
        """0 when the request may go on, else the seconds to wait. An address over its limit
        spends nothing of the token's: junk tokens from a refused address create no buckets."""
        if wait := self.per_ip.take(f"ip:{client_network(ip)}"):
            return wait
        return self.per_token.take(f"token:{token}")


def refuse_if_limited(
    limits: FormLimits, request: Request, token: str, pages: Pages
) -> HTMLResponse | None:
    """None when the request may go on; else the page's 429 (its module's `rate_limited.html`,
    or shared/templates' one on its `base.html`) with Retry-After. Checked before the database
    is touched."""
    wait = limits.check(client_ip(request), token)
    if not wait:
        return None
    page = pages.render("rate_limited.html", 429, minutes=math.ceil(wait / 60))
    page.headers["Retry-After"] = str(wait)
    return page
