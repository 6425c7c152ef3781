"""The deals API process: qualification, meetings, objections, closing."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.deals.access import ACCESS
from services.deals.closing import api as closing
from services.deals.core import api as core
from services.deals.meetings import api as meetings
from services.deals.playbook import api as playbook
from services.deals.qualification import api as qualification
from shared.app import create_service_app
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
]


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    return create_service_app(
        "deals",
        settings or Settings(),
        ROUTERS,
        access=ACCESS,
        description=DESCRIPTION,
        temporal_client=temporal_client,
    )
