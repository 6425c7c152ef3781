"""Meetings after scheduling, the decision deadline, the deal's history and the activities the
journey uses for its deal stages, on SQLite and PostgreSQL with a real Temporal dev server.

Reuses the recording journey of test_deals_api: each test asserts what the journey was told.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import text as sql
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.converter import default as default_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.deals.models import Meeting
from services.outreach.invites import calendar_text
from shared.contracts.journey import (
    ChannelOutcome,
    Contact,
    DealNote,
    DealRef,
    MeetingBriefRequest,
    ProspectRef,
    QualificationTimeout,
    TouchResult,
)
from shared.contracts.meetings import (
    CANCEL,
    REQUEST,
    InviteOutcome,
    InviteRequest,
    MeetingInvite,
    meeting_invite_ids,
)
from shared.contracts.names import Act, Sig
from shared.contracts.queues import TaskQueues
from shared.db import create_engine
from shared.migrations import upgrade
from shared.providers.email import address_domain
from tests.support.deals import (
    DealsEnv,
    error,
    fields,
    in_an_hour,
    signals,
)
from tests.support.eventually import eventually
from tests.support.settings import SERVICE_AUTH, make_settings
from workflows.meeting_invite import MeetingInviteWorkflow

REP = "rita@sales.example.com"


async def schedule(env: DealsEnv, deal_id: str, starts: datetime) -> dict[str, Any]:
    r = await env.http.post(
        f"/deals/{deal_id}/meetings", json={"starts_at": starts.isoformat(), "title": "Demo"}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def url(deal_id: str, meeting: dict[str, Any], action: str) -> str:
    return f"/deals/{deal_id}/meetings/{meeting['id']}/{action}"


async def test_reschedule_moves_the_meeting_bumps_its_revision_and_signals(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour())
    later = in_an_hour() + timedelta(days=2)
    r = await env.http.post(
        url(deal_id, meeting, "reschedule"), json={"starts_at": later.isoformat()}
    )
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["revision"], moved["status"]) == (1, "scheduled")
    assert datetime.fromisoformat(moved["starts_at"]) == later
    got = await signals(journey, 3)
    assert got[2]["name"] == Sig.MEETING_RESCHEDULED
    assert got[2]["payload"]["revision"] == 1
    assert got[2]["payload"]["starts_at"] == later.astimezone(UTC).isoformat()

    # bad input: 422 naming the field, nothing written or signalled
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = await env.http.post(url(deal_id, meeting, "reschedule"), json={"starts_at": past})
    assert (r.status_code, fields(r)) == (422, {"starts_at"})
    r = await env.http.post(
        f"/deals/{deal_id}/meetings/nope/reschedule", json={"starts_at": later.isoformat()}
    )
    assert (r.status_code, error(r)["code"]) == (404, "meeting_not_found")
    # a meeting of another deal is not found under this one
    other_id, _ = await env.presenting_deal()
    r = await env.http.post(url(other_id, meeting, "cancel"), json={})
    assert (r.status_code, error(r)["code"]) == (404, "meeting_not_found")
    await asyncio.sleep(0.2)
    assert len(await signals(journey, 3)) == 3

    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert any("moved from" in h["cause"] for h in detail["history"])


async def test_a_meeting_may_not_overlap_another_of_the_reps(env: DealsEnv) -> None:
    """The unique index refused only an equal start: a rep booked 10:00-11:00 got a second
    meeting at 10:30 through the API (the booking page already refused any overlap). Each
    meeting counts for its own minutes; one ending as another starts is fine; a moved meeting
    may overlap its own old time; a refusal names the meeting in the way and writes nothing."""
    first_deal, journey = await env.presenting_deal()
    other_deal, _ = await env.presenting_deal()  # rep-1's as well
    at = in_an_hour() + timedelta(days=1)
    hour = await env.http.post(
        f"/deals/{first_deal}/meetings",
        json={"starts_at": at.isoformat(), "title": "Demo", "duration_minutes": 60},
    )
    assert hour.status_code == 201, hour.text
    a = hour.json()
    r = await env.http.post(
        f"/deals/{other_deal}/meetings",
        json={"starts_at": (at + timedelta(minutes=30)).isoformat(), "title": "Demo"},
    )
    assert (r.status_code, error(r)["code"]) == (409, "slot_taken"), r.text
    assert a["id"] in error(r)["message"]
    assert error(r)["details"][0]["meeting_id"] == a["id"]
    # a longer one starting before it reaches into it
    r = await env.http.post(
        f"/deals/{other_deal}/meetings",
        json={
            "starts_at": (at - timedelta(minutes=45)).isoformat(),
            "title": "Demo",
            "duration_minutes": 60,
        },
    )
    assert (r.status_code, error(r)["details"][0]["meeting_id"]) == (409, a["id"]), r.text
    # back to back: both ends touch, neither overlaps
    b = await schedule(env, other_deal, at + timedelta(minutes=60))
    before = await schedule(env, other_deal, at - timedelta(minutes=30))
    assert len((await env.http.get(f"/deals/{other_deal}")).json()["meetings"]) == 2

    # moved onto the meeting before it or the one after it: refused, nothing written; once
    # the one after is cancelled, the move overlaps only its own old time: moved
    earlier = at - timedelta(minutes=15)
    r = await env.http.post(
        url(first_deal, a, "reschedule"), json={"starts_at": earlier.isoformat()}
    )
    assert (r.status_code, error(r)["details"][0]["meeting_id"]) == (409, before["id"]), r.text
    later = at + timedelta(minutes=15)
    r = await env.http.post(url(first_deal, a, "reschedule"), json={"starts_at": later.isoformat()})
    assert (r.status_code, error(r)["details"][0]["meeting_id"]) == (409, b["id"]), r.text
    cancel = await env.http.post(url(other_deal, b, "cancel"), json={})
    assert cancel.status_code == 200, cancel.text
    r = await env.http.post(url(first_deal, a, "reschedule"), json={"starts_at": later.isoformat()})
    assert (r.status_code, r.json()["revision"]) == (200, 1), r.text
    (moved,) = (await env.http.get(f"/deals/{first_deal}")).json()["meetings"]
    assert datetime.fromisoformat(moved["starts_at"]) == later
    names = [s["name"] for s in await signals(journey, 3)]
    assert names.count(Sig.MEETING_RESCHEDULED) == 1


@pytest.mark.parametrize("database_urls", ["postgres"], indirect=True)
async def test_overlapping_meetings_requested_at_once_one_wins(env: DealsEnv) -> None:
    """Four API calls at once for the same rep (one without booking hours: the calendar's lock
    holds all the same), each overlapping the others at a different start: one is scheduled,
    the others get 409 slot_taken naming it."""
    deals = [(await env.presenting_deal())[0] for _ in range(4)]
    at = in_an_hour() + timedelta(days=1)
    raced = await asyncio.gather(
        *(
            env.http.post(
                f"/deals/{deal_id}/meetings",
                json={
                    "starts_at": (at + timedelta(minutes=10 * n)).isoformat(),
                    "title": "Demo",
                    "duration_minutes": 60,
                },
            )
            for n, deal_id in enumerate(deals)
        )
    )
    won = [r for r in raced if r.status_code == 201]
    assert len(won) == 1, [(r.status_code, r.text) for r in raced]
    lost = [r for r in raced if r.status_code != 201]
    assert {(r.status_code, error(r)["code"]) for r in lost} == {(409, "slot_taken")}
    assert {error(r)["details"][0]["meeting_id"] for r in lost} == {won[0].json()["id"]}


async def test_cancel_then_the_meeting_is_final(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour())
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "they asked"})
    assert (r.status_code, r.json()["status"], r.json()["cancel_reason"]) == (
        200,
        "cancelled",
        "they asked",
    )
    # a retry answers the same and signals again (the first signal may have failed)
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "they asked"})
    assert r.status_code == 200
    names = [s["name"] for s in await signals(journey, 4)]
    assert names[2:] == [Sig.MEETING_CANCELLED, Sig.MEETING_CANCELLED]
    # the invitation and its cancellation were started once each (the retry found it started)
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    for suffix, method, sequence in (("-s0", "REQUEST", 0), ("-cancel", "CANCEL", 1)):
        started = env.client.get_workflow_handle(prefix + suffix)
        assert (await started.describe()).workflow_type == "MeetingInvite"
        history = await started.fetch_history()
        invite = history.events[0].workflow_execution_started_event_attributes.input
        assert f'"method":"{method}"' in invite.payloads[0].data.decode()
        assert f'"sequence":{sequence}' in invite.payloads[0].data.decode()
    for action, body in [("reschedule", {"starts_at": in_an_hour().isoformat()}), ("held", None)]:
        r = await env.http.post(url(deal_id, meeting, action), json=body)
        assert (r.status_code, error(r)["code"]) == (409, "invalid_meeting_state"), action
        assert "cancelled" in error(r)["message"]

    # what became of the invitations (MeetingInvite's last step): the prospect's cancellation
    # did not go (they opted out meanwhile), the rep got their own; the meeting and the history
    # say so, and the booking's outcome arriving late does not hide it
    cancelled = InviteOutcome(
        meeting["id"], deal_id, 1, "CANCEL", "suppressed", "opted out: STOP", "sent"
    )
    await env.acts.record_invite(cancelled)
    await env.acts.record_invite(InviteOutcome(meeting["id"], deal_id, 0, "REQUEST", "sent"))
    await env.acts.record_invite(cancelled)  # a retried activity: one history line
    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    (shown,) = detail["meetings"]
    assert (shown["invite_status"], shown["invite_detail"]) == ("not_sent", "opted out: STOP")
    lines = [h["cause"] for h in detail["history"] if "not sent to the prospect" in h["cause"]]
    assert lines == [
        f"meeting {meeting['id']}: cancellation not sent to the prospect (opted out: STOP); "
        "the rep's own cancellation: sent"
    ]


async def test_an_invitations_uid_outlives_a_change_of_the_from_address(env: DealsEnv) -> None:
    """Invited, then the operator changes CLOSEFLOW_EMAIL_FROM, then moved and cancelled: all
    three invitations, rendered by outreach with the From of their own day, carry one UID (else
    the prospect's calendar adds the move as a second event and ignores the cancellation)."""
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour())
    before = env.app.state.settings
    env.app.state.settings = before.model_copy(update={"email_from": "Sales <s@new.example>"})
    later = {"starts_at": (in_an_hour() + timedelta(days=1)).isoformat()}
    assert (await env.http.post(url(deal_id, meeting, "reschedule"), json=later)).is_success
    assert (await env.http.post(url(deal_id, meeting, "cancel"), json={})).is_success
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    old_domain = address_domain(before.email_from)
    uids = []
    for suffix, domain in (("-s0", old_domain), ("-s1", "new.example"), ("-cancel", "new.example")):
        history = await env.client.get_workflow_handle(prefix + suffix).fetch_history()
        (payload,) = history.events[0].workflow_execution_started_event_attributes.input.payloads
        invite = default_converter().payload_converter.from_payload(payload, MeetingInvite)
        contact = Contact(invite.prospect_id, "Ada", email="ada@example.com")
        text = calendar_text(InviteRequest(invite, contact), domain, "s@" + domain)
        uids.append(str(Calendar.from_ical(text).walk("VEVENT")[0]["UID"]))
    assert uids == [f"{meeting['id']}@{old_domain}"] * 3


