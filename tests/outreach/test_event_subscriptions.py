"""Event subscriptions (issue 14): a real receiver verifies every delivery with the
`standardwebhooks` library; retries, the delivery log, redelivery, secret rotation, disabling
after persistent failure, a restart of outreach with deliveries pending, and each source
(prospecting's stage changes, deals' meetings and closes, outreach's tasks, replies, opt-outs)
emitting its event once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.deals.activities import DealsActivities
from services.outreach import models
from services.outreach.activities import activities_for, close_activities
from services.outreach.consent import service as consent
from services.outreach.events import service as events_service
from services.outreach.events.delivery import DeliveryTiming
from services.outreach.events.service import MAX_RETIRED
from services.outreach.inbox import JourneySignal, store_event
from services.prospecting import service as prospecting
from shared.auth import key_fingerprint
from shared.contracts.journey import (
    OpenDealRequest,
    ReplyReceived,
    RepTaskRequest,
    StageChange,
    journey_id,
)
from shared.contracts.names import Sig
from shared.events import (
    DEAL_LOST,
    DEAL_WON,
    EVENT_TYPES,
    MEETING_BOOKED,
    OPTED_OUT,
    REPLY_RECEIVED,
    STAGE_CHANGED,
    TASK_CREATED,
    event_body,
)
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.apps import Api, ServiceApp, deleting, next_params
from tests.support.deals import GOOD_ANSWERS
from tests.support.event_receiver import (
    ENDLESS_BODY,
    ENDLESS_HEADERS,
    Receiver,
    receiving,
    trickling,
)
from tests.support.eventually import eventually
from tests.support.journeys import RecordingJourney
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import API_KEY, AUTH, SERVICE_AUTH, make_settings
from tests.support.stack import build_app

# one database: what differs by database (the claim) is the relay's, tested on both in
# tests/shared; the restart runs on PostgreSQL, where the claim is FOR UPDATE SKIP LOCKED
pytestmark = pytest.mark.asyncio
SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

SLOW = 120.0  # eventually's deadline: only a hang reaches it, on a loaded machine
FAST = DeliveryTiming(
    poll_seconds=0.05, base_delay=0.05, max_delay=0.2, jitter=0, max_attempts=3, timeout=5
)


def seen(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """`eventually` polls coroutines: a plain check, as one."""

    async def probe() -> Any:
        return check()

    return probe


async def outreach_app(service_app: ServiceApp, **settings: Any) -> FastAPI:
    app = await service_app("outreach", **settings)
    app.state.event_deliveries.timing = FAST
    app.state.event_deliveries.wake()
    return app


@contextlib.asynccontextmanager
async def outreach_running(
    settings: Settings, temporal: WorkflowEnvironment
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Outreach started (and, at the end, stopped) on `settings`' database."""
    app = build_app("outreach", settings, temporal.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(app),
            base_url="http://test",
            headers=AUTH,
        ) as http,
    ):
        app.state.event_deliveries.timing = FAST
        app.state.event_deliveries.wake()
        yield app, http


async def subscribe(http: httpx.AsyncClient, url: str, types: list[str]) -> dict[str, Any]:
    r = await http.post("/event-subscriptions", json={"url": url, "events": types})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_")
    return body


