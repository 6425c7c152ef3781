"""The rep inbox: ranking, outcomes that move the journey, snooze, reassignment, and the
notifications of urgent and overdue tasks (email via aiosmtpd, SMS via the Twilio sandbox, a
signed webhook to a real local receiver). SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from services.outreach import models
from services.outreach.notifications.notifier import SIGNATURE_HEADER, Notifier, verify
from services.outreach.tasks import service as tasks
from services.outreach.tasks.reps import RepDirectory, RepInfo
from shared.auth import key_fingerprint
from shared.contracts.journey import (
    LASTING_TASK_KINDS,
    CloseRepTasks,
    RepTaskRequest,
    StageEntered,
    journey_id,
)
from shared.events import TASK_CREATED
from tests.support.apps import assert_pages, deleting
from tests.support.eventually import eventually
from tests.support.fixtures import Ground
from tests.support.inbox import InboxRig, inbox_rig
from tests.support.ports import free_port
from tests.support.runs import (
    LOST,
    REPLACED,
    add_enrollment,
    as_run,
    lost_then_running,
    while_its_end_is_recorded,
)
from tests.support.scenarios import random_phone
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import ADMIN_ACTOR, API_KEY, AUTH, SERVICE_AUTH
from tests.support.twilio_proxy import lagging_twilio

pytestmark = pytest.mark.asyncio
# "VP Sales Manager" scores 100 (tier A), "Sales Manager" 40 (tier C), no title 0 (tier D)
VP_ICP = {
    "criteria": [
        {"name": "vp", "field": "title", "kind": "keywords", "values": ["vp"], "weight": 6},
        {
            "name": "manager",
            "field": "title",
            "kind": "keywords",
            "values": ["manager"],
            "weight": 4,
        },
    ]
}


def in_hours(h: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=h)


async def test_inbox_ranks_overdue_hot_stage_and_fit(inbox: InboxRig) -> None:
    r = inbox
    rep = await r.rep("Rita Rep")
    # ops set the escalation far off: the overdue ones rise as overdue, not escalated (set
    # first: a task an hour overdue is due for escalation under the default policy, and the
    # notifier's sweep would mark it before a later policy could say otherwise)
    policy = {"escalate_after_seconds": 86400}
    assert (await r.api.put("/task-policy", json=policy, headers=AUTH)).status_code == 200
    assert (await r.prospecting.put("/icp", json=VP_ICP, headers=AUTH)).status_code == 200
    vp = await r.prospect("Vera", title="VP Sales Manager")
    mgr = await r.prospect("Mia", title="Sales Manager")
    assert (vp["tier"], mgr["tier"]) == ("A", "C")
    plain = [await r.prospect(n) for n in ("Ola", "Hal", "Meg", "Pia", "Sam")]
    ola, hal, meg, pia, sam = plain
    later = in_hours(48)
    # the same due time for the stage and the fit pairs, the worse one made first:
    # only the rule puts the better one first
    ids = {
        "fit_c": await r.task(mgr, rep, "a", due=later, stage="contacting"),
        "fit_a": await r.task(vp, rep, "b", due=later, stage="contacting"),
        "stage_contacting": await r.task(ola, rep, "c", due=later, stage="contacting"),
        "stage_closing": await r.task(pia, rep, "d", due=later, stage="closing"),
        "overdue": await r.task(hal, rep, "e", due=in_hours(-0.5)),
        "hot_reply": await r.task(meg, rep, "f", due=in_hours(30)),
        "meeting": await r.task(
            sam, rep, "g", kind="prepare_meeting", due=in_hours(-1), stage="presenting"
        ),
    }
    await r.replied(meg["id"], timedelta(minutes=10))

    inbox = await r.inbox(rep)
    order = [next(k for k, v in ids.items() if v == t["id"]) for t in inbox]
    assert order == [
        "meeting",  # overdue 300 + meeting in 1 h 250 + presenting 80
        "overdue",  # 300 + contacting 20
        "hot_reply",  # replied 10 min ago 250 + contacting 20 (due in 30 h)
        "stage_closing",  # closing 120
        "fit_a",  # contacting 20 + tier A 60
        "fit_c",  # contacting 20 + tier C 20
        "stage_contacting",  # contacting 20
    ], [(t["title"], t["priority"], t["reasons"]) for t in inbox]
    by_id = {t["id"]: t for t in inbox}
    meeting = by_id[ids["meeting"]]
    assert {x["code"] for x in meeting["reasons"]} == {"overdue", "meeting_soon", "stage"}
    assert meeting["priority"] == sum(x["points"] for x in meeting["reasons"])
    assert "meeting starts in" in meeting["why_now"]
    hot = by_id[ids["hot_reply"]]
    assert [x["code"] for x in hot["reasons"]] == ["fresh_reply", "stage"]
    assert hot["why_now"].startswith("replied 10 min ago")
    # each task carries who to call and their fit, read from prospecting
    fit_a = by_id[ids["fit_a"]]
    card = fit_a["prospect_card"]
    assert card["name"] == "Vera Tester" and card["title"] == "VP Sales Manager"
    assert card["phone"] == vp["phone"] and card["email"] == vp["email"]
    assert card["tier"] == "A" and card["fit_score"] == vp["fit_score"]
    assert fit_a["body"].startswith("Call script")
    assert by_id[ids["fit_c"]]["prospect_card"]["tier"] == "C"

    single = (await r.api.get(f"/tasks/{ids['hot_reply']}", headers=AUTH)).json()
    assert single["priority"] == hot["priority"]


async def test_outcomes_move_the_journey(inbox: InboxRig) -> None:
    r = inbox
    rep = await r.rep("Rita Rep")
    ada, bob, cy = [await r.prospect(n) for n in ("Ada", "Bob", "Cy")]
    for p in (ada, bob, cy):
        await r.start_journey(p["id"])
    t_ada = await r.task(ada, rep, "call")
    t_bob = await r.task(bob, rep, "call")
    t_cy = await r.task(cy, rep, "call")

    bad = await r.api.post(f"/tasks/{t_ada}/complete", json={"outcome": "maybe"}, headers=AUTH)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "outcome"

    done = await r.api.post(
        f"/tasks/{t_ada}/complete",
        json={"outcome": "meeting_booked", "notes": "Tue 10:00"},
        headers=AUTH,
    )
    assert done.status_code == 200 and done.json()["outcome"] == "meeting_booked"
    again = await r.api.post(
        f"/tasks/{t_ada}/complete", json={"outcome": "connected"}, headers=AUTH
    )
    assert again.status_code == 409

    stop = await r.api.post(
        f"/tasks/{t_bob}/complete", json={"outcome": "not_interested"}, headers=AUTH
    )
    assert stop.status_code == 200
    vm = await r.api.post(f"/tasks/{t_cy}/complete", json={"outcome": "voicemail"}, headers=AUTH)
    assert vm.status_code == 200

    async def ada_replied() -> Any:
        return (await r.recorded(ada["id"]))["replies"]

    replies = await eventually(ada_replied, "the meeting_booked outcome reaches the journey")
    assert replies == [
        {
            "channel": "call_task",
            "event_id": f"task:{t_ada}",
            "excerpt": "meeting_booked: Tue 10:00",
            # issue 14: the key holder who recorded the outcome moves the journey
            "actor": f"admin ({key_fingerprint(API_KEY)})",
        }
    ]

    async def bob_stopped() -> Any:
        return (await r.recorded(bob["id"]))["stops"]

    stops = await eventually(bob_stopped, "not_interested stops the cadence")
    assert stops == [{"reason": "not interested (rep call)", "actor": ADMIN_ACTOR}]
    assert (await r.recorded(bob["id"]))["replies"] == []
    # a voicemail is no news for the journey
    assert await r.recorded(cy["id"]) == {"replies": [], "stops": []}
    assert await r.inbox(rep) == []


async def test_snooze_hides_a_task_until_its_time(inbox: InboxRig) -> None:
    r = inbox
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    task = await r.task(ada, rep, "call")
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    refused = await r.api.post(f"/tasks/{task}/snooze", json={"until": past}, headers=AUTH)
    assert refused.status_code == 422 and "future" in refused.json()["error"]["message"]
    until = datetime.now(UTC) + timedelta(seconds=2)
    ok = await r.api.post(f"/tasks/{task}/snooze", json={"until": until.isoformat()}, headers=AUTH)
    assert ok.status_code == 200
    assert await r.inbox(rep) == []

    async def back() -> Any:
        return [t["id"] for t in await r.inbox(rep)]

    assert await eventually(back, "the task comes back after its snooze") == [task]
    assert datetime.now(UTC) >= until


async def test_reassign_one_task_and_all_open_tasks_of_a_prospect(inbox: InboxRig) -> None:
    r = inbox
    rita = await r.rep("Rita Rep")
    ada, bob = await r.prospect("Ada"), await r.prospect("Bob")
    assert ada["rep_id"] == bob["rep_id"] == rita
    a1, a2, a3 = [await r.task(ada, rita, k) for k in ("one", "two", "three")]
    # a journey started before a reassignment still names the old rep: prospecting's
    # current rep of the prospect gets the task
    b1 = await r.task(bob, "rep-when-the-journey-started", "one")
    assert (await r.api.get(f"/tasks/{b1}", headers=AUTH)).json()["rep_id"] == rita
    ron = await r.rep("Ron Rep")

    unknown = await r.api.post(f"/tasks/{b1}/reassign", json={"rep_id": "nobody"}, headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "rep_not_found"
    # a rep who left takes no task by hand: it would wait in an inbox nobody opens
    gone = await r.rep("Gil Gone")
    off = await r.prospecting.patch(f"/reps/{gone}", json={"active": False}, headers=AUTH)
    assert off.status_code == 200, off.text
    refused = await r.api.post(f"/tasks/{b1}/reassign", json={"rep_id": gone}, headers=AUTH)
    assert refused.status_code == 422 and "inactive" in refused.json()["error"]["message"]
    assert (await r.api.get(f"/tasks/{b1}", headers=AUTH)).json()["rep_id"] == rita
    moved = await r.api.post(f"/tasks/{b1}/reassign", json={"rep_id": ron}, headers=AUTH)
    assert moved.status_code == 200
    assert moved.json()["rep_id"] == ron and moved.json()["reassigned_from"] == rita

    done = await r.api.post(f"/tasks/{a3}/complete", json={"outcome": "done"}, headers=AUTH)
    assert done.status_code == 200
    url = f"/prospects/{ada['id']}/tasks/reassign"
    unknown = await r.api.post(url, json={"rep_id": "nobody"}, headers=AUTH)
    assert unknown.status_code == 404
    bulk = await r.api.post(url, json={"rep_id": ron}, headers=AUTH)
    assert bulk.status_code == 200
    assert sorted(bulk.json()["moved"]) == sorted([a1, a2])
    again = await r.api.post(url, json={"rep_id": ron}, headers=AUTH)
    assert again.json()["moved"] == []

    assert {t["id"] for t in await r.inbox(ron)} == {a1, a2, b1}
    assert await r.inbox(rita) == []
    # the completed task stays with whoever did it
    tasks = (await r.api.get("/tasks", params={"prospect_id": ada["id"]}, headers=AUTH)).json()
    assert {t["id"]: t["rep_id"] for t in tasks}[a3] == rita


async def test_reassigning_a_prospect_leaves_the_managers_escalation_with_the_manager(
    inbox: InboxRig,
) -> None:
    """The journey's escalation about Rita's prospect is for Rita's manager whoever the
    prospect's rep is (fixed_rep): handing Ada to Ron moves Rita's work on Ada, not Bea's."""
    r = inbox
    rita = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    pid = ada["id"]
    assert ada["rep_id"] == rita
    boss = await r.rep("Bea Boss")
    managed = await r.prospecting.patch(f"/reps/{rita}", json={"manager_id": boss}, headers=AUTH)
    assert managed.status_code == 200, managed.text
    qualify = await r.task(ada, rita, "qualify", kind="qualify", stage="qualifying")
    # what the journey's qualification reminder makes (workflows/journey/qualify.py)
    escalation = await r.create_rep_task(
        RepTaskRequest(
            key=f"{journey_id(pid)}:escalation",
            rep_id=boss,
            fixed_rep=True,
            prospect_id=pid,
            journey_id=journey_id(pid),
            kind="escalation",
            title="Escalation: Ada Tester is still not qualified",
            body="Rita Rep has not qualified Ada Tester",
            context={"stage": "qualifying", "rep_id": rita},
        )
    )
    got = (await r.api.get(f"/tasks/{escalation}", headers=AUTH)).json()
    assert (got["rep_id"], got["fixed_rep"]) == (boss, True)
    ron = await r.rep("Ron Rep")
    # what prospecting's outbox calls for PATCH /prospects/{id} {"rep_id": ron}, and for each
    # prospect a deactivated rep hands over
    moved = await r.api.post(f"/prospects/{pid}/tasks/reassign", json={"rep_id": ron}, headers=AUTH)
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == [qualify]
    assert (await r.api.get(f"/tasks/{qualify}", headers=AUTH)).json()["rep_id"] == ron
    assert (await r.api.get(f"/tasks/{escalation}", headers=AUTH)).json()["rep_id"] == boss
    assert [t["id"] for t in await r.inbox(ron)] == [qualify]
    # the manager leaves: what sits with her goes to her own manager, escalations included
    top = await r.rep("Tom Top")
    handed = await r.api.post(
        f"/internal/reps/{boss}/tasks/reassign", json={"rep_id": top}, headers=SERVICE_AUTH
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["moved"] == [escalation]


async def test_task_lists_come_in_pages(inbox: InboxRig) -> None:
    """Tasks grow with every touch: `GET /tasks` and a rep's list are bounded, `after` goes on
    (the inbox page ranks the rep's open tasks with its own bound)."""
    r = inbox
    rita = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    start = datetime.now(UTC)
    for i in range(5):  # two due at once: the id breaks the tie
        await r.task(ada, rita, f"t{i}", due=start + timedelta(hours=min(i, 3)))
    await assert_pages(r.api, "/tasks", 5, headers=AUTH, prospect_id=ada["id"])
    # the last task of a page erased before the next page: the paging goes on past it
    forget = deleting(r.sessions, models.RepTask)
    await assert_pages(r.api, f"/reps/{rita}/tasks", 5, headers=AUTH, forget=forget)


class Receiver:
    """A webhook receiver that checks the signature; it fails the first delivery on purpose."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.valid: list[dict[str, Any]] = []
        self.attempts: list[str] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.attempts.append(request.headers.get("X-Closeflow-Delivery", ""))
            if not verify(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body):
                return Response(status_code=401)
            if len(self.attempts) == 1:
                return Response(status_code=503)  # a hiccup: the notifier must retry
            self.valid.append({"headers": dict(request.headers), "json": json.loads(body)})
            return Response(status_code=200)


async def _notifications(r: InboxRig, task_id: str) -> list[dict[str, Any]]:
    return list((await r.api.get(f"/tasks/{task_id}/notifications", headers=AUTH)).json())


async def _all_sent(r: InboxRig, task_id: str, count: int) -> list[dict[str, Any]] | None:
    rows = await _notifications(r, task_id)
    if len(rows) == count and all(n["status"] == "sent" for n in rows):
        return rows
    return None


TWILIO_TIMEOUT = 4.0


async def test_a_rep_s_text_goes_once_when_twilio_s_answer_never_came(ground: Ground) -> None:
    """Twilio takes a rep's notification text but its answer does not come back in time (a
    crash of the notifier's process leaves the row the same way: pending), and Twilio's message
    list shows new texts only a minute late, so the next attempt could not find it there. The
    text's status callback names its notification row: the row is recorded sent with the sid,
    and no second attempt is made. One text, where without the callback the retry sent two."""

    def slow_answer(upstream: str) -> FastAPI:
        hold = TWILIO_TIMEOUT + 2  # past the client's wait: that attempt fails
        return lagging_twilio(upstream, timedelta(seconds=60), first_answer_after=hold)

    phone = random_phone()
    async with inbox_rig(ground, slow_answer, twilio_timeout_seconds=TWILIO_TIMEOUT) as r:
        bob, ron = await r.prospect("Bob"), await r.rep("Ron Rep")
        sms = {"channel": "sms", "phone": phone}
        assert (await r.api.put(f"/reps/{ron}/notifications", json=sms, headers=AUTH)).is_success
        meeting = await r.task(bob, ron, "prep", kind="prepare_meeting", due=in_hours(-0.5))
        await eventually(lambda: _all_sent(r, meeting, 1), "ron's SMS recorded sent")
        await r.sweeps(5)  # the held attempt has ended, and a retry would have had its turn
        async with r.sessions() as session:
            row = await session.get(
                models.TaskNotification, (await _notifications(r, meeting))[0]["id"]
            )
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as c:
            found = (
                await c.get(f"{r.sb.twilio_url}/sandbox/messages", params={"to": phone})
            ).json()
    texts = found["messages"] if isinstance(found, dict) else found
    assert row is not None
    assert [t["sid"] for t in texts] == [row.provider_id], texts
    assert (row.status, row.attempts) == ("sent", 0)  # recorded by the callback, not an attempt


async def test_urgent_tasks_reach_reps_by_email_sms_and_a_signed_webhook(
    inbox: InboxRig,
) -> None:
    r = inbox
    secret = "s3cret-s3cret-s3cret"
    receiver = Receiver(secret)
    port = free_port()
    async with serve(receiver.app, port) as hook_url:
        # prospects before reps: unassigned in prospecting, their tasks go where we say
        ada, bob = await r.prospect("Ada", title="CTO"), await r.prospect("Bob")
        rita, ron = await r.rep("Rita Rep"), await r.rep("Ron Rep")
        prefs = {
            "channel": "email",
            "email": "rita.notify@example.com",
            "webhook_url": f"{hook_url}/hook",
            "webhook_secret": secret,
        }
        put = await r.api.put(f"/reps/{rita}/notifications", json=prefs, headers=AUTH)
        assert put.status_code == 200, put.text
        assert put.json()["has_webhook_secret"] is True and "webhook_secret" not in put.json()
        bad = await r.api.put(f"/reps/{ron}/notifications", json={"channel": "sms"}, headers=AUTH)
        assert bad.status_code == 422
        sms = {"channel": "sms", "phone": "+14155550199"}
        assert (await r.api.put(f"/reps/{ron}/notifications", json=sms, headers=AUTH)).is_success
        unknown = await r.api.put("/reps/nobody/notifications", json=sms, headers=AUTH)
        assert unknown.status_code == 404

        quiet = await r.task(ada, rita, "quiet", due=in_hours(5))
        not_hot = await r.task(bob, ron, "call", due=in_hours(5))
        await r.sweeps()
        assert await _notifications(r, quiet) == []  # nothing urgent about it yet
        await r.replied(ada["id"], timedelta(minutes=3))  # now both of ada's tasks are hot
        urgent = await r.task(ada, rita, "reply", due=in_hours(5))
        meeting = await r.task(bob, ron, "prep", kind="prepare_meeting", due=in_hours(-0.5))

        rows = await eventually(lambda: _all_sent(r, urgent, 2), "rita's notifications sent")
        assert {n["channel"] for n in rows} == {"email", "webhook"}
        assert {n["reason"] for n in rows} == {"urgent"}
        rows += await eventually(lambda: _all_sent(r, quiet, 2), "the other hot task of ada's")
        # the first webhook attempt failed (503): retried, so three attempts for two rows
        assert sum(n["attempts"] for n in rows if n["channel"] == "webhook") == 3
        sms_rows = await eventually(lambda: _all_sent(r, meeting, 1), "ron's SMS sent")
        assert sms_rows[0]["channel"] == "sms" and sms_rows[0]["target"] == "+14155550199"

        # email: in the SMTP mailbox, with who and why
        mails = r.sb.mailbox.list(to="rita.notify@example.com")
        assert len(mails) == 2
        assert all(m.subject.startswith("Urgent: ") for m in mails)
        assert any("replied 3 min ago" in m.text and ada["phone"] in m.text for m in mails)
        # SMS: in the Twilio sandbox
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as c:
            sandbox = await c.get(
                f"{r.sb.twilio_url}/sandbox/messages", params={"to": "+14155550199"}
            )
        found = sandbox.json()
        bodies = [m["body"] for m in (found["messages"] if isinstance(found, dict) else found)]
        assert len(bodies) == 1 and "meeting starts in" in bodies[0]
        # webhook: Slack-shaped, signed, each notification delivered once after one retry
        assert len(receiver.valid) == 2
        for got in receiver.valid:
            assert set(got["json"]) == {"text", "blocks"}
            assert got["json"]["text"].startswith("Urgent: ")
            assert got["headers"]["x-closeflow-event"] == "task.urgent"
        delivered = [g["headers"]["x-closeflow-delivery"] for g in receiver.valid]
        assert len(set(delivered)) == 2 and receiver.attempts[0] in delivered
        # sent once: more sweeps add nothing
        task = (await r.api.get(f"/tasks/{urgent}", headers=AUTH)).json()
        assert task["urgent_at"] is not None and "replied" in task["urgent_reason"]
        before = (len(r.sb.mailbox.list(to="rita.notify@example.com")), len(receiver.attempts))
        await r.sweeps()
        assert (
            len(r.sb.mailbox.list(to="rita.notify@example.com")),
            len(receiver.attempts),
        ) == before
        assert len(await _notifications(r, urgent)) == 2
        assert await _notifications(r, not_hot) == []


async def test_a_fresh_reply_is_told_however_many_past_meetings_wait_unmarked(
    inbox: InboxRig,
) -> None:
    """Preparation tasks of meetings that have started stay open until the rep marks the
    meeting held (often never) and can never be urgent. The sweep read a batch of candidates in
    due order, past meetings included: with a batch of them waiting (here 2, 100 by default) a
    fresh reply's task was never in it, never marked, and its rep never told."""
    r = inbox
    r.app.state.notifier.timing = replace(r.app.state.notifier.timing, batch=2)
    ada, bob = await r.prospect("Ada"), await r.prospect("Bob")
    rita = await r.rep("Rita Rep")
    email = {"channel": "email", "email": "rita.notify@example.com"}
    assert (await r.api.put(f"/reps/{rita}/notifications", json=email, headers=AUTH)).is_success
    # meetings that started 3 hours ago (each prepared 2 hours before it)
    past = [
        await r.task(bob, rita, f"prep-{n}", kind="prepare_meeting", due=in_hours(-5))
        for n in range(3)
    ]
    await r.replied(ada["id"], timedelta(minutes=3))
    urgent = await r.task(ada, rita, "reply", due=in_hours(5))
    [told] = await eventually(lambda: _all_sent(r, urgent, 1), "rita told of ada's reply")
    assert told["reason"] == "urgent"
    for task in past:
        assert [n["reason"] for n in await _notifications(r, task)] in ([], ["escalation"])


async def test_overdue_tasks_escalate_once_to_the_manager(inbox: InboxRig) -> None:
    r = inbox
    ada, bob = await r.prospect("Ada"), await r.prospect("Bob")  # before reps: unassigned
    boss = await r.rep("Bea Boss")
    rita = await r.rep("Rita Rep", manager_id=boss)
    lead = await r.rep("Lea Lead")
    ron = await r.rep("Ron Rep")  # no manager in prospecting: escalate_to says who
    dan = await r.rep("Dan Rep", manager_id=boss)  # a manager, and a deputy while she is away
    prefs = {"channel": "none", "escalate_to": lead}
    for rep in (ron, dan):
        answer = await r.api.put(f"/reps/{rep}/notifications", json=prefs, headers=AUTH)
        assert answer.is_success, answer.text
    self_escalation = await r.api.put(
        f"/reps/{ron}/notifications", json={"escalate_to": ron}, headers=AUTH
    )
    assert self_escalation.status_code == 422
    assert (await r.api.get("/task-policy", headers=AUTH)).json()["escalate_after_seconds"] == 3600
    t_rita = await r.task(ada, rita, "call", due=datetime.now(UTC))
    t_ron = await r.task(bob, ron, "call", due=datetime.now(UTC))
    t_later = await r.task(bob, ron, "later", due=in_hours(1))
    t_dan = await r.task(ada, dan, "email", due=datetime.now(UTC))
    await r.sweeps()
    first = (await r.inbox(rita))[0]
    assert [x["code"] for x in first["reasons"]] == ["overdue", "stage"]
    assert await _notifications(r, t_rita) == []  # within the hour ops allow
    policy = {"escalate_after_seconds": 1}
    assert (await r.api.put("/task-policy", json=policy, headers=AUTH)).json() == {
        "escalate_after_seconds": 1,
        "hot_reply_seconds": 86400,
        "meeting_soon_seconds": 7200,
        "due_soon_seconds": 3600,
    }

    rows = await eventually(lambda: _all_sent(r, t_rita, 1), "rita's manager told")
    assert rows[0] == rows[0] | {
        "reason": "escalation",
        "recipient_rep_id": boss,
        "channel": "email",
        "target": "bea.boss@example.com",
    }
    rows = await eventually(lambda: _all_sent(r, t_ron, 1), "ron's escalate_to told")
    assert rows[0]["recipient_rep_id"] == lead and rows[0]["target"] == "lea.lead@example.com"
    rows = await eventually(lambda: _all_sent(r, t_dan, 1), "dan's deputy told, not his manager")
    assert rows[0]["recipient_rep_id"] == lead
    escalated = (await r.inbox(rita))[0]
    assert escalated["escalated_at"] is not None
    assert [x["code"] for x in escalated["reasons"]] == ["escalated", "stage"]
    assert escalated["priority"] > first["priority"]
    mail = r.sb.mailbox.list(to="bea.boss@example.com")
    assert len(mail) == 1 and mail[0].subject.startswith("Overdue: ")
    # once: later sweeps neither escalate again nor mail again; a task not yet due waits
    await r.sweeps()
    assert len(r.sb.mailbox.list(to="bea.boss@example.com")) == 1
    assert await _notifications(r, t_later) == []
    later = (await r.api.get(f"/tasks/{t_later}", headers=AUTH)).json()
    assert later["escalated_at"] is None


async def test_an_overdue_task_is_not_escalated_to_a_manager_who_left(inbox: InboxRig) -> None:
    """Bea, Rita's manager, is deactivated (prospecting keeps her as Rita's manager). Rita's
    overdue task is escalated, and Bea is told nothing: nobody would read it. It used to email
    her. An overdue task of Ron, whose manager is active, still reaches his manager."""
    r = inbox
    bea = await r.rep("Bea Boss")
    rita = await r.rep("Rita Rep", manager_id=bea)
    tom = await r.rep("Tom Top")
    ron = await r.rep("Ron Rep", manager_id=tom)
    left = await r.prospecting.patch(f"/reps/{bea}", json={"active": False}, headers=AUTH)
    assert left.status_code == 200, left.text
    # a task is the prospect's rep's: Ada is Rita's, Bob is Ron's
    ada, bob = await r.prospect("Ada"), await r.prospect("Bob")
    for prospect, rep in ((ada, rita), (bob, ron)):
        url = f"/prospects/{prospect['id']}"
        assert (await r.prospecting.patch(url, json={"rep_id": rep}, headers=AUTH)).is_success
    policy = {"escalate_after_seconds": 1}
    assert (await r.api.put("/task-policy", json=policy, headers=AUTH)).status_code == 200
    t_rita = await r.task(ada, rita, "call", due=datetime.now(UTC) - timedelta(hours=2))
    t_ron = await r.task(bob, ron, "call", due=datetime.now(UTC) - timedelta(hours=2))

    rows = await eventually(lambda: _all_sent(r, t_ron, 1), "ron's manager told")
    assert rows[0]["recipient_rep_id"] == tom

    async def escalated() -> dict[str, Any] | None:
        task = (await r.api.get(f"/tasks/{t_rita}", headers=AUTH)).json()
        return task if task["escalated_at"] else None

    await eventually(escalated, "rita's task escalated")
    await r.sweeps()
    assert await _notifications(r, t_rita) == []
    assert r.sb.mailbox.list(to="bea.boss@example.com") == []


async def test_an_unassigned_overdue_task_is_escalated_once_it_has_a_rep(inbox: InboxRig) -> None:
    """Ada waits without a rep (hers left while nobody had room), and her reply's task waits
    unassigned past due. The sweep marked it escalated with nobody to tell; moved to Rita once
    Ada got her, it stayed marked, so Rita's manager was never told. An unassigned task is not
    escalated: once it is Rita's, Bea hears of it."""
    r = inbox
    ada = await r.prospect("Ada")  # before any rep: unassigned
    bea = await r.rep("Bea Boss")
    rita = await r.rep("Rita Rep", manager_id=bea)
    policy = {"escalate_after_seconds": 1}
    assert (await r.api.put("/task-policy", json=policy, headers=AUTH)).status_code == 200
    waiting = await r.create_rep_task(
        RepTaskRequest(
            key=f"{journey_id(ada['id'])}:reply:m1",
            rep_id=None,
            prospect_id=ada["id"],
            journey_id=journey_id(ada["id"]),
            kind="reply",
            title="Reply to Ada",
            body="Ada wrote back.",
            context={"stage": "qualifying"},
            due_at=(datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        )
    )
    await r.sweeps()
    task = (await r.api.get(f"/tasks/{waiting}", headers=AUTH)).json()
    assert (task["rep_id"], task["escalated_at"]) == (None, None), task

    url = f"/prospects/{ada['id']}/tasks/reassign"
    assert (await r.api.post(url, json={"rep_id": rita}, headers=AUTH)).status_code == 200
    await r.sweeps()
    rows = await eventually(lambda: _all_sent(r, waiting, 1), "Rita's manager told")
    assert [(n["reason"], n["recipient_rep_id"]) for n in rows] == [("escalation", bea)]


async def test_a_task_reassigned_while_its_urgency_is_noted_is_told_to_the_new_rep(
    inbox: InboxRig,
) -> None:
    """The sweep finds Rita's overdue meeting preparation urgent, and while it asks prospecting
    about Rita the task is reassigned to Ron (a request committed meanwhile). Rita is not told
    of a task that is no longer hers; the next pass tells Ron. It used to tell Rita, and Ron
    never heard."""
    r = inbox
    await r.app.state.notifier.stop()  # the test runs the notifier's passes itself
    rita, ron = await r.rep("Rita Rep"), await r.rep("Ron Rep")
    bob = await r.prospect("Bob")
    assert (
        await r.prospecting.patch(f"/prospects/{bob['id']}", json={"rep_id": rita}, headers=AUTH)
    ).is_success
    due = datetime.now(UTC) - timedelta(minutes=30)
    task = await r.task(bob, rita, "prep", kind="prepare_meeting", due=due)
    reassigned: list[int] = []

    class ReassignedMeanwhile(RepDirectory):
        async def rep(self, rep_id: str) -> RepInfo:
            if rep_id == rita and not reassigned:
                moved = await r.api.post(
                    f"/tasks/{task}/reassign", json={"rep_id": ron}, headers=AUTH
                )
                assert moved.status_code == 200, moved.text
                reassigned.append(1)
            return await super().rep(rep_id)

    settings = r.app.state.settings
    directory = ReassignedMeanwhile.from_settings(settings)
    notifier = Notifier(lambda: r.sessions, settings, lambda: directory)
    try:
        await notifier.sweep()
        assert reassigned and await _notifications(r, task) == []
        await notifier.sweep()
        rows = await _notifications(r, task)
        assert [(n["reason"], n["recipient_rep_id"]) for n in rows] == [("urgent", ron)]
    finally:
        await directory.close()


async def test_snoozed_overdue_tasks_keep_no_other_task_from_escalating(inbox: InboxRig) -> None:
    """A rep snoozes a backlog of overdue tasks for a day. The escalation sweep read a batch of
    overdue tasks (here 2, 100 by default), oldest first, and passed over the snoozed ones:
    with a batch of them waiting, no other task of the team escalated until they woke."""
    r = inbox
    r.app.state.notifier.timing = replace(r.app.state.notifier.timing, batch=2)
    ada, bob = await r.prospect("Ada"), await r.prospect("Bob")
    boss = await r.rep("Bea Boss")
    rita = await r.rep("Rita Rep", manager_id=boss)
    # none escalates while the backlog is being snoozed
    calm = {"escalate_after_seconds": 86400}
    assert (await r.api.put("/task-policy", json=calm, headers=AUTH)).status_code == 200
    until = {"until": in_hours(24).isoformat()}
    backlog = []
    for n in range(3):
        task = await r.task(bob, rita, f"old-{n}", due=in_hours(-5))
        snoozed = await r.api.post(f"/tasks/{task}/snooze", json=until, headers=AUTH)
        assert snoozed.status_code == 200, snoozed.text
        backlog.append(task)
    overdue = await r.task(ada, rita, "call", due=in_hours(-2))
    hour = {"escalate_after_seconds": 3600}
    assert (await r.api.put("/task-policy", json=hour, headers=AUTH)).status_code == 200
    [told] = await eventually(lambda: _all_sent(r, overdue, 1), "rita's manager told")
    assert (told["reason"], told["recipient_rep_id"]) == ("escalation", boss)
    for task in backlog:  # still asleep: not escalated
        assert (await r.api.get(f"/tasks/{task}", headers=AUTH)).json()["escalated_at"] is None


async def test_a_moved_meetings_old_preparation_task_leaves_the_inbox(inbox: InboxRig) -> None:
    r = inbox
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    old = await r.task(ada, rep, "prepare_meeting:m1", kind="prepare_meeting")
    new = await r.task(ada, rep, "prepare_meeting:m1:r1", kind="prepare_meeting")
    other = await r.task(ada, rep, "prepare_meeting:m2", kind="prepare_meeting")
    wid = journey_id(ada["id"])
    close = CloseRepTasks(
        f"{wid}:prepare_meeting:m1", "the meeting moved", f"{wid}:prepare_meeting:m1:r1"
    )
    assert await r.close_rep_tasks(close) == 1
    assert await r.close_rep_tasks(close) == 0  # a retried activity changes nothing
    inbox = (await r.api.get(f"/reps/{rep}/inbox", headers=AUTH)).json()
    assert sorted(t["id"] for t in inbox) == sorted([new, other])
    closed = (await r.api.get(f"/tasks/{old}", headers=AUTH)).json()
    assert (closed["status"], closed["notes"]) == ("closed", "the meeting moved")


async def test_a_meetings_in_person_reminder_closes_with_its_preparation(inbox: InboxRig) -> None:
    """The automatic reminder could not go, so the rep was asked to remind Ada in person; then
    the meeting moved (or was cancelled, held, missed): the journey closed its preparation, but
    the reminder of the old time stayed open, due at once and ranked as a meeting near. It
    closes with the preparation; another meeting's stays."""
    r = inbox
    rep, ada, wid = await _rita_and_ada(r)
    remind = await r.task(ada, rep, "remind_meeting:m1:r0", kind="remind_meeting")
    old = await r.task(ada, rep, "prepare_meeting:m1", kind="prepare_meeting")
    new = await r.task(ada, rep, "prepare_meeting:m1:r1", kind="prepare_meeting")
    other = await r.task(ada, rep, "remind_meeting:m2:r0", kind="remind_meeting")
    moved = CloseRepTasks(
        f"{wid}:prepare_meeting:m1", "the meeting moved", f"{wid}:prepare_meeting:m1:r1"
    )
    assert await r.close_rep_tasks(moved) == 2
    assert sorted(t["id"] for t in await r.inbox(rep)) == sorted([new, other])
    for task in (remind, old):
        closed = (await r.api.get(f"/tasks/{task}", headers=AUTH)).json()
        assert (closed["status"], closed["notes"]) == ("closed", "the meeting moved")


async def test_a_missed_meetings_call_to_rebook_closes_once_the_deal_has_a_new_meeting(
    inbox: InboxRig,
) -> None:
    """Ada missed the meeting: "call to re-book". She booked again through the link the
    journey sent her, and the call stayed open, then escalated. A new meeting of the same deal
    closes it; another deal's stays."""
    r = inbox
    rep, ada, _ = await _rita_and_ada(r)
    missed = {"deal_id": "d1", "meeting_id": "m1"}
    call = await r.task(ada, rep, "no_show:m1", kind="no_show", context=missed)
    theirs = await r.task(
        ada, rep, "no_show:m9", kind="no_show", context={"deal_id": "d2", "meeting_id": "m9"}
    )
    again = {"deal_id": "d1", "meeting_id": "m2"}
    prepare = await r.task(ada, rep, "prepare_meeting:m2", kind="prepare_meeting", context=again)
    assert sorted(t["id"] for t in await r.inbox(rep)) == sorted([theirs, prepare])
    closed = (await r.api.get(f"/tasks/{call}", headers=AUTH)).json()
    assert (closed["status"], closed["notes"]) == ("closed", "re-booked: meeting m2")


async def test_a_task_made_after_its_journey_run_ended_is_not_opened(inbox: InboxRig) -> None:
    """A run's end cancels its background work, but an activity already under way (a meeting
    reminder's task, the decision deadline's last chance) still reaches outreach, maybe once a
    next run of the prospect started: its task is kept, closed with the reason, never in the
    inbox; the running run's tasks open as ever."""
    r = inbox
    rep, ada, wid, (ended, running) = await _run_lost_then_another(r)
    late = await as_run(wid, ended).run(r.task, ada, rep, "last_chance:d1", kind="last_chance")
    again = await as_run(wid, ended).run(r.task, ada, rep, "last_chance:d1", kind="last_chance")
    live = await as_run(wid, running).run(r.task, ada, rep, "prepare_meeting:m2")
    assert again == late  # a retried activity finds it
    assert [t["id"] for t in await r.inbox(rep)] == [live]
    closed = (await r.api.get(f"/tasks/{late}", headers=AUTH)).json()
    assert closed["status"] == "closed"
    assert closed["notes"] == "not opened: its journey run (run 1) had ended (lost)"
    told = await _created(r)
    assert live in told and late not in told  # subscribers hear of the open one only


async def test_no_task_asks_the_rep_to_reach_a_person_on_the_do_not_contact_list(
    inbox: InboxRig,
) -> None:
    """Ada is listed while her deal is under way: her journey goes on, sending her nothing, but
    it still asked the rep to remind her of the meeting in person, and to call her to re-book,
    against the list. Those tasks are kept closed with the entry's reason; the rep's own work
    on the deal (preparing the meeting) still opens."""
    r = inbox
    rep, ada, _ = await _rita_and_ada(r)
    listed = await r.api.post(
        "/do-not-contact", json={"value": ada["email"], "reason": "asked us"}, headers=AUTH
    )
    assert listed.status_code == 201, listed.text
    remind = await r.task(ada, rep, "remind_meeting:m1:r0", kind="remind_meeting")
    rebook = await r.task(ada, rep, "no_show:m1", kind="no_show")
    prepare = await r.task(ada, rep, "prepare_meeting:m2", kind="prepare_meeting")
    assert [t["id"] for t in await r.inbox(rep)] == [prepare]
    for task in (remind, rebook):
        closed = (await r.api.get(f"/tasks/{task}", headers=AUTH)).json()
        assert closed["status"] == "closed", closed
        assert closed["notes"].startswith("not opened: do not contact: email"), closed
    assert {remind, rebook}.isdisjoint(await _created(r))


async def _run_lost_then_another(
    r: InboxRig,
) -> tuple[str, dict[str, Any], str, tuple[str, str]]:
    """Rita, Ada, her journey's id, and (her run 1, which lost; her run 2, which runs)."""
    rep, ada, wid = await _rita_and_ada(r)
    return rep, ada, wid, await lost_then_running(r.sessions, ada["id"])


async def _rita_and_ada(r: InboxRig) -> tuple[str, dict[str, Any], str]:
    """Rita, Ada (hers), and Ada's journey's id."""
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    return rep, ada, journey_id(ada["id"])


async def _followed(r: InboxRig, *entered: StageEntered) -> list[int]:
    """Outreach follows each stage the journey entered: how many tasks each closed."""
    async with r.sessions() as session:
        closed = [await tasks.follow_stage(session, e) for e in entered]
        await session.commit()
    return closed


async def _created(r: InboxRig) -> set[str]:
    """The tasks subscribers were told of (task.created)."""
    async with r.sessions() as s:
        events = await s.scalars(
            select(models.WebhookEvent).where(models.WebhookEvent.type == TASK_CREATED)
        )
        return {e.payload["data"]["task_id"] for e in events.all()}


async def test_a_reply_told_after_its_run_ended_opens_its_task(inbox: InboxRig) -> None:
    """A reply that came while the run reported its end (the deal lost, and the prospect writes
    "wait, we found budget") is told after the end report, as the journey promises: its task
    was kept closed as late work of a run that was over, so the rep never saw the reply. A
    person's reply always opens its task."""
    r = inbox
    rep, ada, wid, (ended, _) = await _run_lost_then_another(r)
    told = await as_run(wid, ended).run(r.task, ada, rep, "reply:m9", kind="reply")
    assert [t["id"] for t in await r.inbox(rep)] == [told]
    assert told in await _created(r)


async def test_a_reply_of_a_prospect_never_enrolled_outlives_their_first_runs_stages(
    inbox: InboxRig,
) -> None:
    """Ada, never enrolled, writes in: outreach makes the rep a task for her reply, under her
    journey's key (run 1's). The rep enrolls her, and her first run's first stage change
    closed the unanswered reply ("contacting: enrolled"). A reply is the rep's to answer."""
    r = inbox
    rep, ada, wid = await _rita_and_ada(r)
    late = await r.task(ada, rep, "late_reply:e1", kind="late_reply", stage="ended")
    prep = await r.task(ada, rep, "escalation:x", kind="escalation", stage="ended")
    entered = StageEntered(wid, ada["id"], "contacting", "contacting: enrolled", [])
    assert await _followed(r, entered) == [1]
    left = {t["id"]: t["status"] for t in await r.inbox(rep)}
    assert left == {late: "open"}, left
    closed = (await r.api.get(f"/tasks/{prep}", headers=AUTH)).json()
    assert closed["status"] == "closed"  # the rule still holds for the run's own kinds


async def test_a_new_clients_thanks_is_closed_when_their_deal_is_reopened(
    inbox: InboxRig,
) -> None:
    """The deal was won: "Thank Ada and mention referrals", a task that outlives the client's
    stages. Reopened (the journey back at closing), it stayed open, though Ada was a client no
    more, and then escalated. It closes with the reopening; a reply still outlives it."""
    r = inbox
    rep, ada, wid = await _rita_and_ada(r)
    thanks = await r.task(ada, rep, "thank_client", kind="thank_client", stage="won")
    reply = await r.task(ada, rep, "reply:m1", kind="reply", stage="referrals")
    kept = list(LASTING_TASK_KINDS)
    referrals = StageEntered(wid, ada["id"], "referrals", "referral request sent", kept)
    reopened = StageEntered(wid, ada["id"], "closing", "deal d1 reopened", kept)
    assert await _followed(r, referrals, reopened) == [0, 1]
    assert [t["id"] for t in await r.inbox(rep)] == [reply]
    closed = (await r.api.get(f"/tasks/{thanks}", headers=AUTH)).json()
    assert (closed["status"], closed["notes"]) == ("closed", "deal d1 reopened")


async def _enrolled_ada(r: InboxRig) -> tuple[str, dict[str, Any], str]:
    """A rep, and Ada with a journey run (its id) that outreach knows of."""
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    run_id = uuid.uuid4().hex
    async with r.sessions() as s:
        await add_enrollment(s, ada["id"], run=1, run_id=run_id)
        await s.commit()
    return rep, ada, run_id


@pytest.mark.parametrize(
    ("end", "how"), [(LOST, "lost"), (REPLACED, "a later run started")], ids=["lost", "replaced"]
)
async def test_a_task_of_a_run_ending_as_it_is_made_is_opened_before_the_end_or_not_at_all(
    inbox: InboxRig, end: dict[str, Any], how: str
) -> None:
    """The run's end (its outcome, or a later run started) is being recorded as its task is
    made: the task waits for the end's commit and sees it (not opened), rather than reading
    the run as it was and opening once the end is committed."""
    r = inbox
    rep, ada, run_id = await _enrolled_ada(r)
    made = as_run(journey_id(ada["id"]), run_id).run(r.task, ada, rep, "last_chance:d1")
    url = r.sb.settings.database_url("outreach")
    task = await while_its_end_is_recorded(url, ada["id"], run_id, end, made)
    closed = (await r.api.get(f"/tasks/{task}", headers=AUTH)).json()
    assert (closed["status"], closed["notes"]) == (
        "closed",
        f"not opened: its journey run (run 1) had ended ({how})",
    )
    assert await r.inbox(rep) == []


async def test_a_managers_escalation_notice_reaches_them_by_their_channel(inbox: InboxRig) -> None:
    r = inbox
    mona = await r.rep("Mona Manager")
    rita = await r.rep("Rita Rep", manager_id=mona)
    ada = await r.prospect("Ada")
    # as the journey makes it when a qualification waits past its reminder: for the manager
    notice = await r.task(
        ada, mona, "escalation", kind="escalation", stage="qualifying", due=in_hours(0)
    )
    assert rita  # the rep whose deal is stuck
    rows = await eventually(lambda: _all_sent(r, notice, 1), "the manager's notice sent")
    assert (rows[0]["channel"], rows[0]["reason"]) == ("email", "urgent")
    mails = r.sb.mailbox.list(to="mona.manager@example.com")
    assert len(mails) == 1 and "stuck" in mails[0].text


async def test_a_task_of_an_erased_prospects_journey_under_way_keeps_nothing_of_them(
    inbox: InboxRig,
) -> None:
    """The person was erased while an activity of their journey was under way (it read their
    card, then made its task): the task is not made, not even closed for the record: its title,
    body and card would put their name, email and phone back, in a rep's list and for the
    subscribers."""
    r = inbox
    rep, ada, run_id = await _enrolled_ada(r)
    order = {"erasure_id": "e1", "prospect_id": ada["id"], "email": ada["email"]}
    # a 503 is the order's documented answer while Temporal's stop times out on a loaded
    # machine (prospecting's outbox repeats it)
    for _ in range(5):
        erased = await r.api.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        if erased.status_code != 503:
            break
    assert erased.status_code == 200, erased.text

    made = await as_run(journey_id(ada["id"]), run_id).run(r.task, ada, rep, "prepare_meeting:m1")
    assert made == ""
    async with r.sessions() as s:
        tasks = (await s.scalars(select(models.RepTask.title))).all()
        events = (await s.scalars(select(models.WebhookEvent.type))).all()
    assert tasks == [] and TASK_CREATED not in events
    assert await r.inbox(rep) == []


async def test_what_the_inbox_marks_urgent_lists_by_status_and_shows_in_the_timeline(
    inbox: InboxRig,
) -> None:
    """A reply nobody's journey takes and a manager's escalation are urgent (the notifier tells
    the rep of them): the page marks them as it marks a fresh reply. A task the journey closed
    is found by `status=closed`. A rep's "not interested" stops the journey through the inbox;
    the timeline shows it once, as the task's completion."""
    r = inbox
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    late = await r.task(ada, rep, "late_reply:e1", kind="late_reply", due=in_hours(5))
    stuck = await r.task(ada, rep, "escalation:q1", kind="escalation", due=in_hours(5))
    calm = await r.task(ada, rep, "step-1:call_task", due=in_hours(5))
    page = (await r.api.get(f"/ui/reps/{rep}/inbox", headers=AUTH)).text

    def marked(task: str) -> bool:
        return f'<article class="task urgent" id="task-{task}"' in page

    assert (marked(late), marked(stuck), marked(calm)) == (True, True, False)

    moved = await r.task(ada, rep, "prepare_meeting:m1", kind="prepare_meeting")
    wid = journey_id(ada["id"])
    assert await r.close_rep_tasks(CloseRepTasks(f"{wid}:prepare_meeting:m1", "moved")) == 1
    listed = await r.api.get("/tasks", params={"status": "closed"}, headers=AUTH)
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()] == [moved]

    done = await r.api.post(
        f"/tasks/{calm}/complete", json={"outcome": "not_interested"}, headers=AUTH
    )
    assert done.status_code == 200, done.text
    answer = await r.api.get(f"/internal/prospects/{ada['id']}/timeline", headers=SERVICE_AUTH)
    kinds = [e["kind"] for e in answer.json()]
    assert not [k for k in kinds if k.startswith("inbound.")], kinds
    completed = [e for e in answer.json() if e["kind"] == "task.completed"]
    assert [e["data"]["task_id"] for e in completed if "not_interested" in e["summary"]] == [calm]


async def test_a_task_that_turned_urgent_comes_first_whatever_fell_due_before_it(
    inbox: InboxRig,
) -> None:
    """The inbox ranked only the earliest-due tasks it shows: behind a backlog of calls due
    this week as long as the page, a reply after the journey ended (due in five days) was not
    shown at all."""
    r = inbox
    rep = await r.rep("Rita Rep")
    ada = await r.prospect("Ada")
    for step in range(3):
        await r.task(ada, rep, f"step-{step}:call_task", due=in_hours(24 * (step + 1)))
    late = await r.task(ada, rep, "late_reply:e1", kind="late_reply", due=in_hours(120))
    shown = await r.api.get(f"/reps/{rep}/inbox", params={"limit": 2}, headers=AUTH)
    assert shown.status_code == 200, shown.text
    assert [t["id"] for t in shown.json()] == [late, shown.json()[1]["id"]]


class SlowProspectCard:
    """Prospecting as outreach reaches it, forwarding everything; once armed, the next read of
    a prospect answers only after `meanwhile` ran (a read that took as long as a reassignment
    committed and reached outreach), with what prospecting said before it."""

    def __init__(self) -> None:
        self.armed_for: str | None = None
        self.meanwhile: Callable[[], Awaitable[None]] = _nothing
        self.upstream = ""

    def front(self, upstream: str) -> FastAPI:
        self.upstream = upstream
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def forward(path: str, request: Request) -> Response:
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
                answer = await client.request(
                    request.method,
                    f"/{path}",
                    params=request.query_params,
                    headers=headers,
                    content=await request.body(),
                )
            if request.method == "GET" and path == f"prospects/{self.armed_for}":
                self.armed_for = None
                await self.meanwhile()
            kind = answer.headers.get("content-type", "application/json")
            return Response(answer.content, answer.status_code, media_type=kind)

        return app


async def _nothing() -> None:
    return None


async def test_a_task_made_while_its_prospect_is_reassigned_follows_the_reassignment(
    ground: Ground,
) -> None:
    """The journey makes a task while the prospect is reassigned: the task's prospect card
    (their rep) was read before the reassignment committed, and the reassignment's move of the
    prospect's open tasks reached outreach before the task was there. The task stayed in the
    old rep's inbox for good. It is moved once it exists, if the prospect's rep is another."""
    slow = SlowProspectCard()
    async with inbox_rig(ground, prospecting_in_front=slow.front) as r:
        rita, ron = await r.rep("Rita Rep"), await r.rep("Ron Rep")
        ada = await r.prospect("Ada")
        url = f"/prospects/{ada['id']}"
        assert (await r.prospecting.patch(url, json={"rep_id": rita}, headers=AUTH)).is_success
        first = await r.task(ada, rita, "call-1")

        async def reassigned() -> None:
            assert (await r.prospecting.patch(url, json={"rep_id": ron}, headers=AUTH)).is_success
            # what prospecting's outbox then calls (it does not reach this outreach)
            move = f"/prospects/{ada['id']}/tasks/reassign"
            moved = await r.api.post(move, json={"rep_id": ron}, headers=AUTH)
            assert moved.json()["moved"] == [first], moved.text

        slow.armed_for, slow.meanwhile = ada["id"], reassigned
        second = await r.task(ada, rita, "call-2")
        assert slow.armed_for is None  # the slow read happened
        assert [t["id"] for t in await r.inbox(rita)] == []
        assert sorted(t["id"] for t in await r.inbox(ron)) == sorted([first, second])
        async with r.sessions() as session:
            task = await session.get(models.RepTask, second)
            assert task is not None and task.reassigned_from == rita