@pytest.mark.empty_databases
async def test_the_migration_keeps_the_uid_meetings_were_invited_with(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """A meeting invited before UIDs were kept gets the one it was invited with (the From
    domain of the upgrade), so its next update still finds its event."""
    settings = make_settings(tmp_path, {"deals": database_urls["deals"]})
    settings = settings.model_copy(update={"email_from": "Sales <s@old.example>"})
    await asyncio.to_thread(upgrade, settings, "deals", "0007")
    engine = create_engine(settings.database_url("deals"))
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            sql(
                "INSERT INTO deals (id, prospect_id, journey_id, source, stage, "
                "qualification_reasons, created_at, updated_at) "
                "VALUES ('d1', 'p1', 'journey-p1', 'cold', 'presenting', '[]', :t, :t)"
            ),
            {"t": now},
        )
        await conn.execute(
            sql(
                "INSERT INTO meetings (id, deal_id, starts_at, title, duration_minutes, status, "
                "revision, created_at) VALUES ('m1', 'd1', :t, 'Demo', 30, 'scheduled', 0, :t)"
            ),
            {"t": now},
        )
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "deals")
    engine = create_engine(settings.database_url("deals"))
    async with engine.connect() as conn:
        uid = await conn.scalar(sql("SELECT invite_uid FROM meetings WHERE id = 'm1'"))
    await engine.dispose()
    assert uid == "m1@old.example"


