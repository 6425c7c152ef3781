"""API keys and who holds them: every endpoint but provider webhooks and public links needs one.

CLOSEFLOW_API_KEYS entries name the holder's role (see docs/guides/roles.md):
  `<key>`                 an admin key (a bare key stays admin: the dev stack and old configs)
  `admin:<key>`, `ops:<key>`
  `rep:<rep_id>:<key>`    a rep's key: only that rep's prospects, deals and tasks
Which role may call which route is decided in shared/access.py.

CLOSEFLOW_SERVICE_TOKEN is the services' own credential, sent in the same header: its holder is
the "service" principal, the only one /internal/* routes accept. No person holds it (issue 11:
an ops key could erase any address's suppressions through /internal/erasures).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from shared.errors import AppError
from shared.rate_limit import app_limiter, client_key

API_KEY_HEADER = "X-API-Key"
# Server-rendered pages (paths under /ui/) take the key from a cookie that a posted sign-in form
# sets (shared/pages.py): a browser cannot send a header. No key is ever read from a query
# string: query strings land in access logs, browser history and Referer headers.
PAGE_PREFIX = "/ui/"
PAGE_KEY_COOKIE = "closeflow_key"
_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="closeflow API key")

Role = Literal["admin", "ops", "rep", "service"]
# the roles a key of CLOSEFLOW_API_KEYS or an issued key may have: "service" is the service token's
ROLES: tuple[Role, ...] = ("admin", "ops", "rep")
SERVICE: Role = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling. Holds no secret, so it is safe to log."""

    role: Role
    rep_id: str | None = None  # set for rep keys only
    # which key (never the key itself): an issued key's id, else `key_fingerprint` of a
    # configured one; what the audit log names as the actor. Not part of equality.
    key_id: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"rep {self.rep_id}" if self.role == "rep" else self.role


class KeyConfigError(ValueError):
    """A malformed CLOSEFLOW_API_KEYS entry. The message never contains the key."""


def key_fingerprint(key: str) -> str:
    """A configured key's id for the audit log: a short digest that names the key without
    revealing it (the keys are long random strings, so 48 bits cannot be searched back)."""
    return "cfg_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def parse_key_entry(entry: str, position: int = 1) -> tuple[str, Principal]:
    """One CLOSEFLOW_API_KEYS entry -> (key, holder). `position` (1-based) names the entry in
    errors, because the entry itself is a secret."""
    entry = entry.strip()
    where = f"CLOSEFLOW_API_KEYS entry {position}"
    role, sep, rest = entry.partition(":")
    if not sep or role not in ROLES:
        # no role prefix: the whole entry is an admin key (plain keys were all-powerful before)
        key, principal = entry, Principal("admin")
    elif role == "rep":
        rep_id, sep, key = rest.partition(":")
        if not sep or not rep_id.strip():
            raise KeyConfigError(f"{where}: a rep key is written rep:<rep_id>:<key>")
        principal = Principal("rep", rep_id.strip())
    else:
        key, principal = rest, Principal(role)
    if not key.strip():
        raise KeyConfigError(f"{where}: the key after the role is empty")
    return key.strip(), replace(principal, key_id=key_fingerprint(key.strip()))


def has_role(entry: str) -> bool:
    """Whether a CLOSEFLOW_API_KEYS entry names its role (a bare key is an admin key)."""
    role, sep, _ = entry.strip().partition(":")
    return bool(sep) and role in ROLES


def parse_api_keys(entries: Iterable[str]) -> dict[str, Principal]:
    """Every entry's key -> its holder; a key given twice is refused (which role would it be?)."""
    holders: dict[str, Principal] = {}
    for position, entry in enumerate(entries, start=1):
        if not entry.strip():
            continue
        key, principal = parse_key_entry(entry, position)
        if key in holders:
            raise KeyConfigError(f"CLOSEFLOW_API_KEYS entry {position} repeats an earlier key")
        holders[key] = principal
    return holders


