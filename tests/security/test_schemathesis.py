"""Issue 11: schemathesis over every operation of every service, in process, with an admin key
(the service token on /internal/*):
no 5xx and every response within its schema. Bounded (a few examples per operation) to stay in
`make test`. Half the cases name real things (a rep, a prospect, a cadence, a sender made first)
so an operation is reached beyond its 404. Each service runs alone here: a call another service
would answer (it sits at a dead address) may be a 503 naming that service, counted apart."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, checks

from tests.support.apps import Api, ServiceApp
from tests.support.scenarios import fast_cadence
from tests.support.settings import AUTH, SERVICE_AUTH

SERVICES = ("prospecting", "outreach", "deals", "referrals")
EXAMPLES = 3  # per operation
PEER_DOWN = ("_unreachable", "_unavailable")  # another service (not running here) did not answer


def _cases(app: FastAPI) -> list[Case]:
    """Generated without I/O (hypothesis runs synchronously); sent afterwards, in the test's loop."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list[Case] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def collect(case: Case) -> None:
            cases.append(case)

        collect()
    return cases


async def _real_ids(api: Api, apps: dict[str, FastAPI]) -> dict[str, str]:
    prospecting, outreach = await api(apps["prospecting"]), await api(apps["outreach"])
    rep = await prospecting.post(
        "/reps", json={"name": "Rita", "email": "rita@example.org", "phone": "+14155550199"}
    )
    prospect = await prospecting.post(
        "/prospects", json={"first_name": "Ada", "email": "ada@example.com", "company": "AE"}
    )
    cadence = await outreach.post("/cadences", json=fast_cadence())
    made = {"rep_id": rep, "prospect_id": prospect, "cadence_id": cadence}
    for name, response in made.items():
        assert response.status_code == 201, (name, response.text)
    return {name: response.json()["id"] for name, response in made.items()}


def _request(case: Case, real: dict[str, str], use_real: bool) -> dict[str, Any]:
    if use_real and case.path_parameters:
        for name in case.path_parameters:
            if name in real:
                case.path_parameters[name] = real[name]
    # /internal/* is the services' (tests/security/test_internal_routes.py): call it as one
    internal = case.operation.path.startswith("/internal/")
    kwargs = case.as_transport_kwargs(
        base_url="http://test", headers=SERVICE_AUTH if internal else AUTH
    )
    kwargs.pop("cookies", None)
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


# PostgreSQL: the stricter database (text cannot hold a NUL: a 500 on SQLite-only testing)
@pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_every_operation_with_an_admin_key_answers_within_its_schema(
    service_app: ServiceApp, api: Api
) -> None:
    apps = {s: await service_app(s) for s in SERVICES}
    real = await _real_ids(api, apps)
    problems: list[str] = []
    peer_down = 0
    sent = 0
    operations: set[str] = set()
    reached: set[str] = set()  # answered 2xx at least once: more than a 404 or a 422
    for service, app in apps.items():
        client = await api(app)
        for index, case in enumerate(_cases(app)):
            response = await client.request(**_request(case, real, use_real=index % 2 == 0))
            sent += 1
            where = f"{service} {case.method} {case.formatted_path} -> {response.status_code}"
            operation = f"{service} {case.method} {case.operation.path}"
            operations.add(operation)
            if response.is_success:
                reached.add(operation)
            if response.status_code == 503 and response.json()["error"]["code"].endswith(PEER_DOWN):
                peer_down += 1
                continue
            try:
                case.validate_response(
                    response, checks=[checks.not_a_server_error, checks.response_schema_conformance]
                )
            except Exception as failure:  # schemathesis raises its own failure groups
                problems.append(f"{where}: {str(failure)[:400]}")
    print(f"{sent} cases, {len(reached)}/{len(operations)} operations reached, {peer_down} 503s")
    assert sent > 100
    # deals' and tasks' routes need things only journeys make: about half answer 2xx here
    assert len(reached) >= len(operations) // 2, sorted(operations - reached)
    assert problems == [], "\n\n".join(problems)
