"""Reps change (issue 10, point 10) on the whole stack: PATCH /reps/{id} with its validation; a
deactivated rep's prospects, tasks, deals and journeys move to another rep by the assignment
rules; reassigning a prospect moves the deal's and the referral ask's ownership, so the old
rep's key can no longer close the deal and the new rep's can (the real access policy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import API_KEY_HEADER
from shared.contracts.journey import journey_id
from tests.support.deals import BOOKING_HOURS
from tests.support.eventually import eventually
from tests.support.runs import stop_to_nurture
from tests.support.scenarios import Driver, fast_cadence
from tests.support.settings import SERVICE_AUTH
from tests.support.stack import StackDriver

ANSWERS = {"budget": True, "authority": "decision_maker", "need": "reports by hand", "timeline": 2}
# the deal waits for its verdict: nothing times out while the reps change
PATIENT = {"qualification_reminder_seconds": 1800, "qualification_timeout_seconds": 3600}


async def new_rep(d: Driver, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "email": f"{name.split()[0].lower()}@reps.example.org", **extra}
    return await d.ok("POST", f"{d.u.prospecting}/reps", json=body)


async def rep_key(d: Driver, rep_id: str) -> dict[str, str]:
    issued = await d.ok(
        "POST",
        f"{d.u.prospecting}/api-keys",
        json={"name": rep_id, "role": "rep", "rep_id": rep_id},
    )
    return {API_KEY_HEADER: issued["key"]}


async def replied(d: Driver, first: str) -> tuple[dict[str, Any], str]:
    """A new prospect (of the only rep so far, or round robin) who replied: deal URL."""
    cadence = await d.ok("POST", f"{d.u.outreach}/cadences", json=fast_cadence(**PATIENT))
    prospect = await d.new_prospect(first)
    await d.enroll(prospect["id"], cadence["id"])
    await d.reply_to_first_mail(prospect, "Yes, tell me more")
    await d.wait_stage(prospect["id"], "qualifying")
    return prospect, f"{d.u.deals}/deals/{(await d.deal_of(prospect['id']))['id']}"


async def until(d: Driver, url: str, key: str, value: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        got: dict[str, Any] = await d.ok("GET", url)
        return got if got[key] == value else None

    return await eventually(probe, f"{url} {key}={value}")


async def test_patch_rep_validates_and_changes_rules(stack: StackDriver) -> None:
    reps = f"{stack.u.prospecting}/reps"
    mia = await new_rep(stack, "Mia Manager")
    rita = await new_rep(stack, "Rita Rep", manager_id=mia["id"])
    rules = {
        "territories": [{"name": "DACH", "countries": ["DE", "AT"], "rep_ids": [mia["id"]]}],
        "default_capacity": 10,
    }
    await stack.ok("PUT", f"{stack.u.prospecting}/assignment-rules", json=rules)

    bad: list[tuple[dict[str, Any], str]] = [
        ({"nickname": "R"}, "nickname"),
        ({"name": None}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"capacity": -1}, "capacity"),
        ({"manager_id": rita["id"]}, "manager_id"),  # herself
        ({"manager_id": "nosuchrep"}, "manager_id"),
        ({"territories": ["Nowhere"]}, "territories"),
    ]
    for body, field in bad:
        r = await stack.http.patch(f"{reps}/{rita['id']}", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text, (body, r.text)
    # Mia managed by Rita, who is managed by Mia: a loop
    r = await stack.http.patch(f"{reps}/{mia['id']}", json={"manager_id": rita["id"]})
    assert r.status_code == 422 and "loop" in r.text, r.text
    # the only rep of DACH cannot leave it
    r = await stack.http.patch(f"{reps}/{mia['id']}", json={"territories": []})
    assert r.status_code == 422 and "no rep left" in r.text, r.text
    r = await stack.http.patch(f"{reps}/nosuchrep", json={"name": "X"})
    assert r.status_code == 404

    changed = await stack.ok(
        "PATCH",
        f"{reps}/{rita['id']}",
        json={
            "name": "Rita Renamed",
            "email": "rita.new@reps.example.org",
            "phone": "+14155550123",
            "manager_id": None,
            "capacity": 3,
            "territories": ["DACH"],
        },
    )
    assert (changed["name"], changed["email"], changed["phone"]) == (
        "Rita Renamed",
        "rita.new@reps.example.org",
        "+14155550123",
    )
    assert changed["manager_id"] is None and changed["active"] is True
    got = await stack.ok("GET", f"{stack.u.prospecting}/assignment-rules")
    assert got["rules"]["capacity"] == {rita["id"]: 3}
    assert got["rules"]["territories"][0]["rep_ids"] == [mia["id"], rita["id"]]
    # a deactivated rep cannot be a manager or take a prospect
    await stack.ok("PATCH", f"{reps}/{mia['id']}", json={"active": False})
    r = await stack.http.patch(f"{reps}/{rita['id']}", json={"manager_id": mia["id"]})
    assert r.status_code == 422 and "inactive" in r.text, r.text


async def test_deactivated_rep_hands_over_prospects_tasks_deals_and_journeys(
    stack: StackDriver,
) -> None:
    ann = await new_rep(stack, "Ann Leaving")
    ada, deal = await replied(stack, "Ada")  # Ann is the only rep: Ada is hers
    assert ada["rep"]["id"] == ann["id"]
    ben = await new_rep(stack, "Ben Staying")

    r = await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{ann['id']}", json={"active": False})
    assert (r["active"], r["moved"]) == (False, {ada["id"]: ben["id"]})
    prospect = await stack.ok("GET", f"{stack.u.prospecting}/prospects/{ada['id']}")
    assert prospect["rep"]["id"] == ben["id"]
    assert "deactivated" in prospect["assignment_note"]
    await until(stack, deal, "rep_id", ben["id"])
    await until(stack, f"{stack.u.outreach}/journeys/{ada['id']}", "rep_id", ben["id"])

    async def tasks_moved() -> bool:
        tasks = await stack.tasks_of(ada["id"])
        return bool(tasks) and all(t["rep_id"] == ben["id"] for t in tasks)

    await eventually(tasks_moved, "Ada's tasks in Ben's inbox")
    # Ann is in no pool any more
    newcomer = await stack.new_prospect("Cid")
    assert newcomer["rep"]["id"] == ben["id"]
    r = await stack.http.patch(
        f"{stack.u.prospecting}/prospects/{newcomer['id']}", json={"rep_id": ann["id"]}
    )
    assert r.status_code == 422 and "inactive" in r.text, r.text
    back = await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{ann['id']}", json={"active": True})
    assert (back["active"], back["moved"]) == (True, {})


async def test_reassignment_moves_the_deal_and_the_referral_ask(stack: StackDriver) -> None:
    old = await new_rep(stack, "Olga Old")
    ada, deal = await replied(stack, "Ada")
    assert ada["rep"]["id"] == old["id"]
    new = await new_rep(stack, "Nina New")
    old_key, new_key = await rep_key(stack, old["id"]), await rep_key(stack, new["id"])
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS}, headers=old_key)
    await stack.wait_stage(ada["id"], "presenting")

    await stack.ok(
        "PATCH", f"{stack.u.prospecting}/prospects/{ada['id']}", json={"rep_id": new["id"]}
    )
    await until(stack, deal, "rep_id", new["id"])
    won = {"outcome": "won", "reason": "signed"}
    r = await stack.http.post(f"{deal}/close", json=won, headers=old_key)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_your_resource")
    r = await stack.http.post(f"{deal}/close", json=won, headers=new_key)
    assert r.status_code == 200, r.text
    await stack.wait_stage(ada["id"], "referrals")

    asks_url = f"{stack.u.referrals}/asks"
    (ask,) = await stack.ok("GET", asks_url, params={"client_prospect_id": ada["id"]})
    assert ask["rep_id"] == new["id"]  # the journey asked for referrals on Nina's behalf
    # the client goes back to Olga: the ask follows; the won deal stays Nina's
    await stack.ok(
        "PATCH", f"{stack.u.prospecting}/prospects/{ada['id']}", json={"rep_id": old["id"]}
    )
    await until(stack, f"{asks_url}/{ask['id']}", "rep_id", old["id"])
    assert (await stack.ok("GET", deal))["rep_id"] == new["id"]
    r = await stack.http.get(f"{asks_url}/{ask['id']}", headers=new_key)
    assert r.status_code == 403
    assert (await stack.http.get(f"{asks_url}/{ask['id']}", headers=old_key)).status_code == 200


async def test_a_reassigned_prospects_meeting_moves_to_the_new_reps_calendar_and_leaves_the_old(
    stack: StackDriver,
) -> None:
    """Ada's meeting went with her deal to Nina, her new rep, who runs it now; but no invitation
    said so: Ada's calendar kept Olga as its organizer, Olga's calendar kept the meeting, Nina's
    never had it. The hand-over now sends Ada the update (SEQUENCE one higher, Nina organizing,
    Nina in copy) and Olga a cancellation of her own that names no prospect, so her calendar
    drops it without a word to Ada."""
    olga = await new_rep(stack, "Olga Old")
    ada, deal = await replied(stack, "Ada")
    nina = await new_rep(stack, "Nina New")
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS})
    await stack.wait_stage(ada["id"], "presenting")
    starts = datetime.now(UTC) + timedelta(days=3)
    meeting = await stack.ok(
        "POST", f"{deal}/meetings", json={"starts_at": starts.isoformat(), "title": "Demo"}
    )
    await eventually(lambda: invitations(stack, ada["email"], "REQUEST"), "Ada's invitation")

    await stack.ok(
        "PATCH", f"{stack.u.prospecting}/prospects/{ada['id']}", json={"rep_id": nina["id"]}
    )
    (update,) = await eventually(
        lambda: invitations(stack, ada["email"], "REQUEST", sequence=1), "Ada's update"
    )
    assert organizer(update) == ("Nina New", nina["email"])
    copied = update["headers"].get("Cc", "")
    assert nina["email"] in copied and olga["email"] not in copied
    (dropped,) = await eventually(
        lambda: invitations(stack, olga["email"], "CANCEL", sequence=1), "Olga's cancellation"
    )
    assert olga["email"] in dropped["to"] and "Cc" not in dropped["headers"]
    calendar = unfolded(dropped)
    assert organizer(dropped) == ("Olga Old", olga["email"])
    assert ada["email"] not in calendar and "handed over to Nina New" in calendar
    assert "is run by Nina New now" in dropped["text"]
    assert f"UID:{meeting['id']}@" in calendar and f"UID:{meeting['id']}@" in unfolded(update)
    # nothing more: a cancellation to nobody else, no second update
    assert len(await invitations(stack, ada["email"], "CANCEL")) == 0
    assert len(await invitations(stack, ada["email"], "REQUEST")) == 2


async def invitations(
    d: Driver, address: str, method: str, sequence: int | None = None
) -> list[dict[str, Any]]:
    """The calendar messages to `address` of this method (and sequence)."""
    found = []
    for mail in await d.mails_to(address):
        calendar = unfolded(mail)
        if f"METHOD:{method}" not in calendar:
            continue
        if sequence is not None and f"SEQUENCE:{sequence}\n" not in calendar:
            continue
        found.append(mail)
    return found


def organizer(mail: dict[str, Any]) -> tuple[str, str]:
    """(CN, address) of the message's calendar ORGANIZER."""
    line = next(x for x in unfolded(mail).splitlines() if x.startswith("ORGANIZER"))
    params, address = line.split(":mailto:", 1)
    name = params.split("CN=", 1)[1].split(";")[0].strip('"')
    return name, address


