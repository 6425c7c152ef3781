"""schemathesis over the four services, in process, with a valid key and real things to name
(issues 11 and 13): the `fuzz_world` fixture and the runs the tests make in it.

The world: the four apps on this test's databases and the Temporal dev server, each also served
over HTTP on a port of its own so that a call one service makes to another is answered (no
service sits at a dead address). In it, made through the APIs or the services' own activities
(no stand-ins): a rep, a prospect of theirs, a cadence and an enrollment, a sender, an API key,
an import, a do-not-contact entry, a framework, a playbook entry, a deal (deals' `open_deal`
activity, as a journey opens it), a meeting and an objection on it, a referral ask (referrals'
`create_referral_ask`), a rep task (outreach's `create_rep_task`) and a sent message's
unsubscribe token (outreach's `send_touch`, its SMTP server refusing: the ledger row stays).
Operations whose success needs a thing in a state of its own (a meeting that has started, a
closed deal, a custom framework) are given it instead (tests/support/fuzz_states.py).

Two runs share the world and one record of what each operation answered:
- every operation, `cases` generated cases each, the first with the world's ids in its path,
  query and body fields of the same name, the others as generated (destructive operations last:
  an erasure or a close would end the world's deal or prospect for the others);
- schemathesis' stateful testing the way its authors intend it: `schema.as_state_machine()`,
  whose links schemathesis infers from the schemas (a list answers ids that the operations on
  one item then use), a few scenarios per service.

Hypothesis runs synchronously: cases are generated in a thread and sent in the test's loop
(the apps, their engines and the Temporal client live there)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import Case, checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tests.support.api_formats  # noqa: F401  (the OpenAPI's own formats: phone, timezone)
from closeflow.worker import JOURNEY_WORKFLOWS
from services.deals.activities import DealsActivities
from services.outreach.activities import activities_for as outreach_activities
from services.outreach.models import Message
from services.referrals.activities import ReferralsActivities
from shared.contracts.journey import (
    OpenDealRequest,
    ReferralAskRequest,
    RepTaskRequest,
    journey_id,
)
from shared.events import TASK_CREATED
from shared.providers.sendgrid import generate_key_pair
from tests.support.apps import ServiceApp
from tests.support.consent import PM
from tests.support.deals import BOOKING_HOURS, GOOD_ANSWERS
from tests.support.fuzz_states import made, operation_states
from tests.support.idempotency import HEADER as IDEMPOTENCY_HEADER
from tests.support.ports import free_port
from tests.support.sandboxes import EMAIL, touch_request
from tests.support.scenarios import fast_cadence
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import AUTH, SERVICE_AUTH

SERVICES = ("prospecting", "outreach", "deals", "referrals")
CHECKS = [checks.not_a_server_error, checks.response_schema_conformance]
READINESS_ASKS = 2  # as the APIs' readinessProbe failureThreshold (deploy/k8s/apis.yaml)
# Run after every other operation: each ends or removes something the others are given (a
# completed task is no longer snoozed or reassigned).
DESTRUCTIVE = ("erasure", "/close", "/stop", "/cancel", "/no-show", "/held", "/complete")


@dataclass
class FuzzWorld:
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    ids: dict[str, str]  # a parameter's name -> a real value of it
    # "METHOD /path" -> the values that operation gets instead (a thing in the state its
    # success needs: a meeting that has started, a closed deal, a custom framework)
    only: dict[str, dict[str, str]] = field(default_factory=dict)
    # "service METHOD /path" -> every status it answered
    answers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)
    sent: int = 0
    # by service: (a case, whether it is one of its OpenAPI's examples)
    cases: dict[str, list[tuple[Case, bool]]] = field(default_factory=dict)

    def operations(self) -> set[str]:
        found = set()
        for service, app in self.apps.items():
            for path, item in app.openapi()["paths"].items():
                found |= {f"{service} {method.upper()} {path}" for method in item}
        return found

    async def send(self, service: str, case: Case, real: bool) -> Response:
        """One case, with the world's ids when `real`; what it answered is recorded and
        checked (no 5xx, the response within its schema)."""
        ids = self.ids | self.only.get(f"{case.method} {case.operation.path}", {})
        kwargs = _request(case, ids if real else {})
        response = await self.clients[service].request(**kwargs)
        self.sent += 1
        for _ in range(READINESS_ASKS - 1):
            if case.operation.path != "/readyz" or response.status_code != 503:
                break
            # readiness is asked again by whoever reads it (a probe's failureThreshold): one
            # check past its 3 s (Temporal's GetSystemInfo on CI's loaded machine) is not a 5xx
            await asyncio.sleep(1.0)
            response = await self.clients[service].request(**kwargs)
            self.sent += 1
        operation = f"{service} {case.method} {case.operation.path}"
        self.answers[operation].append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        # a FailureGroup is a BaseExceptionGroup: `except Exception` let the first one end the run
        except (FailureGroup, Exception) as failure:
            where = f"{service} {case.method} {case.formatted_path} -> {response.status_code}"
            self.problems.append(f"{where}: {str(failure)[:600]}")
        return Response.from_httpx(response, verify=True)


def _request(case: Case, ids: dict[str, str]) -> dict[str, Any]:
    for container in (case.path_parameters, case.query):
        for name in list(container or {}):
            if name in ids:
                container[name] = ids[name]  # type: ignore[index]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in ids and isinstance(case.body[name], str):
                case.body[name] = ids[name]
    # /internal/* is the services' own (tests/security/test_internal_routes.py): called as one
    internal = case.operation.path.startswith("/internal/")
    kwargs = case.as_transport_kwargs(
        base_url="http://test", headers=SERVICE_AUTH if internal else AUTH
    )
    kwargs.pop("cookies", None)
    headers = kwargs.get("headers") or {}
    if IDEMPOTENCY_HEADER in headers:
        # the generator draws few keys ("0", "A"): as sent, most cases would repeat an earlier
        # case's key with another body (422) and never reach their route; each its own key
        headers[IDEMPOTENCY_HEADER] = f"{headers[IDEMPOTENCY_HEADER]}-{uuid.uuid4().hex}"[:255]
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def _schema(app: FastAPI) -> Any:
    return schemathesis.openapi.from_dict(app.openapi())


def destructive(case: Case) -> bool:
    return case.method == "DELETE" or any(d in case.operation.path for d in DESTRUCTIVE)


def _ending_order(item: tuple[str, Case, bool]) -> bool:
    """Erasures last of all: they end the deal, the asks and the tasks of the others."""
    return "erasure" in item[1].operation.path


def _generating(examples: int, **more: Any) -> settings:
    """Hypothesis' settings of both runs: generation only (the same examples each bounded run)."""
    return settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=examples <= 10,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        **more,
    )


