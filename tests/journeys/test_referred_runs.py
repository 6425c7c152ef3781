"""Referred journeys are first-class (issue 10, point 11), through the whole stack on the real
Temporal dev server: a journey started by a referral intake is a run outreach started, with its
enrollment row (origin referral), so pausing a cadence or a rep, reassigning the prospect, the
do-not-contact list and stopping a cadence all reach it, and its status is listed right. A known
prospect referred comes back as their next run when their journey ended, and keeps a journey
that runs; the start is idempotent and a failed one is started by the retry."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import update
from temporalio.client import Client

from services.outreach.cadences.referred_runs import start_referred_run
from services.outreach.models import Enrollment
from shared.contracts.journey import (
    Contact,
    ReferredRun,
    Referrer,
    StartReferredRun,
    referral_intake_id,
)
from shared.db import create_engine, session_factory
from shared.errors import AppError
from tests.support.eventually import eventually
from tests.support.gate import temporal_out_of_reach
from tests.support.runs import (
    cadence,
    decide,
    handed_over,
    inbox_events,
    patient_cadence,
    rep_left_after_the_journey,
    rita_s,
    runs_of,
    wait_run,
    win,
)
from tests.support.stack import StackDriver

LINK = re.compile(r"https?://\S+/r/[\w-]+")


async def referral_link(d: StackDriver, client: dict[str, Any]) -> str:
    """The personal referral page's link in the ask the won `client` received."""

    async def ask() -> list[dict[str, Any]]:
        return [m for m in await d.mails_to(client["email"]) if "Who else" in m["subject"]]

    link = LINK.search((await eventually(ask, "the referral ask"))[0]["text"])
    assert link
    return link.group(0)