def unfolded(mail: dict[str, Any]) -> str:
    """The message's calendar text with its folded lines joined (RFC 5545, 3.1)."""
    return str(mail.get("calendar") or "").replace("\r\n", "\n").replace("\n ", "")


async def test_deactivated_managers_tasks_go_to_their_manager_or_stay_and_say_so(
    stack: StackDriver,
) -> None:
    """Tasks that sit with a rep as the assignee (a manager's escalations about their reps'
    prospects) follow the rep's own manager on deactivation; without an active one they stay."""
    await new_rep(stack, "Ann Rep")
    ada, _ = await replied(stack, "Ada")  # Ann, the only rep, has Ada: her qualify task
    boss = await new_rep(stack, "Bo Boss")
    mel = await new_rep(stack, "Mel Manager", manager_id=boss["id"])
    nia = await new_rep(stack, "Nia Solo")
    tasks = await eventually(lambda: stack.tasks_of(ada["id"]), "Ada's qualify task")
    task_url = f"{stack.u.outreach}/tasks/{tasks[0]['id']}"
    await stack.ok("POST", f"{task_url}/reassign", json={"rep_id": mel["id"]})

    r = await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{mel['id']}", json={"active": False})
    assert r["moved"] == {} and "Bo Boss" in r["tasks"], r
    await until(stack, task_url, "rep_id", boss["id"])

    await stack.ok("POST", f"{task_url}/reassign", json={"rep_id": nia["id"]})
    r = await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{nia['id']}", json={"active": False})
    assert "stay with them (no manager)" in r["tasks"], r
    assert (await stack.ok("GET", task_url))["rep_id"] == nia["id"]