@activity.defn(name=Act.GET_CONTACT)
async def contact_with_rep(ref: ProspectRef) -> Contact:
    """prospecting's answer, standing in: the prospect and their rep."""
    return Contact(ref.prospect_id, "Ada", email="ada@example.com", rep_id="rep-1", rep_email=REP)


@activity.defn(name=Act.SEND_MEETING_INVITE)
async def invite_suppressed(req: InviteRequest) -> TouchResult:
    """outreach's answer, standing in: the prospect opted out, the rep got their own."""
    return TouchResult(
        [ChannelOutcome("email", "suppressed", "opted out: STOP"), ChannelOutcome("email", "sent")]
    )


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_the_invitation_workflow_records_a_prospect_it_could_not_invite(
    env: DealsEnv,
) -> None:
    """MeetingInvite (the real workflow) ends by recording what became of the invitation on the
    meeting through deals' real record_invite activity."""
    deal_id, _ = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour())
    assert meeting["invite_status"] is None  # not known yet
    queues = TaskQueues.with_prefix(f"invite-{uuid.uuid4().hex[:8]}-")
    deals_row = (await env.http.get(f"/deals/{deal_id}")).json()
    invite = MeetingInvite(
        deals_row["prospect_id"],
        meeting["id"],
        deal_id,
        "Demo",
        meeting["starts_at"],
        30,
        0,
        REQUEST,
        stamp=meeting["created_at"],
        queues=queues,
    )
    runner = UnsandboxedWorkflowRunner()
    async with (
        Worker(env.client, task_queue=queues.journeys, workflows=[MeetingInviteWorkflow],
               workflow_runner=runner),
        Worker(env.client, task_queue=queues.prospecting, activities=[contact_with_rep]),
        Worker(env.client, task_queue=queues.outreach, activities=[invite_suppressed]),
        Worker(env.client, task_queue=queues.deals, activities=[env.acts.record_invite]),
    ):  # fmt: skip
        done = await env.client.execute_workflow(
            MeetingInviteWorkflow.run, invite, id=f"mi-{uuid.uuid4().hex}",
            task_queue=queues.journeys,
        )  # fmt: skip
    assert done == "email: suppressed; email: sent"
    (shown,) = (await env.http.get(f"/deals/{deal_id}")).json()["meetings"]
    assert (shown["invite_status"], shown["invite_detail"]) == ("not_sent", "opted out: STOP")