async def a_client_and_their_link(
    d: StackDriver, plan: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """Lea, won on `plan`, and the link of her referral page."""
    lea = await d.new_prospect("Lea")
    await win(d, lea, plan["id"])
    return lea, await referral_link(d, lea)


async def referred_by_a_client(
    d: StackDriver,
    plan: dict[str, Any],
    email: str = "",
    phone: str = "+14155550143",
    at_qualifying: bool = True,
) -> tuple[str, str]:
    """Lea won on `plan` refers Max (by `email`, else a new address) through her referral
    page: Max's id and email, once the referral names him (and his journey is at qualifying)."""
    lea, link = await a_client_and_their_link(d, plan)
    max_email = email or f"max-{uuid.uuid4().hex[:8]}@example.com"
    form = {"first_name_0": "Max", "email_0": max_email, "phone_0": phone}
    assert (await d.http.post(link, data=form)).status_code == 200

    async def referred() -> str | None:
        rows = await d.ok(
            "GET", f"{d.u.referrals}/referrals", params={"referrer_prospect_id": lea["id"]}
        )
        return rows[0]["prospect_id"] if rows else None

    max_id = await eventually(referred, "the referred prospect")
    if at_qualifying:
        await d.wait_stage(max_id, "qualifying")
    return max_id, max_email


async def test_pause_stop_do_not_contact_and_reassignment_reach_a_referred_journey(
    stack: StackDriver,
) -> None:
    d = stack
    rep, _ = await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    max_id, max_email = await referred_by_a_client(d, plan)

    async def enrollment() -> dict[str, Any] | None:
        r = await d.http.get(f"{d.u.outreach}/prospects/{max_id}/enrollment")
        return r.json() if r.status_code == 200 else None

    row = await eventually(enrollment, "the referred journey's enrollment")
    assert (row["run"], row["origin"], row["start_stage"]) == (1, "referral", "qualifying")
    assert (row["cadence_id"], row["rep_id"]) == (plan["id"], rep["id"])

    # a cadence's pause and resume, and a rep's, find the referred journey
    paused = await d.ok("POST", f"{d.u.outreach}/cadences/{plan['id']}/pause", json={})
    assert max_id in paused["signalled"]
    await d.ok("POST", f"{d.u.outreach}/cadences/{plan['id']}/resume")
    by_rep = await d.ok("POST", f"{d.u.outreach}/reps/{rep['id']}/journeys/pause", json={})
    assert max_id in by_rep["signalled"]
    await d.ok("POST", f"{d.u.outreach}/reps/{rep['id']}/journeys/resume")

    # reassignment moves the enrollment: the new rep's pause reaches the journey
    nia = await d.ok(
        "POST",
        f"{d.u.prospecting}/reps",
        json={"name": "Nia New", "email": f"nia-{uuid.uuid4().hex[:6]}@example.org"},
    )
    await d.ok("PATCH", f"{d.u.prospecting}/prospects/{max_id}", json={"rep_id": nia["id"]})

    async def moved() -> dict[str, Any] | None:
        current = await enrollment()
        return current if current and current["rep_id"] == nia["id"] else None

    await eventually(moved, "the enrollment to follow the reassignment")
    by_new_rep = await d.ok("POST", f"{d.u.outreach}/reps/{nia['id']}/journeys/pause", json={})
    assert max_id in by_new_rep["signalled"]
    await d.ok("POST", f"{d.u.outreach}/reps/{nia['id']}/journeys/resume")

    # the do-not-contact list finds it by the address its enrollment recorded
    await d.ok(
        "POST", f"{d.u.outreach}/do-not-contact", json={"value": max_email, "reason": "asked"}
    )

    async def stop_delivered() -> dict[str, Any] | None:
        events = await inbox_events(d, max_id)
        return next(
            (e for e in events if e["kind"] == "do_not_contact" and e["outcome"] == "delivered"),
            None,
        )

    event = await eventually(stop_delivered, "the do-not-contact stop delivered to the journey")
    assert event["signal"] == "stop_cadence"

    # and stopping the cadence reaches it too
    stopped = await d.ok(
        "POST", f"{d.u.outreach}/cadences/{plan['id']}/stop", json={"reason": "retired"}
    )
    assert max_id in stopped["signalled"]


async def test_a_referred_run_that_ended_is_listed_as_ended(stack: StackDriver) -> None:
    """A referred journey starts before outreach has its row (registered at its warm
    introduction), so the row must take the run's Temporal id from that touch: without it the
    run, once ended, was listed as one that never started."""
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    max_id, _ = await referred_by_a_client(d, plan)
    # nobody qualifies Max: his journey times out (the cadence's 4 s)
    runs = await wait_run(d, max_id, 1, status="ended", outcome="disqualified")
    assert (runs[0]["origin"], runs[0]["run_id"] is not None) == ("referral", True)

    # a row an earlier release registered has no Temporal id: still listed as ended, and not
    # as the later run once one runs (the journey's latest run)
    await forget_run_id(d, runs[0]["id"])
    assert (await runs_of(d, max_id))[0]["status"] == "ended"
    await d.enroll(max_id, plan["id"])
    runs = await wait_run(d, max_id, 2, status="running")
    assert (runs[0]["status"], runs[0]["outcome"]) == ("ended", "disqualified")


async def forget_run_id(d: StackDriver, row_id: str) -> None:
    """The enrollment row as a release before the referred rows' run ids left it."""
    engine = create_engine(d.u.settings.database_url("outreach"))
    try:
        async with engine.begin() as conn:
            e = Enrollment
            await conn.execute(update(e).where(e.id == row_id).values(run_id=None))
    finally:
        await engine.dispose()


async def test_a_known_prospect_referred_after_their_journey_ended_comes_back_in_a_new_run(
    stack: StackDriver,
) -> None:
    """Max's own journey ended (his deal lost); then a client refers him. He is the same
    prospect (deduplicated), and the referral brings him back as the next run of his journey,
    at qualifying, introduced: its own row, stage changes and deal, none taken for run 1's."""
    d = stack
    await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    known = await d.new_prospect("Max")
    lost = await decide(d, known, plan["id"], "lost")
    await wait_run(d, known["id"], 1, outcome="lost", status="ended")

    max_id, _ = await referred_by_a_client(d, plan, known["email"], known["phone"])
    assert max_id == known["id"]
    runs = await wait_run(d, max_id, 2, status="running", origin="referral")
    assert runs[1]["start_stage"] == "qualifying"

    async def back_at_qualifying() -> list[dict[str, Any]] | None:
        stages = await d.ok("GET", f"{d.u.prospecting}/prospects/{max_id}/stages")
        return stages if stages[-1]["run"] == 2 else None

    stages = await eventually(back_at_qualifying, "run 2's first stage change")
    assert [(s["to_stage"], s["run"]) for s in stages[-2:]] == [("lost", 1), ("qualifying", 2)]
    assert stages[-1]["cause"].startswith("referred by client ")
    prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{max_id}")
    assert prospect["stage"] == "qualifying"

    async def new_deal() -> dict[str, Any] | None:
        deals = await d.ok("GET", f"{d.u.deals}/deals", params={"prospect_id": max_id})
        items = deals["items"] if isinstance(deals, dict) else deals
        return next((i for i in items if i["id"] != lost["id"]), None)

    # the intake's start again (a retried activity) finds run 2: no run 3
    assert await start_again(d, max_id, plan["id"]) == ReferredRun(2, referred=True)
    assert len(await runs_of(d, max_id)) == 2
    deal = await eventually(new_deal, "run 2's own deal")
    assert deal["stage"] == "qualifying"
    # the run came by a referral: the referral analytics (deals per source) count it so, not as
    # the cold prospect Max was at first
    assert deal["source"] == "referral"
    assert (await d.ok("GET", f"{d.u.deals}/deals/{lost['id']}"))["stage"] == "lost"

    async def introduced() -> list[dict[str, Any]] | None:
        mails = await d.mails_to(known["email"])
        return [m for m in mails if "Lea" in m["text"]] or None

    await eventually(introduced, "the warm introduction naming Lea")


async def test_a_known_prospect_referred_after_their_rep_left_comes_back_to_an_active_rep(
    stack: StackDriver,
) -> None:
    """Max's journey ended under Rita, deactivated since (a journey that is over is not handed
    over). A client's referral brings him back as run 2, to an active rep, as any come back
    does: the run, its deal and tasks are an active rep's, not those of a rep who left."""
    d = stack
    rita, _ = await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    known = await d.new_prospect("Max")
    await rita_s(d, known, rita)
    await decide(d, known, plan["id"], "lost")
    await wait_run(d, known["id"], 1, outcome="lost", status="ended")
    await rep_left_after_the_journey(d, rita["id"])

    max_id, _ = await referred_by_a_client(d, plan, known["email"], known["phone"])
    assert max_id == known["id"]
    runs = await wait_run(d, max_id, 2, status="running", origin="referral")
    now_with = await handed_over(d, max_id, rita["id"])
    assert runs[1]["rep_id"] == now_with


async def test_a_known_prospect_referred_while_their_journey_runs_keeps_it(
    stack: StackDriver,
) -> None:
    """Max is on his own cadence when a client refers him: he keeps his run (the referral is
    attributed, no run starts), and the intake's start again changes nothing."""
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    known = await d.new_prospect("Max")
    await d.enroll(known["id"], plan["id"])
    await wait_run(d, known["id"], 1, status="running")

    max_id, _ = await referred_by_a_client(
        d, plan, known["email"], known["phone"], at_qualifying=False
    )
    assert max_id == known["id"]

    await intake_finished(d, max_id)  # it started nothing
    assert await start_again(d, max_id, plan["id"]) == ReferredRun(1, referred=False)
    runs = await runs_of(d, max_id)
    assert [(r["run"], r["origin"], r["status"]) for r in runs] == [(1, "enrollment", "running")]
    assert "qualifying" not in await d.stages(max_id)


async def intake_finished(d: StackDriver, prospect_id: str) -> None:
    """The referral is attributed to the prospect and its intake workflow has finished."""

    async def attributed() -> dict[str, Any] | None:
        prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{prospect_id}")
        return prospect if prospect.get("referrer_prospect_id") else None

    prospect = await eventually(attributed, f"the referral attributed to {prospect_id}")
    intake = d.env.client.get_workflow_handle(referral_intake_id(prospect["referral_id"]))
    assert await intake.result() == prospect_id


async def test_a_known_prospect_on_the_do_not_contact_list_is_not_brought_back(
    stack: StackDriver,
) -> None:
    """Max's journey ended, then he asked not to be contacted (the do-not-contact list). A
    client's referral attributes him, and starts nothing: no run, no stage change, no message."""
    d = stack
    await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    known = await d.new_prospect("Max")
    await decide(d, known, plan["id"], "lost")
    await wait_run(d, known["id"], 1, outcome="lost", status="ended")
    dnc = {"value": known["email"], "reason": "asked by phone"}
    await d.ok("POST", f"{d.u.outreach}/do-not-contact", json=dnc)
    mails_before = len(await d.mails_to(known["email"]))

    max_id, _ = await referred_by_a_client(
        d, plan, known["email"], known["phone"], at_qualifying=False
    )
    await intake_finished(d, max_id)
    runs = await runs_of(d, max_id)
    assert [(r["run"], r["origin"], r["status"]) for r in runs] == [(1, "enrollment", "ended")]
    again = await start_again(d, max_id, plan["id"], email=known["email"])
    assert (again.run, again.referred) == (1, False)
    assert again.refused == "do_not_contact"  # the rule: the address stays out of the history
    assert (await d.stages(max_id))[-1] == "lost"
    assert len(await d.mails_to(known["email"])) == mails_before


async def start_again(
    d: StackDriver,
    prospect_id: str,
    cadence_id: str,
    client: Client | None = None,
    email: str | None = None,
) -> ReferredRun:
    """Outreach's start of a referred run, as a retry of the intake's activity calls it (on
    `client`, else the stack's Temporal)."""
    engine = create_engine(d.u.settings.database_url("outreach"))
    try:
        contact = Contact(prospect_id, "Max", email=email)
        request = StartReferredRun(contact, cadence_id, Referrer("p-lea", "Lea", "ref-1"))
        return await start_referred_run(
            session_factory(engine), client or d.env.client, d.u.settings, request
        )
    finally:
        await engine.dispose()


async def test_a_referred_run_whose_start_failed_is_started_by_the_retry(
    stack: StackDriver,
) -> None:
    """The intake's activity stored the run's row, then could not reach Temporal: the run is
    listed as not started, and the activity's retry starts that run (no second row)."""
    d = stack
    await d.setup()
    plan = await patient_cadence(d)
    noa = await d.new_prospect("Noa")
    # Temporal out of reach as the run starts
    away = await temporal_out_of_reach(d.env.client)
    with pytest.raises(AppError) as refused:
        await start_again(d, noa["id"], plan["id"], away)
    assert (refused.value.status, refused.value.code) == (503, "temporal_unreachable")
    runs = await runs_of(d, noa["id"])
    assert [(r["run"], r["origin"], r["status"]) for r in runs] == [(1, "referral", "not_started")]

    assert await start_again(d, noa["id"], plan["id"]) == ReferredRun(1, referred=True)
    runs = await wait_run(d, noa["id"], 1, status="running", origin="referral")
    assert len(runs) == 1 and runs[0]["run_id"] is not None
    await d.wait_stage(noa["id"], "qualifying")


async def test_a_client_who_names_themselves_on_their_referral_page_is_not_brought_back(
    stack: StackDriver,
) -> None:
    """Lea, a client whose journey is over, types her own address into her referral page (the
    form's first row looks like "your details"). She is deduplicated to herself and not
    attributed to herself; nor may she come back as her own referral: no run 2 at qualifying,
    no warm introduction telling her that she suggested we talk, no new deal."""
    d = stack
    await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    lea, link = await a_client_and_their_link(d, plan)
    await wait_run(d, lea["id"], 1, status="ended")
    mails_before = len(await d.mails_to(lea["email"]))
    form = {"first_name_0": "Lea", "email_0": lea["email"]}
    assert (await d.http.post(link, data=form)).status_code == 200

    async def intake() -> str | None:
        rows = await d.ok(
            "GET", f"{d.u.referrals}/referrals", params={"referrer_prospect_id": lea["id"]}
        )
        return rows[0]["id"] if rows and rows[0]["intake_started_at"] else None

    referral_id = await eventually(intake, "the self-referral's intake")
    handle = d.env.client.get_workflow_handle(referral_intake_id(referral_id))
    assert await handle.result() == lea["id"]
    runs = await runs_of(d, lea["id"])
    assert [(r["run"], r["origin"], r["status"]) for r in runs] == [(1, "enrollment", "ended")]
    assert (await d.stages(lea["id"]))[-1] != "qualifying"
    assert len(await d.mails_to(lea["email"])) == mails_before
    # the referral says it was refused, and is not one Lea made (it counts nowhere)
    (row,) = await d.ok(
        "GET", f"{d.u.referrals}/referrals", params={"referrer_prospect_id": lea["id"]}
    )
    assert (row["status"], row["prospect_id"]) == ("self_referral", None), row


async def test_a_client_referred_by_another_client_is_not_sold_to_again(
    stack: StackDriver,
) -> None:
    """Dave is a client already (his journey ended won) when Lea, another client, names him on
    her referral page. He is attributed to Lea, and that is all: no run 2 at qualifying with a
    new deal, no warm introduction telling a client that Lea suggested we talk."""
    d = stack
    await d.setup()
    plan = await patient_cadence(d, referral_delay_seconds=1, referral_reminders=0)
    dave = await d.new_prospect("Dave")
    await win(d, dave, plan["id"])
    await wait_run(d, dave["id"], 1, status="ended")
    mails_before = len(await d.mails_to(dave["email"]))

    dave_id, _ = await referred_by_a_client(
        d, plan, dave["email"], dave["phone"], at_qualifying=False
    )
    assert dave_id == dave["id"]
    await intake_finished(d, dave_id)
    runs = await runs_of(d, dave_id)
    assert [(r["run"], r["origin"], r["outcome"]) for r in runs] == [(1, "enrollment", "won")]
    assert "qualifying" not in (await d.stages(dave_id))[-1:]
    assert len(await d.mails_to(dave["email"])) == mails_before
    again = await start_again(d, dave_id, plan["id"], email=dave["email"])
    assert (again.run, again.referred, again.refused) == (1, False, "client")
