"""Dual channel means two messages (issue 10, point 9).

The first touch must contain a message channel. A message channel of a multi-channel touch
refused by consent or a hard bounce falls back to the other message channel (when the touch lacks
it) or to a rep task, recorded on the ledger and sent once however often the touch runs."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller

from services.outreach import models
from services.outreach.activities import SendFaults
from services.outreach.consent import service as consent
from services.outreach.consent import suppressions
from shared.contracts.journey import CadenceStep, Contact, SendWindow, TouchRequest, journey_id
from tests.support.apps import Api
from tests.support.consent import OutreachRig, outreach_rig
from tests.support.fixtures import Ground
from tests.support.ports import free_port
from tests.support.scenarios import daytime_zone, fast_cadence
from tests.support.settings import AUTH

EMAIL = CadenceStep("email", 0, "Hi {{ first_name }}, a quick question", "Quick question")
SMS = CadenceStep("sms", 0, "Hi {{ first_name }}, {{ rep_name }} here")
CALL = CadenceStep("call_task", 0, "Call {{ first_name }} about the question")
SOCIAL = CadenceStep("social_task", 0, "Connect with {{ first_name }}")


def person() -> Contact:
    n = uuid.uuid4().int
    return Contact(
        uuid.uuid4().hex,
        "Ada",
        "Lovelace",
        f"ada-{n % 10**8}@example.com",
        f"+1415555{n % 10**4:04d}",
        company="Analytical Engines",
        timezone=daytime_zone(),  # texts are only sent 08:00-21:00 local time
        rep_name="Rita Rep",
    )


def first_touch(c: Contact, *steps: CadenceStep) -> TouchRequest:
    return TouchRequest(journey_id(c.prospect_id), "step-0", "cadence", c, steps=list(steps))


async def opt_out(st: OutreachRig, c: Contact, channel: str, reason: str) -> None:
    address = (c.email if channel == "email" else c.phone) or ""
    async with st.sessions() as s:
        await consent.opt_out(s, channel, address, reason, prospect_id=c.prospect_id)
        await s.commit()


async def messages(st: OutreachRig, c: Contact) -> dict[str, dict[str, Any]]:
    r = await st.api.get(f"/prospects/{c.prospect_id}/messages", headers=AUTH)
    assert r.status_code == 200, r.text
    return {m["channel"]: m for m in r.json()}


async def test_a_first_touch_without_a_message_channel_is_refused(api: Api) -> None:
    client = await api("outreach")
    body = fast_cadence()
    body["steps"][0] = {"channel": "call_task", "offset_seconds": 0, "body": "Call them"}
    body["steps"][1] = {"channel": "social_task", "offset_seconds": 0, "body": "Connect"}
    r = await client.post("/cadences", json=body)
    assert r.status_code == 422, r.text
    [detail] = r.json()["error"]["details"]
    assert detail["field"] == "steps"
    assert "must contain a message channel (email or sms)" in detail["problem"]

    body["steps"][1] = {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"}
    assert (await client.post("/cadences", json=body)).status_code == 201


async def test_an_opted_out_email_falls_back_to_a_text_sent_once(ground: Ground) -> None:
    async with outreach_rig(ground) as st:
        c = person()
        await opt_out(st, c, "email", "unsubscribe link")
        req = first_touch(c, EMAIL, CALL)
        assert await st.send(req) == {
            "email": "suppressed",
            "sms": "sent",
            "call_task": "task_created",
        }
        # the touch again (a retry, a send after a window): the fallback has its own ledger key
        assert (await st.send(req))["sms"] == "already_sent"
        [text] = await st.texts_to(c.phone or "")
        assert text["body"] == "Hi Ada, a quick question"
        assert st.emails_to(c.email or "") == []
        rows = await messages(st, c)
        assert (rows["email"]["status"], rows["email"]["fallback_for"]) == ("suppressed", "")
        sms = rows["sms"]
        assert (sms["touch_key"], sms["status"], sms["fallback_for"]) == (
            "step-0",
            "submitted",
            "email",
        )
        assert sms["fallback_reason"] == "email refused: suppressed: unsubscribe link"


async def test_a_stopped_text_falls_back_to_an_email(ground: Ground) -> None:
    async with outreach_rig(ground) as st:
        c = person()
        await opt_out(st, c, "sms", "SMS STOP")
        assert await st.send(first_touch(c, SMS, SOCIAL)) == {
            "sms": "suppressed",
            "email": "sent",
            "social_task": "task_created",
        }
        [mail] = st.emails_to(c.email or "")
        assert mail["subject"] == "A message from Rita Rep"
        assert "Hi Ada, Rita Rep here" in mail["text"]
        assert await st.texts_to(c.phone or "") == []
        email = (await messages(st, c))["email"]
        assert (email["fallback_for"], email["fallback_reason"]) == (
            "sms",
            "sms refused: suppressed: SMS STOP",
        )


async def test_a_hard_bounced_address_falls_back_to_a_task_when_the_touch_has_both(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        c = person()
        async with st.sessions() as s:
            # what a hard-bounce webhook records (test_consent_and_replies shows the webhook)
            await suppressions.suppress(s, "email", c.email or "", "hard bounce")
            await s.commit()
        req = first_touch(c, EMAIL, SMS)
        assert await st.send(req) == {
            "email": "suppressed",
            "sms": "sent",
            "call_task": "task_created",
        }
        assert (await st.send(req))["call_task"] == "task_created"  # the same task, found
        r = await st.api.get("/tasks", params={"prospect_id": c.prospect_id}, headers=AUTH)
        [task] = r.json()
        assert task["kind"] == "call_task"
        assert "instead of email (email refused: suppressed: hard bounce)" in task["body"]
        assert "Hi Ada, a quick question" in task["body"]


async def test_nothing_stands_in_for_a_person_on_the_do_not_contact_list(ground: Ground) -> None:
    async with outreach_rig(ground) as st:
        c = person()
        r = await st.api.post("/do-not-contact", json={"value": c.email}, headers=AUTH)
        assert r.status_code == 201
        outcomes = await st.send(first_touch(c, EMAIL, CALL))
        assert outcomes["email"] == "suppressed" and "sms" not in outcomes
        assert await st.texts_to(c.phone or "") == []


async def test_a_single_channel_touch_does_not_fall_back(ground: Ground) -> None:
    async with outreach_rig(ground) as st:
        c = person()
        await opt_out(st, c, "email", "unsubscribe link")
        later = TouchRequest(journey_id(c.prospect_id), "step-1", "cadence", c, steps=[EMAIL])
        assert await st.send(later) == {"email": "suppressed"}


async def test_the_same_touch_run_twice_at_once_sends_each_message_once(ground: Ground) -> None:
    # Both attempts find no ledger row and insert one; the loser's insert fails on the unique key
    # and it carries on with the winner's row (it has no savepoint: the insert is its
    # transaction's only write). Several rounds, so that on PostgreSQL the inserts do collide.
    # Each message says `sent` once at most. When each run wins one channel, each meets the
    # other's send in flight (SendInFlight) after its own went, so its attempt fails and its retry
    # says `already_sent` for the message it sent itself: both runs then say `already_sent` (seen
    # once in CI, in the warnings: one run's email and the other's text in flight). The mailbox
    # and Twilio count the sends.
    async with outreach_rig(ground) as st:
        for _ in range(4):
            c = person()
            req = first_touch(c, EMAIL, SMS)
            results = await asyncio.gather(st.send(req), st.send(req))
            for channel in ("email", "sms"):
                said = sorted(r[channel] for r in results)
                assert said in (["already_sent", "sent"], ["already_sent", "already_sent"]), said
            assert len(st.emails_to(c.email or "")) == 1
            assert len(await st.texts_to(c.phone or "")) == 1
            rows = await st.rows(c.prospect_id)
            assert sorted((r.channel, r.status) for r in rows) == [
                ("email", "submitted"),
                ("sms", "submitted"),
            ]


async def test_a_number_twilio_refuses_fails_its_text_once_and_the_touch_goes_on(
    ground: Ground,
) -> None:
    """Twilio's 400 for the recipient (21211 not a valid number) is an answer: nothing went
    out and no retry can change it. The text is `failed` at once, as a mail server's refusal of
    the address is, and the touch goes on (its email, a call task standing in); it used to be
    retried without end, the journey stuck at that touch."""
    async with outreach_rig(ground) as st:
        c = person()
        c.phone = "+15005550001"  # the sandbox answers as Twilio does: 400, code 21211
        req = first_touch(c, SMS, EMAIL)  # the text first: stuck, it would hold the email too
        outcomes = await asyncio.wait_for(st.send(req), timeout=25)
        assert outcomes == {"sms": "failed", "email": "sent", "call_task": "task_created"}
        sms = (await messages(st, c))["sms"]
        assert sms["status"] == "failed"
        assert "21211" in sms["error"]
        # the touch again: said again, from the ledger, without asking Twilio
        assert (await asyncio.wait_for(st.send(req), timeout=25))["sms"] == "failed"
        assert await st.texts_to(c.phone) == []


class RefusingSmtp:
    """A mail server that takes the recipient, then refuses the message itself at its end
    (554 5.7.1: its content filter): a permanent answer (RFC 5321, 4.2.1)."""

    def __init__(self) -> None:
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.refused += 1
        return "554 5.7.1 Message rejected as spam"


async def test_an_email_the_server_refuses_for_good_at_its_end_fails_once(ground: Ground) -> None:
    """A 5xx to the message's end is the server's final word: nothing went out and the same
    message gets the same answer. It was retried without end (the journey stuck at the touch,
    the server asked again every minute); now the email is `failed` at once and the touch goes
    on, with a task standing in, as for an address refused for good."""
    smtp = RefusingSmtp()
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    try:
        async with outreach_rig(ground, smtp_port=controller.port) as st:
            c = person()
            outcomes = await asyncio.wait_for(st.send(first_touch(c, EMAIL, SMS)), timeout=25)
            assert outcomes == {"email": "failed", "sms": "sent", "call_task": "task_created"}
            email = (await messages(st, c))["email"]
            assert email["status"] == "failed" and "554" in email["error"]
            assert smtp.refused == 1
    finally:
        controller.stop()


async def test_a_subject_that_renders_a_line_break_goes_out_on_one_line(ground: Ground) -> None:
    """A subject is one header line; a value with a line break in it (a company name imported
    from a spreadsheet cell with two lines) made the message unbuildable (ValueError), which the
    send took for a provider call of unknown outcome: retried without end, the journey stuck."""
    async with outreach_rig(ground) as st:
        c = person()
        c.company = "Analytical\r\nEngines "
        step = CadenceStep("email", 0, "Hi {{ first_name }}", "{{ company }}\nand reporting")
        outcomes = await asyncio.wait_for(st.send(first_touch(c, step, SMS)), timeout=25)
        assert outcomes == {"email": "sent", "sms": "sent"}
        [mail] = st.emails_to(c.email or "")
        assert mail["subject"] == "Analytical Engines and reporting"


class EveningClock:
    """The prospect's evening, stood still but for what the mail server's slowness takes."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