async def test_held_and_no_show_only_once_started_and_not_both(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    future = await schedule(env, deal_id, in_an_hour())
    r = await env.http.post(url(deal_id, future, "held"))
    assert (r.status_code, error(r)["code"]) == (409, "meeting_not_started")

    soon = await schedule(env, deal_id, datetime.now(UTC) + timedelta(seconds=1))
    await asyncio.sleep(1.2)
    r = await env.http.post(url(deal_id, soon, "held"))
    assert (r.status_code, r.json()["status"]) == (200, "held")
    # cancelling a held meeting is a conflict, and so is calling it a no-show
    r = await env.http.post(url(deal_id, soon, "cancel"), json={})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_meeting_state")
    assert "held" in error(r)["message"]
    r = await env.http.post(url(deal_id, soon, "no-show"))
    assert r.status_code == 409

    missed = await schedule(env, deal_id, datetime.now(UTC) + timedelta(seconds=1))
    await asyncio.sleep(1.2)
    r = await env.http.post(url(deal_id, missed, "no-show"))
    assert (r.status_code, r.json()["status"]) == (200, "no_show")
    got = await signals(journey, 6)
    assert (got[3]["name"], got[5]["name"]) == (Sig.MEETING_HELD, Sig.MEETING_NO_SHOW)
    assert got[5]["payload"]["meeting_id"] == missed["id"]

    # a closed deal's meetings are not moved or marked any more (cancelled they may be: below)
    await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "no"})
    r = await env.http.post(url(deal_id, future, "no-show"))
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")


async def test_decision_deadline_is_stored_signalled_moved_and_cleared(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    deadline = datetime(2031, 3, 1, 17, 0, tzinfo=UTC)
    r = await env.http.patch(
        f"/deals/{deal_id}", json={"decision_deadline": "2031-03-01T18:00:00+01:00"}
    )
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["decision_deadline"]) == deadline
    r = await env.http.patch(f"/deals/{deal_id}", json={"decision_deadline": None})
    assert r.json()["decision_deadline"] is None
    r = await env.http.patch(f"/deals/{deal_id}", json={"decision_deadline": "2031-03-01T18:00:00"})
    assert (r.status_code, fields(r)) == (422, {"decision_deadline"})
    # other fields do not touch the deadline's timer
    await env.http.patch(f"/deals/{deal_id}", json={"segment": "smb"})
    await asyncio.sleep(0.2)
    got = await signals(journey, 3)
    assert [s["name"] for s in got[1:]] == [Sig.DECISION_DEADLINE, Sig.DECISION_DEADLINE]
    assert got[1]["payload"] == {"deal_id": deal_id, "deadline": deadline.isoformat()}
    assert got[2]["payload"] == {"deal_id": deal_id, "deadline": None}


async def test_stage_history_records_each_change_with_its_cause(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "signed"})
    history = (await env.http.get(f"/deals/{deal_id}")).json()["history"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        (None, "qualifying"),
        ("qualifying", "presenting"),
        ("presenting", "objections"),
        ("objections", "won"),
    ]
    assert history[2]["cause"] == "objection: price"
    assert history[3]["cause"] == "closed won: signed"


