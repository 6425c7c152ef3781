"""Late replies are never lost (issue 10, point 2) through the whole stack on the real Temporal
dev server: a reply by email or SMS after the journey ended is an urgent rep task with its text
and a notification to the rep; with `late_reply: restart_at_qualifying` a new run starts at
qualifying; a won client's reply reaches the rep the same way; every inbox event says what
became of it, an unknown sender included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from shared.contracts.journey import journey_id
from tests.support.deals import BOOKING_HOURS, SLOT
from tests.support.eventually import eventually
from tests.support.runs import (
    cadence,
    inbox_events,
    rep_left_after_the_journey,
    runs_of,
    stop_to_nurture,
    wait_run,
    win,
)
from tests.support.scenarios import Driver
from tests.support.settings import SERVICE_AUTH
from tests.support.stack import StackDriver

TWILIO_NUMBER = "+15005550006"


async def task_of_kind(d: Driver, prospect_id: str, kind: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return next((t for t in await d.tasks_of(prospect_id) if t["kind"] == kind), None)

    return await eventually(probe, f"a {kind} task for {prospect_id}")


async def sent_notification(d: Driver, task_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        rows = await d.ok("GET", f"{d.u.outreach}/tasks/{task_id}/notifications")
        return next((n for n in rows if n["status"] == "sent"), None)

    return await eventually(probe, f"a notification of task {task_id} sent")


async def outcome_of_reply(d: Driver, prospect_id: str, kind: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        events = await inbox_events(d, prospect_id)
        return next((e for e in events if e["kind"] == kind and e["outcome"] != ""), None)

    return await eventually(probe, f"the outcome of {prospect_id}'s {kind}")


async def text_in(d: Driver, sender: str, body: str) -> None:
    inbound = await d.http.post(
        f"{d.u.twilio}/sandbox/inbound-sms",
        json={"from": sender, "to": TWILIO_NUMBER, "body": body},
    )
    assert inbound.json()["webhook_status"] == 200, inbound.text


async def texted_then_nurtured(d: Driver) -> tuple[dict[str, Any], dict[str, Any]]:
    """Jo, texted by a cadence whose late replies restart the journey at qualifying, then
    stopped to nurture: the cadence and Jo."""
    await d.setup()
    plan = await cadence(d, late_reply="restart_at_qualifying")
    jo = await d.new_prospect("Jo")
    await d.enroll(jo["id"], plan["id"])
    await eventually(lambda: d.sms_to(jo["phone"]), "the first SMS")
    await stop_to_nurture(d, jo["id"], 1)
    return plan, jo


async def test_a_late_email_reply_is_an_urgent_task_and_a_notification(stack: StackDriver) -> None:
    d = stack
    rep, _ = await d.setup()
    ida = await d.new_prospect("Ida")
    await d.enroll(ida["id"], (await cadence(d))["id"])
    await d.wait_mails(ida["email"], 1)
    await stop_to_nurture(d, ida["id"], 1)

    await d.reply_to_first_mail(ida, "Sorry for the silence, we now have budget")
    task = await task_of_kind(d, ida["id"], "late_reply")
    assert "we now have budget" in task["body"] and task["rep_id"] == rep["id"]
    assert task["status"] == "open"
    note = await sent_notification(d, task["id"])
    assert note["recipient_rep_id"] == rep["id"] and note["channel"] == "email"
    assert any("Ida" in m["subject"] for m in await d.mails_to(rep["email"]))
    urgent = await d.ok("GET", f"{d.u.outreach}/tasks/{task['id']}")
    assert urgent["urgent_at"] is not None

    event = await outcome_of_reply(d, ida["id"], "email_reply")
    assert event["outcome"] == "late_reply_task" and event["delivery"] == "no_journey"
    # the default policy makes no new run
    assert [r["run"] for r in await runs_of(d, ida["id"])] == [1]
    # no event of hers is left without an outcome
    assert all(e["outcome"] for e in await inbox_events(d, ida["id"]))


async def test_a_late_reply_to_a_rep_who_left_goes_to_an_active_rep(stack: StackDriver) -> None:
    """Ida's journey ended under Rita, deactivated since (a journey that is over is not handed
    over then). Ida writes back months later: she comes back, to an active rep (Ben, the only
    one, by the assignment rules), who gets the task; Rita's inbox is nobody's."""
    d = stack
    rita, _ = await d.setup()
    ida = await d.new_prospect("Ida")
    await d.enroll(ida["id"], (await cadence(d))["id"])
    await d.wait_mails(ida["email"], 1)
    await stop_to_nurture(d, ida["id"], 1)
    ben = await rep_left_after_the_journey(d, rita["id"])

    await d.reply_to_first_mail(ida, "Back from leave, still interested")
    task = await task_of_kind(d, ida["id"], "late_reply")
    assert task["rep_id"] == ben["id"], task
    prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{ida['id']}")
    assert prospect["rep"]["id"] == ben["id"] and "deactivated" in prospect["assignment_note"]


async def test_a_late_sms_reply_restarts_the_journey_at_qualifying_by_policy(
    stack: StackDriver,
) -> None:
    d = stack
    plan, jo = await texted_then_nurtured(d)

    await text_in(d, jo["phone"], "Can you call me next week?")
    task = await task_of_kind(d, jo["id"], "late_reply")
    assert "call me next week" in task["body"]
    await sent_notification(d, task["id"])
    event = await outcome_of_reply(d, jo["id"], "sms_reply")
    assert event["outcome"] == "restarted" and "run 2" in event["outcome_detail"]

    runs = await wait_run(d, jo["id"], 2, origin="late_reply")
    assert runs[1]["start_stage"] == "qualifying" and runs[1]["cadence_id"] == plan["id"]
    # running, or (a loaded machine read it 4 s late, seen on PostgreSQL) ended when the test
    # cadence's short qualification wait ran out
    assert (runs[1]["status"], runs[1]["outcome"]) in (
        ("running", None),
        ("ended", "disqualified"),
    ), runs[1]
    path = await d.wait_stage(jo["id"], "qualifying")
    # a loaded machine may read it after the test cadence's short qualification wait ran out
    assert path[:4] == ["prospecting", "contacting", "nurture", "qualifying"], path
    assert path[4:] in ([], ["disqualified"]), path
    # run 2 has its own deal and its qualify task tells why
    deal = await d.deal_of(jo["id"])
    assert deal["journey_id"] == runs[1]["run_key"]
    qualify = await task_of_kind(d, jo["id"], "qualify")
    assert "call me next week" in qualify["body"]


async def test_a_late_reply_from_someone_on_the_do_not_contact_list_restarts_nothing(
    stack: StackDriver,
) -> None:
    """Ops put Jo's number on the do-not-contact list after her journey ended; she texts back.
    A reply is no opt-in: her rep gets the task (and decides), but no run starts on its own,
    even with `late_reply: restart_at_qualifying`. It started run 2 at qualifying."""
    d = stack
    _, jo = await texted_then_nurtured(d)
    listed = {"value": jo["phone"], "reason": "legal asked"}
    await d.ok("POST", f"{d.u.outreach}/do-not-contact", json=listed)

    await text_in(d, jo["phone"], "Can you call me next week?")
    task = await task_of_kind(d, jo["id"], "late_reply")
    assert "call me next week" in task["body"]
    event = await outcome_of_reply(d, jo["id"], "sms_reply")
    assert event["outcome"] == "late_reply_task", event
    assert event["outcome_detail"].endswith("not restarted: do_not_contact"), event
    assert [r["run"] for r in await runs_of(d, jo["id"])] == [1]


async def test_a_won_clients_reply_reaches_the_rep(stack: StackDriver) -> None:
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    kim = await d.new_prospect("Kim")
    await win(d, kim, plan["id"])
    await wait_run(d, kim["id"], 1, outcome="won", status="ended")

    await text_in(d, kim["phone"], "Quick question about our invoice")
    task = await task_of_kind(d, kim["id"], "client_reply")
    assert "about our invoice" in task["body"]
    await sent_notification(d, task["id"])
    event = await outcome_of_reply(d, kim["id"], "sms_reply")
    assert event["outcome"] == "won_client_task"
    assert [r["run"] for r in await runs_of(d, kim["id"])] == [1]  # no new journey


async def test_a_text_from_nobody_we_know_says_so(stack: StackDriver) -> None:
    d = stack
    stranger = "+14155559876"
    await text_in(d, stranger, "who is this?")
    events = await d.ok("GET", f"{d.u.outreach}/inbox-events", params={"outcome": "unknown_sender"})
    (event,) = [e for e in events if e["kind"] == "sms_reply"]
    assert event["prospect_id"] is None and "no prospect matches" in event["outcome_detail"]


async def link_after_the_journey(
    d: Driver, *, again: bool = False, listed: bool = False, **plan: Any
) -> tuple[dict[str, Any], str]:
    """Ida got a booking link during her journey, which ended (nurture) without a reply
    (`again`: and she was enrolled again since; `listed`: and ops put her address on the
    do-not-contact list since): Ida and the link's page."""
    rep, _ = await d.setup()
    ida = await d.new_prospect("Ida")
    plan_id = (await cadence(d, **plan))["id"]
    await d.enroll(ida["id"], plan_id)
    await d.wait_mails(ida["email"], 1)
    await d.ok("PUT", f"{d.u.deals}/reps/{rep['id']}/availability", json=BOOKING_HOURS)
    # what outreach asks for when a touch renders {{ booking_link }} in run 1
    asked = {"prospect_id": ida["id"], "rep_id": rep["id"], "journey_key": journey_id(ida["id"])}
    link = await d.ok(
        "POST", f"{d.u.deals}/internal/booking-links", json=asked, headers=SERVICE_AUTH
    )
    await stop_to_nurture(d, ida["id"], 1)
    if listed:
        entry = {"value": ida["email"], "reason": "legal asked"}
        await d.ok("POST", f"{d.u.outreach}/do-not-contact", json=entry)
    if again:
        await d.enroll(ida["id"], plan_id)
        await wait_run(d, ida["id"], 2, status="running")
    return ida, f"{d.u.deals}/book/{link['token']}"


