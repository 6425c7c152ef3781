"""API keys issued through the API (admin only), next to the ones in CLOSEFLOW_API_KEYS.

Prospecting stores them (SHA-256 only, services/prospecting/api_keys.py) and answers
POST /internal/api-keys/introspect; the other services ask it and keep a live key's answer for
CACHE_SECONDS (one second), so a revoked key stops working there within a second (at once in
prospecting). An unknown or revoked key's answer is never kept: a key issued a moment after a
miss works at once, and made-up keys cannot fill the cache. The cache is a bounded LRU.
Only keys that look issued (ISSUED_PREFIX) are looked up: random junk costs no round trip.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import httpx

from shared.auth import ROLES, Principal
from shared.errors import AppError
from shared.peers import peer_client

ISSUED_PREFIX = "cf_"
CACHE_SECONDS = 1.0  # how long a revoked key may still work in another service
CACHE_ENTRIES = 10_000
INTROSPECT_PATH = "/internal/api-keys/introspect"

KeyLookup = Callable[[str], Awaitable[Principal | None]]


def new_key() -> str:
    return ISSUED_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    # a fast hash is enough: issued keys carry 256 random bits, there is nothing to brute-force
    return hashlib.sha256(key.encode()).hexdigest()


def looks_issued(key: str) -> bool:
    return key.startswith(ISSUED_PREFIX) and 20 <= len(key) <= 100


class IntrospectedKeys:
    """A KeyLookup for services other than prospecting: ask it, cache the answer."""

    def __init__(
        self,
        base_url: str,
        internal_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
        ttl: float = CACHE_SECONDS,
        max_entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = peer_client(internal_key, base_url=base_url, timeout=5.0, transport=transport)
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        # live keys only, by hash (never the key), least recently used first
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def __call__(self, key: str) -> Principal | None:
        if not looks_issued(key):
            return None
        digest = key_hash(key)
        hit = self._cache.get(digest)
        if hit is not None:
            if hit[0] > self._clock():
                self._cache.move_to_end(digest)
                return hit[1]
            del self._cache[digest]
        try:
            response = await self._http.post(INTROSPECT_PATH, json={"key": key})
        except httpx.HTTPError as err:
            raise AppError(
                503, "key_check_unavailable", "the prospecting service did not answer a key check"
            ) from err
        if response.status_code == 404:
            principal = None
        elif response.status_code == 200:
            body = response.json()
            role = body.get("role")
            principal = (
                Principal(role, body.get("rep_id"), key_id=str(body.get("key_id") or ""))
                if role in ROLES
                else None
            )
        else:
            raise AppError(
                503, "key_check_unavailable", f"prospecting answered {response.status_code}"
            )
        if principal is not None:
            self._cache[digest] = (self._clock() + self._ttl, principal)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._cache)

    async def close(self) -> None:
        await self._http.aclose()
