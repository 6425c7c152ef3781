"""Who may call which deals route, and whose each deals id is (for rep keys).

The roles, rules and their enforcement: shared/access.py. A route without an entry here is
admin-only at run time and fails tests/stack/test_roles.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import ColumnElement, ScalarSelect, func, select

from services.deals.models import CLOSED_STAGES, BookingLink, Deal, Objection
from shared.access import (
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
from shared.db import read_value


async def deal_rep(request: Request, deal_id: str) -> str | None:
    return await read_value(request, select(Deal.rep_id).where(Deal.id == deal_id))


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    """The prospect's rep as deals knows them: their open deal's, else their live booking
    links' (both follow a reassignment: core.service.move_rep; a prospect still being
    contacted has links and no deal), else their latest deal's (closed deals keep the rep who
    closed them)."""

    def newest(table: Any, *where: ColumnElement[bool]) -> ScalarSelect[Any]:
        newest_first = (table.created_at.desc(), table.rep_id.desc())
        return select(table.rep_id).where(*where).order_by(*newest_first).limit(1).scalar_subquery()

    of_deal = Deal.prospect_id == prospect_id
    live_link = (BookingLink.prospect_id == prospect_id) & BookingLink.revoked_at.is_(None)
    known = func.coalesce(
        newest(Deal, of_deal, Deal.stage.not_in(CLOSED_STAGES)),
        newest(BookingLink, live_link),
        newest(Deal, of_deal),
    )
    return await read_value(request, select(known))


async def objection_rep(request: Request, objection_id: str) -> str | None:
    deal_of_objection = (
        select(Deal.rep_id)
        .join(Objection, Objection.deal_id == Deal.id)
        .where(Objection.id == objection_id)
    )
    return await read_value(request, deal_of_objection)


RESOLVERS: dict[str, Resolver] = {
    "deal_id": deal_rep,
    "prospect_id": prospect_rep,
    "objection_id": objection_rep,
}

POLICIES: dict[RouteKey, Rule] = {
    ("GET", "/deals"): rep_own("query:prospect_id"),
    ("GET", "/exports/deals.csv"): OPS,  # issue 14: the pipeline as CSV
    ("GET", "/deals/{deal_id}"): rep_own("path:deal_id"),
    ("PATCH", "/deals/{deal_id}"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/qualification"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/meetings"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/objections"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/stage"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/close"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/reopen"): OPS,  # undoing a close is a manager's call
    ("POST", "/objections/{objection_id}/outcome"): rep_own("path:objection_id"),
    ("GET", "/pipeline"): rep_own("query:rep_id"),
    ("GET", "/qualification/framework"): ANY_ROLE,
    ("GET", "/frameworks"): ANY_ROLE,
    ("GET", "/frameworks/{name}"): ANY_ROLE,
    ("POST", "/frameworks"): OPS,
    ("PUT", "/frameworks/{name}"): OPS,
    ("GET", "/close-reasons"): ANY_ROLE,
    ("PUT", "/close-reasons"): OPS,
    ("GET", "/playbook"): ANY_ROLE,
    ("GET", "/playbook/{category}"): ANY_ROLE,
    ("PUT", "/playbook/{category}"): OPS,
    ("DELETE", "/playbook/{category}"): OPS,
    ("GET", "/analytics/objections"): OPS,
    ("POST", "/deals/{deal_id}/meetings/{meeting_id}/reschedule"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/meetings/{meeting_id}/cancel"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/meetings/{meeting_id}/held"): rep_own("path:deal_id"),
    ("POST", "/deals/{deal_id}/meetings/{meeting_id}/no-show"): rep_own("path:deal_id"),
    ("GET", "/analytics/sources"): OPS,
    # booking links (issue 14): the rep's own hours; the prospect's page carries its token
    ("PUT", "/reps/{rep_id}/availability"): rep_own("path:rep_id"),
    ("GET", "/reps/{rep_id}/availability"): rep_own("path:rep_id"),
    ("GET", "/book/{token}"): PUBLIC,
    ("POST", "/book/{token}"): PUBLIC,
    ("POST", "/internal/booking-links"): SERVICE_ONLY,  # outreach renders {{ booking_link }}
    ("DELETE", "/prospects/{prospect_id}/booking-links"): rep_own("path:prospect_id"),
    ("POST", "/internal/reps/{rep_id}/standing"): SERVICE_ONLY,  # prospecting's outbox
    ("POST", "/internal/erasures"): SERVICE_ONLY,
    ("POST", "/internal/prospects/{prospect_id}/rep"): SERVICE_ONLY,
    ("GET", "/internal/prospects/{prospect_id}/timeline"): SERVICE_ONLY,
}

ACCESS = ServiceAccess(POLICIES, RESOLVERS)
