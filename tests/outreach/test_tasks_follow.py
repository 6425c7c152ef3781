"""Tasks follow the journey (issue 10, point 3) on the whole stack: when the prospect leaves a
stage or the journey ends, the open tasks made for what was left close with the reason; tasks
that still make sense stay; every task's prospect card (API and the rep inbox page) shows the
prospect's current stage."""

from __future__ import annotations

import re
from typing import Any

from shared.contracts.journey import journey_id
from tests.support.deals import BOOKING_HOURS, SLOT
from tests.support.eventually import eventually
from tests.support.scenarios import Driver, fast_cadence
from tests.support.settings import SERVICE_AUTH
from tests.support.stack import StackDriver

ANSWERS = {"budget": True, "authority": "decision_maker", "need": "reports by hand", "timeline": 2}


async def tasks_by_kind(d: Driver, pid: str) -> dict[str, dict[str, Any]]:
    return {t["kind"]: t for t in await d.tasks_of(pid)}


async def closed(d: Driver, pid: str, kinds: set[str]) -> dict[str, dict[str, Any]]:
    async def probe() -> dict[str, dict[str, Any]] | None:
        tasks = await tasks_by_kind(d, pid)
        done = all(k in tasks and tasks[k]["status"] == "closed" for k in kinds)
        return tasks if done else None

    return await eventually(probe, f"{sorted(kinds)} closed for {pid}", timeout=60)


async def test_timeout_disqualifies_and_closes_the_qualify_tasks_with_the_reason(
    stack: StackDriver,
) -> None:
    _rep, cadence = await stack.setup()  # no verdict within 4 s: disqualified
    ada = await stack.new_prospect("Ada")
    await stack.enroll(ada["id"], cadence["id"])
    await stack.reply_to_first_mail(ada, "Tell me more")
    await stack.wait_stage(ada["id"], "disqualified", timeout=60)
    tasks = await closed(stack, ada["id"], {"qualify", "qualification_reminder"})
    for kind in ("qualify", "qualification_reminder"):
        assert tasks[kind]["notes"].startswith("disqualified: qualification timeout"), tasks[kind]
        # made while qualifying, shown with the stage the prospect is in now
        assert tasks[kind]["context"]["stage"] == "qualifying"
        assert tasks[kind]["prospect_card"]["stage"] == "disqualified"
    assert [t for t in await stack.tasks_of(ada["id"]) if t["status"] == "open"] == []


async def test_a_text_after_the_reply_is_a_task_that_outlives_the_stage(
    stack: StackDriver,
) -> None:
    """The journey acts on the first reply only; the prospect's next message reaches the rep as
    a task with its text, which stays open when the journey moves on (here: disqualified)."""
    _rep, cadence = await stack.setup()  # no verdict within 4 s: disqualified
    eve = await stack.new_prospect("Eve")
    await stack.enroll(eve["id"], cadence["id"])
    await stack.reply_to_first_mail(eve, "Tell me more")
    await stack.wait_stage(eve["id"], "qualifying")
    await stack.text_from(eve, "Could you call me tomorrow at 10?")
    await stack.wait_stage(eve["id"], "disqualified", timeout=60)
    tasks = await closed(stack, eve["id"], {"qualify"})
    reply = tasks["reply"]
    assert reply["status"] == "open", reply
    assert "Could you call me tomorrow at 10?" in reply["body"]
    assert (reply["context"]["channel"], reply["context"]["stage"]) == ("sms", "qualifying")


async def test_unsubscribe_closes_the_open_social_task(stack: StackDriver) -> None:
    rep, _ = await stack.setup()
    steps = [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi {{ first_name }}", "body": "Hi"},
        {"channel": "social_task", "offset_seconds": 0, "body": "Connect with {{ first_name }}"},
        {"channel": "email", "offset_seconds": 3600, "subject": "Again", "body": "Any thoughts?"},
    ]
    cadence = await stack.ok("POST", f"{stack.u.outreach}/cadences", json=fast_cadence(steps=steps))
    bea = await stack.new_prospect("Bea")
    await stack.enroll(bea["id"], cadence["id"])

    async def social_task() -> dict[str, Any] | None:
        return (await tasks_by_kind(stack, bea["id"])).get("social_task")

    task = await eventually(social_task, "the social task")
    assert (task["status"], task["rep_id"]) == ("open", rep["id"])
    first = (await stack.wait_mails(bea["email"], 1))[0]
    link = re.search(r"https?://\S+/unsubscribe/[\w-]+", first["text"])
    assert link, first["text"]
    assert (await stack.http.post(link.group(0))).status_code == 200
    await stack.wait_stage(bea["id"], "nurture")
    tasks = await closed(stack, bea["id"], {"social_task"})
    assert tasks["social_task"]["notes"] == "nurture: cadence stopped: unsubscribe link"
    assert tasks["social_task"]["prospect_card"]["stage"] == "nurture"