async def test_a_reps_pause_stays_with_the_rep_when_their_prospects_change_hands(
    stack: StackDriver,
) -> None:
    """Rita goes on vacation: her journeys pause (kind rep). Ada is handed to Ron, who is at
    work, so that her journey goes on: it does at once (Rita's resume would not reach it, and
    Ron never paused). Bob is handed to Ron once Ron is away too: Bob waits for Ron's resume."""
    rita = await new_rep(stack, "Rita Away")
    cadence = await stack.ok("POST", f"{stack.u.outreach}/cadences", json=fast_cadence(**PATIENT))
    ada, bob = await stack.new_prospect("Ada"), await stack.new_prospect("Bob")
    for p in (ada, bob):
        assert p["rep"]["id"] == rita["id"]
        await stack.enroll(p["id"], cadence["id"])
    outreach = stack.u.outreach
    paused = await stack.ok(
        "POST", f"{outreach}/reps/{rita['id']}/journeys/pause", json={"reason": "vacation"}
    )
    assert sorted(paused["signalled"]) == sorted([ada["id"], bob["id"]])

    async def pauses(p: dict[str, Any], expected: list[tuple[str, str]]) -> None:
        async def probe() -> bool:
            state = await stack.ok("GET", f"{outreach}/journeys/{p['id']}")
            return [(x["kind"], x["reason"]) for x in state["pauses"]] == expected

        await eventually(probe, f"{p['first_name']}'s journey paused by {expected}")

    await pauses(ada, [("rep", "vacation")])
    ron = await new_rep(stack, "Ron Working")
    prospects = f"{stack.u.prospecting}/prospects"
    await stack.ok("PATCH", f"{prospects}/{ada['id']}", json={"rep_id": ron["id"]})
    await pauses(ada, [])  # Ron's now, and Ron is at work
    await pauses(bob, [("rep", "vacation")])  # still Rita's

    r = await stack.http.post(f"{outreach}/reps/nobody/journeys/pause", json={"reason": "x"})
    assert r.status_code == 404, r.text
    r = await stack.http.post(f"{outreach}/reps/nobody/journeys/resume")
    assert r.status_code == 404, r.text
    ron_away = await stack.ok(
        "POST", f"{outreach}/reps/{ron['id']}/journeys/pause", json={"reason": "conference"}
    )
    assert ron_away["signalled"] == [ada["id"]]
    await stack.ok("PATCH", f"{prospects}/{bob['id']}", json={"rep_id": ron["id"]})
    await pauses(bob, [("rep", "conference")])  # Ron's pause, not Rita's
    back = await stack.ok("POST", f"{outreach}/reps/{rita['id']}/journeys/resume")
    assert back["signalled"] == []  # none of her journeys is hers any more
    await pauses(bob, [("rep", "conference")])
    ron_back = await stack.ok("POST", f"{outreach}/reps/{ron['id']}/journeys/resume")
    assert sorted(ron_back["signalled"]) == sorted([ada["id"], bob["id"]])
    await pauses(ada, [])
    await pauses(bob, [])


