"""Roles on every route of every service: admin, ops and rep keys against real apps and data.

Two reps, A and B, each own one prospect (assigned by prospecting), one rep task (outreach
activity), one deal with one objection (deals activity and API) and one referral ask (referrals
activity). Every route is called without a key, with an admin, an ops and rep A's key; where a
rep is allowed only their own data, with A's ids (must get through) and B's (must be refused).
"Gets through" means the answer is neither 401 nor 403: a 404 or 422 is the handler's own answer
after access was granted (bodies are `{}` unless the owner is named in the body).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.deals.access import POLICIES as DEALS_POLICIES
from services.deals.activities import DealsActivities
from services.deals.app import create_app as deals_app
from services.outreach.access import POLICIES as OUTREACH_POLICIES
from services.outreach.activities import activities_for as outreach_activities
from services.outreach.activities import close_activities
from services.outreach.app import create_app as outreach_app
from services.prospecting.access import POLICIES as PROSPECTING_POLICIES
from services.prospecting.app import create_app as prospecting_app
from services.referrals.access import POLICIES as REFERRALS_POLICIES
from services.referrals.activities import ReferralsActivities
from services.referrals.app import create_app as referrals_app
from shared.access import COMMON, PUBLIC, SERVICE_ONLY, RouteKey, Rule, api_routes
from shared.auth import API_KEY_HEADER
from shared.contracts.journey import (
    JourneyState,
    OpenDealRequest,
    ReferralAskRequest,
    RepTaskRequest,
    journey_id,
)
from shared.contracts.names import Query
from shared.migrations import upgrade
from shared.settings import SERVICES, Settings
from tests.support.databases import POSTGRES_URL
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import SERVICE_AUTH, make_settings

ADMIN_KEY, OPS_KEY, REP_A_KEY, REP_B_KEY = "admin-key", "ops-key", "rep-a-key", "rep-b-key"
SERVICE_TOKEN = SERVICE_AUTH[API_KEY_HEADER]
ACCESS_CODES = {"missing_api_key", "invalid_api_key", "forbidden_for_role", "not_your_resource"}
ACCESS_CODES |= {"rep_scope_required"}
FILLER = "nosuch"  # any other path parameter: the handler answers 404/422, after access
FACTORIES = {
    "prospecting": prospecting_app,
    "outreach": outreach_app,
    "deals": deals_app,
    "referrals": referrals_app,
}
POLICIES = {  # each service's own table (services/<name>/access.py)
    "prospecting": PROSPECTING_POLICIES,
    "outreach": OUTREACH_POLICIES,
    "deals": DEALS_POLICIES,
    "referrals": REFERRALS_POLICIES,
}
# Configuration writes, listed here by hand (not read from the policy table): a rep gets 403.
CONFIG_WRITES = [
    ("outreach", "POST", "/cadences"),
    ("outreach", "PUT", "/cadences/{cadence_id}"),
    ("outreach", "POST", "/senders"),
    ("outreach", "PUT", "/senders/{sender_id}"),
    ("outreach", "POST", "/do-not-contact"),
    ("outreach", "DELETE", "/do-not-contact/{entry_id}"),
    ("prospecting", "PUT", "/icp"),
    ("deals", "POST", "/frameworks"),
    ("deals", "PUT", "/frameworks/{name}"),
    ("deals", "PUT", "/playbook/{category}"),
    ("deals", "DELETE", "/playbook/{category}"),
    ("deals", "PUT", "/close-reasons"),
]
QUALIFIED = {"budget": True, "authority": "decision_maker", "need": "slow reports", "timeline": 2}
# /ui/sign-in takes no key header: it is the form that checks a key and sets the pages' cookie
PUBLIC_PREFIXES = (
    "/webhooks/",
    "/unsubscribe/",
    "/r/",
    "/book/",
    "/healthz",
    "/readyz",
    "/ui/sign-in",
)


def _served_routes() -> list[tuple[str, str, str]]:
    """(service, method, path) of every route the four apps serve, found at collection time."""
    settings = Settings(environment="test", api_keys=ADMIN_KEY)  # type: ignore[call-arg]
    found = []
    for service in SERVICES:
        app = FACTORIES[service](settings)
        found += [(service, method, path) for method, path in api_routes(app)]
    return found


ROUTES = _served_routes()
# every test here on one xdist worker: the module's stack (per database) is built once, not once
# per worker that happens to draw one of its tests
pytestmark = pytest.mark.xdist_group("roles")


@workflow.defn(name="RolesJourneyStandIn")
class JourneyStandIn:
    """A journey that only waits and answers the state query. The deals API signals it after
    its commits; GET /journeys/{prospect_id} queries it, and with no worker polling, each such
    query waited ~30 s for Temporal to give up (90 s per database for that one route)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        return JourneyState(stage="presenting", next_step=0, deal_id=None, finished=False)