async def test_timeout_outcome_is_the_cadences_and_is_recorded(env: DealsEnv) -> None:
    run = ActivityEnvironment().run
    deal_id, _, _ = await env.open_deal()
    cause = "qualification timeout: no verdict after 4 s"
    await run(
        env.acts.note_deal, DealNote("k1", deal_id, "reminder sent", datetime.now(UTC).isoformat())
    )
    await run(
        env.acts.note_deal, DealNote("k1", deal_id, "reminder sent", datetime.now(UTC).isoformat())
    )
    status = await run(
        env.acts.time_out_qualification, QualificationTimeout(deal_id, "nurture", cause)
    )
    assert status.stage == "nurture"
    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (detail["stage"], detail["close_reason"]) == ("nurture", cause)
    assert [(h["to_stage"], h["cause"]) for h in detail["history"]][-2:] == [
        ("qualifying", "reminder sent"),  # once, though the activity ran twice
        ("nurture", cause),
    ]
    # a verdict recorded first stands
    qualified_id, _ = await env.presenting_deal()
    again = await run(
        env.acts.time_out_qualification, QualificationTimeout(qualified_id, "nurture", cause)
    )
    assert again.stage == "presenting"
    with pytest.raises(ApplicationError) as err:
        await run(env.acts.time_out_qualification, QualificationTimeout(deal_id, "lost", cause))
    assert err.value.non_retryable
    pipeline = (await env.http.get("/pipeline")).json()
    assert {s["stage"]: s["count"] for s in pipeline["stages"]}["nurture"] >= 1


async def test_brief_has_their_words_company_facts_and_the_segments_objections(
    env: DealsEnv,
) -> None:
    run = ActivityEnvironment().run
    # the segment's history: price heard twice, timing once; one price response resolved it
    for text in ("too expensive", "the price is high"):
        deal_id, _ = await env.presenting_deal()
        await env.http.patch(f"/deals/{deal_id}", json={"segment": "fintech"})
        logged = (await env.http.post(f"/deals/{deal_id}/objections", json={"text": text})).json()
    best = logged["answers"][-1]
    r = await env.http.post(
        f"/objections/{logged['objection']['id']}/outcome",
        json={"response": best, "resolved": True},
    )
    assert r.status_code == 200, r.text
    await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "ok"})
    deal_id, _ = await env.presenting_deal()
    await env.http.patch(f"/deals/{deal_id}", json={"segment": "fintech"})
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "not now, next quarter"})

    target, _ = await env.presenting_deal()
    await env.http.patch(f"/deals/{target}", json={"segment": "fintech"})
    contact = Contact(
        "p1", "Ada", company="Acme", title="CFO", industry="Fintech", company_size=120, country="DE"
    )
    brief = await run(env.acts.meeting_brief, MeetingBriefRequest(target, "m1", contact))
    body = brief.body
    # their problem in their own words comes first
    answers = body.split("Company facts:")[0]
    assert answers.index("reports take two days each month") < answers.index("yes")
    for fact in (
        "company: Acme",
        "title: CFO",
        "industry: Fintech",
        "company size: 120",
        "country: DE",
    ):
        assert fact in body
    assert "in segment fintech" in body
    objections = body.split("best-ranked response:")[1]
    assert objections.index("price (heard 2x)") < objections.index("timing (heard 1x)")
    # the response that resolved a price objection on a won deal ranks first
    assert f"price (heard 2x): {best}" in body
    assert brief.context["fact.company"] == "Acme"
    assert brief.context["objection.price"] == best

    with pytest.raises(ApplicationError) as err:
        await run(env.acts.meeting_brief, MeetingBriefRequest("nope", "m1", contact))
    assert err.value.non_retryable


async def test_open_objections_are_the_unresolved_ones(env: DealsEnv) -> None:
    run = ActivityEnvironment().run
    deal_id, _ = await env.presenting_deal()
    price = (
        await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    ).json()
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "not now, next quarter"})
    await env.http.post(
        f"/objections/{price['objection']['id']}/outcome",
        json={"response": price["answers"][0], "resolved": True},
    )
    found = await run(env.acts.open_objections, DealRef(deal_id))
    assert (found.decided, found.stage) == (False, "objections")
    assert [o.category for o in found.objections] == ["timing"]
    assert found.objections[0].best_response
    await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "timing"})
    assert (await run(env.acts.open_objections, DealRef(deal_id))).decided is True


_ = in_an_hour