async def test_a_deactivated_reps_link_stops_offering_times_to_whom_was_not_handed_over(
    stack: StackDriver,
) -> None:
    """Ida's journey ended (nurture) under Ann, so Ann's deactivation does not hand her over;
    the booking link Ida holds named Ann and went on offering Ann's times. Prospecting tells
    deals through its outbox: the page offers no times, Ann's availability no slots."""
    d = stack
    ann = await new_rep(d, "Ann Leaving")
    ida = await d.new_prospect("Ida")
    await d.enroll(
        ida["id"], (await d.ok("POST", f"{d.u.outreach}/cadences", json=fast_cadence()))["id"]
    )
    await stop_to_nurture(d, ida["id"], 1)
    hours = f"{d.u.deals}/reps/{ann['id']}/availability"
    await d.ok("PUT", hours, json=BOOKING_HOURS)
    asked = {"prospect_id": ida["id"], "rep_id": ann["id"], "journey_key": journey_id(ida["id"])}
    link = await d.ok(
        "POST", f"{d.u.deals}/internal/booking-links", json=asked, headers=SERVICE_AUTH
    )
    page = f"{d.u.deals}/book/{link['token']}"
    assert 'name="slot"' in (await d.http.get(page)).text

    r = await d.ok("PATCH", f"{d.u.prospecting}/reps/{ann['id']}", json={"active": False})
    assert r["moved"] == {}, r  # her journey was over: not handed over

    async def no_times() -> str | None:
        answer = await d.http.get(page)
        return answer.text if answer.status_code == 410 else None

    text = await eventually(no_times, "Ida's page without Ann's times")
    assert 'name="slot"' not in text and "no longer taking meetings" in text
    assert (await d.ok("GET", hours))["free_slots"] == []


