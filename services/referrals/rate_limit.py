"""Token buckets for the public referral page, kept in memory per process.

Each key (a client IP, a referral token) owns a bucket of `capacity` requests that refills at
`capacity / per_seconds` a second. In memory per process is enough here: the page's links are
unguessable, so the limit only has to stop floods and scripted spam; with N processes the
effective limit is N times the configured one. Idle buckets (full again) are dropped once the
table grows past `max_keys`, so memory stays bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


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
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def _rate(self) -> float:
        return self.capacity / self.per_seconds

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.capacity, bucket.tokens + (now - bucket.updated) * self._rate)

    def take(self, key: str) -> int:
        """Spend one request of `key`: 0 when allowed, else whole seconds until it would be."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict_idle(now)
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        bucket.tokens, bucket.updated = self._refilled(bucket, now), now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))

    def _evict_idle(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        for key in [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.capacity]:
            del self._buckets[key]


@dataclass
class FormLimits:
    """The referral page's limits: per client IP (any token) and per token (any IP)."""

    per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(30, 600))
    per_token: RateLimiter = field(default_factory=lambda: RateLimiter(20, 600))

    def check(self, ip: str, token: str) -> int:
        """0 when the request may go on, else the seconds to wait (the larger of the two)."""
        return max(self.per_ip.take(f"ip:{ip}"), self.per_token.take(f"token:{token}"))
