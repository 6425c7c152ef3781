"""API keys issued through the API (admin only), next to the ones in CLOSEFLOW_API_KEYS.

Prospecting stores them (SHA-256 only, services/prospecting/api_keys.py) and answers
POST /internal/api-keys/introspect; the other services ask it and keep a live key's answer for
CACHE_SECONDS (one second), so a revoked key stops working there within a second (at once in
prospecting). An unknown or revoked key's answer is never kept: a key issued a moment after a
miss works at once, and made-up keys cannot fill the cache. The cache is a bounded LRU.
Only keys that look issued (ISSUED_PREFIX) are looked up: random junk costs no round trip.

A rep's key in CLOSEFLOW_API_KEYS is checked the same way for its rep's standing
(GET /internal/reps/{rep_id}/standing, the same cache): a deactivated rep's configured key stops
working as their issued keys do, in every service.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import httpx

from shared.auth import ISSUED_PREFIX, ROLES, Principal, looks_issued
from shared.errors import AppError
from shared.ids import id_path, is_id
from shared.peers import peer_client

CACHE_SECONDS = 1.0  # how long a revoked key may still work in another service
CACHE_ENTRIES = 10_000
INTROSPECT_PATH = "/internal/api-keys/introspect"
STANDING_PATH = "/internal/reps/{id}/standing"

KeyLookup = Callable[[str], Awaitable[Principal | None]]
RepCheck = Callable[[str], Awaitable[bool]]
"""rep_id -> whether that rep was deactivated (an unknown rep was not)."""


def new_key() -> str:
    return ISSUED_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    # a fast hash is enough: issued keys carry 256 random bits, there is nothing to brute-force
    return hashlib.sha256(key.encode()).hexdigest()


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
        principal = self._recall(digest)
        if principal is not None:
            return principal
        response = await self._ask("POST", INTROSPECT_PATH, {"key": key})
        if response.status_code == 200:
            body = response.json()
            role = body.get("role")
            if role in ROLES:
                principal = Principal(
                    role, body.get("rep_id"), key_id=str(body.get("key_id") or "")
                )
                self._remember(digest, principal)
        return principal

    async def rep_deactivated(self, rep_id: str) -> bool:
        """For a rep key of CLOSEFLOW_API_KEYS: only an active rep's answer is kept, so a rep
        deactivated stops within CACHE_SECONDS, and one re-activated works at once."""
        # "rep:" cannot collide with a key's hex digest in the one cache
        name = f"rep:{rep_id}"
        if not is_id(rep_id) or self._recall(name) is not None:
            return False  # not an id: no rep has it, so none was deactivated
        response = await self._ask("GET", id_path(STANDING_PATH, id=rep_id))
        deactivated = response.status_code == 200 and response.json().get("deactivated") is True
        if not deactivated:
            self._remember(name, Principal("rep", rep_id))
        return deactivated

    async def _ask(self, method: str, path: str, body: object = None) -> httpx.Response:
        """Prospecting's answer: 200 or 404; anything else (or none) is a 503 for the caller."""
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise AppError(
                503, "key_check_unavailable", "the prospecting service did not answer a key check"
            ) from err
        if response.status_code not in (200, 404):
            raise AppError(
                503, "key_check_unavailable", f"prospecting answered {response.status_code}"
            )
        return response

    def _recall(self, name: str) -> Principal | None:
        hit = self._cache.get(name)
        if hit is None:
            return None
        if hit[0] > self._clock():
            self._cache.move_to_end(name)
            return hit[1]
        del self._cache[name]
        return None

    def _remember(self, name: str, principal: Principal) -> None:
        self._cache[name] = (self._clock() + self._ttl, principal)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self._cache)

    async def close(self) -> None:
        await self._http.aclose()