def _drawn(strategy: Any, examples: int) -> list[Case]:
    cases: list[Case] = []

    @given(strategy)
    @_generating(examples)
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    return cases


def generated_cases(app: FastAPI, per_operation: int) -> list[tuple[Case, bool]]:
    """`per_operation` generated cases of every operation, then one of each example in its
    OpenAPI (a body whose fields depend on each other, such as a cadence's, is not one a
    generator finds), each as (case, from an example). Made without I/O (derandomized: the same
    cases each bounded run)."""
    cases: list[tuple[Case, bool]] = []
    for result in _schema(app).get_all_operations():
        operation = result.ok()
        cases += [(c, False) for c in _drawn(operation.as_strategy(), per_operation)]
        for example in operation.get_strategies_from_examples():
            cases += [(c, True) for c in _drawn(example, 1)]
    return cases


async def run_operations(world: FuzzWorld, per_operation: int, *, ending: bool) -> None:
    """Every operation of every service (ending: only those that end or erase something, run
    last of all; else all the others): the first case of each and its examples with the world's
    ids."""
    chosen: list[tuple[str, Case, bool]] = []
    for service, app in world.apps.items():
        if service not in world.cases:
            world.cases[service] = await asyncio.to_thread(generated_cases, app, per_operation)
        chosen += [(service, c, e) for c, e in world.cases[service] if destructive(c) == ending]
    seen: set[str] = set()
    for service, case, example in sorted(chosen, key=_ending_order):
        label = f"{service} {case.operation.label}"
        await world.send(service, case, real=example or label not in seen)
        seen.add(label)


async def run_stateful(world: FuzzWorld, scenarios: int, steps: int = 6) -> None:
    """schemathesis' state machine of each service: links inferred from the schemas chain a
    response's ids into the next call. Each step goes through `FuzzWorld.send` in the test's
    loop; checks are recorded there (the run goes on, so one report names every problem)."""
    loop = asyncio.get_running_loop()
    for service, app in world.apps.items():
        # what ends or erases the world's things runs last, in run_operations(ending=True)
        ending = "|".join(d.strip("/") for d in DESTRUCTIVE)
        kept = _schema(app).exclude(path_regex=ending).exclude(method="DELETE")
        machine: Any = kept.as_state_machine()

        def sender(service: str) -> Callable[[Case], Response]:
            def call(case: Case) -> Response:
                # the world's ids where the link gave none (a root operation of a scenario)
                real = not any(case.path_parameters or {})
                sending = world.send(service, case, real=real)
                return asyncio.run_coroutine_threadsafe(sending, loop).result()

            return call

        class Machine(machine):  # type: ignore[misc, valid-type]
            send = staticmethod(sender(service))
            begun = 0  # scenarios, across the runs of _run_machine

            def setup(self) -> None:
                type(self).begun += 1

            def call(self, case: Case, **kwargs: Any) -> Response:
                return self.send(case)

            def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
                """Checked and recorded in FuzzWorld.send."""

        await _run_machine(Machine, service, scenarios, steps)