async def deliveries(http: httpx.AsyncClient, sub_id: str, **params: str) -> list[dict[str, Any]]:
    r = await http.get(f"/event-subscriptions/{sub_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json())


async def post_event(http: httpx.AsyncClient, body: dict[str, Any]) -> bool:
    r = await http.post("/internal/events", json=body, headers=SERVICE_AUTH)
    assert r.status_code == 202, r.text
    return bool(r.json()["stored"])


@SQLITE
async def test_a_subscriber_gets_each_event_once_signed_retried_and_redelivered(
    service_app: ServiceApp, api: Api
) -> None:
    receiver = Receiver(fail=1)  # the first attempt fails: the relay must retry
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    async with receiving(receiver) as url:
        # bad input: clear 422s naming the field
        bad = await http.post("/event-subscriptions", json={"url": "ftp://x/y", "events": []})
        assert bad.status_code == 422
        for body in ({"url": url, "events": ["deal.maybe"]}, {"url": url, "events": []}):
            r = await http.post("/event-subscriptions", json=body)
            assert r.status_code == 422 and "events" in r.text
        assert (await http.get("/event-types")).json() == list(EVENT_TYPES)
        # /internal/events is the services' own: a person's key is refused
        refused = await http.post("/internal/events", json=event_body(DEAL_WON, "x", {}))
        assert refused.status_code == 403

        sub = await subscribe(http, url, [TASK_CREATED, DEAL_WON])
        receiver.secrets = [sub["secret"]]
        shown = (await http.get(f"/event-subscriptions/{sub['id']}")).json()
        assert "secret" not in shown and shown["status"] == "active"

        won = event_body(DEAL_WON, "deal-1:closed", {"deal_id": "deal-1"})
        assert await post_event(http, won) is True
        assert await post_event(http, won) is False  # the same fact again: nothing new
        assert await post_event(http, event_body(DEAL_LOST, "deal-2", {})) is True  # not subscribed

        async def delivered() -> list[dict[str, Any]] | None:
            rows = await deliveries(http, sub["id"])
            return rows if rows and all(d["status"] == "delivered" for d in rows) else None

        rows = await eventually(delivered, "the event delivered", timeout=SLOW)
        assert len(rows) == 1 and rows[0]["event_id"] == won["id"]
        assert rows[0]["attempts"] == 2 and rows[0]["last_status"] == 204
        # two attempts, one webhook-id: the event's; accepted once, verified by the library
        assert [a["webhook-id"] for a in receiver.attempts] == [won["id"], won["id"]]
        assert receiver.accepted == [(won["id"], won)]

        # manual redelivery: the same event and webhook-id again
        redo = f"/event-subscriptions/{sub['id']}/deliveries/{rows[0]['id']}/redeliver"
        r = await http.post(redo)
        assert r.status_code == 200 and r.json()["redeliveries"] == 1
        await eventually(
            seen(lambda: len(receiver.accepted) == 2 or None), "the redelivery", timeout=SLOW
        )
        assert receiver.ids() == [won["id"], won["id"]]
        missing = await http.post(f"/event-subscriptions/{sub['id']}/deliveries/nope/redeliver")
        assert missing.status_code == 404

        # rotation: a new secret shown once; both sign while the receiver switches
        rotated = await http.post(f"/event-subscriptions/{sub['id']}/secret")
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != sub["secret"]
        receiver.secrets = [sub["secret"], new_secret]
        task = event_body(TASK_CREATED, "task-key-1", {"task_id": "t1"})
        assert await post_event(http, task)
        await eventually(
            seen(lambda: len(receiver.accepted) == 3 or None), "the task event", timeout=SLOW
        )
        assert receiver.accepted[-1] == (task["id"], task)
        assert receiver.verified_with[-1] == [0, 1]  # each secret alone verifies it

        # the relay marks a delivery delivered after the subscriber's answer: wait for the mark
        async def task_delivered() -> list[dict[str, Any]] | None:
            log = await deliveries(http, sub["id"], status="delivered", limit="2")
            return log if len(log) == 2 else None

        both = await eventually(task_delivered, "the task's delivery marked", timeout=SLOW)
        log = await deliveries(http, sub["id"], status="delivered", limit="1")
        assert [d["event_id"] for d in both] == [task["id"], won["id"]]  # newest first
        assert [d["event_id"] for d in log] == [task["id"]]  # paged
        older = await deliveries(http, sub["id"], before=log[0]["id"])
        assert [d["event_id"] for d in older] == [won["id"]]


@SQLITE
async def test_the_delivery_log_pages_on_past_a_pruned_delivery(
    service_app: ServiceApp, api: Api
) -> None:
    """Newest first, a page at a time: the last delivery of a page pruned (or its subscription's
    retention run) before the next page is asked takes the paging with it no more."""
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    sub = await subscribe(http, "https://receiver.example/hook", [TASK_CREATED])
    for i in range(3):
        assert await post_event(http, event_body(TASK_CREATED, f"task-{i}", {"task_id": f"t{i}"}))
    path = f"/event-subscriptions/{sub['id']}/deliveries"
    whole = await deliveries(http, sub["id"])
    first = await http.get(path, params={"limit": 2})
    assert [d["id"] for d in first.json()] == [d["id"] for d in whole[:2]]
    query = next_params(first) or {"limit": 2, "before": whole[1]["id"]}
    await deleting(outreach.state.sessions, models.EventDelivery)(whole[1]["id"])
    rest = await http.get(path, params=query)
    assert rest.status_code == 200, rest.text
    assert [d["id"] for d in rest.json()] == [whole[2]["id"]]
    assert next_params(rest) is None


@SQLITE
async def test_a_second_rotation_within_the_overlap_keeps_the_first_secret_signing(
    service_app: ServiceApp, api: Api
) -> None:
    """The secret is shown once: ops who lost the new one rotate again. The receiver still
    verifies with the first secret, which the first rotation promised for the overlap; the second
    rotation dropped it at once (one previous secret was kept: the second), so every delivery
    was refused until the subscription disabled itself. Each retired secret signs until its own
    overlap ends."""
    receiver = Receiver()
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    async with receiving(receiver) as url:
        sub = await subscribe(http, url, [TASK_CREATED])
        rotate = f"/event-subscriptions/{sub['id']}/secret"
        lost = (await http.post(rotate)).json()["secret"]
        newest = (await http.post(rotate)).json()["secret"]
        receiver.secrets = [sub["secret"], lost, newest]
        task = event_body(TASK_CREATED, "task-key-rotated", {"task_id": "t1"})
        assert await post_event(http, task)

        async def finished() -> list[dict[str, Any]] | None:
            rows = await deliveries(http, sub["id"])
            return rows if rows and rows[0]["status"] != "pending" else None

        [row] = await eventually(finished, "the delivery over", timeout=SLOW)
        assert (row["status"], row["last_status"]) == ("delivered", 204)
        assert receiver.verified_with == [[0, 1, 2]]  # each secret alone verifies it
        shown = (await http.get(f"/event-subscriptions/{sub['id']}")).json()
        assert shown["previous_secret_until"] is not None


@SQLITE
async def test_a_rotation_beyond_the_retired_secrets_kept_is_refused_and_says_when_to_retry(
    service_app: ServiceApp, api: Api
) -> None:
    """At most MAX_RETIRED secrets sign beside the current one: the eleventh rotation within
    the overlap silently dropped the oldest, a secret the receiver may still verify with. It is
    refused instead (409), naming when the oldest retires, and nothing changes."""
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    sub = await subscribe(http, "https://hooks.example.com/closeflow", [TASK_CREATED])
    rotate = f"/event-subscriptions/{sub['id']}/secret"
    for _ in range(MAX_RETIRED):
        assert (await http.post(rotate)).status_code == 200
    shown = (await http.get(f"/event-subscriptions/{sub['id']}")).json()

    refused = await http.post(rotate)

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "too_many_retired_secrets"
    oldest = datetime.fromisoformat(error["details"][0]["free_at"])
    assert oldest > datetime.now(UTC)
    assert oldest.isoformat() in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    async with outreach.state.sessions() as session:
        row = await session.get(models.EventSubscription, sub["id"])
        assert row is not None
        signing = events_service.signing_secrets(row, datetime.now(UTC))
    assert sub["secret"] in signing and len(signing) == MAX_RETIRED + 1
    assert (await http.get(f"/event-subscriptions/{sub['id']}")).json() == shown


@SQLITE
async def test_a_broken_subscriber_is_disabled_queues_nothing_meanwhile_and_is_re_enabled(
    service_app: ServiceApp, api: Api
) -> None:
    receiver = Receiver(broken=True)
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    async with receiving(receiver) as url:
        sub = await subscribe(http, url, [OPTED_OUT])
        receiver.secrets = [sub["secret"]]
        first = event_body(OPTED_OUT, "p1:email", {"prospect_id": "p1"})
        await post_event(http, first)

        async def disabled() -> dict[str, Any] | None:
            got: dict[str, Any] = (await http.get(f"/event-subscriptions/{sub['id']}")).json()
            return got if got["status"] == "disabled" else None

        got = await eventually(disabled, "the subscription disabled", timeout=SLOW)
        assert "gave up after 3 attempts: http 5xx" in got["disabled_reason"]
        [failed] = await deliveries(http, sub["id"])
        assert failed["status"] == "failed" and failed["last_status"] == 500
        assert len(receiver.attempts) == 3
        # while disabled, new events are not queued for it (a subscription left disabled for
        # months would pile them up without end), and redelivery is refused
        second = event_body(OPTED_OUT, "p2:sms", {"prospect_id": "p2"})
        assert await post_event(http, second)
        redo = f"/event-subscriptions/{sub['id']}/deliveries/{failed['id']}/redeliver"
        assert (await http.post(redo)).status_code == 409
        assert [d["event_id"] for d in await deliveries(http, sub["id"])] == [first["id"]]

        # fixed and re-enabled: new events go out, the failed one on request, never the one of
        # the time it was disabled
        receiver.broken = False
        r = await http.patch(f"/event-subscriptions/{sub['id']}", json={"status": "active"})
        assert r.status_code == 200 and r.json()["disabled_reason"] == ""
        assert (await http.post(redo)).status_code == 200
        third = event_body(OPTED_OUT, "p3:sms", {"prospect_id": "p3"})
        await post_event(http, third)
        await eventually(
            seen(lambda: len(receiver.accepted) == 2 or None),
            "the failed one, redelivered, and the new one",
            timeout=SLOW,
        )
        relay = outreach.state.event_deliveries
        passes = relay.passes
        await eventually(
            seen(lambda: relay.passes >= passes + 3 or None), "more relay passes", timeout=SLOW
        )
        assert sorted(receiver.ids()) == sorted([first["id"], third["id"]])
        assert (await http.delete(f"/event-subscriptions/{sub['id']}")).status_code == 204
        assert (await http.get(f"/event-subscriptions/{sub['id']}")).status_code == 404


@SQLITE
async def test_finished_deliveries_and_their_events_are_pruned_after_the_retention(
    service_app: ServiceApp,
) -> None:
    outreach = await service_app("outreach", event_retention_days=30)
    relay = outreach.state.event_deliveries
    await relay.stop()  # its loop prunes at its first pass: the test's own prune counts here
    relay.timing = replace(relay.timing, prune_batch=2)  # several batches
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    rows = [  # (event, delivery status or None: no delivery, created)
        ("delivered-old", "delivered", old),  # both go
        ("failed-old", "failed", old),  # both go
        ("delivered-old-2", "delivered", old),  # both go
        ("pending-old", "pending", old),  # still to send: both stay
        ("delivered-recent", "delivered", recent),  # both stay
        ("nobody-old", None, old),  # an event nobody subscribed to: goes
        ("nobody-recent", None, recent),  # stays
    ]
    async with outreach.state.sessions() as session:
        sub = models.EventSubscription(
            id="sub", url="https://example.com/hook", events=[OPTED_OUT], secret="whsec_x"
        )
        session.add(sub)
        for event_id, status, created in rows:
            session.add(
                models.WebhookEvent(
                    id=event_id, type=OPTED_OUT, payload={}, occurred_at=created, created_at=created
                )
            )
            await session.flush()
            if status is not None:
                session.add(
                    models.EventDelivery(
                        subscription_id="sub",
                        event_id=event_id,
                        event_type=OPTED_OUT,
                        status=status,
                        next_attempt_at=now + timedelta(days=1),
                        created_at=created,
                    )
                )
        await session.commit()

    assert await relay.prune() == 3 + 4  # deliveries, then the events none of them names

    async with outreach.state.sessions() as session:
        events = set((await session.scalars(select(models.WebhookEvent.id))).all())
        left = set((await session.scalars(select(models.EventDelivery.event_id))).all())
    assert events == {"pending-old", "delivered-recent", "nobody-recent"}
    assert left == {"pending-old", "delivered-recent"}


@SQLITE
async def test_a_subscriber_that_never_finishes_its_answer_holds_up_nobody(
    service_app: ServiceApp, api: Api
) -> None:
    """Two receivers that keep the connection busy for ever (a 200 whose body never ends, headers
    that never end; each read gets a byte well within the read timeout): every delivery is over
    within CLOSEFLOW_EVENT_TIMEOUT_SECONDS, so the other subscribers' events keep flowing. The
    200 counts as delivered once its status line arrived (the body is never read: nothing to
    hold in memory); the endless headers are a timeout, retried."""
    outreach = await outreach_app(service_app, event_timeout_seconds=1)
    http = await api(outreach)
    receiver = Receiver()
    async with (
        receiving(receiver) as url,
        trickling(ENDLESS_BODY) as endless_body,
        trickling(ENDLESS_HEADERS) as endless_headers,
    ):
        good = await subscribe(http, url, [DEAL_WON])
        receiver.secrets = [good["secret"]]
        body_sub = await subscribe(http, endless_body, [DEAL_WON])
        head_sub = await subscribe(http, endless_headers, [DEAL_WON])

        def accepted(count: int) -> Callable[[], Awaitable[Any]]:
            return seen(lambda: len(receiver.accepted) == count or None)

        for n in (1, 2):  # the second goes out only once the relay is past the first
            event = event_body(DEAL_WON, f"deal-{n}:closed", {"deal_id": f"deal-{n}"})
            assert await post_event(http, event)
            await eventually(accepted(n), f"event {n}", timeout=SLOW)

        async def delivered() -> list[dict[str, Any]] | None:
            rows = await deliveries(http, body_sub["id"], status="delivered")
            return rows if len(rows) == 2 else None

        got = await eventually(delivered, "the endless bodies' 200s", timeout=SLOW)
        assert [d["last_status"] for d in got] == [200, 200]

        async def timed_out() -> list[dict[str, Any]] | None:
            rows = await deliveries(http, head_sub["id"])
            return rows if any(d["last_error"] == "timeout" for d in rows) else None

        await eventually(timed_out, "the endless headers' timeout", timeout=SLOW)


@POSTGRES
async def test_deliveries_pending_at_a_restart_of_outreach_arrive_after_it_once(
    tmp_path: Path, database_urls: dict[str, str], temporal_local: WorkflowEnvironment
) -> None:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "outreach")
    receiver = Receiver()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    body = event_body(STAGE_CHANGED, "journey-p9:2", {"prospect_id": "p9"})

    async with outreach_running(settings, temporal_local) as (_, http):
        sub = await subscribe(http, url, [STAGE_CHANGED])
        receiver.secrets = [sub["secret"]]
        await post_event(http, body)  # nobody listens on the port yet: attempts fail

        async def tried() -> list[dict[str, Any]] | None:
            rows = await deliveries(http, sub["id"])
            return rows if rows and rows[0]["attempts"] >= 1 else None

        [pending] = await eventually(tried, "a failed attempt", timeout=SLOW)
        assert pending["status"] == "pending" and pending["last_error"] == "connection failed"
    # outreach is down; the receiver comes up; outreach starts again on the same database
    async with serve(receiver.app, port):
        async with outreach_running(settings, temporal_local) as (second, http):
            relay = second.state.event_deliveries
            await eventually(
                seen(lambda: receiver.ids() == [body["id"]] or None),
                "after the restart",
                timeout=SLOW,
            )
            passes = relay.passes
            await eventually(
                seen(lambda: relay.passes >= passes + 3 or None), "more relay passes", timeout=SLOW
            )
            assert receiver.accepted == [(body["id"], body)]
            [row] = await deliveries(http, sub["id"])
            assert row["status"] == "delivered" and row["attempts"] >= 2


