"""Who may call which prospecting route, and whose each prospecting id is (for rep keys).

The roles, rules and their enforcement: shared/access.py. A route without an entry here is
admin-only at run time and fails tests/stack/test_roles.py.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import select

from services.prospecting.api_keys import holder_of, rep_deactivated
from services.prospecting.models import Prospect
from shared.access import (
    ADMIN,
    ANY_ROLE,
    OPS,
    PUBLIC,
    SERVICE_ONLY,
    Resolver,
    RouteKey,
    Rule,
    ServiceAccess,
    rep_own,
)
from shared.auth import Principal
from shared.db import read_value
from shared.issued_keys import KeyLookup, RepCheck


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    return await read_value(request, select(Prospect.rep_id).where(Prospect.id == prospect_id))


RESOLVERS: dict[str, Resolver] = {"prospect_id": prospect_rep}


def key_lookup(app: FastAPI) -> KeyLookup:
    """Keys issued through the API, read from this service's own table (no cache: a revoked
    key stops here at once)."""

    async def lookup(key: str) -> Principal | None:
        async with app.state.sessions() as session:
            return await holder_of(session, key)

    return lookup


def rep_check(app: FastAPI) -> RepCheck:
    """A configured rep key's rep, read from this service's own table (no cache)."""

    async def check(rep_id: str) -> bool:
        async with app.state.sessions() as session:
            return await rep_deactivated(session, rep_id)

    return check


POLICIES: dict[RouteKey, Rule] = {
    ("POST", "/reps"): OPS,
    ("GET", "/reps"): OPS,
    ("GET", "/reps/{rep_id}"): rep_own("path:rep_id"),
    ("PATCH", "/reps/{rep_id}"): OPS,
    ("POST", "/prospects"): OPS,
    ("GET", "/prospects"): rep_own("query:rep_id"),
    ("GET", "/prospects/{prospect_id}"): rep_own("path:prospect_id"),
    ("GET", "/prospects/{prospect_id}/stages"): rep_own("path:prospect_id"),
    ("GET", "/icp"): ANY_ROLE,
    ("PUT", "/icp"): OPS,
    ("POST", "/imports"): OPS,
    ("GET", "/imports/{import_id}"): OPS,
    ("POST", "/api-keys"): ADMIN,
    ("GET", "/api-keys"): ADMIN,
    ("DELETE", "/api-keys/{key_id}"): ADMIN,
    ("POST", "/internal/api-keys/introspect"): SERVICE_ONLY,
    ("GET", "/internal/reps/{rep_id}/standing"): SERVICE_ONLY,
    ("POST", "/internal/prospects/{prospect_id}/comeback"): SERVICE_ONLY,
    ("GET", "/assignment-rules"): OPS,
    ("PUT", "/assignment-rules"): OPS,
    ("PATCH", "/prospects/{prospect_id}"): OPS,  # reassignment
    ("POST", "/prospects/{prospect_id}/erasure"): OPS,
    ("GET", "/prospects/{prospect_id}/erasure"): OPS,
    ("GET", "/prospects/{prospect_id}/timeline"): rep_own("path:prospect_id"),
    ("GET", "/funnel"): OPS,
    ("GET", "/exports/prospects.csv"): OPS,  # issue 14: CSV exports
    ("GET", "/exports/funnel.csv"): OPS,
    ("GET", "/funnel/bottleneck"): OPS,
    ("POST", "/ui/sign-in"): PUBLIC,  # the pages' key form: checks the key itself
    ("GET", "/ui/dashboard"): OPS,
    ("POST", "/codec/decode"): OPS,  # shows any prospect's workflow payloads: not for reps
    ("POST", "/codec/encode"): OPS,
    ("POST", "/codec/workflows/{workflow_id}/decode"): OPS,
    ("POST", "/codec/workflows/{workflow_id}/encode"): OPS,
}

ACCESS = ServiceAccess(POLICIES, RESOLVERS, key_lookup=key_lookup, rep_check=rep_check)