class SlowSmtp:
    """A mail server that takes two minutes (by the touch's clock) to answer the message's end."""

    def __init__(self, clock: EveningClock) -> None:
        self.clock = clock
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.5)
        self.clock.moment += timedelta(minutes=2)
        self.accepted += 1
        return "250 OK"


async def test_a_text_after_a_slow_email_waits_for_the_morning_when_21h_passed(
    ground: Ground,
) -> None:
    """The window was read once per touch: an email whose exchange took the clock past 21:00
    local let the touch's text go after 21:00. Each channel now reads the clock when it goes:
    the text is deferred to 08:00 local, as any text outside the window."""
    zone = ZoneInfo("America/Chicago")
    clock = EveningClock(datetime(2026, 3, 4, 20, 59, 30, tzinfo=zone).astimezone(UTC))
    smtp = SlowSmtp(clock)
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    try:
        async with outreach_rig(ground, smtp_port=controller.port, clock=clock) as st:
            c = person()
            c.timezone = "America/Chicago"
            result = await asyncio.wait_for(st.touch(first_touch(c, EMAIL, SMS)), timeout=25)
            outcomes = {o.channel: (o.status, o.detail) for o in result.outcomes}
            morning = datetime(2026, 3, 5, 8, tzinfo=zone)
            assert outcomes["email"][0] == "sent"
            assert outcomes["sms"] == ("deferred", morning.astimezone(UTC).isoformat())
            assert result.defer_until == morning.astimezone(UTC).isoformat()
            assert await st.texts_to(c.phone or "") == []
            assert smtp.accepted == 1
    finally:
        await asyncio.to_thread(controller.stop)


