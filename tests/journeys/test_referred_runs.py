"""Referred journeys are first-class (issue 10, point 11), through the whole stack on the real
Temporal dev server: a journey started by a referral intake has its enrollment row (run 1,
origin referral), so pausing a cadence or a rep, reassigning the prospect, the do-not-contact
list and stopping a cadence all reach it."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import update

from services.outreach.models import Enrollment
from shared.db import create_engine
from tests.support.eventually import eventually
from tests.support.runs import cadence, inbox_events, runs_of, wait_run, win
from tests.support.stack import StackDriver

LINK = re.compile(r"https?://\S+/r/[\w-]+")


async def referred_by_a_client(d: StackDriver, plan: dict[str, Any]) -> tuple[str, str]:
    """Lea won on `plan` refers Max through her referral page: Max's id and email, once his
    journey is at qualifying."""
    lea = await d.new_prospect("Lea")
    await win(d, lea, plan["id"])

    async def ask() -> list[dict[str, Any]]:
        return [m for m in await d.mails_to(lea["email"]) if "Who else" in m["subject"]]

    link = LINK.search((await eventually(ask, "the referral ask"))[0]["text"])
    assert link
    max_email = f"max-{uuid.uuid4().hex[:8]}@example.com"
    form = {"first_name_0": "Max", "email_0": max_email, "phone_0": "+14155550143"}
    assert (await d.http.post(link.group(0), data=form)).status_code == 200

    async def referred() -> str | None:
        rows = await d.ok(
            "GET", f"{d.u.referrals}/referrals", params={"referrer_prospect_id": lea["id"]}
        )
        return rows[0]["prospect_id"] if rows else None

    max_id = await eventually(referred, "the referred prospect")
    await d.wait_stage(max_id, "qualifying")
    return max_id, max_email


async def test_pause_stop_do_not_contact_and_reassignment_reach_a_referred_journey(
    stack: StackDriver,
) -> None:
    d = stack
    rep, _ = await d.setup()
    # the referred prospect must not time out while the test drives them
    plan = await cadence(
        d,
        referral_delay_seconds=1,
        referral_reminders=0,
        qualification_reminder_seconds=3600,
        qualification_timeout_seconds=7200,
    )
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
