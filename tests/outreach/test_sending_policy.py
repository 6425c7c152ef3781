"""Sending like a good citizen, against real parts: the Temporal dev server running outreach's
send activity, the SMTP mailbox (aiosmtpd), the Twilio sandbox, SQLite and PostgreSQL.

Sender rotation and caps, the per-domain cap, a retry keeping its sender, caps under concurrent
activities on two workers, what every email carries, and windows/holidays/zone inference as the
activity applies them."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import delete, update

from devstack.sandbox.mailbox import Mailbox, start_smtp
from services.outreach import models
from services.outreach.activities import activities_for, close_activities
from shared.contracts.journey import (
    CadenceStep,
    SendWindow,
    TouchRequest,
    journey_id,
    run_key,
)
from tests.support.runs import (
    LOST,
    add_enrollment,
    as_run,
    lost_then_running,
    while_its_end_is_recorded,
)
from tests.support.sandboxes import EMAIL, SMS, touch_request
from tests.support.scenarios import daytime_zone, random_phone
from tests.support.sending import POSTAL, Rig, SendingRig, contact, email_touch, outcome
from tests.support.serve import HTTP_TIMEOUT


def mime(mailbox: Mailbox, to: str) -> EmailMessage:
    """The message exactly as the SMTP server received it."""
    [stored] = mailbox.list(to=to)
    raw = (mailbox.raw(stored.id) or b"").replace(b"\r\n", b"\n")  # SMTP's CRLF, as Python's
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def add_sender(r: Rig, address: str, **kw: Any) -> dict[str, Any]:
    res = await r.api.post("/senders", json={"from_address": address, **kw})
    assert res.status_code == 201, res.text
    return dict(res.json())


# --- the senders API -----------------------------------------------------------------------------


async def test_senders_are_managed_through_the_api(sending_rig: SendingRig) -> None:
    async with sending_rig() as r:
        body = {"from_address": "Ann@Sales.Example.com", "display_name": "Ann", "hourly_cap": 5}
        assert (
            await r.api.post("/senders", json=body, headers={"X-API-Key": ""})
        ).status_code == 401
        created = await add_sender(r, body["from_address"], display_name="Ann", hourly_cap=5)
        assert created["from_address"] == "ann@sales.example.com"
        assert (created["daily_cap"], created["hourly_cap"], created["active"]) == (0, 5, True)
        dup = await r.api.post("/senders", json={"from_address": "ann@sales.example.com"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "sender_exists"
        bad = await r.api.post(
            "/senders",
            json={"from_address": "nope", "hourly_cap": -1, "display_name": "a\r\nBcc: x@y.z"},
        )
        assert bad.status_code == 422
        fields = {d["field"] for d in bad.json()["error"]["details"]}
        assert fields == {"from_address", "hourly_cap", "display_name"}

        put = await r.api.put(
            f"/senders/{created['id']}",
            json={"from_address": "ann@sales.example.com", "daily_cap": 100, "active": False},
        )
        assert put.status_code == 200
        assert (put.json()["daily_cap"], put.json()["active"], put.json()["hourly_cap"]) == (
            100,
            False,
            0,
        )
        other = await add_sender(r, "bob@sales.example.com")
        clash = await r.api.put(
            f"/senders/{other['id']}", json={"from_address": "ann@sales.example.com"}
        )
        assert clash.status_code == 409
        listed = (await r.api.get("/senders")).json()
        assert [s["from_address"] for s in listed] == [
            "ann@sales.example.com",
            "bob@sales.example.com",
        ]
        got = await r.api.get(f"/senders/{other['id']}")
        assert got.json()["sent_last_hour"] == 0
        assert (await r.api.get("/senders/nope")).status_code == 404
        assert (await r.api.put("/senders/nope", json=body)).status_code == 404


# --- rotation and caps ---------------------------------------------------------------------------


async def test_emails_rotate_over_senders_and_wait_when_every_cap_is_hit(
    sending_rig: SendingRig,
) -> None:
    async with sending_rig() as r:
        ann = await add_sender(r, "ann@one.example.com", display_name="Ann Ames", hourly_cap=2)
        bob = await add_sender(r, "bob@two.example.net", hourly_cap=2, daily_cap=50)
        await add_sender(r, "off@three.example.org", active=False)
        people = [contact() for _ in range(5)]
        results = [await r.send(email_touch(c)) for c in people[:4]]
        assert [outcome(res) for res in results] == ["sent"] * 4

        senders_used = [parseaddr(mime(r.sb.mailbox, c.email or "")["From"]) for c in people[:4]]
        assert senders_used == [
            ("Ann Ames", "ann@one.example.com"),
            ("", "bob@two.example.net"),
            ("Ann Ames", "ann@one.example.com"),
            ("", "bob@two.example.net"),
        ]
        for c, (_, address) in zip(people[:4], senders_used, strict=True):
            message = mime(r.sb.mailbox, c.email or "")
            # the envelope sender and the Message-ID domain follow the sender too
            assert message["Return-Path"] == f"<{address}>"
            assert str(message["Message-ID"]).endswith(f"@{address.split('@')[1]}>")
            [row] = await r.ledger(c)
            assert row.sender_id == (ann if "ann" in address else bob)["id"]
            assert row.provider_id == message["Message-ID"]

        # both senders are full for the hour: the fifth waits, nothing is dropped or sent
        fifth = await r.send(email_touch(people[4]))
        assert outcome(fifth) == "deferred"
        first_slot = (await r.ledger(people[0]))[0].claimed_at
        assert first_slot is not None and fifth.defer_until is not None
        assert datetime.fromisoformat(fifth.defer_until) == first_slot + timedelta(hours=1)
        assert r.sb.mailbox.list(to=people[4].email) == []
        [waiting] = await r.ledger(people[4])
        assert (waiting.status, waiting.sender_id, waiting.attempts) == ("pending", None, 0)
        usage = {
            s["from_address"]: s["sent_last_hour"] for s in (await r.api.get("/senders")).json()
        }
        assert usage == {
            "ann@one.example.com": 2,
            "bob@two.example.net": 2,
            "off@three.example.org": 0,
        }

        # more room for Ann: the same touch, run again, goes out from her
        await r.api.put(
            f"/senders/{ann['id']}",
            json={"from_address": ann["from_address"], "display_name": "Ann Ames", "hourly_cap": 3},
        )
        again = await r.send(email_touch(people[4]))
        assert outcome(again) == "sent" and again.defer_until is None
        assert (
            parseaddr(mime(r.sb.mailbox, people[4].email or "")["From"])[1] == ann["from_address"]
        )


async def test_a_retried_send_keeps_the_sender_of_its_slot(
    tmp_path: Path, sending_rig: SendingRig
) -> None:
    # The activities' SMTP server is down at first, so the attempt fails after the slot was
    # taken. The port is bound, not listening: connections are refused, no server can take it.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        smtp_port = int(reserved.getsockname()[1])
        async with sending_rig(
            settings_for_activities=lambda s: s.model_copy(update={"smtp_port": smtp_port}),
        ) as r:
            ann = await add_sender(r, "ann@one.example.com", hourly_cap=10)
            bob = await add_sender(r, "bob@two.example.net", hourly_cap=10)
            c = contact()
            handle = await r.start(email_touch(c))
            for _ in range(200):
                rows = await r.ledger(c)
                if rows and rows[0].attempts >= 1:
                    break
                await asyncio.sleep(0.05)
            state = [(row.status, row.attempts, row.sender_id) for row in rows]
            assert state and state[0][0] == "sending" and state[0][2] == ann["id"], state
            # Start the server only once the first attempt has failed: marking the row
            # `sending` comes before the connection attempt, so earlier would race it.
            for _ in range(200):
                pending = (await handle.describe()).raw_description.pending_activities
                if pending and pending[0].attempt >= 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the first attempt never failed")
            mailbox = Mailbox(tmp_path / "late-mailbox")
            reserved.close()
            controller = await start_smtp(mailbox, "127.0.0.1", smtp_port)
            try:
                result = await handle.result()
            finally:
                controller.stop()
            assert outcome(result) == "sent"
            [row] = await r.ledger(c)
            assert row.attempts >= 2 and row.sender_id == ann["id"]
            assert parseaddr(mime(mailbox, c.email or "")["From"])[1] == "ann@one.example.com"
            # a fresh claim would have rotated to Bob, who has never been used
            got_bob = (await r.api.get(f"/senders/{bob['id']}")).json()
            assert got_bob["last_used_at"] is None and got_bob["sent_last_hour"] == 0


async def test_at_most_n_emails_per_recipient_domain_per_hour(sending_rig: SendingRig) -> None:
    async with sending_rig(per_domain_hourly_cap=2) as r:
        same = [contact("acme.example") for _ in range(3)]
        results = [await r.send(email_touch(c)) for c in same]
        assert [outcome(res) for res in results] == ["sent", "sent", "deferred"]
        first_slot = (await r.ledger(same[0]))[0].claimed_at
        assert first_slot is not None and results[2].defer_until is not None
        assert datetime.fromisoformat(results[2].defer_until) == first_slot + timedelta(hours=1)
        assert r.sb.mailbox.list(to=same[2].email) == []
        # another domain is not held back, and with no sender the default From is used
        other = contact("ACME.example.org")
        assert outcome(await r.send(email_touch(other))) == "sent"
        assert mime(r.sb.mailbox, other.email or "")["From"] == r.settings.email_from
        [row] = await r.ledger(other)
        assert (row.sender_id, row.to_domain) == (None, "acme.example.org")


async def test_caps_hold_under_concurrent_sends_on_two_workers(sending_rig: SendingRig) -> None:
    async with sending_rig(activity_workers=2) as r:
        await add_sender(r, "ann@one.example.com", hourly_cap=3)
        await add_sender(r, "bob@two.example.net", hourly_cap=3)
        people = [contact() for _ in range(14)]
        handles = [await r.start(email_touch(c)) for c in people]
        results = await asyncio.gather(*(h.result() for h in handles))
        statuses = sorted(outcome(res) for res in results)
        assert statuses == ["deferred"] * 8 + ["sent"] * 6
        froms = [parseaddr(m.from_)[1] for m in r.sb.mailbox.list()]
        assert sorted(froms) == ["ann@one.example.com"] * 3 + ["bob@two.example.net"] * 3


# --- what every email carries ---------------------------------------------------------------------


async def test_every_email_carries_ids_unsubscribe_postal_address_and_both_parts(
    sending_rig: SendingRig,
) -> None:
    async with sending_rig() as r:
        people = [contact(), contact()]
        for c in people:
            assert outcome(await r.send(email_touch(c))) == "sent"
        ids = set()
        for c in people:
            message = mime(r.sb.mailbox, c.email or "")
            ids.add(message["Message-ID"])
            [row] = await r.ledger(c)
            assert row.provider_id == message["Message-ID"]
            assert message.get_content_type() == "multipart/alternative"
            parts = {p.get_content_type(): str(p.get_content()) for p in message.iter_parts()}
            assert set(parts) == {"text/plain", "text/html"}
            assert "Hello Ada" in parts["text/plain"] and "Hello Ada" in parts["text/html"]
            assert POSTAL in parts["text/plain"]
            assert "Closeflow Test Ltd<br>1 Harbour Road, Bristol BS1 5TT, UK" in parts["text/html"]
            unsubscribe = f"http://test/unsubscribe/{row.unsubscribe_token}"
            assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert unsubscribe in parts["text/plain"] and unsubscribe in parts["text/html"]
        assert len(ids) == 2 and all(i and i.startswith("<") for i in ids)


# --- windows, holidays and time zones in the send activity ---------------------------------------


async def test_a_holiday_in_the_prospects_calendar_defers_the_touch_to_the_next_day(
    sending_rig: SendingRig,
) -> None:
    async with sending_rig() as r:
        zone = "Pacific/Kiritimati"  # UTC+14: its date is often not UTC's
        today = datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
        c = contact(timezone=zone)
        window = SendWindow(holidays=[today.isoformat()])
        result = await r.send(email_touch(c, window=window))
        assert outcome(result) == "deferred" and result.defer_until is not None
        opens = datetime.fromisoformat(result.defer_until).astimezone(ZoneInfo(zone))
        assert (opens.date(), opens.hour, opens.minute) == (today + timedelta(days=1), 0, 0)
        assert r.sb.mailbox.list(to=c.email) == [] and await r.ledger(c) == []
        yesterday = SendWindow(holidays=[(today - timedelta(days=1)).isoformat()])
        assert outcome(await r.send(email_touch(c, window=yesterday))) == "sent"


PHONES = {
    "+14155550100": "America/Los_Angeles",
    "+18085550100": "Pacific/Honolulu",
    "+15125550100": "America/Chicago",
    "+12125550100": "America/New_York",
    "+5511987654321": "America/Sao_Paulo",
    "+33612345678": "Europe/Paris",
    "+27211234567": "Africa/Johannesburg",
    "+74951234567": "Europe/Moscow",
    "+919812345678": "Asia/Calcutta",
    "+862012345678": "Asia/Shanghai",
    "+81312345678": "Asia/Tokyo",
    "+61212345678": "Australia/Sydney",
}


async def test_a_missing_time_zone_is_inferred_from_the_phone_for_texts(
    sending_rig: SendingRig,
) -> None:
    async with sending_rig() as r:
        now = datetime.now(UTC)

        def opens_at_eight_local(zone: str) -> datetime | None:
            local = now.astimezone(ZoneInfo(zone))
            if not 1 <= local.hour < 7:
                return None
            return local.replace(hour=8, minute=0, second=0, microsecond=0)

        # a number whose own zone is in the small hours now, and whose 08:00 is neither 08:00
        # nor 13:00 UTC (what a UTC or a conservative guess would give): with zones at most
        # 3 h apart, two of them are always in that 6-hour stretch
        phone, zone = next(
            (p, z)
            for p, z in PHONES.items()
            if (eight := opens_at_eight_local(z)) is not None
            and eight.astimezone(UTC).hour not in (8, 13)
        )
        c = contact(timezone="", phone=phone)
        req = email_touch(c)
        req.steps.append(CadenceStep("sms", 0, "Hi {{ first_name }}"))
        result = await r.send(req)
        assert outcome(result, "sms") == "deferred" and result.defer_until is not None
        opens = datetime.fromisoformat(result.defer_until).astimezone(ZoneInfo(zone))
        assert (opens.hour, opens.minute) == (8, 0)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            texts = await client.get(f"{r.sb.twilio_url}/sandbox/messages", params={"to": phone})
        body = texts.json()
        assert (body["messages"] if isinstance(body, dict) else body) == []


# --- a journey run's late work -------------------------------------------------------------------


async def test_a_touch_of_a_journey_run_that_ended_does_not_go(sending_rig: SendingRig) -> None:
    """A run's end cancels its background work, but a touch under way (a meeting reminder, a
    referral ask) may reach outreach after the end was recorded: nothing of it goes (a lost
    deal's meeting reminder; the next run sends its own). A channel an earlier attempt claimed
    in the ledger is a retry still: reconciled as ever, neither refused nor sent twice."""
    async with sending_rig() as r:
        c = contact(timezone=daytime_zone(), phone=random_phone())
        wid = journey_id(c.prospect_id)
        acts = activities_for(r.settings, r.sessions)
        send = next(a for a in acts if getattr(a, "__name__", "") == "send_touch")
        try:
            # the first attempt of the run's last touch, while it ran (no row says otherwise)
            touch = touch_request(c, EMAIL, SMS, key="step-1")
            first = await as_run(wid, "run-1").run(send, touch)
            assert {o.channel: o.status for o in first.outcomes} == {"email": "sent", "sms": "sent"}
            ended, running = await lost_then_running(r.sessions, c.prospect_id, ended="run-1")
            reminder = TouchRequest(
                wid,
                "meeting-reminder:m1",
                "meeting_reminder",
                c,
                channels=["email", "sms"],
                variables={"meeting_title": "Demo", "meeting_time": "Tuesday 10:00"},
            )
            late = await as_run(wid, ended).run(send, reminder)
            why = "its journey run (run 1) had ended (lost)"
            assert {(o.channel, o.status, o.detail) for o in late.outcomes} == {
                ("email", "skipped", why),
                ("sms", "skipped", why),
            }
            assert {row.touch_key for row in await r.ledger(c)} == {"step-1"}
            # the touch's retry finds what went
            again = await as_run(wid, ended).run(send, touch)
            assert {o.status for o in again.outcomes} == {"already_sent"}
            # an attempt that claimed the email (the provider may have it) and died before the
            # text: the retry reconciles the email with its Message-ID; the text stays unsent
            [email] = [row for row in await r.ledger(c) if row.channel == "email"]
            async with r.sessions() as s:
                await s.execute(
                    update(models.Message)
                    .where(models.Message.id == email.id)
                    .values(status="sending", sending_until=None)
                )
                await s.execute(
                    delete(models.Message).where(
                        models.Message.prospect_id == c.prospect_id,
                        models.Message.channel == "sms",
                    )
                )
                await s.commit()
            retried = await as_run(wid, ended).run(send, touch)
            assert {(o.channel, o.status) for o in retried.outcomes} == {
                ("email", "sent"),
                ("sms", "skipped"),
            }
            [row] = await r.ledger(c)
            assert (row.status, row.provider_id) == ("submitted", email.provider_id)
            # the running run sends its own reminder
            own = replace(reminder, journey_id=run_key(c.prospect_id, 2))
            mine = await as_run(wid, running).run(send, own)
            assert {o.status for o in mine.outcomes} == {"sent"}
        finally:
            await close_activities(acts)


async def test_a_touch_of_a_run_ending_as_it_goes_out_is_claimed_before_the_end_or_not_at_all(
    sending_rig: SendingRig,
) -> None:
    """The run's end is being recorded as its touch renders: the touch's early look finds the
    run as it was, but each channel's claim in the ledger waits for the end's commit and sees
    it: nothing is claimed, nothing goes (a claim read before the end would send after it)."""
    async with sending_rig() as r:
        c = contact(timezone=daytime_zone(), phone=random_phone())
        run_id = uuid.uuid4().hex
        async with r.sessions() as s:
            await add_enrollment(s, c.prospect_id, run=1, run_id=run_id)
            await s.commit()
        acts = activities_for(r.settings, r.sessions)
        send = next(a for a in acts if getattr(a, "__name__", "") == "send_touch")
        try:
            touch = touch_request(c, EMAIL, SMS, key="step-1")
            going = as_run(journey_id(c.prospect_id), run_id).run(send, touch)
            url = r.settings.database_url("outreach")
            result = await while_its_end_is_recorded(url, c.prospect_id, run_id, LOST, going)
        finally:
            await close_activities(acts)
        why = "its journey run (run 1) had ended (lost)"
        assert {(o.channel, o.status, o.detail) for o in result.outcomes} == {
            ("email", "skipped", why),
            ("sms", "skipped", why),
        }
        # on SQLite the end may be in before the early look: then no row at all
        assert {row.status for row in await r.ledger(c)} <= {"pending"}