def secrets_match(expected: str, given: str) -> bool:
    """Whether `given` (what a caller sent: a key, a token, a signature) is `expected`, in time
    that does not depend on where they differ. Compared as UTF-8 bytes: compare_digest raises
    TypeError for a str with a non-ASCII character, which any caller can send."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def identify(holders: dict[str, Principal], key: str) -> Principal | None:
    found = None
    # compare_digest against every key, no early exit: the time taken reveals neither a prefix
    # match nor which entry matched
    for candidate, principal in holders.items():
        if secrets_match(candidate, key):
            found = principal
    return found


def is_service_token(token: str, key: str) -> bool:
    return bool(token) and secrets_match(key, token)


# Tools that speak Temporal's codec protocol send a header value they are given, as
# Authorization (`temporal ... --codec-auth "Bearer <key>"`): accepted on those routes only.
CODEC_PREFIX = "/codec/"


def presented_key(request: Request) -> str | None:
    key = request.headers.get(API_KEY_HEADER)
    if not key and request.url.path.startswith(CODEC_PREFIX):
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        return bearer.strip() or None if scheme.lower() == "bearer" else None
    if key or not request.url.path.startswith(PAGE_PREFIX):
        return key
    return request.cookies.get(PAGE_KEY_COOKIE)


async def authenticate(request: Request, key: str | None) -> Principal:
    """The caller's principal, resolved once per request and kept on request.state: a key of
    CLOSEFLOW_API_KEYS, else one issued through the API (app.state.key_lookup)."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    if not key:
        raise AppError(401, "missing_api_key", f"send your API key in the {API_KEY_HEADER} header")
    settings = request.app.state.settings
    principal = identify(settings.api_principals, key)
    if principal is not None and principal.rep_id and await _rep_left(request, principal.rep_id):
        principal = None  # a configured rep key stops with its rep, as their issued keys do
    if principal is None and is_service_token(settings.service_token.get_secret_value(), key):
        principal = Principal(SERVICE, key_id="service")
    lookup: Callable[[str], Awaitable[Principal | None]] | None = getattr(
        request.app.state, "key_lookup", None
    )
    if principal is None and lookup is not None:
        principal = await _looked_up(request, lookup, key)
    if principal is None:
        raise AppError(401, "invalid_api_key", f"the {API_KEY_HEADER} header holds an unknown key")
    request.state.principal = principal
    return principal


# unknown keys that look issued one client network may present in a minute, per process:
# each is looked up (outreach, deals and referrals ask prospecting over HTTP), which a stranger
# could otherwise make them do without end; other unknown keys are refused with no lookup
UNKNOWN_KEYS_PER_MINUTE = 60
# the shape of keys issued through the API (shared.issued_keys makes them)
ISSUED_PREFIX = "cf_"


def looks_issued(key: str) -> bool:
    return key.startswith(ISSUED_PREFIX) and 20 <= len(key) <= 100


async def _looked_up(
    request: Request, lookup: Callable[[str], Awaitable[Principal | None]], key: str
) -> Principal | None:
    """An issued key's principal; a client that presented too many unknown keys that look
    issued is refused (429) before any lookup. Known keys spend nothing."""
    if not looks_issued(key):
        return await lookup(key)  # no round trip for these (None at once)
    misses = app_limiter(request.app.state, "unknown_keys", UNKNOWN_KEYS_PER_MINUTE, 60)
    client = client_key(request)
    if wait := misses.wait(client):
        raise AppError(
            429,
            "too_many_unknown_keys",
            f"this client presented more than {UNKNOWN_KEYS_PER_MINUTE} unknown API keys in a "
            f"minute; try again in {wait} s",
            retry_after=wait,
        )
    principal = await lookup(key)
    if principal is None:
        misses.take(client)
    return principal


async def _rep_left(request: Request, rep_id: str) -> bool:
    """Whether the rep was deactivated (app.state.rep_check: prospecting reads its own table,
    the others ask it; without one, as without issued keys, nothing is checked)."""
    check: Callable[[str], Awaitable[bool]] | None = getattr(request.app.state, "rep_check", None)
    return check is not None and await check(rep_id)


async def require_api_key(
    request: Request, key: Annotated[str | None, Depends(_scheme)] = None
) -> str:
    await authenticate(request, key)
    return key or ""


async def current_principal(
    request: Request, key: Annotated[str | None, Depends(_scheme)] = None
) -> Principal:
    return await authenticate(request, key)


ApiKey = Annotated[str, Depends(require_api_key)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
