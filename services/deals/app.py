"""The deals API process: qualification, meetings, objections, closing."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.deals.access import ACCESS
from services.deals.closing import api as closing
from services.deals.closing import exports
from services.deals.core import api as core
from services.deals.meetings import api as meetings
from services.deals.models import AuditEntry, EventOutbox, IdempotencyKey
from services.deals.playbook import api as playbook
from services.deals.qualification import api as qualification
from shared.app import create_service_app, run_during_lifespan
from shared.audit import AuditConfig
from shared.events import EventForwarder
from shared.rate_limit import FormLimits, RateLimiter
from shared.settings import Settings

DESCRIPTION = (
    "Deals from qualifying to closed: qualification frameworks (BANT, MEDDIC, custom) with a "
    "gate, meetings, objections answered from an ops-editable playbook ranked by what worked, "
    "and closing. Every decision is signalled to the prospect's journey."
)
# the deal record first, then its sub-domains in the order a deal meets them
ROUTERS = [
    *core.routers,
    *qualification.routers,
    *meetings.routers,
    *playbook.routers,
    *closing.routers,
    exports.router,  # GET /exports/deals.csv
]


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        "deals",
        settings,
        ROUTERS,
        access=ACCESS,
        description=DESCRIPTION,
        temporal_client=temporal_client,
        idempotency=IdempotencyKey,
        audit=AuditConfig(AuditEntry, skip=frozenset({"event_outbox"})),
    )
    # the booking page's limits, per process (tests may swap in tighter ones)
    app.state.booking_limits = FormLimits(per_ip=RateLimiter(settings.booking_rate_limit, 600))
    # meetings booked, deals won and lost: to outreach, which delivers them to subscribers
    forwarder = EventForwarder(
        lambda: app.state.sessions,
        EventOutbox,
        settings.outreach_url,
        settings.internal_api_key,
    )
    app.state.event_forwarder = forwarder
    run_during_lifespan(app, forwarder)
    return app