async def test_a_closed_deals_meeting_can_be_cancelled_to_free_the_reps_slot(
    env: DealsEnv,
) -> None:
    """A deal lost with a meeting still ahead: the meeting kept the rep's slot (no booking and no
    other deal's meeting at that time, ever) and the prospect's calendar kept the event, while
    /cancel answered 409 already_closed. It is cancelled now: the slot is free, the prospect gets
    the cancellation, and the run that carries the deal hears it (a reopening would re-arm the
    reminders of a meeting it thought still ahead). Moving it or marking it stays refused."""
    deal_id, journey = await env.presenting_deal()
    at = in_an_hour() + timedelta(days=1)
    meeting = await schedule(env, deal_id, at)
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "no"})
    assert r.status_code == 200, r.text
    other_id, _ = await env.presenting_deal()
    r = await env.http.post(
        f"/deals/{other_id}/meetings", json={"starts_at": at.isoformat(), "title": "Demo"}
    )
    assert (r.status_code, error(r)["code"]) == (409, "slot_taken")
    r = await env.http.post(
        url(deal_id, meeting, "reschedule"),
        json={"starts_at": (at + timedelta(hours=2)).isoformat()},
    )
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")

    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "deal lost"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "deal lost"})
    assert r.status_code == 200, r.text  # a retry answers the same
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    cancelled = env.client.get_workflow_handle(prefix + "-cancel")
    assert (await cancelled.describe()).workflow_type == "MeetingInvite"
    names = [s["name"] for s in await signals(journey, 4)]
    assert Sig.MEETING_CANCELLED in names
    assert (await schedule(env, other_id, at))["status"] == "scheduled"


async def test_a_closed_deals_meeting_is_cancelled_when_its_run_has_ended(env: DealsEnv) -> None:
    """A lost deal's run ends: nobody to tell of the cancellation, which is no error."""
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour() + timedelta(days=1))
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "no"})
    assert r.status_code == 200, r.text
    await journey.terminate()  # the run's end at the loss
    env.journeys.remove(journey)  # ended: nothing left to terminate after the test
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "deal lost"})
    assert (r.status_code, r.json()["status"]) == (200, "cancelled"), r.text


async def move_prospect(env: DealsEnv, deal_id: str, rep_id: str, moved: int = 1) -> None:
    """The deal's prospect reassigned (prospecting's outbox tells deals)."""
    prospect_id = (await env.http.get(f"/deals/{deal_id}")).json()["prospect_id"]
    r = await env.anon.post(
        f"/internal/prospects/{prospect_id}/rep", json={"rep_id": rep_id}, headers=SERVICE_AUTH
    )
    assert (r.status_code, r.json()["moved"]) == (200, moved), r.text


async def test_a_reassigned_deals_meeting_moves_in_its_new_reps_calendar(env: DealsEnv) -> None:
    """A deal handed to a new rep (reassigned, or its rep deactivated) kept its meeting in the
    old rep's calendar: moving it was checked against the old rep's meetings, so the new rep,
    who runs it now, was double booked over a meeting of their own. It is checked against (and
    held in) the deal's rep's calendar now."""
    theirs, _ = await env.presenting_deal()
    await move_prospect(env, theirs, "rep-2")
    at = in_an_hour() + timedelta(days=1)
    own = await schedule(env, theirs, at)  # the new rep's own meeting
    deal_id, _ = await env.presenting_deal()
    meeting = await schedule(env, deal_id, at + timedelta(hours=3))
    await move_prospect(env, deal_id, "rep-2")

    r = await env.http.post(url(deal_id, meeting, "reschedule"), json={"starts_at": at.isoformat()})
    assert r.status_code == 409, r.text
    assert error(r)["details"][0]["meeting_id"] == own["id"]
    later = at + timedelta(hours=1)
    r = await env.http.post(
        url(deal_id, meeting, "reschedule"), json={"starts_at": later.isoformat()}
    )
    assert r.status_code == 200, r.text
    # it holds the new rep's slot: their next meeting cannot land on it
    r = await env.http.post(
        f"/deals/{theirs}/meetings", json={"starts_at": later.isoformat(), "title": "Demo"}
    )
    assert (r.status_code, error(r)["details"][0]["meeting_id"]) == (409, meeting["id"])


async def test_a_reassigned_deals_meeting_leaves_the_old_reps_calendar(env: DealsEnv) -> None:
    """The prospect handed to a new rep, their deal's meeting went with the deal but kept holding
    the old rep's slot: the old rep's booking page never offered that time again, and their own
    meeting there got 409 slot_taken naming a meeting of a deal they can no longer see or
    cancel. The meeting's slot moves to the new rep with the deal."""
    deal_id, _ = await env.presenting_deal()
    at = in_an_hour() + timedelta(days=1)
    meeting = await schedule(env, deal_id, at)
    await move_prospect(env, deal_id, "rep-2")

    old_reps, _ = await env.presenting_deal()  # rep-1's
    r = await env.http.post(
        f"/deals/{old_reps}/meetings", json={"starts_at": at.isoformat(), "title": "Demo"}
    )
    assert r.status_code == 201, r.text
    # the new rep's calendar holds it: the move is refused there, and so is a meeting over it
    theirs, _ = await env.presenting_deal()
    await move_prospect(env, theirs, "rep-2")
    r = await env.http.post(
        f"/deals/{theirs}/meetings", json={"starts_at": at.isoformat(), "title": "Demo"}
    )
    assert (r.status_code, error(r)["details"][0]["meeting_id"]) == (409, meeting["id"])
    # a move again to the rep it has changes nothing
    await move_prospect(env, deal_id, "rep-2", moved=0)
    # a meeting at a start the new rep holds already (a clash the move makes): moved all the
    # same (the outbox retries a refusal for ever), the meeting keeping its old hold
    clash, _ = await env.presenting_deal()
    await schedule(env, clash, at + timedelta(hours=2))
    await schedule(env, theirs, at + timedelta(hours=2))
    await move_prospect(env, clash, "rep-2")