@dataclass
class Owned:
    """One rep's things, by the kind of id a resolver reads."""

    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Stack:
    apps: dict[str, FastAPI]
    http: dict[str, httpx.AsyncClient]
    a: Owned
    b: Owned

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        key: str | None,
        values: Owned,
        rule: Rule | None,
        *,
        name_owner: bool = True,
    ) -> httpx.Response:
        """Fill the rule's owner parameters from `values` (others: FILLER, so admin and ops
        calls to, say, an erasure route touch nothing real); name the owner in the query or
        body when `name_owner`. Without a rule (hand-listed routes): every known id."""
        params: dict[str, str] = {}
        body: dict[str, Any] = {}
        owners = {o.name: o for o in rule.owners} if rule else {}
        for part in path.split("/"):
            if part.startswith("{"):
                name = part.strip("{}")
                if rule is None or name in owners:
                    kind = owners[name].kind if name in owners else name
                    path = path.replace(part, values.ids.get(kind, FILLER))
                else:
                    path = path.replace(part, FILLER)
        for owner in owners.values():
            if name_owner and owner.source in ("query", "body"):
                target = params if owner.source == "query" else body
                target[owner.name] = values.ids[owner.kind]
        headers = {API_KEY_HEADER: key} if key else {}
        has_body = method in ("POST", "PUT", "PATCH")
        return await self.http[service].request(
            method, path, params=params, json=body if has_body else None, headers=headers
        )


def rule_of(service: str, method: str, path: str) -> Rule:
    rule = _table_of(service).get((method, path))
    assert rule is not None, f"{service} {method} {path} has no policy entry in its access.py"
    return rule


def _table_of(service: str) -> dict[RouteKey, Rule]:
    return {**COMMON, **POLICIES[service]}


def code(r: httpx.Response) -> str | None:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def through(r: httpx.Response) -> bool:
    """Access granted: the handler answered. A 500 is a crash, not an answer; a 503 is (the
    referrals analytics say the deals service, not running here, did not answer)."""
    return r.status_code not in (401, 403, 500) and code(r) not in ACCESS_CODES


async def _databases(kind: str, tmp: Path) -> dict[str, str]:
    if kind == "sqlite":
        return {s: f"sqlite+aiosqlite:///{tmp / s}.db" for s in SERVICES}
    from tests.support.databases import create_pg_database

    return {s: await create_pg_database(POSTGRES_URL) for s in SERVICES}


