"""Outreach against real parts: Temporal dev server, SMTP (aiosmtpd), the Twilio sandbox, SQLite
and PostgreSQL. Journeys are stood in for by a small recording workflow where only the signal
matters; the real journey runs in test_full_journey.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach import models
from services.outreach.activities import activities_for
from services.outreach.app import create_app
from shared.contracts.journey import (
    CadenceStep,
    Contact,
    SendWindow,
    TouchRequest,
)
from shared.db import create_engine, session_factory
from shared.pages import FORM_PAGE_HEADERS
from shared.providers.mailgun import event_payload, inbound_form
from shared.providers.twilio_signature import sign_twilio_request
from tests.support.eventually import eventually
from tests.support.sandboxes import EMAIL, SMS, Sandboxes, SendTouchOnce, sandboxes, touch_request
from tests.support.scenarios import daytime_zone
from tests.support.sending import Rig, SendingRig
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH

CADENCE = {
    "name": "Outbound",
    "steps": [
        {
            "channel": "email",
            "offset_seconds": 0,
            "subject": "Hi {{ first_name }}",
            "body": "Hello {{ first_name }} from {{ rep_name }}",
        },
        {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}, {{ rep_name }} here"},
        {"channel": "email", "offset_seconds": 3600, "subject": "Again", "body": "Following up"},
    ],
}

# outreach as configured out of the box: clients send no API key unless told, no postal address
OUTREACH_DEFAULTS: dict[str, Any] = {"key": False, "postal_address": ""}


def contact(pid: str | None = None) -> Contact:
    return Contact(
        pid or uuid.uuid4().hex,
        "Ada",
        "Lovelace",
        f"ada-{uuid.uuid4().hex[:6]}@example.com",
        "+14155550" + str(uuid.uuid4().int % 900 + 100),
        company="Analytical Engines",
        timezone=daytime_zone(),  # SMS go out only 08:00-21:00 local: the suite runs at any hour
        rep_name="Rita Rep",
    )


async def sms_in_sandbox(sb: Sandboxes, to: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as c:
        r = await c.get(f"{sb.twilio_url}/sandbox/messages", params={"to": to})
        body = r.json()
        return body["messages"] if isinstance(body, dict) else body


def touch(c: Contact, key: str = "step-0", **kw: Any) -> TouchRequest:
    email = CadenceStep(
        "email", 0, "Hello {{ first_name }} at {{ company }}", "Hi {{ first_name }}"
    )
    return touch_request(c, email, SMS, key=key, **kw)


async def test_failed_activity_after_provider_accepted_sends_nothing_twice(
    sending_rig: SendingRig,
) -> None:
    calls: list[str] = []

    async def after_send(row: models.Message) -> None:
        calls.append(row.channel)
        if calls.count(row.channel) == 1:
            raise RuntimeError("worker lost right after the provider accepted")

    async with sending_rig(after_send=after_send, **OUTREACH_DEFAULTS) as r:
        c = contact()
        result = await r.send(touch(c))
        # the first attempt failed after the email was accepted; the retry found the ledger row
        assert calls.count("email") == 1
        assert {o.channel: o.status for o in result.outcomes} == {
            "email": "already_sent",
            "sms": "sent",
        } or {o.channel: o.status for o in result.outcomes} == {
            "email": "already_sent",
            "sms": "already_sent",
        }
        emails = r.sb.mailbox.list(to=c.email)
        assert len(emails) == 1
        assert emails[0].to_json()["subject"] == "Hi Ada"
        assert len(await sms_in_sandbox(r.sb, c.phone or "")) == 1


async def test_email_has_one_click_unsubscribe_that_works(sending_rig: SendingRig) -> None:
    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        c = contact()
        await r.send(touch(c))
        mail = r.sb.mailbox.list(to=c.email)[0].to_json()
        headers = {k.lower(): v for k, v in mail["headers"].items()}
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert mail["message_id"]
        url = headers["list-unsubscribe"].strip("<>")
        path = url.removeprefix("http://test")
        page = await r.api.get(path)
        assert page.status_code == 200 and "Unsubscribe" in page.text
        done = await r.api.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        supp = (await r.api.get("/suppressions", headers=AUTH)).json()
        assert {"channel": "email", "address": c.email} in [
            {"channel": s["channel"], "address": s["address"]} for s in supp
        ]
        # a later touch to the same address is not sent
        result = await r.send(touch(c, "step-1"))
        assert {o.channel: o.status for o in result.outcomes}["email"] == "suppressed"
        assert len(r.sb.mailbox.list(to=c.email)) == 1
        unknown = await r.api.get("/unsubscribe/nope")
        assert unknown.status_code == 404
        # the pages show the address and their URL carries the token: the public pages' headers
        # (no Referer, not cached, not framed, the form posts only here)
        for answer in (page, done, unknown):
            assert {k: answer.headers.get(k) for k in FORM_PAGE_HEADERS} == FORM_PAGE_HEADERS
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_sms_outside_quiet_hours_is_deferred_not_dropped(sending_rig: SendingRig) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        # pick a zone where it is 02:00-03:00 local now: texts must wait until 08:00 there
        now = datetime.now(UTC)
        tz = next(
            f"Etc/GMT{'+' if off <= 0 else '-'}{abs(off)}" if off else "Etc/GMT"
            for off in range(-12, 15)
            if (now.hour + off) % 24 == 2
        )
        c = contact()
        c.timezone = tz
        result = await r.send(touch(c))
        outcomes = {o.channel: o.status for o in result.outcomes}
        assert outcomes == {"email": "sent", "sms": "deferred"}
        assert result.defer_until is not None
        local = datetime.fromisoformat(result.defer_until).astimezone(ZoneInfo(tz))
        assert (local.hour, local.minute) == (8, 0)
        assert await sms_in_sandbox(r.sb, c.phone or "") == []


async def test_a_call_task_made_at_night_is_due_when_calls_are_allowed(
    sending_rig: SendingRig,
) -> None:
    """A touch at 23:00 in the prospect's zone, the day before a holiday of the cadence: its
    call task is made now (the rep sees it coming, the journey does not wait) and due at 08:00
    on the day after the holiday, so the rep inbox does not rank it overdue at once."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        now = datetime.now(UTC)
        off = next(o for o in range(-12, 15) if (now.hour + o) % 24 == 23)
        tz = f"Etc/GMT{'+' if off <= 0 else '-'}{abs(off)}" if off else "Etc/GMT"
        today = now.astimezone(ZoneInfo(tz)).date()
        holiday = today + timedelta(days=1)
        c = contact()
        c.timezone, c.rep_id = tz, "rep-night"
        call = CadenceStep("call_task", 0, "Call {{ first_name }} about reporting")
        req = touch_request(c, EMAIL, call, send_window=SendWindow(holidays=[holiday.isoformat()]))
        result = await r.send(req)
        assert {o.channel: o.status for o in result.outcomes}["call_task"] == "task_created"
        [task] = (await r.api.get("/reps/rep-night/inbox", headers=AUTH)).json()
        due = datetime.fromisoformat(task["due_at"]).astimezone(ZoneInfo(tz))
        assert (due.date(), due.hour, due.minute) == (holiday + timedelta(days=1), 8, 0)
        # not late, not soon: ranked by its stage alone until then
        assert [x["code"] for x in task["reasons"]] == ["stage"], task["reasons"]
        assert task["why_now"].startswith("due "), task["why_now"]