async def test_a_reassigned_deals_meeting_sends_its_update_and_the_former_reps_cancellation(
    env: DealsEnv,
) -> None:
    """The hand-over sent no invitation: the prospect's calendar kept the old rep as organizer,
    the old rep's kept the meeting and the new rep's never had it. Its update now goes at the
    next SEQUENCE (which the new rep organizes) and stops the older invitation still waiting,
    and the old rep gets a cancellation of their own, in a workflow type an earlier release's
    worker does not run. The meeting's revision, the time's, stays: a repeated booking request
    is still the same meeting. A repeated hand-over starts nothing more. (No worker runs the
    invitations here: each stays running.)"""
    deal_id, journey = await env.presenting_deal()
    at = in_an_hour() + timedelta(days=1)
    meeting = await schedule(env, deal_id, at)
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    await move_prospect(env, deal_id, "rep-2")

    statuses = {s: await _running(env, prefix + s) for s in ("-s0", "-s1", "-s1-handed-over")}
    assert statuses == {"-s0": False, "-s1": True, "-s1-handed-over": True}
    update, theirs = [
        await _invite_of(env, prefix + suffix) for suffix in ("-s1", "-s1-handed-over")
    ]
    assert (update.method, update.sequence, update.former_rep_id) == (REQUEST, 1, "")
    assert (theirs.method, theirs.sequence, theirs.former_rep_id) == (CANCEL, 1, "rep-1")
    described = await env.client.get_workflow_handle(prefix + "-s1-handed-over").describe()
    assert described.workflow_type == "HandedOverMeetingCancel"
    async with env.app.state.sessions() as session:
        row = await session.get(Meeting, meeting["id"])
        assert row is not None
        assert (row.revision, row.handovers, row.booked_rep_id, row.handed_over_from) == (
            0,
            1,
            "rep-2",
            None,
        )
    again = await env.http.post(
        f"/deals/{deal_id}/meetings", json={"starts_at": at.isoformat(), "title": "Demo"}
    )
    assert (again.status_code, again.json()["id"]) == (201, meeting["id"]), again.text

    await move_prospect(env, deal_id, "rep-2", moved=0)
    assert await _running(env, prefix + "-s2") is None
    # a later move of the meeting is the next sequence, organized by the new rep
    moved = in_an_hour() + timedelta(days=2)
    r = await env.http.post(
        url(deal_id, meeting, "reschedule"), json={"starts_at": moved.isoformat()}
    )
    assert r.status_code == 200, r.text
    assert (await _running(env, prefix + "-s1"), await _running(env, prefix + "-s2")) == (
        False,
        True,
    )


async def test_a_meeting_cancelled_before_its_hand_overs_invitations_started_tells_the_former_rep(
    env: DealsEnv,
) -> None:
    """A hand-over whose invitations did not start (Temporal away: prospecting's outbox retries
    it) leaves the meeting marked with the rep whose calendar holds it. Cancelled before the
    retry, it sent its cancellation to the prospect and the new rep, and the retry, which looks
    only at scheduled meetings, never told the former rep: it stayed in their calendar. The
    cancellation now takes it out of theirs too, and clears the mark."""
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour() + timedelta(days=1))
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    await handed_over_unstarted(env, meeting["id"])
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "no time"})
    assert r.status_code == 200, r.text
    theirs = await _invite_of(env, prefix + "-s1-handed-over")
    assert (theirs.method, theirs.former_rep_id) == (CANCEL, "rep-1")
    assert await _running(env, prefix + "-s1") is None  # no update of a cancelled meeting
    async with env.app.state.sessions() as session:
        row = await session.get(Meeting, meeting["id"])
        assert row is not None and row.handed_over_from is None