async def booked_after_the_journey(
    d: Driver, **options: Any
) -> tuple[dict[str, Any], httpx.Response, str, httpx.Response]:
    """She books a time through that link afterwards: Ida, the booking's answer, the time she
    picked and the page she picked it on."""
    ida, page = await link_after_the_journey(d, **options)
    shown = await d.http.get(page)
    slot = SLOT.findall(shown.text)[0]
    return ida, await d.http.post(page, data={"slot": slot}), slot, shown


BOOKS = "An invitation for your calendar follows by email."


async def test_a_late_booking_restarts_the_journey_that_carries_its_deal_by_policy(
    stack: StackDriver,
) -> None:
    """A booking through the link of a journey that had ended opened a qualifying deal no
    journey carried (no reminders, no tasks, no stage truth). It is a late reply: with
    `late_reply: restart_at_qualifying` run 2 starts at qualifying and carries the booked deal;
    the rep has the late reply's task."""
    d = stack
    ida, booked, slot, page = await booked_after_the_journey(d, late_reply="restart_at_qualifying")
    assert BOOKS in page.text, page.text  # the policy books it: the times are bookable
    assert booked.status_code == 200 and "You are booked" in booked.text, booked.text
    runs = await wait_run(d, ida["id"], 2, origin="late_reply")
    assert runs[1]["start_stage"] == "qualifying"
    deals = await d.ok("GET", f"{d.u.deals}/deals", params={"prospect_id": ida["id"]})
    assert [deal["journey_id"] for deal in deals] == [runs[1]["run_key"]], deals
    meetings = (await d.ok("GET", f"{d.u.deals}/deals/{deals[0]['id']}"))["meetings"]
    assert [(m["status"], datetime.fromisoformat(m["starts_at"])) for m in meetings] == [
        ("scheduled", datetime.fromisoformat(slot))
    ], meetings
    task = await task_of_kind(d, ida["id"], "late_reply")
    assert "booking link" in task["title"], task


