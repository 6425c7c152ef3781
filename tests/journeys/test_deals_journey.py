"""The deal stages of a journey on the whole stack (four services over HTTP, the real workers on
the Temporal dev server, SMTP, the Twilio sandbox), with durable timers of a few seconds, on
SQLite and PostgreSQL: the qualification timeout's escalation and outcome; meeting briefs,
reminders, reschedule, cancel and no-show; objection tasks with ranked responses; the decision
deadline's last-chance task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.eventually import eventually
from tests.support.scenarios import Driver, fast_cadence
from tests.support.stack import StackDriver

NEED = "Weekly reporting takes two days by hand"


async def tasks_of_kind(d: Driver, pid: str, kind: str) -> list[dict[str, Any]]:
    return [t for t in await d.tasks_of(pid) if t["kind"] == kind]


async def wait_task(d: Driver, pid: str, kind: str, count: int = 1) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        found = await tasks_of_kind(d, pid, kind)
        return found if len(found) >= count else None

    return await eventually(probe, f"{count} {kind} task(s) for {pid}", timeout=60)


async def prospect_of_rep(d: Driver, rep_id: str, first: str, **extra: Any) -> dict[str, Any]:
    """Reps are assigned round-robin: create prospects until one is the rep's."""
    for _ in range(10):
        prospect = await d.new_prospect(first, **extra)
        if prospect["rep"]["id"] == rep_id:
            return prospect
    raise AssertionError(f"no prospect was assigned to {rep_id}")


async def test_qualification_timeout_escalates_and_nurtures(stack: StackDriver) -> None:
    d = stack
    manager = await d.ok(
        "POST", f"{d.u.prospecting}/reps", json={"name": "Mia Manager", "email": "mia@x.org"}
    )
    rep = await d.ok(
        "POST",
        f"{d.u.prospecting}/reps",
        json={"name": "Rita Rep", "email": "rita@x.org", "manager_id": manager["id"]},
    )
    cadence = await d.ok(
        "POST",
        f"{d.u.outreach}/cadences",
        json=fast_cadence(qualification_timeout_outcome="nurture"),
    )
    bob = await prospect_of_rep(d, rep["id"], "Bob")
    await d.enroll(bob["id"], cadence["id"])
    await d.reply_by_sms(bob, "Yes, tell me more")
    path = await d.wait_stage(bob["id"], "nurture", timeout=60)
    assert path[-2:] == ["qualifying", "nurture"]
    stages = await d.ok("GET", f"{d.u.prospecting}/prospects/{bob['id']}/stages")
    cause = "qualification timeout: no verdict after 4 s"
    assert stages[-1]["cause"] == cause

    tasks = await d.tasks_of(bob["id"])
    by_kind = {t["kind"]: t for t in tasks}
    assert by_kind["qualification_reminder"]["rep_id"] == rep["id"]
    notice = by_kind["escalation"]
    assert notice["rep_id"] == manager["id"]  # the manager's inbox, not the rep's
    assert "Rita Rep" in notice["body"] and "Bob Tester" in notice["title"]

    deal = await d.deal_of(bob["id"])
    detail = await d.ok("GET", f"{d.u.deals}/deals/{deal['id']}")
    assert (detail["stage"], detail["close_reason"]) == ("nurture", cause)
    causes = [h["cause"] for h in detail["history"]]
    assert causes[-3].startswith("qualification reminder sent to the rep")
    assert causes[-2].startswith("escalated to manager Mia Manager")
    assert causes[-1] == cause