class SlowBeforeTheCall(SendFaults):
    """The minutes between a text's claim and its provider call (the opt-out locks it waits
    for, a busy database) that carry the clock past 21:00 local."""

    def __init__(self, clock: EveningClock, to: str = "") -> None:
        self.clock = clock
        self.to = to  # only the sends to this address, when given

    async def before_provider_call(self, row: models.Message) -> None:
        if not self.to or row.to_address == self.to:
            self.clock.moment += timedelta(minutes=2)


async def test_a_text_whose_call_comes_after_21h_is_deferred_not_sent(ground: Ground) -> None:
    """The window is read again right before the provider call: a text claimed at 20:59:50
    whose call would start after 21:00 local goes back to `pending`, deferred to 08:00, and
    goes out once then."""
    zone = ZoneInfo("America/Chicago")
    clock = EveningClock(datetime(2026, 3, 4, 20, 59, 50, tzinfo=zone).astimezone(UTC))
    async with outreach_rig(ground, faults=SlowBeforeTheCall(clock), clock=clock) as st:
        c = person()
        c.timezone = "America/Chicago"
        req = first_touch(c, SMS)
        result = await asyncio.wait_for(st.touch(req), timeout=25)
        morning = datetime(2026, 3, 5, 8, tzinfo=zone).astimezone(UTC)
        [outcome] = result.outcomes
        assert (outcome.status, outcome.detail) == ("deferred", morning.isoformat())
        assert await st.texts_to(c.phone or "") == []
        [row] = await st.rows(c.prospect_id)
        assert (row.status, row.sending_until) == ("pending", None)

        clock.moment = morning
        assert await asyncio.wait_for(st.send(req), timeout=25) == {"sms": "sent"}
        assert len(await st.texts_to(c.phone or "")) == 1


