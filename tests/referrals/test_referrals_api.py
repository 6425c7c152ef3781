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
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.referrals.activities import ReferralsActivities
from services.referrals.app import create_app
from services.referrals.intakes import IntakeTiming
from services.referrals.models import Referral, ReferralAsk
from shared.contracts.errors import INVALID_INPUT, NOT_FOUND
from shared.contracts.journey import (
    LinkReferral,
    ReferralAskRef,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferralIntakeInput,
    ReferredPerson,
    ReferrerThanks,
    referral_intake_id,
)
from shared.contracts.queues import TaskQueues
from shared.erasure import digest
from shared.migrations import upgrade
from shared.rate_limit import FormLimits, RateLimiter
from shared.settings import Settings
from shared.temporal import task_queues
from tests.support.apps import assert_pages, deleting
from tests.support.eventually import eventually
from tests.support.referrals import IntakeDouble
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, SERVICE_AUTH, make_settings

PUBLIC_URL = "https://refer.example.com/"
CLIENT = "Grace <b>Hopper</b>"


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

    async def erase(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order's answer, sent until it is 2xx as prospecting's outbox sends it: a 5xx
        (503 while an intake just started is being stopped) is tried again."""

        async def answered() -> dict[str, Any] | None:
            r = await self.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
            assert r.status_code == 200 or r.status_code >= 500, r.text
            return dict(r.json()) if r.status_code == 200 else None

        return await eventually(answered, "the erasure confirmed")

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
        referrer_name="",  # the referrer's id only: their name is not in the intake's input
        rep_id="rep1",
        cadence_id="cad1",
        queues=queues,
    )


@asynccontextmanager
async def serve(
    settings: Settings, temporal: Client, intake_timing: IntakeTiming | None = None
) -> AsyncIterator[Env]:
    app = create_app(settings, temporal_client=temporal, intake_timing=intake_timing)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test", headers=AUTH
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


async def test_asks_and_referrals_come_in_pages(env: Env) -> None:
    """Both grow with every won client: a page is bounded, `after` goes on."""
    asks = [await env.ask(journey=f"journey-client{i}", client=f"client{i}") for i in range(5)]
    people = [{"first_name": f"P{i}", "email": f"p{i}@example.com"} for i in range(5)]
    resp = await env.http.post(f"/asks/{asks[0]['id']}/referrals", json={"people": people})
    assert resp.status_code == 201, resp.text
    await assert_pages(env.http, "/referrals", 5, referrer_prospect_id="client0")
    sessions = env.app.state.sessions
    # the last row of a page erased before the next page: the paging goes on past it
    await assert_pages(env.http, "/referrals", 5, forget=deleting(sessions, Referral))
    await assert_pages(env.http, "/asks", 5, forget=deleting(sessions, ReferralAsk))


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


async def test_a_failed_intake_start_is_started_later_by_the_relay(
    settings: Settings, temporal_local: WorkflowEnvironment, intake_worker: Worker
) -> None:
    # A client of a namespace that does not exist: every start fails, as in an outage.
    target = temporal_local.client.service_client.config.target_host
    broken = await Client.connect(target, namespace="no-such-namespace")
    fast = IntakeTiming(poll_seconds=0.05, base_delay=0.05, max_delay=0.2)
    async with serve(settings, broken, fast) as env:
        ask = await env.ask()
        resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [PERSON]})
        assert resp.status_code == 201, resp.text
        (referral,) = resp.json()
        assert (referral["status"], referral["intake_started_at"]) == ("received", None)

        async def stored() -> Referral:
            async with env.app.state.sessions() as session:
                row = await session.get(Referral, referral["id"])
                assert row is not None
                return row

        failed = await stored()
        assert failed.intake_attempts >= 1  # the request's own attempt, recorded
        assert "no-such-namespace" in failed.intake_last_error

        # Temporal is back: the relay running in the app starts the intake, nobody else
        env.app.state.temporal = env.temporal = temporal_local.client
        for _ in range(600):
            if (await stored()).intake_started_at is not None:
                break
            await asyncio.sleep(0.05)
        started = await stored()
        assert started.intake_started_at is not None and started.intake_next_attempt_at is None
        assert await env.intake(referral["id"]) == expected_intake(referral, task_queues(settings))
        assert await env.app.state.intakes.run_once() == 0  # nothing left to start


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


def client_at(env: Env, ip: str) -> httpx.AsyncClient:
    """A client whose requests come from `ip` (as uvicorn would report the peer)."""
    transport = httpx.ASGITransport(env.app, client=(ip, 40000))
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test")


async def test_a_used_link_is_refused_with_a_clear_page(env: Env) -> None:
    ask = await env.ask()
    first = await env.http.post(f"/r/{ask['token']}", data={"first_name_0": "Ada", **_ADA})
    assert first.status_code == 200, first.text
    assert f'href="/r/{ask["token"]}"' not in first.text  # no way back to a used form

    for method in ("GET", "POST"):
        again = await env.http.request(
            method, f"/r/{ask['token']}", data={"first_name_0": "Eve", "email_0": "e@x.org"}
        )
        assert again.status_code == 410
        assert "already been used" in again.text
        assert "Grace &lt;b&gt;Hopper&lt;/b&gt;" in again.text
        assert "<form" not in again.text and "<script" not in again.text
    assert [r["first_name"] for r in await env.referrals()] == ["Ada"]


async def test_an_invalid_submission_does_not_use_the_link(env: Env) -> None:
    ask = await env.ask()
    bad = await env.http.post(f"/r/{ask['token']}", data={"first_name_0": "X", "email_0": "x@"})
    assert bad.status_code == 422
    assert (await env.http.get(f"/r/{ask['token']}")).status_code == 200


_ADA = {"email_0": "ada@example.com"}


async def test_the_page_is_rate_limited_per_client_ip(env: Env) -> None:
    env.app.state.form_limits = FormLimits(
        per_ip=RateLimiter(2, 600), per_token=RateLimiter(100, 600)
    )
    ask = await env.ask()
    async with client_at(env, "203.0.113.7") as one, client_at(env, "198.51.100.9") as other:
        assert (await one.get(f"/r/{ask['token']}")).status_code == 200
        assert (await one.get("/r/guessing-a-token")).status_code == 404
        limited = await one.post(f"/r/{ask['token']}", data={"first_name_0": "A", **_ADA})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 600
        assert "Too many attempts" in limited.text and "try again" in limited.text
        assert "<script" not in limited.text
        # another address is not held back by the first one's flood
        assert (await other.get(f"/r/{ask['token']}")).status_code == 200
    assert await env.referrals() == []


async def test_the_page_is_rate_limited_per_token(env: Env) -> None:
    env.app.state.form_limits = FormLimits(
        per_ip=RateLimiter(100, 600), per_token=RateLimiter(2, 600)
    )
    ask, other_ask = await env.ask(), await env.ask("journey-client2", "client2")
    responses = []
    for n in range(3):  # three addresses, one token
        async with client_at(env, f"192.0.2.{n + 1}") as http:
            responses.append(await http.get(f"/r/{ask['token']}"))
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert "Retry-After" in responses[2].headers
    async with client_at(env, "192.0.2.1") as http:
        assert (await http.get(f"/r/{other_ask['token']}")).status_code == 200


def test_token_bucket_refills_over_time() -> None:
    now = [1000.0]
    limiter = RateLimiter(3, 60, clock=lambda: now[0])  # 3 a minute: one every 20 s
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("k") == 20
    now[0] += 19.5
    assert limiter.take("k") == 1  # half a second short, rounded up
    now[0] += 0.5
    assert limiter.take("k") == 0
    assert limiter.take("other") == 0  # keys are independent


def test_token_bucket_memory_stays_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(1, 10, clock=lambda: now[0], max_keys=100)
    for n in range(100):
        limiter.take(f"ip-{n}")
    limiter.take("late")  # the table is full: the least recently used bucket goes
    assert len(limiter._buckets) == 100 and "ip-0" not in limiter._buckets


async def test_ask_status_counts_the_referrals_of_the_ask(env: Env) -> None:
    acts = ReferralsActivities(env.app.state.sessions, PUBLIC_URL)
    ask = await env.ask()
    assert await acts.referral_ask_status(ReferralAskRef(ask["id"])) == ReferralAskStatus(
        ask["id"], 0
    )
    people = [PERSON, {"first_name": "Joan", "phone": "+44 20 7946 0958"}]
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": people})
    assert resp.status_code == 201
    assert await acts.referral_ask_status(ReferralAskRef(ask["id"])) == ReferralAskStatus(
        ask["id"], 2
    )
    with pytest.raises(ApplicationError) as err:
        await acts.referral_ask_status(ReferralAskRef("nope"))
    assert err.value.non_retryable and err.value.type == NOT_FOUND


async def test_a_client_naming_themselves_is_a_refused_referral_not_counted(env: Env) -> None:
    """The client's own address on their ask: the intake finds the client themselves (the link
    names the referrer's own prospect) and outreach refuses the run (`self_referral`). The
    referral says so (status self_referral, no prospect brought) and the ask's count, which
    the reminders read, does not take it as someone referred."""
    acts = ReferralsActivities(env.app.state.sessions, PUBLIC_URL)
    ask = await env.ask()
    me = {"first_name": "Grace", "email": "grace@example.com"}
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [me, PERSON]})
    assert resp.status_code == 201, resp.text
    mine, alan = (r["id"] for r in resp.json())
    await acts.link_referral(LinkReferral(mine, "client1"))  # the intake found the referrer
    await acts.link_referral(LinkReferral(alan, "p-alan"))
    stored = {r["id"]: (r["status"], r["prospect_id"]) for r in await env.referrals()}
    assert stored == {mine: ("self_referral", None), alan: ("prospect_created", "p-alan")}
    status = await acts.referral_ask_status(ReferralAskRef(ask["id"]))
    assert status.referrals == 1, status
    await acts.link_referral(LinkReferral(mine, "client1"))  # the intake's retry: the same
    assert (await acts.referral_ask_status(ReferralAskRef(ask["id"]))).referrals == 1


async def test_ask_status_says_the_link_was_used_when_nobody_was_stored(env: Env) -> None:
    """The client sent their form naming only a person erased on request (left out without a
    word): nobody was referred, but the link is used and opens nothing more, so the status the
    reminders read says so; an erased client's closed ask says the same."""
    acts = ReferralsActivities(env.app.state.sessions, PUBLIC_URL)
    pepper = env.settings.erasure_pepper.get_secret_value()
    gone = "gone@example.com"
    order = {"erasure_id": "e1", "prospect_id": "p-gone", "email": gone}
    order["email_digest"] = digest(pepper, "email", gone)
    assert (
        await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    ).status_code == 200
    ask = await env.ask()
    assert await acts.referral_ask_status(ReferralAskRef(ask["id"])) == ReferralAskStatus(
        ask["id"], 0, link_used=False
    )
    page = await env.http.post(f"/r/{ask['token']}", data={"first_name_0": "Gone", "email_0": gone})
    assert page.status_code == 200, page.text
    assert await acts.referral_ask_status(ReferralAskRef(ask["id"])) == ReferralAskStatus(
        ask["id"], 0, link_used=True
    )
    other = await env.ask("journey-client2", "client2")
    erase_client = {"erasure_id": "e2", "prospect_id": "client2"}
    assert (
        await env.http.post("/internal/erasures", json=erase_client, headers=SERVICE_AUTH)
    ).status_code == 200
    status = await acts.referral_ask_status(ReferralAskRef(other["id"]))
    assert (status.referrals, status.link_used) == (0, True)


async def test_thanks_to_the_referrer_are_recorded_once_per_event(env: Env) -> None:
    acts = ReferralsActivities(env.app.state.sessions, PUBLIC_URL)
    ask = await env.ask()
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [PERSON]})
    (referral,) = resp.json()
    assert referral["thanked_for_meeting_at"] is None and referral["thanked_for_win_at"] is None

    await acts.record_referrer_thanks(
        ReferrerThanks(referral["id"], "meeting", "2026-11-27T10:00:00+00:00")
    )
    await acts.record_referrer_thanks(  # a repeat (retried activity) keeps the first time
        ReferrerThanks(referral["id"], "meeting", "2026-11-28T10:00:00+00:00")
    )
    (stored,) = await env.referrals()
    assert stored["thanked_for_meeting_at"].startswith("2026-11-27T10:00:00")
    assert stored["thanked_for_win_at"] is None
    await acts.record_referrer_thanks(
        ReferrerThanks(referral["id"], "won", "2026-12-01T09:00:00+00:00")
    )
    (stored,) = await env.referrals()
    assert stored["thanked_for_win_at"].startswith("2026-12-01T09:00:00")

    for bad, kind, code in [
        (ReferrerThanks("nope", "won", "2026-12-01T09:00"), NOT_FOUND, "referral_not_found"),
        (
            ReferrerThanks(referral["id"], "lunch", "2026-12-01T09:00"),
            INVALID_INPUT,
            "invalid_input",
        ),
    ]:
        with pytest.raises(ApplicationError) as err:
            await acts.record_referrer_thanks(bad)
        assert err.value.non_retryable and err.value.type == kind
        assert err.value.details[0]["code"] == code


