"""Issue 11: `/internal/*` takes the services' own credential (CLOSEFLOW_SERVICE_TOKEN), which no
person holds. An ops key could erase any address's suppressions and consent through
POST /internal/erasures; now ops and admin keys get 403 there, and the services still call it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.access import SERVICE_ONLY, AccessTable, api_routes
from shared.erasure import digest
from shared.settings import Settings
from tests.support.apps import Api
from tests.support.settings import PRODUCTION, SERVICE_AUTH, make_settings

SERVICES = ("prospecting", "outreach", "deals", "referrals")
OPS_KEY = "ops:ops-key-of-a-person"


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_ops_key_cannot_erase_through_internal_routes_and_a_service_can(api: Api) -> None:
    outreach = await api("outreach", api_keys=f"test-key,{OPS_KEY}")
    pepper = "dev-erasure-pepper"
    order = {
        "erasure_id": "e1",
        "prospect_id": "p1",
        "email": "ada@example.com",
        "email_digest": digest(pepper, "email", "ada@example.com"),
    }
    for person in ({"X-API-Key": "ops-key-of-a-person"}, {"X-API-Key": "test-key"}):
        refused = await outreach.post("/internal/erasures", json=order, headers=person)
        assert refused.status_code == 403, refused.text
        assert "service" in refused.json()["error"]["message"]
    done = await outreach.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert done.status_code == 200, done.text
    # the service token reads the public routes a service needs, as an admin key does
    assert (await outreach.get("/cadences", headers=SERVICE_AUTH)).status_code == 200


@pytest.mark.parametrize("service", SERVICES)
def test_every_internal_route_is_for_the_service_only(service: str, tmp_path: Path) -> None:
    app = importlib.import_module(f"services.{service}.app").create_app(make_settings(tmp_path))
    table: AccessTable = app.state.access
    internal = [key for key in api_routes(app) if key[1].startswith("/internal/")]
    assert internal, "each service serves some /internal/ route"
    assert {key: table.policies[key] for key in internal} == dict.fromkeys(internal, SERVICE_ONLY)


def test_production_refuses_a_missing_weak_or_shared_service_token() -> None:
    assert Settings(**PRODUCTION).internal_api_key == PRODUCTION["service_token"]  # type: ignore[arg-type]
    for token in ("", "dev-service-token", "change-me", "short-token"):
        with pytest.raises(ValidationError, match="CLOSEFLOW_SERVICE_TOKEN"):
            Settings(**{**PRODUCTION, "service_token": token})  # type: ignore[arg-type]
    admin_key = PRODUCTION["api_keys"].partition(":")[2]
    with pytest.raises(ValidationError, match="CLOSEFLOW_SERVICE_TOKEN"):
        Settings(**{**PRODUCTION, "service_token": admin_key})  # type: ignore[arg-type]