async def test_thanks_stays_after_the_win_and_cards_show_the_current_stage(
    stack: StackDriver,
) -> None:
    rep, cadence = await stack.setup()
    cid = await stack.new_prospect("Cid")
    await stack.enroll(cid["id"], cadence["id"])
    await stack.reply_to_first_mail(cid, "Sounds good")
    await stack.wait_stage(cid["id"], "qualifying")
    deal = f"{stack.u.deals}/deals/{(await stack.deal_of(cid['id']))['id']}"
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS})
    await stack.wait_stage(cid["id"], "presenting")
    await stack.ok("POST", f"{deal}/objections", json={"text": "It is too expensive"})
    await stack.wait_stage(cid["id"], "objections")
    await eventually(lambda: _kind(stack, cid["id"], "objection"), "the objection task", timeout=60)
    await stack.ok("POST", f"{deal}/close", json={"outcome": "won", "reason": "signed"})
    await stack.wait_stage(cid["id"], "referrals")

    tasks = await closed(stack, cid["id"], {"objection"})
    assert tasks["objection"]["notes"] == "won: closed won: signed"
    thanks = tasks["thank_client"]
    assert thanks["status"] == "open"  # a new client is thanked whatever comes next
    assert thanks["context"]["stage"] == "won"

    async def current() -> bool:
        card = (await tasks_by_kind(stack, cid["id"]))["thank_client"]["prospect_card"]
        return bool(card["stage"] == "referrals")

    await eventually(current, "the thanks task's card at referrals")
    # the driver's client carries the key as the header, as the page's middleware does
    page = await stack.http.get(f"{stack.u.outreach}/ui/reps/{rep['id']}/inbox")
    assert page.status_code == 200
    card = page.text.split(f'id="task-{thanks["id"]}"', 1)[1].split("</article>", 1)[0]
    # the card's stage line is the prospect's now (the priority's reasons keep the stage the
    # task was made for: "stage won (+40)")
    assert "· stage referrals" in card and "· stage won" not in card


async def _kind(d: Driver, pid: str, kind: str) -> dict[str, Any] | None:
    return (await tasks_by_kind(d, pid)).get(kind)


async def test_a_meeting_booked_while_qualifying_keeps_its_preparation_into_presenting(
    stack: StackDriver,
) -> None:
    """A prospect books before the rep records the qualification: the meeting's preparation is
    the deal's work, so it stays open when the deal qualifies (the qualify task closes), and
    closes when the deal is lost."""
    rep, cadence = await stack.setup()
    dot = await stack.new_prospect("Dot")
    await stack.enroll(dot["id"], cadence["id"])
    await stack.wait_mails(dot["email"], 1)
    await stack.ok("PUT", f"{stack.u.deals}/reps/{rep['id']}/availability", json=BOOKING_HOURS)
    # what outreach asks for when a touch renders {{ booking_link }}; she books through it
    asked = {"prospect_id": dot["id"], "rep_id": rep["id"], "journey_key": journey_id(dot["id"])}
    link = await stack.ok(
        "POST", f"{stack.u.deals}/internal/booking-links", json=asked, headers=SERVICE_AUTH
    )
    page = f"{stack.u.deals}/book/{link['token']}"
    slot = SLOT.findall((await stack.http.get(page)).text)[0]
    booked = await stack.http.post(page, data={"slot": slot})
    assert booked.status_code == 200 and "You are booked" in booked.text, booked.text
    await stack.wait_stage(dot["id"], "qualifying")  # no answers: the deal stays qualifying
    prepare = await eventually(lambda: _kind(stack, dot["id"], "prepare_meeting"), "prepare")
    assert prepare["context"]["stage"] == "qualifying"
    deal = f"{stack.u.deals}/deals/{(await stack.deal_of(dot['id']))['id']}"
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS})
    await stack.wait_stage(dot["id"], "presenting")
    await closed(stack, dot["id"], {"qualify"})  # the qualifying stage's work is done

    async def shown_presenting() -> dict[str, Any] | None:
        task = await _kind(stack, dot["id"], "prepare_meeting")
        return task if task and task["prospect_card"]["stage"] == "presenting" else None

    prepare = await eventually(shown_presenting, "the preparation's card at presenting")
    assert (prepare["status"], prepare["notes"]) == ("open", ""), prepare
    await stack.ok("POST", f"{deal}/close", json={"outcome": "lost", "reason": "no budget"})
    await stack.wait_stage(dot["id"], "lost")
    tasks = await closed(stack, dot["id"], {"prepare_meeting"})
    assert tasks["prepare_meeting"]["notes"].startswith("lost"), tasks["prepare_meeting"]