async def test_a_hand_over_retried_after_the_deal_closed_still_sends_its_invitations(
    env: DealsEnv,
) -> None:
    """A hand-over whose invitations did not start (Temporal away), then the deal was won with
    the meeting still ahead (a kickoff: the rep keeps it). Prospecting's retry looked only at
    open deals: the prospect's calendar kept the old organizer and the former rep's kept the
    meeting for good. A marked meeting owes its invitations whatever became of its deal."""
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour() + timedelta(days=1))
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"
    await handed_over_unstarted(env, meeting["id"])
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "ok"})
    assert r.status_code == 200, r.text
    await move_prospect(env, deal_id, "rep-2", moved=0)  # the retry: no open deal to move
    update, theirs = [
        await _invite_of(env, prefix + suffix) for suffix in ("-s1", "-s1-handed-over")
    ]
    assert (update.method, update.sequence) == (REQUEST, 1)
    assert (theirs.method, theirs.former_rep_id) == (CANCEL, "rep-1")
    async with env.app.state.sessions() as session:
        row = await session.get(Meeting, meeting["id"])
        assert row is not None and row.handed_over_from is None


async def handed_over_unstarted(env: DealsEnv, meeting_id: str) -> None:
    """The meeting as a hand-over from rep-1 to rep-2 whose invitations did not start (Temporal
    away) leaves it."""
    async with env.app.state.sessions() as session:
        row = await session.get(Meeting, meeting_id)
        assert row is not None
        row.booked_rep_id, row.handovers, row.handed_over_from = "rep-2", 1, "rep-1"
        await session.commit()


async def _invite_of(env: DealsEnv, workflow_id: str) -> MeetingInvite:
    """The invitation a MeetingInvite workflow was started with."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (invite,) = await env.client.data_converter.decode(started.input.payloads, [MeetingInvite])
    assert isinstance(invite, MeetingInvite)
    return invite


async def test_a_newer_invitation_stops_the_older_ones_still_waiting(env: DealsEnv) -> None:
    """An invitation that must wait (its sender's daily cap) waited on after the meeting was
    moved or cancelled: the next morning the prospect got the old time's invitation beside the
    update, or an invitation after the cancellation, which puts the cancelled meeting back in a
    calendar that reads it last. Each newer invitation of the meeting stops the older ones that
    are still running. (No worker runs MeetingInvite here: every invitation stays running.)"""
    deal_id, journey = await env.presenting_deal()
    meeting = await schedule(env, deal_id, in_an_hour() + timedelta(days=1))
    prefix = f"meeting-invite-{journey.id.removeprefix('journey-')}:invite-{meeting['id']}"

    async def status(suffix: str) -> str:
        return (await env.client.get_workflow_handle(prefix + suffix).describe()).status.name

    assert await status("-s0") == "RUNNING"
    moved = in_an_hour() + timedelta(days=2)
    r = await env.http.post(
        url(deal_id, meeting, "reschedule"), json={"starts_at": moved.isoformat()}
    )
    assert r.status_code == 200, r.text
    assert (await status("-s0"), await status("-s1")) == ("TERMINATED", "RUNNING")
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={})
    assert r.status_code == 200, r.text
    assert (await status("-s1"), await status("-cancel")) == ("TERMINATED", "RUNNING")
    r = await env.http.post(url(deal_id, meeting, "cancel"), json={})  # a retry: as before
    assert (r.status_code, await status("-cancel")) == (200, "RUNNING")


async def test_an_erasure_ends_and_deletes_the_prospects_meeting_invitations(
    env: DealsEnv,
) -> None:
    """A meeting's invitations still running (waiting for a sender's cap, or for a worker) hold
    the prospect's contact and would keep failing on their shredded key: the erasure stops and
    deletes them, every revision's and the cancellation's, as outreach does the journey."""
    deal_id, journey = await env.presenting_deal()
    prospect_id = journey.id.removeprefix("journey-")
    meeting = await schedule(env, deal_id, in_an_hour())
    moved = await env.http.post(
        url(deal_id, meeting, "reschedule"), json={"starts_at": in_an_hour().isoformat()}
    )
    assert moved.status_code == 200, moved.text
    cancelled = await env.http.post(url(deal_id, meeting, "cancel"), json={"reason": "no time"})
    assert cancelled.status_code == 200, cancelled.text
    ids = meeting_invite_ids(prospect_id, meeting["id"], sequence=1)
    # the older ones ended by the newer (their histories stay), the cancellation's waits; no
    # hand-over, so no former rep's cancellation
    assert [await _running(env, i) for i in ids] == [False, False, None, True]

    order = {"erasure_id": "e1", "prospect_id": prospect_id}
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    # the running one ended at once; each deleted by the server's own task, a little later
    # (a deletion is asynchronous: under load the ended workflow was still there when looked at)
    assert await _running(env, ids[-1]) is not True

    async def all_gone() -> bool:
        return [await _running(env, i) for i in ids] == [None] * len(ids)

    await eventually(all_gone, "every invitation of the erased prospect deleted", timeout=60)


async def _running(env: DealsEnv, workflow_id: str) -> bool | None:
    """Whether the workflow runs; None when Temporal has no such workflow."""
    try:
        described = await env.client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.status == WorkflowExecutionStatus.RUNNING