async def test_a_reps_new_name_and_phone_sign_the_next_message_of_a_running_journey(
    stack: StackDriver,
) -> None:
    """Ann's phone and name change while Ada's cadence runs: the journey held the details it was
    started with, and every message after the change still gave Ada the old number to call."""
    ann = await new_rep(stack, "Ann Before", phone="+14155550101")
    steps = [
        {"channel": "email", "offset_seconds": 0, "subject": "Hello", "body": "Hi\n{{ rep_name }}"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi, {{ rep_name }} here"},
        {
            "channel": "email",
            "offset_seconds": 8,
            "subject": "Call me",
            "body": "Call me: {{ rep_name }}, {{ rep_phone }}",
        },
    ]
    plan = fast_cadence(steps=steps, nurture_after_seconds=3600)
    cadence = await stack.ok("POST", f"{stack.u.outreach}/cadences", json=plan)
    ada = await stack.new_prospect("Ada")
    assert ada["rep"]["id"] == ann["id"]
    await stack.enroll(ada["id"], cadence["id"])
    first = await stack.wait_mails(ada["email"], 1)
    assert "Ann Before" in first[0]["text"]
    await stack.ok(
        "PATCH",
        f"{stack.u.prospecting}/reps/{ann['id']}",
        json={"name": "Ann After", "phone": "+14155550102"},
    )
    mails = await stack.wait_mails(ada["email"], 2)
    call = next(m for m in mails if m["subject"] == "Call me")
    assert "Call me: Ann After, +14155550102" in call["text"], call["text"]


async def test_a_prospect_left_without_a_rep_waits_instead_of_going_on_in_the_departed_reps_name(
    stack: StackDriver,
) -> None:
    """Ann, the only rep, leaves while Ada's cadence runs: nobody has room, Ada waits
    unassigned. Her journey went on sending in Ann's name, with Ann's number. It waits now, with
    a `rep` pause saying why, until a rep is given (Ann back, here); the task of her reply
    meanwhile waited in Ann's inbox, and now waits unassigned until then."""
    ann = await new_rep(stack, "Ann Leaving")
    cadence = await stack.ok("POST", f"{stack.u.outreach}/cadences", json=fast_cadence())
    ada = await stack.new_prospect("Ada")
    assert ada["rep"]["id"] == ann["id"]
    await stack.enroll(ada["id"], cadence["id"])
    await stack.wait_mails(ada["email"], 1)

    r = await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{ann['id']}", json={"active": False})
    assert r["moved"] == {ada["id"]: None}
    journey = f"{stack.u.outreach}/journeys/{ada['id']}"

    async def paused() -> dict[str, Any] | None:
        state: dict[str, Any] = await stack.ok("GET", journey)
        return state if state["paused"] else None

    state = await eventually(paused, "Ada's journey waiting for a rep")
    (pause,) = state["pauses"]
    assert pause["kind"] == "rep" and "Ann Leaving was deactivated" in pause["reason"], pause
    enrollment = await stack.ok("GET", f"{stack.u.outreach}/prospects/{ada['id']}/enrollment")
    assert enrollment["rep_id"] is None
    # she replies meanwhile: her reply's task waits unassigned, not in Ann's inbox
    await until(stack, journey, "rep_id", None)
    await stack.reply_to_first_mail(ada, "Yes, call me")
    await stack.wait_stage(ada["id"], "qualifying")
    (task,) = await eventually(lambda: stack.tasks_of(ada["id"]), "the task of Ada's reply")
    assert task["rep_id"] is None, task

    await stack.ok("PATCH", f"{stack.u.prospecting}/reps/{ann['id']}", json={"active": True})
    resumed = await until(stack, journey, "paused", False)
    assert resumed["rep_id"] == ann["id"]
    await until(stack, f"{stack.u.outreach}/tasks/{task['id']}", "rep_id", ann["id"])
