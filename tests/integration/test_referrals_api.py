"""Referrals API and public referral page, with intakes started on the real Temporal dev server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.referrals import service
from services.referrals.activities import ReferralsActivities
from services.referrals.app import create_app
from shared.contracts.journey import (
    ReferralAskRequest,
    ReferralIntakeInput,
    ReferredPerson,
    referral_intake_id,
)
from shared.contracts.queues import TaskQueues
from shared.migrations import upgrade
from shared.settings import Settings
from shared.temporal import task_queues
from tests.conftest import AUTH, make_settings

PUBLIC_URL = "https://refer.example.com/"
CLIENT = "Grace <b>Hopper</b>"


@workflow.defn(name="ReferralIntake")
class IntakeDouble:
    """Stands in for the real intake workflow: returns the input it was started with."""

    @workflow.run
    async def run(self, data: ReferralIntakeInput) -> ReferralIntakeInput:
        return data


@dataclass
class Env:
    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    temporal: Client

    async def ask(
        self, journey: str = "journey-client1", client: str = "client1"
    ) -> dict[str, Any]:
        request = ReferralAskRequest(
            client_prospect_id=client,
            journey_id=journey,
            client_name=CLIENT,
            rep_id="rep1",
            cadence_id="cad1",
        )
        activities = ReferralsActivities(self.app.state.sessions, PUBLIC_URL)
        made = await activities.create_referral_ask(request)
        resp = await self.http.get(f"/asks/{made.ask_id}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["link"] == made.link
        return resp.json()

    async def intake(self, referral_id: str) -> ReferralIntakeInput:
        handle = self.temporal.get_workflow_handle(
            referral_intake_id(referral_id), result_type=ReferralIntakeInput
        )
        return await asyncio.wait_for(handle.result(), 30)

    async def referrals(self, referrer: str = "client1") -> list[dict[str, Any]]:
        resp = await self.http.get("/referrals", params={"referrer_prospect_id": referrer})
        assert resp.status_code == 200, resp.text
        return resp.json()


def expected_intake(referral: dict[str, Any], queues: TaskQueues) -> ReferralIntakeInput:
    person = ReferredPerson(
        **{k: referral[k] for k in ReferredPerson.__dataclass_fields__}  # type: ignore[arg-type]
    )
    return ReferralIntakeInput(
        referral_id=referral["id"],
        person=person,
        referrer_prospect_id="client1",
        referrer_name=CLIENT,
        rep_id="rep1",
        cadence_id="cad1",
        queues=queues,
    )


@asynccontextmanager
async def serve(settings: Settings, temporal: Client) -> AsyncIterator[Env]:
    app = create_app(settings, temporal_client=temporal)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as http:
            yield Env(app, http, settings, temporal)


@pytest.fixture
async def settings(database_urls: dict[str, str], tmp_path: Path, queue_prefix: str) -> Settings:
    settings = make_settings(
        tmp_path, database_urls, task_queue_prefix=queue_prefix, referrals_public_url=PUBLIC_URL
    )
    await asyncio.to_thread(upgrade, settings, "referrals")
    return settings


@pytest.fixture
async def intake_worker(
    temporal_local: WorkflowEnvironment, queue_prefix: str
) -> AsyncIterator[Worker]:
    async with Worker(
        temporal_local.client,
        task_queue=f"{queue_prefix}journeys",
        workflows=[IntakeDouble],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        yield worker


@pytest.fixture
async def env(
    settings: Settings, temporal_local: WorkflowEnvironment, intake_worker: Worker
) -> AsyncIterator[Env]:
    async with serve(settings, temporal_local.client) as env:
        yield env


def _fields(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"
    return [d["field"] for d in resp.json()["error"]["details"]]


PERSON = {"first_name": "Alan", "last_name": "Turing", "email": "Alan@Example.com"}


# --- API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/asks"), ("GET", "/asks/x"), ("POST", "/asks/x/referrals"), ("GET", "/referrals")],
)
async def test_api_routes_need_an_api_key(env: Env, method: str, path: str) -> None:
    body = {"people": [PERSON]} if method == "POST" else None
    for key, code in [("", "missing_api_key"), ("wrong", "invalid_api_key")]:
        resp = await env.http.request(method, path, json=body, headers={"X-API-Key": key})
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == code


async def test_one_ask_per_journey_with_a_personal_link(env: Env) -> None:
    first = await env.ask()
    again = await env.ask()  # a retried activity
    assert again == first
    assert first["link"] == f"https://refer.example.com/r/{first['token']}"
    assert len(first["token"]) >= 32
    other = await env.ask(journey="journey-client2", client="client2")
    assert other["token"] != first["token"]

    mine = (await env.http.get("/asks", params={"client_prospect_id": "client1"})).json()
    assert [a["id"] for a in mine] == [first["id"]]
    assert len((await env.http.get("/asks")).json()) == 2
    missing = await env.http.get("/asks/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "referral_ask_not_found"


async def test_referrals_posted_through_the_api_start_their_intakes(env: Env) -> None:
    ask = await env.ask()
    people = [PERSON, {"first_name": "Joan", "phone": "+44 20 7946 0958", "company": "GCHQ"}]
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": people})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert [(r["email"], r["phone"]) for r in created] == [
        ("alan@example.com", None),
        (None, "+442079460958"),
    ]
    assert all(r["status"] == "received" and r["intake_started_at"] for r in created)
    assert all(r["ask_id"] == ask["id"] and r["referrer_prospect_id"] == "client1" for r in created)

    queues = task_queues(env.settings)
    assert queues.journeys.endswith("-journeys")
    for referral in created:
        assert await env.intake(referral["id"]) == expected_intake(referral, queues)
    assert await env.referrals() == created
    assert await env.referrals("someone-else") == []

    missing = await env.http.post("/asks/nope/referrals", json={"people": [PERSON]})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("people", "field"),
    [
        ([], "people"),
        ([PERSON] * 21, "people"),
        ([{"first_name": "No contact"}], "people[0].phone"),
        ([PERSON, {"first_name": "B", "email": "b@"}], "people[1].email"),
        ([{"first_name": "C", "phone": "555"}], "people[0].phone"),
        ([{"last_name": "D", "email": "d@example.com"}], "people[0].first_name"),
        ([{**PERSON, "timezone": "Nowhere/City"}], "people[0].timezone"),
    ],
)
async def test_invalid_referrals_are_rejected_naming_the_field(
    env: Env, people: list[dict[str, str]], field: str
) -> None:
    ask = await env.ask()
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": people})
    assert _fields(resp) == [field]
    assert await env.referrals() == []


async def test_failed_intake_start_keeps_the_referral_and_is_retried_later(
    settings: Settings, temporal_local: WorkflowEnvironment, intake_worker: Worker
) -> None:
    # A client of a namespace that does not exist: every start fails, as in an outage.
    target = temporal_local.client.service_client.config.target_host
    broken = await Client.connect(target, namespace="no-such-namespace")
    async with serve(settings, broken) as env:
        ask = await env.ask()
        resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [PERSON]})
        assert resp.status_code == 201, resp.text
        (referral,) = resp.json()
        assert (referral["status"], referral["intake_started_at"]) == ("received", None)

        queues = task_queues(settings)
        async with env.app.state.sessions() as session:
            started = await service.start_pending_intakes(session, temporal_local.client, queues)
            await session.commit()
        assert started == [referral["id"]]
        env.temporal = temporal_local.client
        assert await env.intake(referral["id"]) == expected_intake(referral, queues)
        (stored,) = await env.referrals()
        assert stored["intake_started_at"] is not None

        async with env.app.state.sessions() as session:
            assert await service.start_pending_intakes(session, temporal_local.client, queues) == []


# --- public referral page -----------------------------------------------------------------------


async def test_referral_page_shows_a_form_with_clear_labels(env: Env) -> None:
    ask = await env.ask()
    page = await env.http.get(f"/r/{ask['token']}", headers={"X-API-Key": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Grace &lt;b&gt;Hopper&lt;/b&gt;" in html and CLIENT not in html
    assert html.count('name="first_name_') == 3
    for label in ("First name", "Last name", "Email", "Phone", "Company"):
        assert f">{label}</label>" in html
    assert "<script" not in html


async def test_unknown_token_shows_a_not_valid_page(env: Env) -> None:
    for method in ("GET", "POST"):
        page = await env.http.request(method, "/r/not-a-token", data={"first_name_0": "X"})
        assert page.status_code == 404
        assert "not valid" in page.text


async def test_submitting_the_form_stores_filled_rows_and_starts_intakes(env: Env) -> None:
    ask = await env.ask()
    form = {
        "first_name_0": "Katherine",
        "last_name_0": "Johnson",
        "email_0": "kj@example.com",
        "first_name_1": "",
        "email_1": "  ",
        "first_name_2": "Dorothy",
        "phone_2": "+1 415 555 2671",
        "company_2": "NASA",
    }
    page = await env.http.post(f"/r/{ask['token']}", data=form, headers={"X-API-Key": ""})
    assert page.status_code == 200, page.text
    assert "Thank you" in page.text and "Katherine Johnson" in page.text
    stored = await env.referrals()
    assert [(r["first_name"], r["email"], r["phone"], r["company"]) for r in stored] == [
        ("Katherine", "kj@example.com", None, ""),
        ("Dorothy", None, "+14155552671", "NASA"),
    ]
    queues = task_queues(env.settings)
    for referral in stored:
        assert await env.intake(referral["id"]) == expected_intake(referral, queues)


async def test_an_invalid_row_stores_nothing_and_keeps_what_was_typed(env: Env) -> None:
    ask = await env.ask()
    form = {
        "first_name_0": "Mary",
        "email_0": "mary@example.com",
        "company_0": "<i>Acme</i>",
        "first_name_1": "Edsger",
        "email_1": "edsger@",
        "phone_1": "12345",
    }
    page = await env.http.post(f"/r/{ask['token']}", data=form)
    assert page.status_code == 422
    html = page.text
    assert "Person 2, Email:" in html and "Person 2, Phone:" in html
    assert "Person 1" not in html.split("</ul>")[0]  # only the bad row is blamed
    assert 'value="edsger@"' in html and 'value="12345"' in html and 'value="Mary"' in html
    assert 'value="&lt;i&gt;Acme&lt;/i&gt;"' in html
    assert await env.referrals() == []

    empty = await env.http.post(f"/r/{ask['token']}", data={"first_name_0": " "})
    assert empty.status_code == 422
    assert "at least one person" in empty.text