async def _run_machine(machine: Any, service: str, scenarios: int, steps: int) -> None:
    """`scenarios` scenarios of `machine`. Its rules are enabled by what the live services
    answered so far (a link needs a 2xx to follow), so the same choices can meet other rules in
    a later scenario: Hypothesis then stops the run (FlakyStrategyDefinition, "a bundle that
    was unexpectedly empty"), as it cannot explore a tree that the world changed under it. No
    step failed (checks are recorded, never raised): the rest of the scenarios run in a new run,
    seeded apart. Each run begins one scenario at least, so this ends; one that began none
    before stopping so is not the world's doing."""
    runs = 0
    while machine.begun < scenarios:
        before = machine.begun
        if runs:
            hypothesis.seed(f"{service}:{runs}")(machine)
        try:
            run_settings = _generating(scenarios - before, stateful_step_count=steps)
            await asyncio.to_thread(machine.run, settings=run_settings)
            return
        except FlakyStrategyDefinition:
            if machine.begun <= before:
                raise
            runs += 1
            print(f"{service}: stateful run {runs} stopped at scenario {machine.begun}, run again")


@pytest.fixture
async def fuzz_world(
    service_app: ServiceApp, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> AsyncIterator[FuzzWorld]:
    ports = {s: free_port() for s in SERVICES}
    urls: dict[str, object] = {f"{s}_url": f"http://127.0.0.1:{p}" for s, p in ports.items()}
    # every provider's webhook enabled: an unsigned delivery is refused, not a 404
    urls |= PM | {"sendgrid_webhook_public_key": generate_key_pair()[1]}
    urls["task_queue_prefix"] = queue_prefix
    async with contextlib.AsyncExitStack() as stack:
        # every workflow the APIs start, as production's journeys worker (their activities wait:
        # no service worker runs), so that an enrolled prospect's journey answers its state and a
        # booked meeting's invitation workflow is not a task failure retried for the whole run
        await stack.enter_async_context(
            Worker(
                temporal_local.client,
                task_queue=f"{queue_prefix}journeys",
                workflows=list(JOURNEY_WORKFLOWS),
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
        )
        apps: dict[str, FastAPI] = {}
        clients: dict[str, httpx.AsyncClient] = {}
        for service in SERVICES:
            apps[service] = app = await service_app(service, **urls)
            await stack.enter_async_context(serve(app, ports[service], lifespan=False))
            clients[service] = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url="http://test"
                )
            )
        ids = await _make_things(apps, clients)
        yield FuzzWorld(apps, clients, ids, await operation_states(apps, clients, ids))


