"""Who may call which referrals route, and whose each referrals id is (for rep keys).

The roles, rules and their enforcement: shared/access.py. A route without an entry here is
admin-only at run time and fails tests/stack/test_roles.py.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from services.referrals.models import ReferralAsk
from shared.access import (
    OPS,
    PUBLIC,
    SERVICE_ONLY,
    Resolver,
    RouteKey,
    Rule,
    ServiceAccess,
    rep_own,
)
from shared.db import read_value


async def ask_rep(request: Request, ask_id: str) -> str | None:
    return await read_value(request, select(ReferralAsk.rep_id).where(ReferralAsk.id == ask_id))


async def client_rep(request: Request, prospect_id: str) -> str | None:
    """The rep on the client's latest ask: the rep who won them."""
    latest_ask = (
        select(ReferralAsk.rep_id)
        .where(ReferralAsk.client_prospect_id == prospect_id)
        .order_by(ReferralAsk.created_at.desc(), ReferralAsk.id.desc())
        .limit(1)
    )
    return await read_value(request, latest_ask)


RESOLVERS: dict[str, Resolver] = {"ask_id": ask_rep, "prospect_id": client_rep}

POLICIES: dict[RouteKey, Rule] = {
    ("GET", "/asks"): rep_own("query:client_prospect_id=prospect_id"),
    ("GET", "/asks/{ask_id}"): rep_own("path:ask_id"),
    ("POST", "/asks/{ask_id}/referrals"): rep_own("path:ask_id"),
    ("GET", "/referrals"): rep_own("query:referrer_prospect_id=prospect_id"),
    ("GET", "/r/{token}"): PUBLIC,
    ("POST", "/r/{token}"): PUBLIC,
    ("GET", "/analytics"): OPS,
    ("POST", "/internal/erasures"): SERVICE_ONLY,
    ("GET", "/internal/prospects/{prospect_id}/timeline"): SERVICE_ONLY,
    ("POST", "/internal/prospects/{prospect_id}/rep"): SERVICE_ONLY,
}

ACCESS = ServiceAccess(POLICIES, RESOLVERS)
