"""Replies, automatic replies and consent against real parts: Temporal dev server, SMTP, the
Twilio sandbox, SQLite and PostgreSQL, provider payloads in their real formats.

Journeys are stood in for by workflows that record signals or send one touch after a delay (a
step already scheduled); the real journey runs in test_journey_respects_consent_and_auto_replies.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from services.outreach import models
from services.outreach.activities import SendFaults
from services.outreach.consent import service as consent
from services.outreach.consent.suppressions import suppress
from services.outreach.webhooks import sms_status
from services.outreach.webhooks.twilio import STATUS_PATH as STATUS
from shared.contracts.journey import CadenceStep, Contact, TouchRequest, journey_id
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.providers import postmark
from shared.providers.mailgun import event_payload, inbound_form
from shared.providers.postmark import basic_auth_header
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from tests.support.apps import assert_pages, deleting
from tests.support.consent import PM, PM_PASSWORD, PM_USER, outreach_rig
from tests.support.eventually import eventually
from tests.support.fixtures import ON_POSTGRES, Ground
from tests.support.ports import free_port
from tests.support.runs import add_enrollment
from tests.support.sandboxes import SMS, SendTouchOnce, touch_request
from tests.support.scenarios import daytime_zone, fast_cadence
from tests.support.settings import AUTH, SERVICE_AUTH, make_settings
from tests.support.stack import StackDriver
from tests.support.webhooks import (
    RecordingJourney,
    WebhookRigs,
    signals_of,
)

OUR_NUMBER = "+15005550006"
WRITTEN = "Thu, 27 Nov 2025 10:00:00 +0000"  # the out-of-office replies' Date: a past Thursday


# --- real-format payloads ---------------------------------------------------------------------


def mailgun_inbound(
    key: str,
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    in_reply_to: str | None = None,
    extra_headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    date_header: str | None = None,
) -> dict[str, str]:
    """What a Mailgun route's forward() posts, with the email's own headers in message-headers."""
    form = inbound_form(
        sender=sender,
        recipient=recipient,
        subject=subject,
        text=text,
        in_reply_to=in_reply_to,
        references=in_reply_to,
        message_id=f"<{uuid.uuid4().hex}@mail.example>",
        signing_key=key,
        now=time.time(),
    )
    headers = json.loads(form["message-headers"])
    if date_header:
        headers = [[n, date_header if n == "Date" else v] for n, v in headers]
        form["Date"] = date_header
    headers += [list(h) for h in extra_headers]
    form["message-headers"] = json.dumps(headers)
    for name, value in extra_headers:
        form[name] = value  # Mailgun also posts each header as a field of its own name
    return form


def outlook_auto_reply(
    key: str, *, sender: str, recipient: str, text: str, **kw: Any
) -> dict[str, str]:
    """An Exchange out-of-office as Mailgun forwards it."""
    return mailgun_inbound(
        key,
        sender=sender,
        recipient=recipient,
        subject="Automatic reply: Quick question",
        text=text,
        extra_headers=[
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
            ("X-MS-Exchange-Inbox-Rules-Loop", sender),
            ("Thread-Topic", "Quick question"),
        ],
        date_header=WRITTEN,
        **kw,
    )


def twilio_form(settings: Any, sender: str, body: str) -> dict[str, str]:
    sid = "SM" + uuid.uuid4().hex
    return {
        "AccountSid": settings.twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": sender,
        "To": OUR_NUMBER,
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "NumMedia": "0",
        "NumSegments": "1",
    }


async def post_twilio(
    api: httpx.AsyncClient, settings: Any, form: dict[str, str], base: str = "http://test"
) -> httpx.Response:
    url = f"{base}/webhooks/twilio/sms"
    token = settings.twilio_auth_token.get_secret_value()
    signature = sign_twilio_request(token, url, form)
    return await api.post(url, data=form, headers={SIGNATURE_HEADER: signature})


def person(email: str | None = None, phone: str | None = None, zone: str | None = None) -> Contact:
    n = uuid.uuid4().int
    return Contact(
        uuid.uuid4().hex,
        "Ada",
        "Lovelace",
        email or f"ada-{n % 10**8}@example.com",
        phone or f"+1415555{n % 10**4:04d}",
        company="Analytical Engines",
        timezone=zone or daytime_zone(),  # texts are only sent 08:00-21:00 local time
        rep_name="Rita Rep",
    )


def touch(
    c: Contact, key: str = "step-0", channels: tuple[str, ...] = ("email", "sms")
) -> TouchRequest:
    steps = {
        "email": CadenceStep("email", 0, "Hi {{ first_name }}, a quick question", "Quick question"),
        "sms": SMS,
    }
    return touch_request(c, *(steps[ch] for ch in channels), key=key)


# --- out-of-office replies ----------------------------------------------------------------------


async def test_mailgun_out_of_office_pauses_until_the_return_date_and_is_no_reply(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(ooo_default_pause_days=3) as rig:
        key = rig.settings.mailgun_signing_key.get_secret_value()
        dated, undated = uuid.uuid4().hex, uuid.uuid4().hex
        sent = await rig.add_message("email", "ada@example.com", "<m1@closeflow>", dated)
        other = await rig.add_message("email", "bob@example.com", "<m2@closeflow>", undated)
        async with rig.sessions() as s:  # the send activity records the prospect's zone
            await s.execute(
                update(models.Message)
                .where(models.Message.id == sent.id)
                .values(timezone="Europe/Berlin")
            )
            await s.commit()
        form = outlook_auto_reply(
            key,
            sender="ada@example.com",
            recipient="sales@closeflow.localhost",
            text="I am out of the office and will be back on 12 December. For urgent matters, "
            "call Bob.",
            in_reply_to=sent.provider_id,
        )
        no_date = outlook_auto_reply(
            key,
            sender="bob@example.com",
            recipient="sales@closeflow.localhost",
            text="Thank you for your email. I am currently away with limited access to email.",
            in_reply_to=other.provider_id,
        )
        async with rig.journeys():
            handles = [await rig.start_journey(p) for p in (dated, undated)]
            before = datetime.now(UTC)
            for f in (form, form, no_date):  # the first one twice: Mailgun retrying
                assert (await rig.http.post("/webhooks/mailgun/inbound", data=f)).status_code == 200
            after = datetime.now(UTC)
            got = await eventually(lambda: signals_of(handles[0]), "the pause")
            assert got == [
                {
                    "name": "pause",
                    "payload": {
                        "reason": "out of office",
                        "until": "2025-12-12T09:00:00+01:00",
                        "kind": "out_of_office",
                    },
                }
            ]
            [pause] = await eventually(lambda: signals_of(handles[1]), "the default pause")
            until = datetime.fromisoformat(pause["payload"]["until"])
            assert before + timedelta(days=3) <= until <= after + timedelta(days=3)
            await asyncio.sleep(0.3)
            assert len(await signals_of(handles[0])) == 1  # no reply_received, no second pause
            for h in handles:
                await h.terminate()
        assert (await rig.message(sent.id)).replied_at is None  # not counted as a reply
        events = await rig.inbox("mailgun")
        assert [e.kind for e in events] == ["email_auto_reply", "email_auto_reply"]
        assert events[0].payload["closeflow"] == {
            "auto_reply": "Auto-Submitted: auto-generated",
            "return_date": "2025-12-12",
            "paused_until": "2025-12-12T09:00:00+01:00",
        }


@pytest.mark.parametrize(
    ("phone", "stated"),
    [
        # +1 907: Anchorage and Adak, no zone of its own; the United States write month first
        ("+19075550123", date(2026, 3, 4)),
        # +1 800: every North American zone, Canada's too, which do not agree: day first
        ("+18005550123", date(2026, 4, 3)),
    ],
)
async def test_an_out_of_office_is_read_as_the_country_of_a_number_without_one_zone(
    ground: Ground, phone: str, stated: date
) -> None:
    """The email's row kept the zone taken by default (UTC) for a number spanning several
    zones, and its return date was read day first: "back 03/04" paused a US prospect until
    April 3."""
    async with outreach_rig(ground) as st:
        c = replace(person(phone=phone), timezone="")
        assert await st.send(touch(c, channels=("email",))) == {"email": "sent"}
        [row] = await st.rows(c.prospect_id)
        key = st.sb.settings.mailgun_signing_key.get_secret_value()
        form = outlook_auto_reply(
            key,
            sender=c.email or "",
            recipient="sales@closeflow.localhost",
            text="I am out of the office and will be back on 03/04.",
            in_reply_to=row.provider_id,
        )
        assert (await st.api.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
        async with st.sessions() as s:
            [event] = (await s.scalars(select(models.InboxEvent))).all()
        assert event.kind == "email_auto_reply"
        assert event.payload["closeflow"]["return_date"] == stated.isoformat()


async def test_an_answer_that_opens_like_an_out_of_office_is_a_reply(webhooks: WebhookRigs) -> None:
    """No auto-reply header, one out-of-office phrase and an answer to us: the journey gets
    reply_received (the cadence ends), not a pause. The same words with an Auto-Submitted
    header: a pause."""
    async with webhooks() as rig:
        key = rig.settings.mailgun_signing_key.get_secret_value()
        person_pid, robot_pid = uuid.uuid4().hex, uuid.uuid4().hex
        human = await rig.add_message("email", "ada@example.com", "<h1@closeflow>", person_pid)
        robot = await rig.add_message("email", "bob@example.com", "<h2@closeflow>", robot_pid)
        text = "I'm out of office today but yes, let's talk Tuesday"
        answer = mailgun_inbound(
            key,
            sender="ada@example.com",
            recipient="sales@closeflow.localhost",
            subject="Re: Quick question",
            text=text,
            in_reply_to=human.provider_id,
        )
        automatic = mailgun_inbound(
            key,
            sender="bob@example.com",
            recipient="sales@closeflow.localhost",
            subject="Re: Quick question",
            text=text,
            in_reply_to=robot.provider_id,
            extra_headers=[("Auto-Submitted", "auto-replied")],
        )
        async with rig.journeys():
            handles = [await rig.start_journey(p) for p in (person_pid, robot_pid)]
            for form in (answer, automatic):
                r = await rig.http.post("/webhooks/mailgun/inbound", data=form)
                assert r.status_code == 200
            [got] = await eventually(lambda: signals_of(handles[0]), "the reply")
            assert got["name"] == "reply_received"
            assert got["payload"]["excerpt"] == text
            [paused] = await eventually(lambda: signals_of(handles[1]), "the pause")
            assert paused["name"] == "pause"
            for h in handles:
                await h.terminate()
        assert (await rig.message(human.id)).replied_at is not None
        assert (await rig.message(robot.id)).replied_at is None
        kinds = {e.prospect_id: e.kind for e in await rig.inbox("mailgun")}
        assert kinds == {person_pid: "email_reply", robot_pid: "email_auto_reply"}


async def test_postmark_auto_replies_by_header_subject_or_text_and_a_real_reply(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(**PM) as rig:
        pids = [uuid.uuid4().hex for _ in range(4)]
        rows = [
            await rig.add_message("email", f"p{i}@example.de", f"<pm{i}@closeflow>", pid)
            for i, pid in enumerate(pids)
        ]

        def doc(i: int, subject: str, body: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
            d = postmark.inbound(
                from_email=f"p{i}@example.de",
                to_email="sales@closeflow.localhost",
                subject=subject,
                text=body,
                stripped_reply=body,
                message_id_header=f"<reply-{i}@example.de>",
                in_reply_to=rows[i].provider_id,
                references=rows[i].provider_id,
                now=time.time(),
                extra_headers=headers,
            )
            d["Date"] = "Thu, 27 Nov 2025 10:00:00 +0100"
            return d

        docs = [
            # a header alone gives it away (the subject is the original's)
            doc(
                0,
                "Re: Quick question",
                "Ich bin bis einschließlich 11.12.2025 nicht im Büro.",
                [("X-Autoreply", "yes")],
            ),
            # the subject alone
            doc(
                1,
                "Réponse automatique : Quick question",
                "Bonjour, je suis absent, de retour le lundi 5 janvier.",
                [],
            ),
            # the text alone
            doc(2, "Re: Quick question", "Estoy fuera de la oficina hasta el 12 de diciembre.", []),
            # X-Auto-Response-Suppress alone is not enough: this person answered
            doc(
                3,
                "Re: Quick question",
                "Yes, let's talk next week.",
                [("X-Auto-Response-Suppress", "All")],
            ),
        ]
        async with rig.journeys():
            handles = [await rig.start_journey(p) for p in pids]
            for d in docs:
                response = await rig.http.post(
                    "/webhooks/postmark/inbound",
                    json=d,
                    headers=basic_auth_header(PM_USER, PM_PASSWORD),
                )
                assert response.status_code == 200
            got = [await eventually(lambda h=h: signals_of(h), "a signal") for h in handles]
            for h in handles:
                await h.terminate()
        assert got[0] == [
            {
                "name": "pause",
                "payload": {
                    "reason": "out of office",
                    "until": "2025-12-12T09:00:00+00:00",
                    "kind": "out_of_office",
                },
            }
        ]
        assert got[1][0]["payload"]["until"] == "2026-01-05T09:00:00+00:00"
        assert got[2][0]["payload"]["until"] == "2025-12-12T09:00:00+00:00"
        assert got[3] == [
            {
                "name": "reply_received",
                "payload": {
                    "channel": "email",
                    "event_id": "<reply-3@example.de>",
                    "excerpt": "Yes, let's talk next week.",
                    "actor": "system:reply via postmark",  # issue 14: who moved the journey
                },
            }
        ]
        assert [(await rig.message(r.id)).replied_at is not None for r in rows] == [
            False,
            False,
            False,
            True,
        ]


# --- reply addresses ----------------------------------------------------------------------------


async def test_a_reply_without_in_reply_to_is_matched_by_its_reply_address(
    temporal_local: WorkflowEnvironment,
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        ada, bob = person(), person()
        handles = {
            c.prospect_id: await temporal_local.client.start_workflow(
                RecordingJourney.run, id=journey_id(c.prospect_id), task_queue=st.journeys_queue
            )
            for c in (ada, bob)
        }
        for c in (ada, bob):
            assert (await st.send(touch(c, channels=("email",)))) == {"email": "sent"}
        [ada_row], [bob_row] = await st.rows(ada.prospect_id), await st.rows(bob.prospect_id)
        [mail] = st.emails_to(ada.email or "")
        reply_to = mail["headers"]["Reply-To"]
        assert reply_to == f"closeflow <sales+r-{ada_row.reply_token}@closeflow.localhost>"
        assert ada_row.reply_token != bob_row.reply_token

        # Ada answers from her phone's other account; her client drops In-Reply-To/References
        key = st.sb.settings.mailgun_signing_key.get_secret_value()
        form = mailgun_inbound(
            key,
            sender="ada.private@home.example",
            recipient=reply_to.split("<")[1].rstrip(">"),
            subject="Re: Quick question",
            text="Yes, interested.",
        )
        assert (await st.api.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
        # Bob's reply forwarded through Postmark, the token in OriginalRecipient and MailboxHash
        doc = postmark.inbound(
            from_email="assistant@bob.example",
            to_email=f"sales+r-{bob_row.reply_token.upper()}@closeflow.localhost",  # type: ignore[union-attr]
            subject="Fwd: Quick question",
            text="Bob asked me to answer: call him.",
            stripped_reply="Bob asked me to answer: call him.",
            message_id_header="<fwd-1@bob.example>",
            in_reply_to=None,
            references=None,
            now=time.time(),
        )
        doc["To"] = "Sales <sales@closeflow.localhost>"
        doc["ToFull"] = [{"Email": "sales@closeflow.localhost", "Name": "Sales", "MailboxHash": ""}]
        response = await st.api.post(
            "/webhooks/postmark/inbound", json=doc, headers=basic_auth_header(PM_USER, PM_PASSWORD)
        )
        assert response.status_code == 200
        for c, text_ in ((ada, "Yes, interested."), (bob, "Bob asked me to answer: call him.")):
            got = await eventually(lambda c=c: signals_of(handles[c.prospect_id]), "the reply")
            assert [(s["name"], s["payload"]["excerpt"]) for s in got] == [
                ("reply_received", text_)
            ]
        for h in handles.values():
            await h.terminate()
        assert all(
            r.replied_at is not None
            for r in [*await st.rows(ada.prospect_id), *await st.rows(bob.prospect_id)]
        )


async def test_the_reply_domain_setting(
    ground: Ground,
) -> None:
    async with outreach_rig(ground, reply_domain="reply.closeflow.test") as st:
        c = person()
        assert await st.send(touch(c, channels=("email",))) == {"email": "sent"}
        [row] = await st.rows(c.prospect_id)
        [mail] = st.emails_to(c.email or "")
        assert mail["headers"]["Reply-To"] == (
            f"closeflow <sales+r-{row.reply_token}@reply.closeflow.test>"
        )
        assert row.timezone == c.timezone


# --- consent ---------------------------------------------------------------------------------


async def test_one_consent_record_per_person_across_channels(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        ada, bob = person(), person()
        for c in (ada, bob):
            assert await st.send(touch(c)) == {"email": "sent", "sms": "sent"}
        settings = st.sb.settings

        stop = twilio_form(settings, ada.phone or "", "  sToP ")
        first = await post_twilio(st.api, settings, stop)
        assert "You have been unsubscribed" in first.text
        again = await post_twilio(st.api, settings, stop)  # Twilio retrying the same message
        assert "<Message>" not in again.text  # exactly one confirmation
        record = await st.consent_of(ada.prospect_id)
        assert record["sms"]["status"] == "opted_out" and record["sms"]["reason"] == "SMS STOP"
        assert record["sms"]["blocked"] == "suppressed: SMS STOP"
        assert (record["email"]["status"], record["email"]["blocked"]) == ("opted_in", None)
        assert [(a["channel"], a["address"]) for a in record["suppressed_addresses"]] == [
            ("sms", ada.phone)
        ]

        help_ = await post_twilio(st.api, settings, twilio_form(settings, ada.phone or "", "help"))
        assert "Reply STOP to unsubscribe" in help_.text
        assert (await st.consent_of(ada.prospect_id))["sms"]["status"] == "opted_out"

        # the unsubscribe link opts the same person out of email
        [mail] = st.emails_to(ada.email or "")
        link = mail["headers"]["List-Unsubscribe"].strip().strip("<>").removeprefix("http://test")
        assert (await st.api.post(link)).status_code == 200
        # START opts them back into texts, and texts only
        start = await post_twilio(st.api, settings, twilio_form(settings, ada.phone or "", "Start"))
        assert "resubscribed" in start.text
        record = await st.consent_of(ada.prospect_id)
        assert {ch: (record[ch]["status"], record[ch]["reason"]) for ch in ("email", "sms")} == {
            "email": ("opted_out", "unsubscribe link"),
            "sms": ("opted_in", "SMS START"),
        }
        assert record["sms"]["blocked"] is None
        assert [a["channel"] for a in record["suppressed_addresses"]] == ["email"]
        # the refused email of a two-channel touch falls back to a task (issue 10)
        assert await st.send(touch(ada, "step-1")) == {
            "email": "suppressed",
            "sms": "sent",
            "call_task": "task_created",
        }

        # a hard bounce suppresses Bob's address; Bob himself said nothing
        key = settings.mailgun_signing_key.get_secret_value()
        [bob_mail] = st.emails_to(bob.email or "")
        bounce = event_payload(
            event="failed",
            recipient=bob.email or "",
            message_id=bob_mail["message_id"],
            event_id=uuid.uuid4().hex,
            severity="permanent",
            reason="bounce",
            signing_key=key,
            now=time.time(),
        )
        assert (await st.api.post("/webhooks/mailgun/events", json=bounce)).status_code == 200
        record = await st.consent_of(bob.prospect_id)
        assert record["email"]["status"] == "opted_in"
        assert record["email"]["blocked"] == "suppressed: hard bounce"
        assert await st.send(touch(bob, "step-1")) == {
            "email": "suppressed",
            "sms": "sent",
            "call_task": "task_created",
        }

        assert (await st.api.get(f"/consent/{uuid.uuid4().hex}", headers=AUTH)).status_code == 404
        assert (await st.api.get(f"/consent/{ada.prospect_id}")).status_code == 401
        suppressions = (await st.api.get("/suppressions", headers=AUTH)).json()
        assert {(s["channel"], s["address"]) for s in suppressions} == {
            ("email", ada.email),
            ("email", bob.email),
        }

        # what each of them did, or had done, in their timelines (the kinds name the channel)
        async def said(pid: str) -> list[tuple[str, str]]:
            answer = await st.api.get(f"/internal/prospects/{pid}/timeline", headers=SERVICE_AUTH)
            assert answer.status_code == 200, answer.text
            inbound = [e for e in answer.json() if e["kind"].startswith("inbound.")]
            return [(e["kind"], e["summary"]) for e in sorted(inbound, key=lambda e: e["at"])]

        assert await said(ada.prospect_id) == [
            ("inbound.sms_stop", "STOP by text: no more texts"),
            ("inbound.sms_help", "HELP by text"),
            ("inbound.email_unsubscribe_link", "unsubscribed through the email's link"),
            ("inbound.sms_start", "START by text: texts again"),
        ]
        assert await said(bob.prospect_id) == [
            ("inbound.email_failed", "mailgun reported failed: journey stopped (hard bounce)")
        ]


async def test_an_opted_out_person_gets_nothing_at_another_address(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        ada = person()
        assert await st.send(touch(ada, channels=("email",))) == {"email": "sent"}
        [mail] = st.emails_to(ada.email or "")
        link = mail["headers"]["List-Unsubscribe"].strip().strip("<>").removeprefix("http://test")
        assert (await st.api.post(link)).status_code == 200
        # prospecting now has her new work address: she said no to email, not to an address
        moved = Contact(**{**ada.__dict__, "email": "ada@new-employer.example"})
        assert await st.send(touch(moved, "step-1", ("email",))) == {"email": "suppressed"}
        [_, row] = await st.rows(ada.prospect_id)
        assert (row.status, row.error) == ("suppressed", "opted out: unsubscribe link")
        assert st.emails_to("ada@new-employer.example") == []


# --- the do-not-contact list ----------------------------------------------------------------------


async def test_do_not_contact_api(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        api = rig.http
        created = []
        for value, kind, normal in [
            ("CEO@Example.com ", "email", "ceo@example.com"),
            ("+1 (415) 555-0100", "phone", "+14155550100"),
            ("Example.ORG", "domain", "example.org"),
            ("@bücher.example", "domain", "xn--bcher-kva.example"),
        ]:
            r = await api.post(
                "/do-not-contact", json={"value": value, "reason": "legal"}, headers=AUTH
            )
            assert r.status_code == 201, r.text
            assert (r.json()["kind"], r.json()["value"], r.json()["reason"]) == (
                kind,
                normal,
                "legal",
            )
            created.append(r.json())
        again = await api.post("/do-not-contact", json={"value": "ceo@example.com"}, headers=AUTH)
        assert again.status_code == 200 and again.json()["id"] == created[0]["id"]
        for bad in ["", "not an address", "ceo@", "+1 555", "example", "-bad-.com", "12345"]:
            r = await api.post("/do-not-contact", json={"value": bad}, headers=AUTH)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["error"]["details"][0]["field"] == "value"
        assert (await api.post("/do-not-contact", json={"value": "a@b.co"})).status_code == 401
        listed = (await api.get("/do-not-contact", headers=AUTH)).json()
        assert [e["value"] for e in listed] == [e["value"] for e in created]
        domains = (await api.get("/do-not-contact", params={"kind": "domain"}, headers=AUTH)).json()
        assert [e["kind"] for e in domains] == ["domain", "domain"]
        assert (
            await api.delete(f"/do-not-contact/{created[1]['id']}", headers=AUTH)
        ).status_code == 204
        assert (
            await api.delete(f"/do-not-contact/{created[1]['id']}", headers=AUTH)
        ).status_code == 404
        assert len((await api.get("/do-not-contact", headers=AUTH)).json()) == 3


async def test_suppressions_and_the_do_not_contact_list_come_in_pages(
    webhooks: WebhookRigs,
) -> None:
    """Both grow with every bounce, opt-out and listing: a page is bounded, `after` goes on."""
    async with webhooks() as rig:
        for i in range(5):
            r = await rig.http.post(
                "/do-not-contact", json={"value": f"listed{i}@example.com"}, headers=AUTH
            )
            assert r.status_code == 201, r.text
        async with rig.sessions() as session:
            for i in range(5):
                await suppress(session, "email", f"bounced{i}@example.com", "hard bounce")
            await session.commit()
        await assert_pages(rig.http, "/do-not-contact", 5, headers=AUTH, kind="email")

        async def delete_entry(entry_id: str) -> None:
            r = await rig.http.delete(f"/do-not-contact/{entry_id}", headers=AUTH)
            assert r.status_code == 204, r.text

        # the last row of a page deleted before the next page: the paging goes on past it
        await assert_pages(rig.http, "/do-not-contact", 5, headers=AUTH, forget=delete_entry)
        forget = deleting(rig.sessions, models.Suppression)
        await assert_pages(rig.http, "/suppressions", 5, AUTH, forget=forget, by_id=True)


async def test_nothing_is_sent_to_a_listed_address_number_or_domain(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        listed = person(email="ceo@listed.example")
        sub = person(email="ops@eu.blocked.example")
        fine = person(email="someone@blocked-not.example")
        entries = []
        for value in ("ceo@listed.example", "blocked.example", listed.phone):
            r = await st.api.post("/do-not-contact", json={"value": value}, headers=AUTH)
            entries.append(r.json())
        assert await st.send(touch(listed)) == {"email": "suppressed", "sms": "suppressed"}
        assert await st.send(touch(sub, channels=("email",))) == {"email": "suppressed"}
        assert await st.send(touch(fine, channels=("email",))) == {"email": "sent"}
        rows = {r.channel: r for r in await st.rows(listed.prospect_id)}
        assert (rows["email"].status, rows["email"].error) == (
            "suppressed",
            "do not contact: email ceo@listed.example",
        )
        assert rows["sms"].error == f"do not contact: phone {listed.phone}"
        [sub_row] = await st.rows(sub.prospect_id)
        assert sub_row.error == "do not contact: domain blocked.example"
        assert (
            st.emails_to(listed.email or "") == [] and await st.texts_to(listed.phone or "") == []
        )
        record = await st.consent_of(listed.prospect_id)
        assert {e["value"] for e in record["do_not_contact"]} == {
            "ceo@listed.example",
            listed.phone,
        }
        assert record["email"]["status"] == "opted_in"  # the list is not the person's say
        # taken off the list: the next touch goes out
        for e in entries:
            await st.api.delete(f"/do-not-contact/{e['id']}", headers=AUTH)
        assert await st.send(touch(listed, "step-1")) == {"email": "sent", "sms": "sent"}


async def test_an_internationalized_domain_listed_or_opted_out_in_either_form_gets_nothing(
    ground: Ground,
) -> None:
    """Addresses keep an internationalized domain in Unicode, do-not-contact entries in its
    ASCII form, and providers name the address in the ASCII form emails go out with: a listed
    `bäckerei-müller.de` covered none of its addresses, and an unsubscribe or a hard bounce
    reported as `...@xn--...` suppressed an address nobody is sent to."""
    async with outreach_rig(ground) as st:
        listed = person(email="info@bäckerei-müller.de")
        sub = person(email="ops@eu.bäckerei-müller.de")
        r = await st.api.post("/do-not-contact", json={"value": "bäckerei-müller.de"}, headers=AUTH)
        assert (r.status_code, r.json()["value"]) == (201, "xn--bckerei-mller-bfb28a.de"), r.text
        assert await st.send(touch(listed, channels=("email",))) == {"email": "suppressed"}
        assert await st.send(touch(sub, channels=("email",))) == {"email": "suppressed"}
        [row] = await st.rows(listed.prospect_id)
        assert row.error == "do not contact: domain xn--bckerei-mller-bfb28a.de"

        unsubscribed = person(email="ada@bücher.example")
        async with st.sessions() as s:
            await consent.opt_out(s, "email", "Ada@XN--bcher-kva.example", "unsubscribe link")
            await s.commit()
        assert await st.send(touch(unsubscribed, channels=("email",))) == {"email": "suppressed"}
        assert st.emails_to("ada@xn--bcher-kva.example") == []


async def enrolled(rig: Any, email: str | None, phone: str | None) -> str:
    """An enrollment as POST /enrollments leaves it (with the addresses it recorded)."""
    pid = uuid.uuid4().hex
    async with rig.sessions() as s:
        await add_enrollment(s, pid, email=email, phone=phone)
        await s.commit()
    return pid


async def test_a_do_not_contact_entry_ends_the_journeys_it_covers(webhooks: WebhookRigs) -> None:
    """An address, a number, a domain (and its subdomains): each enrolled prospect it covers
    gets stop_cadence, through the inbox (stored with the entry, delivered, never twice)."""
    async with webhooks() as rig, rig.journeys():
        by_email = await enrolled(rig, "ceo@listed.example", None)
        by_phone = await enrolled(rig, None, "+14155550142")
        by_subdomain = await enrolled(rig, "ops@eu.blocked.example", "+14155550143")
        # enrolled before enrollments recorded addresses: found by what the ledger sent to
        by_ledger = await enrolled(rig, None, None)
        await rig.add_message("email", "cto@blocked.example", "<l1@closeflow>", by_ledger)
        spared = await enrolled(rig, "someone@blocked-not.example", "+14155550144")
        # an internationalized domain: addresses keep it in Unicode, the entry in ASCII
        by_idn = await enrolled(rig, "info@bäckerei-müller.de", None)
        not_enrolled = uuid.uuid4().hex
        await rig.add_message("email", "cfo@blocked.example", "<l2@closeflow>", not_enrolled)
        handles = {
            pid: await rig.start_journey(pid)
            for pid in (by_email, by_phone, by_subdomain, by_ledger, spared, by_idn)
        }

        async def stops(pid: str) -> list[str]:
            return [
                s["payload"]["reason"]
                for s in await signals_of(handles[pid])
                if s["name"] == "stop_cadence"
            ]

        for value, covered, reason in [
            ("ceo@listed.example", [by_email], "do not contact: email ceo@listed.example"),
            ("+1 415 555 0142", [by_phone], "do not contact: phone +14155550142"),
            (
                "blocked.example",
                [by_subdomain, by_ledger],
                "do not contact: domain blocked.example",
            ),
            (
                "bäckerei-müller.de",
                [by_idn],
                "do not contact: domain xn--bckerei-mller-bfb28a.de",
            ),
        ]:
            r = await rig.http.post(
                "/do-not-contact", json={"value": value, "reason": "legal"}, headers=AUTH
            )
            assert r.status_code == 201, r.text
            assert r.json()["journeys_stopped"] == len(covered)
            for pid in covered:
                assert await stops(pid) == [reason]
        again = await rig.http.post(
            "/do-not-contact", json={"value": "blocked.example"}, headers=AUTH
        )
        assert again.status_code == 200 and again.json()["journeys_stopped"] == 0
        assert await stops(spared) == []
        events = [e for e in await rig.inbox("closeflow") if e.kind == "do_not_contact"]
        assert sorted(e.prospect_id or "" for e in events) == sorted(
            [by_email, by_phone, by_subdomain, by_ledger, by_idn]
        )
        assert {(e.signal_name, e.delivery) for e in events} == {("stop_cadence", "delivered")}
        for pid in (by_email, by_phone, by_subdomain, by_ledger, by_idn):
            assert len(await stops(pid)) == 1  # the repeat told nobody again


async def test_no_rep_task_for_a_listed_or_wholly_opted_out_person(
    ground: Ground,
) -> None:
    """call_task and social_task steps make no task for a person a do-not-contact entry covers
    or who opted out of every channel we reach them on; the touch records why. A touch that
    meets an entry also stores the cadence stop for the journey (enrolled as it was made)."""
    async with outreach_rig(ground) as st:
        listed, quiet, email_only_out, fine = person(), person(), person(), person()
        domain_listed = person(email="ada@agency.example")
        r = await st.api.post("/do-not-contact", json={"value": listed.phone}, headers=AUTH)
        assert r.status_code == 201
        r = await st.api.post("/do-not-contact", json={"value": "agency.example"}, headers=AUTH)
        assert r.status_code == 201
        async with st.sessions() as s:
            for c, channels in ((quiet, ("email", "sms")), (email_only_out, ("email",))):
                for channel in channels:
                    address = c.email if channel == "email" else c.phone
                    await consent.opt_out(
                        s, channel, address or "", "unsubscribe link", prospect_id=c.prospect_id
                    )
            await s.commit()

        def tasks_touch(c: Contact) -> TouchRequest:
            call = CadenceStep("call_task", 0, "Ask about {{ company }}")
            social = CadenceStep("social_task", 0, "Connect with {{ first_name }}")
            return touch_request(c, call, social, key="step-2")

        both = {"call_task": "suppressed", "social_task": "suppressed"}
        made = {"call_task": "task_created", "social_task": "task_created"}
        assert await st.send(tasks_touch(listed)) == both
        assert await st.send(tasks_touch(domain_listed)) == both
        assert await st.send(tasks_touch(quiet)) == both
        assert await st.send(tasks_touch(email_only_out)) == made  # still reachable by phone
        assert await st.send(tasks_touch(fine)) == made
        result = await st.env.client.execute_workflow(
            SendTouchOnce.run,
            tasks_touch(quiet),
            id=f"send-{uuid.uuid4().hex}",
            task_queue=st.journeys_queue,
        )
        assert {o.detail for o in result.outcomes} == {
            "opted out of every channel: unsubscribe link"
        }
        async with st.sessions() as s:
            tasks = (await s.scalars(select(models.RepTask.prospect_id))).all()
            events = (
                await s.scalars(
                    select(models.InboxEvent).where(models.InboxEvent.kind == "do_not_contact")
                )
            ).all()
        assert sorted(tasks) == sorted([email_only_out.prospect_id] * 2 + [fine.prospect_id] * 2)
        # the touch stored the stop for the listed ones' journeys (none runs here: no_journey)
        assert sorted(e.prospect_id or "" for e in events) == sorted(
            [listed.prospect_id, domain_listed.prospect_id]
        )
        assert {e.signal_name for e in events} == {"stop_cadence"}


# --- nothing after a committed suppression --------------------------------------------------------


async def test_a_step_already_scheduled_sends_nothing_after_stop_unsubscribe_or_listing(
    ground: Ground,
) -> None:
    async with outreach_rig(ground) as st:
        texter, reader, listed = person(), person(), person()
        for c in (texter, reader, listed):
            assert await st.send(touch(c)) == {"email": "sent", "sms": "sent"}
        # step 1 of each is scheduled: the workflows are waiting on their timers
        handles = [await st.schedule(touch(c, "step-1"), 3) for c in (texter, reader, listed)]
        settings = st.sb.settings
        assert (
            await post_twilio(st.api, settings, twilio_form(settings, texter.phone or "", "STOP"))
        ).status_code == 200
        [mail] = st.emails_to(reader.email or "")
        link = mail["headers"]["List-Unsubscribe"].strip().strip("<>").removeprefix("http://test")
        assert (await st.api.post(link)).status_code == 200
        for value in (listed.email, listed.phone):
            r = await st.api.post("/do-not-contact", json={"value": value}, headers=AUTH)
            assert r.status_code == 201
        results = [await h.result() for h in handles]
        outcomes = [{o.channel: o.status for o in r.outcomes} for r in results]
        # an opted-out channel falls back to a task; a listed person gets nothing at all
        assert outcomes == [
            {"email": "sent", "sms": "suppressed", "call_task": "task_created"},
            {"email": "suppressed", "sms": "sent", "call_task": "task_created"},
            {"email": "suppressed", "sms": "suppressed"},
        ]
        assert [len(st.emails_to(c.email or "")) for c in (texter, reader, listed)] == [2, 1, 1]
        assert [len(await st.texts_to(c.phone or "")) for c in (texter, reader, listed)] == [
            1,
            2,
            1,
        ]


class OptOutAtTheLastMoment(SendFaults):
    """Commits an opt-out (email) or a do-not-contact entry (SMS) after the row went `sending`
    and before the provider call: the send must see it."""

    def __init__(self, to: str = "") -> None:
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.done: list[str] = []
        self.to = to  # only the sends to this address, when given

    async def before_provider_call(self, row: models.Message) -> None:
        assert self.sessions is not None
        if self.to and row.to_address != self.to:
            return
        async with self.sessions() as s:
            if row.channel == "email":
                await consent.opt_out(
                    s, "email", row.to_address, "unsubscribe link", prospect_id=row.prospect_id
                )
            else:
                await consent.add_dnc(s, "phone", row.to_address, "legal")
            await s.commit()
        self.done.append(row.channel)


async def test_an_opt_out_committed_after_the_first_check_is_seen_before_the_provider_call(
    ground: Ground,
) -> None:
    faults = OptOutAtTheLastMoment()
    async with outreach_rig(ground, faults=faults) as st:
        faults.sessions = st.sessions
        c = person()
        # the unsubscribed email falls back to a task, made before the phone was listed
        assert await st.send(touch(c)) == {
            "email": "suppressed",
            "sms": "suppressed",
            "call_task": "task_created",
        }
        assert sorted(faults.done) == ["email", "sms"]
        assert st.emails_to(c.email or "") == [] and await st.texts_to(c.phone or "") == []
        rows = {r.channel: (r.status, r.error) for r in await st.rows(c.prospect_id)}
        assert rows == {
            "email": ("suppressed", "suppressed: unsubscribe link"),
            "sms": ("suppressed", f"do not contact: phone {c.phone}"),
        }


async def test_an_email_opted_out_at_its_call_holds_no_slot_of_its_senders_cap(
    ground: Ground,
) -> None:
    """The email was claimed (its slot under the sender's daily cap taken), then the opt-out
    committed since was seen right before the call: nothing went, and the slot it kept counted
    against the cap all day, holding the next person's email back."""
    unsubscribed, other = person(), person()
    faults = OptOutAtTheLastMoment(to=unsubscribed.email or "")
    async with outreach_rig(ground, faults=faults) as st:
        faults.sessions = st.sessions
        sender = {"from_address": "ann@one.example.com", "daily_cap": 1}
        r = await st.api.post("/senders", json=sender, headers=AUTH)
        assert r.status_code == 201, r.text

        assert await st.send(touch(unsubscribed, channels=("email",))) == {"email": "suppressed"}
        assert faults.done == ["email"] and st.emails_to(unsubscribed.email or "") == []
        [ann] = (await st.api.get("/senders", headers=AUTH)).json()
        assert ann["sent_last_day"] == 0
        assert await st.send(touch(other, channels=("email",))) == {"email": "sent"}


class HeldSmtp:
    """An SMTP server that holds each message until released: a provider call in flight."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.set()
        await asyncio.to_thread(self.release.wait, 20)
        self.accepted += 1
        return "250 OK"


async def test_an_opt_out_during_the_provider_call(ground: Ground) -> None:
    """PostgreSQL: the opt-out waits until the message in flight is out, so it is never committed
    before a message that then goes out. SQLite: the documented window, shown."""
    smtp = HeldSmtp()
    port = free_port()
    controller = Controller(smtp, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    postgres = ground.database_urls["outreach"].startswith("postgresql")
    try:
        async with outreach_rig(ground, smtp_port=port) as st:
            c = person()
            sending = asyncio.create_task(st.send(touch(c, channels=("email",))))
            assert await asyncio.to_thread(smtp.arrived.wait, 20)
            [row] = await st.rows(c.prospect_id)
            unsubscribing = asyncio.create_task(
                st.api.post(f"/unsubscribe/{row.unsubscribe_token}")
            )
            listing = asyncio.create_task(
                st.api.post("/do-not-contact", json={"value": c.email}, headers=AUTH)
            )
            opt_outs = {unsubscribing, listing}
            if postgres:
                # they wait for the send's locks: none is answered while the provider holds it
                done, _ = await asyncio.wait(opt_outs, timeout=1.0)
                assert not done
            else:
                # no lock to wait for: both commit while the provider still holds the message
                # (however long a loaded machine takes; the provider answers only when released)
                done, _ = await asyncio.wait(opt_outs, timeout=60)
                assert done == opt_outs
            assert not sending.done() and smtp.accepted == 0
            smtp.release.set()
            assert await sending == {"email": "sent"}
            assert (await unsubscribing).status_code == 200
            assert (await listing).status_code == 201
            assert smtp.accepted == 1
            smtp.arrived.clear()
            assert await st.send(touch(c, "step-1", ("email",))) == {"email": "suppressed"}
            assert smtp.accepted == 1
    finally:
        smtp.release.set()
        controller.stop()


@ON_POSTGRES
async def test_listing_a_parent_domain_waits_for_a_subdomain_email_in_flight(
    ground: Ground,
) -> None:
    """PostgreSQL: a listed domain covers its subdomains, so listing example.com waits for an
    email to sales.example.com that the provider holds, as listing the address itself does. It
    did not: the send held the lock of sales.example.com only, the listing was answered 201 while
    the email was still to go out, and went."""
    smtp = HeldSmtp()
    port = free_port()
    controller = Controller(smtp, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        async with outreach_rig(ground, smtp_port=port) as st:
            c = person(email=f"ada-{uuid.uuid4().hex[:8]}@sales.example.com")
            sending = asyncio.create_task(st.send(touch(c, channels=("email",))))
            assert await asyncio.to_thread(smtp.arrived.wait, 20)
            listing = asyncio.create_task(
                st.api.post("/do-not-contact", json={"value": "@example.com"}, headers=AUTH)
            )
            done, _ = await asyncio.wait({listing}, timeout=1.0)
            assert not done, "the domain was listed while an email to it was still to go out"
            smtp.release.set()
            assert await sending == {"email": "sent"}
            assert (await listing).status_code in (200, 201)
    finally:
        smtp.release.set()
        controller.stop()


# --- the real journey -------------------------------------------------------------------------


SECOND_TOUCH = 20  # seconds after enrollment


async def test_journey_respects_consent_and_auto_replies(stack: StackDriver) -> None:
    """Whole stack, real journeys: a second touch due 20 s after the first (room for the
    opt-outs to land first on a busy machine). Listed after the
    first touch: the cadence ends, nothing more goes out. Unsubscribed: the cadence ends. Out of office: the journey
    pauses (the touch that falls due waits for the resume) and no reply is counted."""
    d, urls = stack, stack.u
    await d.setup()
    steps = fast_cadence()["steps"][:2]
    steps += [
        {
            "channel": "email",
            "offset_seconds": SECOND_TOUCH,
            "subject": "Again",
            "body": "Following up",
        },
        {"channel": "sms", "offset_seconds": SECOND_TOUCH, "body": "Following up by text"},
    ]
    cadence = await d.ok("POST", f"{urls.outreach}/cadences", json=fast_cadence(steps=steps))
    listed, leaving, away = [await d.new_prospect(n) for n in ("Lis", "Lee", "Ava")]
    enrolled = asyncio.get_running_loop().time()
    for p in (listed, leaving, away):
        await d.enroll(p["id"], cadence["id"])
    firsts = {p["id"]: (await d.wait_mails(p["email"], 1))[0] for p in (listed, leaving, away)}
    for p in (listed, leaving, away):
        await eventually(lambda p=p: d.sms_to(p["phone"]), "the first text")

    for value in (listed["email"], listed["phone"]):
        await d.ok("POST", f"{urls.outreach}/do-not-contact", json={"value": value})
    unsubscribe = firsts[leaving["id"]]["headers"]["List-Unsubscribe"].strip().strip("<>")
    assert (await d.http.post(unsubscribe)).status_code == 200
    reply_to = firsts[away["id"]]["headers"]["Reply-To"]
    form = mailgun_inbound(
        "dev-mailgun-signing-key",
        sender=away["email"],
        recipient=reply_to.split("<")[1].rstrip(">"),
        subject="Automatic reply: Quick question",
        text="I am out of the office with limited access to email.",
        extra_headers=[("Auto-Submitted", "auto-replied")],
    )
    r = await d.http.post(f"{urls.outreach}/webhooks/mailgun/inbound", data=form)
    assert r.status_code == 200

    async def paused() -> bool:
        state = await d.ok("GET", f"{urls.outreach}/journeys/{away['id']}")
        return bool(state["paused"])

    await eventually(paused, "the out-of-office pause")

    # listing ends the cadence as unsubscribing does
    await d.wait_stage(listed["id"], "nurture")
    await d.wait_stage(leaving["id"], "nurture")
    # past the moment the second touch fell due (nothing may have gone out then)
    await asyncio.sleep(max(0.0, enrolled + SECOND_TOUCH + 2 - asyncio.get_running_loop().time()))
    for p in (listed, leaving, away):
        assert len(await d.mails_to(p["email"])) == 1, p["first_name"]
        assert len(await d.sms_to(p["phone"])) == 1, p["first_name"]
    assert "qualifying" not in await d.stages(away["id"])
    assert await paused()
    msgs = await d.ok("GET", f"{urls.outreach}/prospects/{away['id']}/messages")
    assert all(m.get("replied_at") is None for m in msgs)


# --- the migration --------------------------------------------------------------------------------


@pytest.mark.empty_databases
async def test_the_migration_copies_existing_suppressions_into_person_records(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    settings = make_settings(tmp_path, {"outreach": database_urls["outreach"]})
    await asyncio.to_thread(upgrade, settings, "outreach", "0001")
    engine = create_engine(settings.database_url("outreach"))
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    async with engine.begin() as conn:
        for channel, address, reason in [
            ("email", "ada@example.com", "unsubscribe link"),
            ("sms", "+14155550100", "SMS STOP"),
            ("email", "bob@example.com", "hard bounce"),
            ("sms", "+14155550199", "SMS STOP"),
        ]:
            await conn.execute(
                text(
                    "INSERT INTO suppressions (channel, address, reason, created_at) "
                    "VALUES (:c, :a, :r, :t)"
                ),
                {"c": channel, "a": address, "r": reason, "t": now},
            )
        for channel, address in [("email", "ada@example.com"), ("sms", "+14155550100")]:
            await conn.execute(
                text(
                    "INSERT INTO messages (id, journey_id, touch_key, channel, kind, prospect_id, "
                    "to_address, subject, body, status, provider_status, error, attempts, "
                    "created_at, updated_at) VALUES (:id, 'j', :k, :c, 'cadence', 'p-ada', :a, '', "
                    "'', 'submitted', '', '', 1, :t, :t)"
                ),
                {
                    "id": uuid.uuid4().hex,
                    "k": f"step-{channel}",
                    "c": channel,
                    "a": address,
                    "t": now,
                },
            )
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "outreach")
    engine = create_engine(settings.database_url("outreach"))
    async with session_factory(engine)() as s:
        records = list((await s.scalars(select(models.ConsentRecord))).all())
        ada = await consent.record_of(s, "p-ada")
        assert ada is not None
        assert (ada.email, ada.email_status, ada.email_reason) == (
            "ada@example.com",
            "opted_out",
            "unsubscribe link",
        )
        assert (ada.phone, ada.sms_status, ada.sms_changed_at) == ("+14155550100", "opted_out", now)
        # a number nobody was written to: a record of its own; a hard bounce: none
        assert {(r.prospect_id, r.phone) for r in records} == {
            ("p-ada", "+14155550100"),
            (None, "+14155550199"),
        }
        assert await consent.blocked(s, "sms", "+14155550199", None) == "suppressed: SMS STOP"
    await engine.dispose()


# --- a status callback before the send recorded its sid (make chaos) ------------------------------


class CallbackFirst(SendFaults):
    """Twilio calls back (and outreach acknowledges) before the send activity has recorded the
    sid Twilio's create call returned: a slow commit, as make chaos saw around a PostgreSQL
    restart. `named`: the callback URL names the ledger row, as outreach sets it on each text
    (the status writer then records the sid before the activity does); else a URL without it,
    as texts sent before that carry."""

    def __init__(self, named: bool) -> None:
        self.named = named
        self.api: httpx.AsyncClient | None = None
        self.settings: Any = None
        self.answers: list[int] = []
        self.sid = ""

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        if row.channel != "sms":
            return
        self.sid = provider_id
        assert self.api is not None
        public = self.settings.outreach_public_url
        url = sms_status.callback_url(public, row.id) if self.named else f"{public}{STATUS}"
        token = self.settings.twilio_auth_token.get_secret_value()
        for status in ("sent", "delivered"):
            params = {
                "AccountSid": self.settings.twilio_account_sid,
                "MessageSid": provider_id,
                "MessageStatus": status,
                "To": row.to_address,
            }
            headers = {SIGNATURE_HEADER: sign_twilio_request(token, url, params)}
            answer = await self.api.post(url.removeprefix(public), data=params, headers=headers)
            self.answers.append(answer.status_code)


@pytest.mark.parametrize("named", [False, True])
async def test_a_status_callback_acknowledged_before_the_sid_is_recorded_still_counts(
    named: bool, ground: Ground
) -> None:
    faults = CallbackFirst(named)
    async with outreach_rig(ground, faults=faults) as st:
        faults.api, faults.settings = st.api, st.sb.settings
        c = person()
        assert await st.send(touch(c, channels=("sms",))) == {"sms": "sent"}
        assert faults.answers == [204, 204]  # both stored and acknowledged
        [row] = await st.rows(c.prospect_id)
        assert (row.status, row.provider_status) == ("delivered", "delivered")
        assert (row.provider_id, row.attempts) == (faults.sid, 1)
        assert row.sent_at is not None and row.sending_until is None