async def test_an_erased_person_is_not_referred_again(env: Env) -> None:
    """Once erased (the order reached referrals), a client naming the person again stores
    nothing of them: the API says why, naming the row (409); the public page thanks the
    client all the same and keeps the others (it does not tell a client who was erased)."""
    pepper = env.settings.erasure_pepper.get_secret_value()
    gone = {"email": "gone@example.com", "phone": "+14155550123"}
    order = {
        "erasure_id": "e1",
        "prospect_id": "p-gone",
        **gone,
        "email_digest": digest(pepper, "email", gone["email"]),
        "phone_digest": digest(pepper, "phone", gone["phone"]),
    }
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    ask = await env.ask()
    again = [PERSON, {"first_name": "Gone", "email": "Gone@Example.com"}]
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": again})
    assert (resp.status_code, resp.json()["error"]["code"]) == (409, "erased_person"), resp.text
    assert [d["field"] for d in resp.json()["error"]["details"]] == ["people[1]"]
    assert await env.referrals() == []

    form = {"first_name_0": "Gone", "phone_0": "+1 415 555 0123", "first_name_1": "Ada"}
    form |= {"email_1": "ada@example.com"}
    page = await env.http.post(f"/r/{ask['token']}", data=form, headers={"X-API-Key": ""})
    assert page.status_code == 200 and "Thank you" in page.text, page.text
    assert [r["first_name"] for r in await env.referrals()] == ["Ada"]