async def test_missing_phone_becomes_a_rep_task(sending_rig: SendingRig) -> None:
    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        c = contact()
        c.phone = None
        c.rep_id = "rep-1"
        result = await r.send(touch(c, send_window=SendWindow()))
        assert {o.channel: o.status for o in result.outcomes} == {
            "email": "sent",
            "social_task": "task_created",
        }
        tasks = (await r.api.get("/reps/rep-1/tasks", headers=AUTH)).json()
        assert [t["kind"] for t in tasks] == ["social_task"]
        done = await r.api.post(
            f"/tasks/{tasks[0]['id']}/complete", json={"outcome": "done"}, headers=AUTH
        )
        assert done.status_code == 200 and done.json()["status"] == "done"
        again = await r.api.post(
            f"/tasks/{tasks[0]['id']}/complete", json={"outcome": "done"}, headers=AUTH
        )
        assert again.status_code == 409
        bad = await r.api.post(
            f"/tasks/{tasks[0]['id']}/complete", json={"outcome": "maybe"}, headers=AUTH
        )
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "outcome"


async def test_cadence_validation_names_each_problem(sending_rig: SendingRig) -> None:
    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        assert (await r.api.post("/cadences", json=CADENCE)).status_code == 401
        wrong = await r.api.post("/cadences", json=CADENCE, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        bad = {
            "name": "Bad",
            "steps": [
                {"channel": "fax", "offset_seconds": 0, "body": "x"},
                {
                    "channel": "email",
                    "offset_seconds": -5,
                    "subject": "s",
                    "body": "{{ shoe_size }}",
                },
            ],
        }
        res = await r.api.post("/cadences", json=bad, headers=AUTH)
        assert res.status_code == 422
        fields = {d["field"]: d["problem"] for d in res.json()["error"]["details"]}
        assert "steps[0].channel" in fields
        assert "steps[1].offset_seconds" in fields
        assert "shoe_size" in fields["steps[1].body"]
        single = {"name": "Single", "steps": [CADENCE["steps"][0], CADENCE["steps"][2]]}
        res = await r.api.post("/cadences", json=single, headers=AUTH)
        assert res.status_code == 422 and "two different channels" in res.json()["error"]["message"]
        assert res.json()["error"]["details"][0]["field"] == "steps"
        assert (await r.api.get("/cadences", headers=AUTH)).json() == []

        created = await r.api.post("/cadences", json=CADENCE, headers=AUTH)
        assert created.status_code == 201
        cid = created.json()["id"]
        edited = await r.api.put(
            f"/cadences/{cid}", json={**CADENCE, "name": "Outbound v2"}, headers=AUTH
        )
        assert edited.json()["version"] == 2
        v1 = await r.api.get(f"/cadences/{cid}", params={"version": 1}, headers=AUTH)
        assert v1.json()["name"] == "Outbound"


async def recorded_replies(handle: Any, count: int) -> dict[str, Any]:
    """What the recording journey holds once it has `count` replies (a duplicate delivery must
    not add one: callers compare the whole list)."""

    async def enough() -> dict[str, Any] | None:
        got: dict[str, Any] = await handle.query("recorded")
        return got if len(got["replies"]) >= count else None

    return await eventually(enough, f"{count} recorded replies")


async def _post_twilio(
    r: Rig, path: str, form: dict[str, str], token: str | None = None
) -> httpx.Response:
    secret = token or r.sb.settings.twilio_auth_token.get_secret_value()
    sig = sign_twilio_request(secret, f"http://test{path}", form)
    return await r.api.post(path, data=form, headers={"X-Twilio-Signature": sig})


async def _inbox_count(r: Rig) -> int:
    async with r.sessions() as s:
        n = await s.scalar(select(func.count()).select_from(models.InboxEvent))
    return int(n or 0)


async def test_sms_stop_reply_and_signatures(sending_rig: SendingRig) -> None:
    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        c = contact()
        handle = await r.recording_journey(c)
        await r.send(touch(c))
        base = {
            "AccountSid": r.sb.settings.twilio_account_sid,
            "From": c.phone or "",
            "To": "+15005550006",
        }

        forged = await _post_twilio(
            r, "/webhooks/twilio/sms", {**base, "MessageSid": "SMa", "Body": "hi"}, "wrong"
        )
        assert forged.status_code == 403
        assert await _inbox_count(r) == 0

        reply = await _post_twilio(
            r, "/webhooks/twilio/sms", {**base, "MessageSid": "SMb", "Body": "Tell me more"}
        )
        assert reply.status_code == 200
        again = await _post_twilio(
            r, "/webhooks/twilio/sms", {**base, "MessageSid": "SMb", "Body": "Tell me more"}
        )
        assert again.status_code == 200
        got = await recorded_replies(handle, 1)
        assert [(x["excerpt"], x["actor"]) for x in got["replies"]] == [
            ("Tell me more", "system:reply via twilio")
        ]

        stop = await _post_twilio(
            r, "/webhooks/twilio/sms", {**base, "MessageSid": "SMc", "Body": "  stop "}
        )
        assert "unsubscribed" in stop.text
        dup = await _post_twilio(
            r, "/webhooks/twilio/sms", {**base, "MessageSid": "SMc", "Body": "  stop "}
        )
        assert "<Message>" not in dup.text  # exactly one confirmation
        got = await handle.query("recorded")
        assert len(got["replies"]) == 1  # STOP is not a reply
        result = await r.send(touch(c, "step-1"))
        assert {o.channel: o.status for o in result.outcomes}["sms"] == "suppressed"
        assert len(await sms_in_sandbox(r.sb, c.phone or "")) == 1
        await handle.terminate()


async def test_status_callbacks_from_the_sandbox_update_the_ledger(
    tmp_path: Path,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> None:
    # the sandbox posts signed callbacks to outreach_public_url: serve outreach for real
    from tests.support.ports import free_port
    from tests.support.serve import serve

    port = free_port()
    urls = {"outreach": database_urls["outreach"]}
    async with sandboxes(tmp_path, urls, queue_prefix, public_url=f"http://127.0.0.1:{port}") as sb:
        engine = create_engine(sb.settings.database_url("outreach"))
        acts = activities_for(sb.settings, session_factory(engine))
        app = create_app(sb.settings, temporal_client=temporal_local.client)
        async with (
            Worker(
                temporal_local.client,
                task_queue=sb.settings.task_queue("outreach"),
                activities=acts,
            ),
            Worker(
                temporal_local.client,
                task_queue=sb.settings.task_queue("journeys"),
                workflows=[SendTouchOnce],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
            serve(app, port),
        ):
            c = contact()
            await temporal_local.client.execute_workflow(
                SendTouchOnce.run,
                touch(c),
                id=f"send-{uuid.uuid4().hex}",
                task_queue=sb.settings.task_queue("journeys"),
            )
            async with httpx.AsyncClient(
                timeout=HTTP_TIMEOUT, base_url=f"http://127.0.0.1:{port}", headers=AUTH
            ) as api:
                for _ in range(100):
                    msgs = (await api.get(f"/prospects/{c.prospect_id}/messages")).json()
                    sms = next(m for m in msgs if m["channel"] == "sms")
                    if sms["status"] == "delivered":
                        break
                    await asyncio.sleep(0.05)
                assert sms["status"] == "delivered" and sms["provider_status"] == "delivered"
        await acts[0].__self__._sms.close()  # type: ignore[attr-defined]
        await engine.dispose()


async def test_mailgun_reply_and_bounce(sending_rig: SendingRig) -> None:
    import time

    async with sending_rig(**OUTREACH_DEFAULTS) as r:
        c = contact()
        handle = await r.recording_journey(c)
        await r.send(touch(c))
        sent = r.sb.mailbox.list(to=c.email)[0].to_json()
        key = r.sb.settings.mailgun_signing_key.get_secret_value()
        form = inbound_form(
            sender=c.email or "",
            recipient="sales@closeflow.localhost",
            subject="Re: Hi Ada",
            text="Sounds interesting",
            in_reply_to=sent["message_id"],
            references=sent["message_id"],
            message_id="<reply-1@example.com>",
            signing_key=key,
            now=time.time(),
        )
        forged = dict(form, signature="0" * 64)
        assert (await r.api.post("/webhooks/mailgun/inbound", data=forged)).status_code == 403
        assert (await r.api.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
        assert (await r.api.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
        got = await recorded_replies(handle, 1)
        assert [(x["excerpt"], x["actor"]) for x in got["replies"]] == [
            ("Sounds interesting", "system:reply via mailgun")
        ]

        bounce = event_payload(
            event="failed",
            recipient=c.email or "",
            message_id=sent["message_id"],
            event_id="ev-1",
            severity="permanent",
            reason="bounce",
            signing_key=key,
            now=time.time(),
        )
        assert (await r.api.post("/webhooks/mailgun/events", json=bounce)).status_code == 200
        msgs = (await r.api.get(f"/prospects/{c.prospect_id}/messages", headers=AUTH)).json()
        assert next(m for m in msgs if m["channel"] == "email")["status"] == "bounced"
        supp = (await r.api.get("/suppressions", headers=AUTH)).json()
        assert any(s["channel"] == "email" and s["address"] == c.email for s in supp)
        broken = await r.api.post("/webhooks/mailgun/events", json={"nothing": 1})
        assert broken.status_code == 400 and "signature" in broken.json()["error"]["message"]
        await handle.terminate()