async def _reps_and_prospects(settings: Settings, client: Client) -> tuple[Owned, Owned]:
    """Phase one, admin key only: the reps must exist before keys can name them."""
    app = prospecting_app(settings, temporal_client=client)
    owned = Owned(), Owned()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(app),
            base_url="http://test",
            headers={API_KEY_HEADER: ADMIN_KEY},
        ) as http,
    ):
        for who, mine in zip("AB", owned, strict=True):
            r = await http.post("/reps", json={"name": f"Rep {who}", "email": f"{who}@ex.com"})
            assert r.status_code == 201, r.text
            mine.ids["rep_id"] = r.json()["id"]
        by_rep = {}
        for n in range(2):
            r = await http.post(
                "/prospects", json={"first_name": f"P{n}", "email": f"p{n}-{uuid.uuid4().hex}@x.io"}
            )
            assert r.status_code == 201, r.text
            by_rep[r.json()["rep_id"]] = r.json()["id"]
        assert len(by_rep) == 2, f"round robin gave both prospects to one rep: {by_rep}"
        for mine in owned:
            mine.ids["prospect_id"] = by_rep[mine.ids["rep_id"]]  # round robin: one each
    return owned


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    temporal_local: WorkflowEnvironment,
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"roles-{request.param}")
    urls = await _databases(request.param, tmp)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    first = make_settings(tmp, urls, api_keys=ADMIN_KEY, task_queue_prefix=prefix)
    for service in SERVICES:
        await asyncio.to_thread(upgrade, first, service)
    a, b = await _reps_and_prospects(first, temporal_local.client)
    keys = f"{ADMIN_KEY}, ops:{OPS_KEY}, rep:{a.ids['rep_id']}:{REP_A_KEY}, "
    keys += f"rep:{b.ids['rep_id']}:{REP_B_KEY}"
    # prospecting listens on a real port: the others reach it over HTTP (prospect owners in
    # outreach, issued keys everywhere) as in production
    port = free_port()
    settings = make_settings(
        tmp,
        urls,
        api_keys=keys,
        task_queue_prefix=prefix,
        prospecting_url=f"http://127.0.0.1:{port}",
        webhook_allowed_hosts="hooks.slack.com",
    )
    client: Client = temporal_local.client
    apps: dict[str, FastAPI] = {"prospecting": prospecting_app(settings, temporal_client=client)}
    apps["outreach"] = outreach_app(settings, temporal_client=client)
    apps["deals"] = deals_app(settings, temporal_client=client)
    apps["referrals"] = referrals_app(settings, temporal_client=client)
    standins: list[WorkflowHandle[Any, Any]] = []
    async with AsyncExitStack() as exits:
        await exits.enter_async_context(
            Worker(
                client,
                task_queue=f"{prefix}standins",
                workflows=[JourneyStandIn],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
        )
        http = {}
        for name, app in apps.items():
            if name == "prospecting":
                await exits.enter_async_context(serve(app, port))
            else:
                await exits.enter_async_context(app.router.lifespan_context(app))
            http[name] = await exits.enter_async_context(
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url="http://test"
                )
            )
        built = Stack(apps, http, a, b)
        standins = await _data(built, settings, client, f"{prefix}standins")
        yield built
        for handle in standins:
            await handle.terminate("roles test over")


async def _data(
    stack: Stack, settings: Settings, client: Client, standin_queue: str
) -> list[WorkflowHandle[Any, Any]]:
    """Each rep's task, deal (with an objection) and referral ask, made as the journey makes
    them: through the services' activities (and the deals API for the objection)."""
    acts = outreach_activities(settings, stack.apps["outreach"].state.sessions)
    create_task = next(a for a in acts if a.__name__ == "create_rep_task")
    deals = DealsActivities(stack.apps["deals"].state.sessions)
    asks = ReferralsActivities(stack.apps["referrals"].state.sessions, "http://refer.test/")
    standins = []
    for mine in (stack.a, stack.b):
        rep, pid = mine.ids["rep_id"], mine.ids["prospect_id"]
        # a journey stand-in, so the deals API can signal after its commit
        standins.append(
            await client.start_workflow(
                JourneyStandIn.run, id=journey_id(pid), task_queue=standin_queue
            )
        )
        mine.ids["task_id"] = await create_task(
            RepTaskRequest(f"roles-{pid}", rep, pid, journey_id(pid), "call", "Call them")
        )
        opened = await deals.open_deal(
            OpenDealRequest(pid, journey_id(pid), rep, "cold", "replied")
        )
        mine.ids["deal_id"] = opened.deal_id
        r = await stack.http["deals"].post(
            f"/deals/{opened.deal_id}/qualification",
            json={"answers": QUALIFIED},
            headers={API_KEY_HEADER: ADMIN_KEY},
        )
        assert r.status_code == 200 and r.json()["qualified"], r.text  # now presenting
        r = await stack.http["deals"].post(
            f"/deals/{opened.deal_id}/objections",
            json={"text": "it costs too much"},
            headers={API_KEY_HEADER: ADMIN_KEY},
        )
        assert r.status_code == 201, r.text
        mine.ids["objection_id"] = r.json()["objection"]["id"]
        ask = await asks.create_referral_ask(
            ReferralAskRequest(pid, journey_id(pid), "Client", rep, "cadence")
        )
        mine.ids["ask_id"] = ask.ask_id
    await close_activities(acts)
    return standins