async def test_a_late_booking_without_a_restart_is_the_reps_task_and_no_deal(
    stack: StackDriver,
) -> None:
    """The same booking under the default policy (`late_reply: task`): no deal nobody carries,
    the prospect reads that their rep will get back to them, the rep has the task with the
    time asked for. The page she picked it on says so before she picks: it offered the times
    as bookable, so she picked one believing she booked it."""
    d = stack
    ida, booked, slot, page = await booked_after_the_journey(d)
    assert page.status_code == 200, page.text
    assert BOOKS not in page.text and "nothing is booked" in page.text, page.text
    assert "pass it on" in page.text and "get back to you" in page.text, page.text
    assert booked.status_code == 409, booked.text
    assert "get back to you" in booked.text and 'name="slot"' not in booked.text
    task = await task_of_kind(d, ida["id"], "late_reply")
    asked = datetime.fromisoformat(slot).strftime("%d %B %Y, %H:%M")  # the link's zone: UTC
    assert "asked to meet on" in task["body"] and asked in task["body"], task
    assert await d.ok("GET", f"{d.u.deals}/deals", params={"prospect_id": ida["id"]}) == []
    assert [r["run"] for r in await runs_of(d, ida["id"])] == [1]


async def test_a_late_bookings_page_shown_again_after_a_bad_post_still_says_passed_on(
    stack: StackDriver,
) -> None:
    """A post without a time (or with a time no longer free) answers the times again: under
    the default policy they are still wishes passed on to the rep, not bookable times."""
    d = stack
    _, page = await link_after_the_journey(d)
    for slot in ("", "2026-01-01T00:00:00+00:00"):
        again = await d.http.post(page, data={"slot": slot})
        assert again.status_code in (409, 422), again.text
        assert SLOT.findall(again.text), again.text  # the times, to send one
        assert BOOKS not in again.text and "nothing is booked" in again.text, again.text