async def test_an_order_with_digests_only_forgets_the_referrals_naming_the_person(
    env: Env,
) -> None:
    """Gus was erased before referrals kept digests (its migration 0005): a client naming him
    later stored his referral. Prospecting sends the order again as it keeps it, digests only
    (no plain address): the referral naming him (by either address) goes, the others stay,
    and he may not be named again."""
    pepper = env.settings.erasure_pepper.get_secret_value()
    ask = await env.ask()
    gus = {"first_name": "Gus", "email": "gus@example.com"}
    gus_by_phone = {"first_name": "Gus", "phone": "+14155550142"}
    resp = await env.http.post(
        f"/asks/{ask['id']}/referrals", json={"people": [gus, PERSON, gus_by_phone]}
    )
    assert resp.status_code == 201, resp.text
    order = {
        "erasure_id": "e-gus",
        "prospect_id": "p-gus",
        "email_digest": digest(pepper, "email", "gus@example.com"),
        "phone_digest": digest(pepper, "phone", "+14155550142"),
    }
    erased = await env.erase(order)
    assert erased["deleted"]["referrals"] == 2, erased
    assert [r["first_name"] for r in await env.referrals()] == ["Alan"]
    again = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [gus]})
    assert again.status_code == 409, again.text


async def test_an_erased_clients_referral_link_opens_nothing(env: Env) -> None:
    """The client asked to be erased: their personal link (in their mailbox, or forwarded) no
    longer takes introductions in their name. It showed the form ("Thank you, .": the name was
    blanked) and stored what was sent, attributed to the erased client, and started intakes."""
    ask = await env.ask()
    order = {"erasure_id": "e-client", "prospect_id": "client1"}
    for _ in range(2):  # a repeated order finds nothing more to do
        erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert erased.status_code == 200, erased.text
    for method in ("GET", "POST"):
        page = await env.http.request(
            method, f"/r/{ask['token']}", data={"first_name_0": "Ada", **_ADA}
        )
        assert (page.status_code, "not valid" in page.text) == (404, True), page.text
    assert await env.referrals() == []
    kept = (await env.http.get(f"/asks/{ask['id']}")).json()
    assert (kept["client_name"], kept["used_at"] is not None) == ("", True)
    assert kept["token"] != ask["token"]