async def _make_things(
    apps: dict[str, FastAPI], clients: dict[str, httpx.AsyncClient]
) -> dict[str, str]:
    """One of everything an operation names, made the way the product makes it."""
    prospecting, outreach, deals = clients["prospecting"], clients["outreach"], clients["deals"]
    h = AUTH
    rep = made(
        await prospecting.post(
            "/reps",
            headers=h,
            json={"name": "Rita", "email": "rita@example.org", "phone": "+14155550199"},
        )
    )
    prospect = made(
        await prospecting.post(
            "/prospects",
            headers=h,
            json={
                "first_name": "Ada",
                "last_name": "Lovelace",
                "email": "ada@example.com",
                "phone": "+14155550100",
                "company": "Analytical Engines",
            },
        )
    )
    assigned = await prospecting.patch(f"/prospects/{prospect}", headers=h, json={"rep_id": rep})
    assert assigned.is_success, assigned.text
    referred = made(
        await prospecting.post(
            "/prospects", headers=h, json={"first_name": "Bob", "email": "bob@example.com"}
        )
    )
    cadence = made(await outreach.post("/cadences", headers=h, json=fast_cadence()))
    ids = {"rep_id": rep, "manager_id": rep, "prospect_id": prospect, "cadence_id": cadence}
    enrolled = await outreach.post(
        "/enrollments", headers=h, json={"prospect_id": prospect, "cadence_id": cadence}
    )
    assert enrolled.is_success, enrolled.text
    # a bulk resume of the cadence's journeys (none paused: each is told, nothing changes)
    resumed = await outreach.post(f"/cadences/{cadence}/resume", headers=h)
    assert resumed.is_success and resumed.json()["operation_id"], resumed.text
    ids["operation_id"] = resumed.json()["operation_id"]
    prefs = await outreach.put(f"/reps/{rep}/notifications", headers=h, json={"channel": "email"})
    assert prefs.is_success, prefs.text
    ids["sender_id"] = made(
        await outreach.post(
            "/senders",
            headers=h,
            json={"from_address": "rita@example.org", "display_name": "Rita"},
        )
    )
    ids["sender_address"] = "rita@example.org"
    key = await prospecting.post("/api-keys", headers=h, json={"name": "fuzz", "role": "ops"})
    ids |= {"key_id": made(key), "key": made(key, "key")}
    ids["import_id"] = made(
        await prospecting.post(
            "/imports?format=csv",
            headers=h | {"content-type": "text/csv"},
            content=b"first_name,email\nCy,cy@example.com\n",
        )
    )
    ids["entry_id"] = made(
        await outreach.post(
            "/do-not-contact",
            headers=h,
            json={"value": "nobody@example.net", "reason": "fuzz"},
        )
    )
    framework = await deals.get("/qualification/framework", headers=h)
    ids["name"] = made(framework, "name")
    ids["category"] = "price"
    # a deal as the journey opens it, a meeting and an objection on it
    deal = await DealsActivities(apps["deals"].state.sessions).open_deal(
        OpenDealRequest(prospect, journey_id(prospect), rep, "cold", "replied")
    )
    ids["deal_id"] = deal.deal_id
    qualified = await deals.post(
        f"/deals/{deal.deal_id}/qualification", headers=h, json={"answers": GOOD_ANSWERS}
    )
    assert qualified.is_success, qualified.text
    starts = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    meeting = await deals.post(
        f"/deals/{deal.deal_id}/meetings", headers=h, json={"starts_at": starts, "title": "Demo"}
    )
    ids["meeting_id"] = made(meeting)
    objection = await deals.post(
        f"/deals/{deal.deal_id}/objections", headers=h, json={"text": "The price is too high"}
    )
    assert objection.is_success, objection.text
    ids["objection_id"] = objection.json()["objection"]["id"]
    ids["prepared_response"] = objection.json()["answers"][0]
    # a referral ask as the journey asks for it, after a won deal
    ask = await ReferralsActivities(
        apps["referrals"].state.sessions, apps["referrals"].state.settings.referrals_public_url
    ).create_referral_ask(
        ReferralAskRequest(prospect, journey_id(prospect), "Ada Lovelace", rep, cadence)
    )
    ids |= {"ask_id": ask.ask_id, "client_prospect_id": prospect}
    ids |= {"referrer_prospect_id": prospect, "referred_prospect_id": referred}
    # a rep task and a sent email's unsubscribe token, by outreach's own activities
    acts = {
        a.__name__: a
        for a in outreach_activities(
            apps["outreach"].state.settings, apps["outreach"].state.sessions
        )
    }
    # issue 14: the rep's booking hours; an event subscription made before the task below, so
    # that the task's task.created gives it a delivery
    hours = await deals.put(f"/reps/{rep}/availability", headers=h, json=BOOKING_HOURS)
    assert hours.is_success, hours.text
    subscription = await outreach.post(
        "/event-subscriptions",
        headers=h,
        json={"url": "https://hooks.example.com/closeflow", "events": [TASK_CREATED]},
    )
    ids["subscription_id"] = made(subscription)
    ids["task_id"] = await acts["create_rep_task"](
        RepTaskRequest(
            f"fuzz:{uuid.uuid4().hex}", rep, prospect, journey_id(prospect), "call_task", "Call"
        )
    )
    deliveries = await outreach.get(
        f"/event-subscriptions/{ids['subscription_id']}/deliveries", headers=h
    )
    assert deliveries.is_success and deliveries.json(), deliveries.text
    ids["delivery_id"] = deliveries.json()[0]["id"]
    contact = await apps["outreach"].state.prospects.contact(prospect)
    with contextlib.suppress(Exception):  # the SMTP server refuses: the row stays, unsent
        await acts["send_touch"](touch_request(contact, EMAIL, key=f"fuzz-{uuid.uuid4().hex}"))
    async with apps["outreach"].state.sessions() as session:
        token = await session.scalar(
            select(Message.unsubscribe_token).where(Message.prospect_id == prospect)
        )
    assert token, "the touch left no ledger row with an unsubscribe token"
    ids["token"] = token
    return ids


def coverage(world: FuzzWorld) -> tuple[list[str], list[str]]:
    """(operations that never answered anything but a 404, those that never answered a 2xx)."""
    never = sorted(
        op for op in world.operations() if all(s == 404 for s in world.answers.get(op, [404]))
    )
    no_2xx = sorted(
        op
        for op in world.operations()
        if not any(200 <= s < 300 for s in world.answers.get(op, []))
    )
    return never, no_2xx