# --- the table itself ---------------------------------------------------------------------------


def test_every_route_has_a_policy_entry() -> None:
    """Routes added without an entry are admin-only at run time; this names them."""
    served = {(s, m, p) for s, m, p in ROUTES}
    missing = sorted(r for r in served if (r[1], r[2]) not in _table_of(r[0]))
    assert missing == [], "add these to POLICIES in services/<service>/access.py"


def test_no_policy_entry_without_a_route() -> None:
    served = {(s, m, p) for s, m, p in ROUTES}
    stale = sorted(
        (s, m, p) for s, entries in POLICIES.items() for m, p in entries if (s, m, p) not in served
    )
    assert stale == [], "policy entries for routes that no longer exist"


def test_only_webhooks_and_public_links_are_public() -> None:
    public = [(s, m, p) for s, m, p in ROUTES if _table_of(s).get((m, p)) is PUBLIC]
    assert public and all(p.startswith(PUBLIC_PREFIXES) for _, _, p in public), public


def test_a_rep_writes_only_what_is_theirs() -> None:
    """Reps never write configuration: every non-GET route open to reps is owner-checked."""
    loose = [
        (s, m, p)
        for s, m, p in ROUTES
        if m != "GET"
        and (rule := _table_of(s).get((m, p))) is not None
        and "rep" in rule.roles
        and not rule.owners
    ]
    assert loose == []


# --- what a rep sees, in the answers ----------------------------------------------------------


async def test_a_rep_sees_only_their_own_prospects_tasks_and_deals(stack: Stack) -> None:
    a, b = stack.a.ids, stack.b.ids
    rep_a = {API_KEY_HEADER: REP_A_KEY}
    r = await stack.http["prospecting"].get(
        "/prospects", params={"rep_id": a["rep_id"]}, headers=rep_a
    )
    assert [p["id"] for p in r.json()["items"]] == [a["prospect_id"]]
    r = await stack.http["outreach"].get(f"/reps/{a['rep_id']}/tasks", headers=rep_a)
    assert [t["id"] for t in r.json()] == [a["task_id"]]
    r = await stack.http["deals"].get(f"/deals/{a['deal_id']}", headers=rep_a)
    assert r.status_code == 200 and r.json()["rep_id"] == a["rep_id"]
    r = await stack.http["deals"].get("/pipeline", params={"rep_id": b["rep_id"]}, headers=rep_a)
    assert r.status_code == 403
    # ops see everyone's
    r = await stack.http["prospecting"].get("/prospects", headers={API_KEY_HEADER: OPS_KEY})
    assert {p["id"] for p in r.json()["items"]} >= {a["prospect_id"], b["prospect_id"]}


async def test_a_rep_completes_their_own_task_not_anothers(stack: Stack) -> None:
    outreach = stack.http["outreach"]
    rep_a = {API_KEY_HEADER: REP_A_KEY}
    done = {"outcome": "voicemail", "notes": "left a message"}
    r = await outreach.post(f"/tasks/{stack.b.ids['task_id']}/complete", json=done, headers=rep_a)
    assert (r.status_code, code(r)) == (403, "not_your_resource")
    r = await outreach.post(f"/tasks/{stack.a.ids['task_id']}/complete", json=done, headers=rep_a)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"


async def test_only_ops_choose_who_hears_about_a_reps_overdue_tasks(stack: Stack) -> None:
    outreach = stack.http["outreach"]
    a, b = stack.a.ids, stack.b.ids
    url = f"/reps/{a['rep_id']}/notifications"
    rep_a, ops = {API_KEY_HEADER: REP_A_KEY}, {API_KEY_HEADER: OPS_KEY}
    r = await outreach.put(
        url, json={"channel": "email", "escalate_to": b["rep_id"]}, headers=rep_a
    )
    assert (r.status_code, code(r)) == (403, "forbidden_for_role"), r.text
    r = await outreach.put(url, json={"channel": "email", "escalate_to": b["rep_id"]}, headers=ops)
    assert r.status_code == 200, r.text
    # the server posts to the webhook: only to the allowed hosts
    hook = {"channel": "email", "webhook_secret": "s" * 16}
    r = await outreach.put(
        url, json={**hook, "webhook_url": "http://169.254.169.254/latest"}, headers=rep_a
    )
    assert (r.status_code, r.json()["error"]["details"][0]["field"]) == (422, "webhook_url")
    r = await outreach.put(
        url, json={**hook, "webhook_url": "https://hooks.slack.com/services/T/B/x"}, headers=rep_a
    )
    assert r.status_code == 200, r.text
    # the rep changes their own channel; the manager's choice stays
    r = await outreach.put(url, json={"channel": "sms", "phone": "+14155550100"}, headers=rep_a)
    assert r.status_code == 200, r.text
    assert (r.json()["channel"], r.json()["escalate_to"]) == ("sms", b["rep_id"])


