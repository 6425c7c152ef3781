"""Pausing, resuming and stopping one journey through the API are changes a key holder makes:
each is in outreach's audit log with its actor (docs/guides/audit-log.md), though none writes a
row of outreach's own (the journey hears a signal)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from temporalio.testing import WorkflowEnvironment

from services.deals.app import create_app as deals_app
from services.outreach.app import create_app as outreach_app
from services.prospecting.app import create_app as prospecting_app
from services.referrals.app import create_app as referrals_app
from shared.access import INTERNAL_PREFIX
from shared.audit import MUTATING
from shared.auth import key_fingerprint
from shared.contracts.journey import journey_id
from shared.db import request_session
from shared.settings import Settings
from tests.support.apps import Api
from tests.support.settings import API_KEY

FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    "prospecting": prospecting_app,
    "outreach": outreach_app,
    "deals": deals_app,
    "referrals": referrals_app,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_pause_resume_and_stop_of_a_journey_name_who_did_them(
    api: Api, temporal_local: WorkflowEnvironment
) -> None:
    http = await api("outreach")
    prospect_id = uuid.uuid4().hex
    # a running journey to signal: Temporal takes signals for it with no worker polling
    handle = await temporal_local.client.start_workflow(
        "ProspectJourney", id=journey_id(prospect_id), task_queue=f"idle-{prospect_id}"
    )
    try:
        calls = [
            ("pause", {"reason": "on holiday"}),
            ("resume", {}),
            ("stop", {"reason": "asked to stop"}),
        ]
        for action, body in calls:
            r = await http.post(f"/journeys/{prospect_id}/{action}", json=body)
            assert r.status_code == 202, r.text
    finally:
        await handle.terminate("test over")

    page = (await http.get("/audit", params={"resource_id": prospect_id})).json()
    routes = sorted(e["route"] for e in page["entries"])
    assert routes == [
        f"POST /journeys/{{prospect_id}}/{action}" for action in ("pause", "resume", "stop")
    ], page
    assert {e["actor_key_id"] for e in page["entries"]} == {key_fingerprint(API_KEY)}
    assert "on holiday" not in str(page) and "asked to stop" not in str(page)


# POSTs that change nothing: they translate payloads for Temporal's UI and CLI
CHANGE_NOTHING = {
    ("prospecting", "POST", "/codec/decode"),
    ("prospecting", "POST", "/codec/encode"),
    ("prospecting", "POST", "/codec/workflows/{workflow_id}/decode"),
    ("prospecting", "POST", "/codec/workflows/{workflow_id}/encode"),
}


def _uses_request_session(dependant: Dependant) -> bool:
    return dependant.call is request_session or any(
        _uses_request_session(d) for d in dependant.dependencies
    )


def test_every_change_a_key_holder_can_make_has_a_request_session_to_audit_it() -> None:
    """The audit entry is written by the request's session: a key holder's POST, PUT, PATCH or
    DELETE without one leaves no entry at all."""
    settings = Settings(environment="test", api_keys="k")
    unaudited = []
    for service, factory in FACTORIES.items():
        app = factory(settings)
        policies = app.state.access.policies
        for ctx in iter_route_contexts(app.routes):
            route, path = ctx.original_route, ctx.path or ""
            if not isinstance(route, APIRoute) or path.startswith(INTERNAL_PREFIX):
                continue
            for method in sorted((route.methods or set()) & MUTATING):
                rule = policies.get((method, path))
                exempt = (rule is not None and rule.public) or (
                    service,
                    method,
                    path,
                ) in CHANGE_NOTHING
                if not exempt and not _uses_request_session(route.dependant):
                    unaudited.append(f"{service} {method} {path}")
    assert unaudited == []
