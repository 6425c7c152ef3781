"""Ops controlling journeys in flight through the outreach API, on the whole stack in-process:
pause a rep's journeys and resume them, stop one, and move running journeys to a new cadence
version after a dry run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.eventually import eventually
from tests.support.scenarios import fast_cadence
from tests.support.stack import StackDriver

FOLLOW_UP_SECONDS = 12


async def test_pause_resume_stop_and_migrate(stack: StackDriver) -> None:
    d, urls = stack, stack.u
    rep, _ = await d.setup()
    quick = fast_cadence()
    # long enough for the pause to land first even on a loaded machine
    quick["steps"][2]["offset_seconds"] = FOLLOW_UP_SECONDS
    cadence = await d.ok("POST", f"{urls.outreach}/cadences", json=quick)
    ana, ben = await d.new_prospect("Ana"), await d.new_prospect("Ben")
    assert ana["rep"]["id"] == ben["rep"]["id"] == rep["id"]
    for p in (ana, ben):
        await d.enroll(p["id"], cadence["id"])
        await d.wait_mails(p["email"], 1)

    # a rep on vacation: every journey of theirs holds its touches
    paused = await d.ok(
        "POST",
        f"{urls.outreach}/reps/{rep['id']}/journeys/pause",
        json={"reason": "vacation"},
    )
    assert sorted(paused["signalled"]) == sorted([ana["id"], ben["id"]])
    # pauses stack: Ana is also paused by hand; the journey state lists both reasons
    back = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    await d.ok(
        "POST",
        f"{urls.outreach}/journeys/{ana['id']}/pause",
        json={"reason": "call first", "until": back},
    )
    state = await d.ok("GET", f"{urls.outreach}/journeys/{ana['id']}")
    assert state["paused"] is True and state["status"] == "running"
    assert [(p["kind"], p["reason"]) for p in state["pauses"]] == [
        ("manual", "call first"),
        ("rep", "vacation"),
    ]
    assert datetime.fromisoformat(state["pauses"][0]["until"]) == datetime.fromisoformat(back)
    [first] = await d.mails_to(ana["email"])
    due = datetime.fromisoformat(first["received_at"]) + timedelta(seconds=FOLLOW_UP_SECONDS + 2)
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    assert len(await d.mails_to(ana["email"])) == 1  # the follow-up was due, and held
    await d.ok("POST", f"{urls.outreach}/journeys/{ana['id']}/resume")  # the manual pause
    state = await d.ok("GET", f"{urls.outreach}/journeys/{ana['id']}")
    assert [p["kind"] for p in state["pauses"]] == ["rep"] and state["paused"] is True
    assert len(await d.mails_to(ana["email"])) == 1  # the rep's pause still holds it
    bad = await d.http.post(
        f"{urls.outreach}/journeys/{ana['id']}/resume", json={"kind": "holiday"}
    )
    assert bad.status_code == 422
    await d.ok("POST", f"{urls.outreach}/journeys/{ana['id']}/resume", json={"kind": "rep"})
    mails = await d.wait_mails(ana["email"], 2)
    assert mails[0]["subject"] == "Following up"
    assert len(await d.mails_to(ben["email"])) == 1  # Ben's journey is still paused

    stopped = await d.ok(
        "POST",
        f"{urls.outreach}/journeys/{ben['id']}/stop",
        json={"reason": "asked by phone"},
    )
    assert stopped["status"] == "stopping"
    path = await d.wait_stage(ben["id"], "nurture")
    assert path[-1] == "nurture"
    history = await d.ok("GET", f"{urls.prospecting}/prospects/{ben['id']}/stages")
    assert history[-1]["cause"] == "cadence stopped: asked by phone"
    assert history[-1]["actor"].startswith("admin (cfg_")  # who stopped it (issue 14)
    bad = await d.http.post(f"{urls.outreach}/journeys/{ben['id']}/stop", json={"reason": ""})
    assert bad.status_code == 422

    # versions: a journey on v1 moves to v2 after a dry run
    slow = fast_cadence()
    slow["steps"][2]["offset_seconds"] = 3600
    v1 = await d.ok("POST", f"{urls.outreach}/cadences", json=slow)
    cy = await d.new_prospect("Cy")
    await d.enroll(cy["id"], v1["id"])
    await d.wait_mails(cy["email"], 1)
    newer = fast_cadence(name=slow["name"])
    newer["steps"][2].update(offset_seconds=2, subject="A better follow-up")
    v2 = await d.ok("PUT", f"{urls.outreach}/cadences/{v1['id']}", json=newer)
    assert v2["version"] == 2

    async def planned_after_the_text() -> dict[str, Any] | None:
        # the first email is out before the text's step is recorded: wait for both
        got = await d.ok("GET", f"{urls.outreach}/cadences/{v1['id']}/migration")
        items = got["items"]
        return got if items and items[0]["at_step"] == 1 else None

    plan = await eventually(planned_after_the_text, "Cy's journey past the text")
    assert plan["to_version"] == 2 and plan["journeys"] == 1
    item = plan["items"][0]
    assert item["prospect_id"] == cy["id"] and item["at_step"] == 1
    assert item["next_touch"][0]["subject"] == "A better follow-up"
    # the dry run counts due times as the journey does (from its first workflow task, on the
    # prospect's calendar, with the delay of late touches): the journey's own next due, v1's
    # step at 3600 s, and the plan's, v2's at 2 s, differ by the offsets alone
    state = await d.ok("GET", f"{urls.outreach}/journeys/{cy['id']}")
    own = datetime.fromisoformat(state["next_touch_due"])
    gap = own - datetime.fromisoformat(item["next_due_at"])
    assert gap == timedelta(seconds=3598), gap
    assert len(await d.mails_to(cy["email"])) == 1  # a dry run changes nothing
    applied = await d.ok("POST", f"{urls.outreach}/cadences/{v1['id']}/migration")
    assert applied["signalled"] == [cy["id"]]
    mails = await d.wait_mails(cy["email"], 2)
    assert mails[0]["subject"] == "A better follow-up"
    enrollment = await d.ok("GET", f"{urls.outreach}/prospects/{cy['id']}/enrollment")
    assert enrollment["cadence_version"] == 2
    again = await d.ok("GET", f"{urls.outreach}/cadences/{v1['id']}/migration")
    assert again["journeys"] == 0


async def test_company_pause_conditions_variants_and_stats(stack: StackDriver) -> None:
    import time

    from shared.providers.mailgun import event_payload

    d, urls = stack, stack.u
    await d.setup()
    spec = fast_cadence(pause_company_on_reply=True)
    first_email = spec["steps"][0]
    first_email["variants"] = [
        {"name": "plain", "subject": "Hello {{ first_name }}", "body": "Plain"},
        {"name": "bold", "subject": "HELLO {{ first_name }}", "body": "Bold"},
    ]
    spec["steps"][2].update(
        offset_seconds=3, subject="Since you read it", condition="previous_email_delivered"
    )
    cadence = await d.ok("POST", f"{urls.outreach}/cadences", json=spec)
    ann = await d.new_prospect("Ann", company="Acme Inc.")
    bob = await d.new_prospect("Bob", company="acme inc")
    # their own work domains: people who share one are colleagues (issue 10)
    cy = await d.new_prospect("Cy", company="Other", email=f"cy-{cadence['id']}@other.example")
    dee = await d.new_prospect("Dee", company="Third", email=f"dee-{cadence['id']}@third.example")
    for p in (ann, bob, cy, dee):
        await d.enroll(p["id"], cadence["id"])
        await d.wait_mails(p["email"], 1)

    # Dee's first email is reported delivered by the provider; Cy's never is
    dee_mail = (await d.mails_to(dee["email"]))[0]
    delivered = event_payload(
        event="delivered",
        recipient=dee["email"],
        message_id=dee_mail["message_id"],
        event_id=f"ev-{dee['id']}",
        severity=None,
        reason="",
        signing_key="dev-mailgun-signing-key",
        now=time.time(),
    )
    assert (
        await d.http.post(f"{urls.outreach}/webhooks/mailgun/events", json=delivered)
    ).status_code == 200

    # Ann replies: Bob, at the same company, is paused
    ann_mail = (await d.mails_to(ann["email"]))[0]
    reply = await d.http.post(
        f"{urls.mailbox}/api/messages/{ann_mail['id']}/reply", json={"text": "Interested"}
    )
    assert reply.json()["webhook_status"] == 200
    await d.wait_stage(ann["id"], "qualifying")
    # past her cadence a stop would change nothing (her deal decides): said, not accepted
    refused = await d.http.post(
        f"{urls.outreach}/journeys/{ann['id']}/stop", json={"reason": "asked by phone"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "journey_past_contacting"
    assert "at qualifying" in refused.json()["error"]["message"]
    assert not (await d.ok("GET", f"{urls.outreach}/journeys/{ann['id']}"))["stopped"]

    async def bob_paused() -> bool:
        state = await d.ok("GET", f"{urls.outreach}/journeys/{bob['id']}")
        return bool(state["paused"])

    from tests.support.eventually import eventually

    await eventually(bob_paused, "Bob's journey to be paused")
    await d.wait_mails(dee["email"], 2)  # condition met: sent
    await asyncio.sleep(1.5)
    assert len(await d.mails_to(cy["email"])) == 1  # condition not met: skipped
    assert len(await d.mails_to(bob["email"])) == 1  # paused: held
    cy_msgs = await d.ok("GET", f"{urls.outreach}/prospects/{cy['id']}/messages")
    assert all(m["touch_key"] != "step-1" for m in cy_msgs)

    stats = await d.ok("GET", f"{urls.outreach}/cadences/{cadence['id']}/stats")
    first = [s for s in stats["steps"] if s["touch"] == "step-0" and s["channel"] == "email"]
    assert {s["variant"] for s in first} <= {"plain", "bold"}
    assert sum(s["sent"] for s in first) == 4
    assert sum(s["replied"] for s in first) == 1
    assert sum(s["delivered"] for s in first) == 1
    subjects = {
        m["subject"].split()[0]
        for p in (ann, bob, cy, dee)
        for m in (await d.mails_to(p["email"]))[-1:]
    }
    assert subjects <= {"Hello", "HELLO"}


async def test_html_part_and_a_booked_meeting_from_a_call_task(stack: StackDriver) -> None:
    d, urls = stack, stack.u
    await d.setup()
    spec = fast_cadence()
    spec["steps"][0]["html"] = "<h1>Hi {{ first_name }}</h1><p>About {{ company }}</p>"
    cadence = await d.ok("POST", f"{urls.outreach}/cadences", json=spec)
    bad = fast_cadence()
    bad["steps"][1]["html"] = "<p>{{ first_name }}</p>"  # an SMS has no HTML part
    refused = await d.http.post(f"{urls.outreach}/cadences", json=bad)
    assert refused.status_code == 422 and "HTML" in refused.text

    eve = await d.new_prospect("Eve", company="Smith & <Sons>")
    await d.enroll(eve["id"], cadence["id"])
    mail = (await d.wait_mails(eve["email"], 1))[0]
    assert "<h1>Hi Eve</h1>" in mail["html"]
    assert "Smith &amp; &lt;Sons&gt;" in mail["html"]  # values are escaped in HTML
    assert "Unsubscribe" in mail["html"] and "Unsubscribe" not in mail["html"].split("<hr>")[0]
    assert "Smith & <Sons>" in mail["text"]

    # no email address: the first touch's email becomes a call task for the rep
    ned = await d.new_prospect("Ned", email=None)
    await d.enroll(ned["id"], cadence["id"])

    async def call_task() -> dict | None:
        tasks = await d.tasks_of(ned["id"])
        return next((t for t in tasks if t["kind"] == "call_task"), None)

    from tests.support.eventually import eventually

    task = await eventually(call_task, "a call task")
    await d.ok(
        "POST",
        f"{urls.outreach}/tasks/{task['id']}/complete",
        json={"outcome": "meeting_booked", "notes": "Thursday 10:00"},
    )
    path = await d.wait_stage(ned["id"], "qualifying")
    history = await d.ok("GET", f"{urls.prospecting}/prospects/{ned['id']}/stages")
    assert history[-1]["cause"] == "replied by call_task"
    assert path[-2:] == ["contacting", "qualifying"]


async def test_the_dry_runs_due_time_is_the_one_the_journey_then_keeps(
    stack: StackDriver,
) -> None:
    # the journey counts its steps from its first workflow task (workflow.now() there), not
    # from the run's start: the two differ by however long that task waited for a worker
    d, urls = stack, stack.u
    await d.setup()
    v1 = await d.ok("POST", f"{urls.outreach}/cadences", json=fast_cadence())
    dee = await d.new_prospect("Dee")
    await d.enroll(dee["id"], v1["id"])
    await d.wait_mails(dee["email"], 1)
    newer = fast_cadence(name=v1["name"])
    newer["steps"][2].update(offset_seconds=1800, subject="Sooner")
    await d.ok("PUT", f"{urls.outreach}/cadences/{v1['id']}", json=newer)

    async def at_the_follow_up() -> dict[str, Any] | None:
        got = await d.ok("GET", f"{urls.outreach}/cadences/{v1['id']}/migration")
        return got if got["items"] and got["items"][0]["at_step"] == 1 else None

    plan = await eventually(at_the_follow_up, "Dee's journey waiting for the follow-up")
    before = (await d.ok("GET", f"{urls.outreach}/journeys/{dee['id']}"))["next_touch_due"]
    applied = await d.ok("POST", f"{urls.outreach}/cadences/{v1['id']}/migration")
    assert applied["signalled"] == [dee["id"]]

    async def due_on_v2() -> str | None:
        state = await d.ok("GET", f"{urls.outreach}/journeys/{dee['id']}")
        due = state["next_touch_due"]
        return due if due not in (None, before) else None

    kept = await eventually(due_on_v2, "the journey planning v2's follow-up")
    planned = plan["items"][0]["next_due_at"]
    assert datetime.fromisoformat(kept) == datetime.fromisoformat(planned), (kept, planned)