async def test_an_erased_clients_ask_takes_no_referrals_through_the_api(env: Env) -> None:
    """Erasure closes the ask itself, not only its public link: a key-holder posting on it
    (an integration that kept the ask's id) is refused, 409 ask_closed, and nothing is stored
    nor started in the erased client's name. The ask says it is closed (`closed_at`)."""
    ask = await env.ask()
    order = {"erasure_id": "e-client", "prospect_id": "client1"}
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    resp = await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": [PERSON]})
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "ask_closed"
    assert "erased" in resp.json()["error"]["message"]
    assert await env.referrals() == []
    closed = (await env.http.get(f"/asks/{ask['id']}")).json()
    assert (ask.get("closed_at"), closed.get("closed_at") is not None) == (None, True)


async def test_a_person_named_again_on_the_same_ask_is_one_referral(env: Env) -> None:
    """An integration retrying its request after a timeout, or a client typing the same person
    in two rows, names that person again on the ask: it is the referral made the first time (the
    same row answered), not a second referral, a second intake and a double count."""
    ask = await env.ask()
    body = {"people": [PERSON, {"first_name": "Joan", "phone": "+44 20 7946 0958"}]}
    first = await env.http.post(f"/asks/{ask['id']}/referrals", json=body)
    assert first.status_code == 201, first.text
    again = await env.http.post(f"/asks/{ask['id']}/referrals", json=body)  # the retry
    assert again.status_code == 201, again.text
    assert [r["id"] for r in again.json()] == [r["id"] for r in first.json()]
    # the same person by either address, in another case or format: still the one referral
    same = [{"first_name": "Alan", "email": "alan@EXAMPLE.com", "phone": "+1 415 555 0100"}]
    assert (await env.http.post(f"/asks/{ask['id']}/referrals", json={"people": same})).json()[0][
        "id"
    ] == first.json()[0]["id"]
    assert len(await env.referrals()) == 2

    other = await env.ask("journey-client2", "client2")
    ada_twice = {"first_name_0": "Ada", **_ADA, "first_name_1": "Ada", "email_1": "ADA@example.com"}
    page = await env.http.post(f"/r/{other['token']}", data=ada_twice)
    assert page.status_code == 200, page.text
    assert [r["email"] for r in await env.referrals("client2")] == ["ada@example.com"]