async def test_a_rep_revokes_the_booking_links_of_their_prospect_without_a_deal(
    stack: Stack,
) -> None:
    """Links go out in the cadence's emails while the prospect is contacted, before any deal:
    the prospect's rep (the one the links book with) may revoke them, another rep may not.
    Ownership was the latest deal's rep alone, so without a deal every rep got 403."""
    deals = stack.http["deals"]
    a, b = stack.a.ids, stack.b.ids
    pid = uuid.uuid4().hex
    asked = {"prospect_id": pid, "rep_id": a["rep_id"], "journey_key": journey_id(pid)}
    made = await deals.post("/internal/booking-links", json=asked, headers=SERVICE_AUTH)
    assert made.status_code in (200, 201), made.text
    url = f"/prospects/{pid}/booking-links"
    r = await deals.delete(url, headers={API_KEY_HEADER: REP_B_KEY})
    assert (r.status_code, code(r)) == (403, "not_your_resource"), r.text
    r = await deals.delete(url, headers={API_KEY_HEADER: REP_A_KEY})
    assert (r.status_code, r.json()["revoked"]) == (200, 1), r.text
    # the prospect's deal (rep b's, say after a reassignment) decides while it is open
    r = await deals.delete(
        f"/prospects/{b['prospect_id']}/booking-links", headers={API_KEY_HEADER: REP_B_KEY}
    )
    assert r.status_code == 200, r.text


# --- keys issued through the API ----------------------------------------------------------------


async def test_admin_issues_a_rep_key_that_every_service_honours(stack: Stack) -> None:
    a, b = stack.a.ids, stack.b.ids
    admin = {API_KEY_HEADER: ADMIN_KEY}
    prospecting = stack.http["prospecting"]
    r = await prospecting.post(
        "/api-keys",
        json={"name": "Rita's phone", "role": "rep", "rep_id": a["rep_id"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    issued, key_id = r.json()["key"], r.json()["id"]
    assert issued.startswith("cf_") and r.json()["hint"] == issued[:9]
    listed = (await prospecting.get("/api-keys", headers=admin)).json()
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]

    rep = {API_KEY_HEADER: issued}
    assert (await prospecting.get(f"/prospects/{a['prospect_id']}", headers=rep)).status_code == 200
    r = await prospecting.get(f"/prospects/{b['prospect_id']}", headers=rep)
    assert (r.status_code, code(r)) == (403, "not_your_resource")
    # deals and outreach ask prospecting who holds the key (over HTTP)
    assert (await stack.http["deals"].get(f"/deals/{a['deal_id']}", headers=rep)).status_code == 200
    r = await stack.http["deals"].get(f"/deals/{b['deal_id']}", headers=rep)
    assert (r.status_code, code(r)) == (403, "not_your_resource")
    r = await stack.http["outreach"].post("/cadences", json={}, headers=rep)
    assert (r.status_code, code(r)) == (403, "forbidden_for_role")

    r = await prospecting.delete(f"/api-keys/{key_id}", headers=admin)
    assert r.status_code == 204
    r = await prospecting.get(f"/prospects/{a['prospect_id']}", headers=rep)
    assert (r.status_code, code(r)) == (401, "invalid_api_key")  # at once where it is stored
    # a service that has not cached the key yet asks again and hears it is revoked
    r = await stack.http["referrals"].get(f"/asks/{a['ask_id']}", headers=rep)
    assert (r.status_code, code(r)) == (401, "invalid_api_key")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "role": "rep"},  # a rep key names its rep
        {"name": "x", "role": "ops", "rep_id": "r1"},  # and only a rep key does
        {"name": "x", "role": "rep", "rep_id": "nosuch"},  # an existing rep
        {"name": "x", "role": "owner"},
    ],
)
async def test_bad_key_requests_are_refused(stack: Stack, body: dict[str, Any]) -> None:
    r = await stack.http["prospecting"].post(
        "/api-keys", json=body, headers={API_KEY_HEADER: ADMIN_KEY}
    )
    assert (r.status_code, code(r)) == (422, "validation_error"), r.text