async def test_a_late_booking_of_a_listed_person_is_passed_on_whatever_the_policy(
    stack: StackDriver,
) -> None:
    """Under `restart_at_qualifying`, but Ida is on the do-not-contact list: a booking is no
    opt-in, so no run restarts and nothing is booked. The page says so before she picks."""
    d = stack
    ida, booked, _, page = await booked_after_the_journey(
        d, listed=True, late_reply="restart_at_qualifying"
    )
    assert BOOKS not in page.text and "nothing is booked" in page.text, page.text
    assert booked.status_code == 409 and "get back to you" in booked.text, booked.text
    assert [r["run"] for r in await runs_of(d, ida["id"])] == [1]


async def test_a_booking_through_an_earlier_runs_link_goes_on_the_running_runs_deal(
    stack: StackDriver,
) -> None:
    """Enrolled again since, Ida books through the link of her first run: the booking went on a
    deal of the ended run, which the running run (which opens its own deal) never carried. It
    goes on the running run's deal now, and that run hears it as her reply."""
    d = stack
    ida, booked, _, page = await booked_after_the_journey(d, again=True)
    assert BOOKS in page.text, page.text
    assert booked.status_code == 200 and "You are booked" in booked.text, booked.text
    runs = await runs_of(d, ida["id"])
    assert [r["run"] for r in runs] == [1, 2], runs
    deal = await d.deal_of(ida["id"])
    assert deal["journey_id"] == runs[1]["run_key"], deal
    path = await d.wait_stage(ida["id"], "qualifying")
    assert path[-2:] == ["contacting", "qualifying"], path
