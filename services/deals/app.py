"""The deals API process: qualification, meetings, objections, closing."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.deals import erasure, source_analytics, timeline
from services.deals.access import ACCESS
from services.deals.api import routers
from shared.app import create_service_app
from shared.settings import Settings

DESCRIPTION = (
    "Deals from qualifying to closed: qualification frameworks (BANT, MEDDIC, custom) with a "
    "gate, meetings, objections answered from an ops-editable playbook ranked by what worked, "
    "and closing. Every decision is signalled to the prospect's journey."
)


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    return create_service_app(
        "deals",
        settings or Settings(),
        [*routers, source_analytics.router, erasure.router, timeline.router],
        access=ACCESS,
        description=DESCRIPTION,
        temporal_client=temporal_client,
    )