async def test_two_identical_requests_at_once_make_one_referral(env: Env) -> None:
    """The retry races the request it repeats (the integration gave up waiting; the first is
    still running): both answer the one referral."""
    ask = await env.ask()
    url = f"/asks/{ask['id']}/referrals"
    answers = await asyncio.gather(*(env.http.post(url, json={"people": [PERSON]}) for _ in "ab"))
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert len({a.json()[0]["id"] for a in answers}) == 1
    assert len(await env.referrals()) == 1


async def test_referrals_posted_again_with_the_same_idempotency_key_are_stored_once(
    env: Env,
) -> None:
    ask = await env.ask()
    url, body = f"/asks/{ask['id']}/referrals", {"people": [PERSON]}
    headers = {"Idempotency-Key": "refer-1"}
    first = await env.http.post(url, json=body, headers=headers)
    again = await env.http.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [r["id"] for r in await env.referrals()] == [first.json()[0]["id"]]
    # the answer kept for a retry names Alan: his erasure forgets it
    order = {"erasure_id": "e-alan", "prospect_id": "p-alan", "email": "alan@example.com"}
    erased = await env.erase(order)
    assert erased["deleted"]["idempotency_keys"] == 1, erased
    after = await env.http.post(url, json=body, headers=headers)
    assert "Idempotent-Replayed" not in after.headers, after.text