@SQLITE
async def test_each_source_emits_its_event_once(
    service_app: ServiceApp, api: Api, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    receiver = Receiver()
    outreach = await outreach_app(service_app)
    http = await api(outreach)
    async with receiving(receiver) as url, serve(outreach, free_port(), lifespan=False) as base:
        sub = await subscribe(http, url, list(EVENT_TYPES))
        receiver.secrets = [sub["secret"]]

        # prospecting, through its outbox: a prospect made (None -> prospecting), a stage
        # change recorded twice (a retried activity), and two prospects imported by CSV, the
        # file sent twice (the second time changes nothing)
        pros = await service_app("prospecting", outreach_url=base)
        pros_http = await api(pros)
        made = await pros_http.post(
            "/prospects",
            json={"first_name": "Ada", "last_name": "L", "email": "ada@example.com"},
        )
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        change = StageChange(
            key=f"journey-{pid}:1",
            prospect_id=pid,
            from_stage="prospecting",
            to_stage="contacting",
            cause="first touch",
            at=datetime.now(UTC).isoformat(),
            actor="system:enrollment",
        )
        for _ in range(2):
            async with pros.state.sessions() as session:
                await prospecting.record_stage(session, change)
                await session.commit()
        csv_file = "first_name,email\nBea,bea@example.com\nCy,cy@example.com\n"
        for created in (2, 0):
            r = await pros_http.post(
                "/imports", content=csv_file, headers={"Content-Type": "text/csv"}
            )
            assert r.status_code == 201 and r.json()["created"] == created, r.text
        pros.state.outbox.wake()

        # deals: a meeting booked and the deal won, through deals' event outbox
        deals = await service_app("deals", outreach_url=base)
        deals_http = await api(deals)
        acts = DealsActivities(deals.state.sessions)
        deal_pid = uuid.uuid4().hex
        async with Worker(
            temporal_local.client,
            task_queue=f"{queue_prefix}journeys",
            workflows=[RecordingJourney],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await temporal_local.client.start_workflow(
                RecordingJourney.run,
                id=journey_id(deal_pid),
                task_queue=f"{queue_prefix}journeys",
            )
            status = await acts.open_deal(
                OpenDealRequest(deal_pid, journey_id(deal_pid), "rep-1", "cold", "replied")
            )
            deal_id = status.deal_id
            r = await deals_http.post(
                f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS}
            )
            assert r.status_code == 200, r.text
            starts = datetime.now(UTC) + timedelta(days=1)
            r = await deals_http.post(
                f"/deals/{deal_id}/meetings",
                json={"starts_at": starts.isoformat(), "title": "Demo"},
            )
            assert r.status_code == 201, r.text
            for _ in range(2):  # the retry of a close: replayed, no second event
                r = await deals_http.post(
                    f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "signed"}
                )
                assert r.status_code == 200, r.text
            deals.state.event_forwarder.wake()
            await handle.terminate("test over")

        # outreach: a task (created twice: a retried activity), a reply and an opt-out (each
        # stored twice: a provider's retried webhook)
        acts_o = activities_for(outreach.state.settings, outreach.state.sessions)
        create = next(a for a in acts_o if getattr(a, "__name__", "") == "create_rep_task")
        task = RepTaskRequest(
            key=f"journey-{pid}:call:1",
            rep_id=None,
            prospect_id=pid,
            journey_id=journey_id(pid),
            kind="call",
            title="Call Ada",
        )
        try:
            assert await create(task) == await create(task)
        finally:
            await close_activities(acts_o)
        for _ in range(2):
            async with outreach.state.sessions() as session:
                reply = ReplyReceived("email", "<r1@example.com>", "yes, let's talk")
                await store_event(
                    session,
                    "mailgun",
                    "reply-1",
                    "email_reply",
                    {},
                    prospect_id=pid,
                    signal=JourneySignal(pid, Sig.REPLY_RECEIVED, reply),
                )
                await consent.opt_out(session, "sms", "+14155550100", "STOP", prospect_id=pid)
                await session.commit()
        async with outreach.state.sessions() as session:  # said again another way: no event
            await consent.opt_out(session, "sms", "+14155550100", "QUIT", prospect_id=pid)
            await session.commit()

        # four stage changes: Ada made and contacted, Bea and Cy imported
        want = sorted([*(set(EVENT_TYPES) - {DEAL_LOST, STAGE_CHANGED}), *[STAGE_CHANGED] * 4])

        def every_event() -> bool | None:
            return sorted(b["type"] for _, b in receiver.accepted) == want or None

        await eventually(seen(every_event), "every event", timeout=SLOW)
        relay = outreach.state.event_deliveries
        passes = relay.passes
        await eventually(
            seen(lambda: relay.passes >= passes + 3 or None), "more relay passes", timeout=SLOW
        )
        got = sorted(b["type"] for _, b in receiver.accepted)
        assert got == want, got  # each once
        assert len(set(receiver.ids())) == len(receiver.ids())
        data = {b["type"]: b["data"] for _, b in receiver.accepted}
        me = f"admin ({key_fingerprint(API_KEY)})"
        stages = [b["data"] for _, b in receiver.accepted if b["type"] == STAGE_CHANGED]
        ada = [
            (s["from_stage"], s["to_stage"], s["actor"]) for s in stages if s["prospect_id"] == pid
        ]
        assert sorted(ada, key=str) == sorted(
            [(None, "prospecting", me), ("prospecting", "contacting", "system:enrollment")], key=str
        )
        imported = [s for s in stages if s["prospect_id"] != pid]
        assert [(s["from_stage"], s["to_stage"], s["cause"], s["actor"]) for s in imported] == [
            (None, "prospecting", "imported", me)
        ] * 2
        # what the stage history says is what the events said
        history = (await pros_http.get(f"/prospects/{pid}/stages")).json()
        assert [(h["to_stage"], h["actor"]) for h in history] == [
            ("prospecting", me),
            ("contacting", "system:enrollment"),
        ]
        assert data[MEETING_BOOKED]["deal_id"] == deal_id == data[DEAL_WON]["deal_id"]
        assert data[TASK_CREATED]["prospect_id"] == pid
        assert data[REPLY_RECEIVED] == {
            "prospect_id": pid,
            "channel": "email",
            "provider": "mailgun",
        }
        assert data[OPTED_OUT]["channel"] == "sms"
        # ids only: no contact details travel in events
        assert "ada@example.com" not in json.dumps([b for _, b in receiver.accepted])