async def test_meetings_objections_and_the_decision_deadline(stack: StackDriver) -> None:
    d = stack
    _rep, cadence = await d.setup()
    # a cadence of this version: reminders 30 s and 10 s before a meeting (20 s apart: the
    # move below must come between the first two, also on a loaded machine)
    cadence = await d.ok(
        "POST",
        f"{d.u.outreach}/cadences",
        json=fast_cadence(meeting_reminders_seconds=[30, 10]),
    )
    ada = await d.new_prospect("Ada", industry="Fintech", company_size=120, country="DE")
    await d.enroll(ada["id"], cadence["id"])
    await d.reply_by_sms(ada, "Yes, tell me more")
    deal = await d.deal_of(ada["id"])
    deals = f"{d.u.deals}/deals/{deal['id']}"
    answers = {"budget": True, "authority": "decision_maker", "need": NEED, "timeline": 3}
    await d.ok("POST", f"{deals}/qualification", json={"answers": answers})
    await d.wait_stage(ada["id"], "presenting")
    await d.ok("PATCH", deals, json={"segment": "fintech"})

    # objections: the rep records that the playbook's last price answer resolved the first
    first = await d.ok("POST", f"{deals}/objections", json={"text": "It is too expensive"})
    playbook_order = first["answers"]
    assert len(playbook_order) >= 2
    best = playbook_order[-1]
    await d.ok(
        "POST",
        f"{d.u.deals}/objections/{first['objection']['id']}/outcome",
        json={"response": best, "resolved": True},
    )
    second = await d.ok("POST", f"{deals}/objections", json={"text": "The price is too high"})
    assert second["answers"][0] == best
    tasks = await wait_task(d, ada["id"], "objection", 2)
    task = next(t for t in tasks if second["objection"]["text"] in t["body"])
    offered = task["body"].split("Prepared answers:\n")[1].splitlines()
    assert offered[0] == f"- {best}"  # the ranked list, best first, not the playbook's order

    # two meetings; one is cancelled at once (before the other is booked over its time: a rep's
    # meetings may not overlap), the other moved after one reminder
    now = datetime.now(UTC)
    pricing = await d.ok(
        "POST",
        f"{deals}/meetings",
        json={"starts_at": (now + timedelta(seconds=40)).isoformat(), "title": "Pricing"},
    )
    await d.ok("POST", f"{deals}/meetings/{pricing['id']}/cancel", json={"reason": "merged"})
    demo = await d.ok(
        "POST",
        f"{deals}/meetings",
        json={"starts_at": (now + timedelta(seconds=35)).isoformat(), "title": "Demo"},
    )
    prepare = (await wait_task(d, ada["id"], "prepare_meeting"))[0]
    for expected in (NEED, "company: Ada Corp", "industry: Fintech", "company size: 120"):
        assert expected in prepare["body"], expected
    assert f"price (heard 2x): {best}" in prepare["body"]
    assert prepare["context"]["fact.industry"] == "Fintech"

    def reminders(title: str) -> Any:
        async def probe() -> list[dict[str, Any]]:
            mails = await d.mails_to(ada["email"])
            return [m for m in mails if m["subject"].startswith(f"Reminder: {title}")]

        return probe

    await eventually(reminders("Demo"), "the first reminder of the demo", timeout=60)
    starts = datetime.now(UTC) + timedelta(seconds=32)
    moved = await d.ok(
        "POST",
        f"{deals}/meetings/{demo['id']}/reschedule",
        json={"starts_at": starts.isoformat()},
    )
    assert moved["revision"] == 1
    # what the count below means: the old time's second reminder was not due yet
    old_second = datetime.fromisoformat(demo["starts_at"]) - timedelta(seconds=10)
    assert datetime.now(UTC) < old_second, "moved after the old second reminder was due"
    await wait_task(d, ada["id"], "prepare_meeting", 2)

    # the decision deadline, moved before it passed: one last-chance task, at the new one
    # (8 s ahead: on a loaded machine the two changes must still both come before the first)
    soon = datetime.now(UTC) + timedelta(seconds=8)
    await d.ok("PATCH", deals, json={"decision_deadline": soon.isoformat()})
    later = await d.ok(
        "PATCH", deals, json={"decision_deadline": (soon + timedelta(seconds=3)).isoformat()}
    )
    assert datetime.now(UTC) < soon, "moved after the first deadline had passed"
    chance = (await wait_task(d, ada["id"], "last_chance"))[0]
    assert chance["context"]["deadline"] == later["decision_deadline"].replace("Z", "+00:00")
    assert "The price is too high" in chance["body"]
    assert "It is too expensive" not in chance["body"]  # resolved: not open any more

    # the demo starts; nobody comes
    async def started() -> bool:
        return datetime.now(UTC) > starts

    await eventually(started, "the demo to start", timeout=60)
    await d.ok("POST", f"{deals}/meetings/{demo['id']}/no-show")
    follow_up = (await wait_task(d, ada["id"], "no_show"))[0]
    assert "did not come" in follow_up["body"]

    async def rebooking() -> list[dict[str, Any]]:
        mails = await d.mails_to(ada["email"])
        return [m for m in mails if "another time" in m["subject"]]

    await eventually(rebooking, "the re-booking email")
    # one reminder of the first time, two of the new one; none of the cancelled meeting
    sent = await reminders("Demo")()
    assert len(sent) == 3, [(m["subject"], m["message_id"]) for m in sent]
    assert await reminders("Pricing")() == []
    assert len(await tasks_of_kind(d, ada["id"], "last_chance")) == 1
    detail = await d.ok("GET", deals)
    statuses = {m["id"]: m["status"] for m in detail["meetings"]}
    assert statuses == {demo["id"]: "no_show", pricing["id"]: "cancelled"}