async def test_an_email_deferred_at_its_call_holds_no_slot_of_its_senders_cap(
    ground: Ground,
) -> None:
    """An email claimed at 16:59:50 local, its call carried past the window's 17:00 end, goes
    out nothing and must hold no slot: it kept the one it claimed, counted against the sender's
    daily cap while nothing went, so another email was held back; and its retry went out on
    that stale slot without asking the cap again (a day later, past every cap)."""
    zone = ZoneInfo("America/Chicago")
    clock = EveningClock(datetime(2026, 3, 4, 16, 59, 50, tzinfo=zone).astimezone(UTC))
    late, other = person(), person()
    late.timezone = other.timezone = "America/Chicago"
    window = SendWindow(start_hour=9, end_hour=17)
    late_req = replace(first_touch(late, EMAIL), send_window=window)
    other_req = replace(first_touch(other, EMAIL), send_window=window)
    faults = SlowBeforeTheCall(clock, to=late.email or "")
    async with outreach_rig(ground, faults=faults, clock=clock) as st:
        r = await st.api.post(
            "/senders", json={"from_address": "ann@one.example.com", "daily_cap": 1}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        sender_id = r.json()["id"]

        result = await asyncio.wait_for(st.touch(late_req), timeout=25)
        morning = datetime(2026, 3, 5, 9, tzinfo=zone).astimezone(UTC)
        assert result.defer_until == morning.isoformat()
        assert st.emails_to(late.email or "") == []
        [row] = await st.rows(late.prospect_id)
        assert (row.status, row.sending_until) == ("pending", None)
        [ann] = (await st.api.get("/senders", headers=AUTH)).json()
        assert ann["sent_last_day"] == 0
        assert (row.claimed_at, row.sender_id) == (None, None)

        # the slot is free: the next email takes it
        clock.moment = morning
        assert await asyncio.wait_for(st.send(other_req), timeout=25) == {"email": "sent"}
        [taken] = await st.rows(other.prospect_id)
        assert taken.sender_id == sender_id and taken.claimed_at is not None

        # the deferred one, run again, asks the cap afresh: full for a day, so it waits
        again = await asyncio.wait_for(st.touch(late_req), timeout=25)
        assert again.defer_until == (taken.claimed_at + timedelta(days=1)).isoformat()
        assert st.emails_to(late.email or "") == []
        [ann] = (await st.api.get("/senders", headers=AUTH)).json()
        assert ann["sent_last_day"] == 1


async def test_an_email_deferred_at_its_call_goes_with_the_message_id_of_its_new_sender(
    ground: Ground,
) -> None:
    """Its new claim may name another sender (the round robin moved on): the email goes with
    that sender's From and a Message-ID of its domain, not the first claim's."""
    zone = ZoneInfo("America/Chicago")
    clock = EveningClock(datetime(2026, 3, 4, 16, 59, 50, tzinfo=zone).astimezone(UTC))
    c = person()
    c.timezone = "America/Chicago"
    req = replace(first_touch(c, EMAIL), send_window=SendWindow(start_hour=9, end_hour=17))
    async with outreach_rig(ground, faults=SlowBeforeTheCall(clock), clock=clock) as st:
        for address in ("ann@one.example.com", "bob@two.example.net"):
            r = await st.api.post("/senders", json={"from_address": address}, headers=AUTH)
            assert r.status_code == 201, r.text
        assert (await asyncio.wait_for(st.send(req), timeout=25)) == {"email": "deferred"}

        # two minutes more before this call too: 09:02, within the window
        clock.moment = datetime(2026, 3, 5, 9, tzinfo=zone).astimezone(UTC)
        assert (await asyncio.wait_for(st.send(req), timeout=25)) == {"email": "sent"}
        [mail] = st.emails_to(c.email or "")
        assert "bob@two.example.net" in mail["from"], mail
        assert mail["message_id"].rstrip(">").endswith("@two.example.net"), mail