async def test_only_an_admin_manages_keys(stack: Stack) -> None:
    body = {"name": "x", "role": "admin"}
    for key in (OPS_KEY, REP_A_KEY):
        r = await stack.http["prospecting"].post(
            "/api-keys", json=body, headers={API_KEY_HEADER: key}
        )
        assert (r.status_code, code(r)) == (403, "forbidden_for_role")


# --- every route, every role -----------------------------------------------------------------


@pytest.mark.parametrize(("service", "method", "path"), ROUTES, ids=[" ".join(r) for r in ROUTES])
async def test_route(stack: Stack, service: str, method: str, path: str) -> None:
    rule = rule_of(service, method, path)
    anon = await stack.call(service, method, path, None, stack.b, rule)
    if rule.public:
        # its own signature or token check may refuse (403 invalid_signature), never for a key
        assert anon.status_code != 401 and code(anon) not in ACCESS_CODES, anon.text
        return
    # pages (/ui/) answer 401 with a sign-in page instead of the JSON error
    assert anon.status_code == 401 and code(anon) in ("missing_api_key", None), anon.text
    wrong = await stack.call(service, method, path, "not-a-key", stack.b, rule)
    assert wrong.status_code == 401 and code(wrong) in ("invalid_api_key", None), wrong.text

    # admin may do everything, on anyone's data (B's ids, called with no rep relation)
    if rule == SERVICE_ONLY:  # /internal/*: the services' token, nobody's key (issue 11)
        for key in (ADMIN_KEY, OPS_KEY, REP_A_KEY):
            person = await stack.call(service, method, path, key, stack.b, rule)
            assert (person.status_code, code(person)) == (403, "forbidden_for_role"), person.text
        by_service = await stack.call(service, method, path, SERVICE_TOKEN, stack.b, rule)
        assert through(by_service), (by_service.status_code, by_service.text)
        return

    admin = await stack.call(service, method, path, ADMIN_KEY, stack.b, rule)
    assert through(admin), (admin.status_code, admin.text)

    ops = await stack.call(service, method, path, OPS_KEY, stack.b, rule)
    if "ops" in rule.roles:
        assert through(ops), (ops.status_code, ops.text)
    else:
        assert (ops.status_code, code(ops)) == (403, "forbidden_for_role"), ops.text

    own = await stack.call(service, method, path, REP_A_KEY, stack.a, rule)
    if "rep" not in rule.roles:
        assert (own.status_code, code(own)) == (403, "forbidden_for_role"), own.text
        return
    assert through(own), (own.status_code, own.text)
    if not rule.owners:
        return
    others = await stack.call(service, method, path, REP_A_KEY, stack.b, rule)
    assert (others.status_code, code(others)) == (403, "not_your_resource"), others.text
    # and the other way round: B's key on A's things
    mirrored = await stack.call(service, method, path, REP_B_KEY, stack.a, rule)
    assert (mirrored.status_code, code(mirrored)) == (403, "not_your_resource"), mirrored.text
    if any(o.source != "path" for o in rule.owners):
        unscoped = await stack.call(
            service, method, path, REP_A_KEY, stack.a, rule, name_owner=False
        )
        assert (unscoped.status_code, code(unscoped)) == (403, "rep_scope_required"), unscoped.text


@pytest.mark.parametrize(("service", "method", "path"), CONFIG_WRITES)
async def test_a_rep_key_never_writes_configuration(
    stack: Stack, service: str, method: str, path: str
) -> None:
    r = await stack.call(service, method, path, REP_A_KEY, stack.a, None)
    assert (r.status_code, code(r)) == (403, "forbidden_for_role"), r.text
    r = await stack.call(service, method, path, OPS_KEY, stack.a, None)
    assert through(r), r.text
