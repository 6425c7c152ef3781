"""Webhook storms (issue 13): every inbound provider webhook the outreach service accepts, on the
real app and database, with the inbox relay signalling stand-in journeys on the dev server.

- Duplicates: STORM_N deliveries of STORM_N / COPIES distinct events, each sent COPIES times,
  shuffled and concurrent. Every event has its own ledger row and address, so each effect can
  be counted: one inbox row, one suppression, one reply mark, one status move and one journey
  signal per event, never two.
- Forgeries: STORM_N requests that must not pass (bad signature, altered body, replayed or
  stale timestamp, wrong key or credentials), aimed at real ledger rows. None may be accepted
  and no table the webhooks write may gain a row.

Not part of `make test` (pyproject ignores tests/storms): `make storms`, bounded in `.ci/run`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from services.outreach import models
from services.outreach.notifications import provider_told
from shared.contracts.journey import journey_id
from shared.contracts.names import Sig
from shared.providers import postmark, sendgrid
from shared.providers.mailgun import PERMANENT, event_payload, inbound_form
from shared.providers.postmark import basic_auth_header
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from tests.storms.report import show, storm_n, table
from tests.support.eventually import eventually
from tests.support.webhooks import Rig, WebhookRigs, signals_of

COPIES = 4  # deliveries of each distinct event in the duplicate storm
CONCURRENCY = 32
JOURNEYS = 100  # stand-in journeys the events' prospects share
PM_USER, PM_PASSWORD = "storm", "storm-postmark-password"
SG_PRIVATE, SG_PUBLIC = sendgrid.generate_key_pair()
SG_OTHER, _ = sendgrid.generate_key_pair()
WRONG = "not-the-key-0123456789abcdef"
PUBLIC = "http://test"


def overrides() -> dict[str, object]:
    return {
        "sendgrid_webhook_public_key": SG_PUBLIC,
        "postmark_webhook_user": PM_USER,
        "postmark_webhook_password": PM_PASSWORD,
    }


@dataclass
class Request:
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Event:
    """One provider event, its request (sent as is every time) and the effect it must have."""

    kind: str
    request: Request
    prospect_id: str
    suppresses: tuple[str, str] | None = None  # (channel, address)
    replies_to: str | None = None  # the ledger row it marks replied
    moves_to: tuple[str, str] | None = None  # (ledger row, status) it moves
    signal: str | None = None
    records: tuple[str, str] | None = None  # (ledger row, sid) it records on a row without one
    # (rep notification row, Message-ID) it records sent: a rep's email, not a prospect's
    notifies: tuple[str, str] | None = None


# --- requests as each provider signs them ---------------------------------------------------


def form(path: str, params: dict[str, str], token: str) -> Request:
    body = urlencode(params).encode()
    return Request(
        path,
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign_twilio_request(token, PUBLIC + path, params),
        },
    )


def twilio_inbound(rig: Rig, sender: str, body: str, *, token: str | None = None) -> Request:
    sid = "SM" + uuid.uuid4().hex
    params = {
        "AccountSid": rig.settings.twilio_account_sid,
        "MessageSid": sid,
        "SmsSid": sid,
        "From": sender,
        "To": rig.settings.twilio_from_number,
        "Body": body,
        "NumMedia": "0",
    }
    return form("/webhooks/twilio/sms", params, token or twilio_token(rig))


def twilio_status(
    rig: Rig, t: Target, status: str, *, token: str | None = None, named: str | None = None
) -> Request:
    """The callback for `t`'s text, to the URL outreach set on it (naming its row, or `named`)."""
    sid, to = t.provider_id, t.address
    params = {
        "AccountSid": rig.settings.twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "From": rig.settings.twilio_from_number,
        "To": to,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
    }
    path = f"/webhooks/twilio/status?message={named or t.row_id}"
    return form(path, params, token or twilio_token(rig))


def twilio_token(rig: Rig) -> str:
    return rig.settings.twilio_auth_token.get_secret_value()


def mailgun_key(rig: Rig) -> str:
    return rig.settings.mailgun_signing_key.get_secret_value()


def mailgun_event(
    rig: Rig, event: str, to: str, message_id: str, *, key: str | None = None, now: float = 0
) -> dict[str, Any]:
    return event_payload(
        event=event,
        recipient=to,
        message_id=message_id,
        event_id=uuid.uuid4().hex,
        severity=PERMANENT if event == "failed" else None,
        reason="storm",
        signing_key=key or mailgun_key(rig),
        now=now or time.time(),
    )


def json_request(path: str, doc: object, headers: dict[str, str] | None = None) -> Request:
    return Request(
        path, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def mailgun_inbound(rig: Rig, sender: str, message_id: str, *, key: str | None = None) -> Request:
    fields = inbound_form(
        sender=sender,
        recipient="sales@closeflow.test",
        subject="Re: Quick question",
        text="Yes, let's talk",
        in_reply_to=message_id,
        references=message_id,
        message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
        signing_key=key or mailgun_key(rig),
        now=time.time(),
    )
    return Request(
        "/webhooks/mailgun/inbound",
        urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )


def sendgrid_batch(items: list[dict[str, Any]], *, key: Any = None, now: float = 0) -> Request:
    body = sendgrid.batch_body(items)
    return Request(
        "/webhooks/sendgrid/events",
        body,
        sendgrid.signed_headers(key or SG_PRIVATE, body, now or time.time()),
    )


def postmark_request(
    path: str, doc: dict[str, Any], user: str = PM_USER, pw: str = PM_PASSWORD
) -> Request:
    return json_request(path, doc, basic_auth_header(user, pw))


def postmark_inbound(sender: str, message_id: str) -> dict[str, Any]:
    return postmark.inbound(
        from_email=sender,
        to_email="sales@closeflow.test",
        subject="Re: Quick question",
        text="Yes, let's talk",
        stripped_reply="Yes, let's talk",
        message_id_header=f"<{uuid.uuid4().hex}@mail.example.com>",
        in_reply_to=message_id,
        references=message_id,
        now=time.time(),
    )


# --- the ledger rows the events are about -----------------------------------------------------


@dataclass
class Target:
    row_id: str
    prospect_id: str
    channel: str
    address: str
    provider_id: str
    unsubscribe_token: str


UNRECORDED = "sms, sid not recorded"
# a rep's notification email (services.outreach.notifications), its attempt in flight
NOTIFICATION = "email, a rep's notification"


async def ledger_rows(rig: Rig, channels: list[str], prospects: list[str]) -> list[Target]:
    """One submitted ledger row per event (its own address), as the send activity leaves it;
    an UNRECORDED one `sending` without its sid (the target's provider_id)."""
    targets: list[Target] = []
    rows: list[models.Message | models.TaskNotification] = []
    for i, kind in enumerate(channels):
        pid = prospects[i % len(prospects)]
        tag = uuid.uuid4().hex[:12]
        if kind == NOTIFICATION:
            target = _notification(tag, i)
            targets.append(target)
            rows.append(
                models.TaskNotification(
                    id=target.row_id, task_id=uuid.uuid4().hex, reason="urgent",
                    recipient_rep_id=f"rep-{tag}", channel="email", target=target.address,
                    subject="Urgent: call Bob", text="Bob replied", claims=1,
                    # claimed by a notifier whose attempt is in flight: not due for this one
                    next_attempt_at=datetime.now(UTC) + timedelta(hours=1),
                )
            )  # fmt: skip
            continue
        # UNRECORDED: a text whose worker died before it recorded the sid Twilio gave it
        channel = "sms" if kind == UNRECORDED else kind
        if channel == "email":
            address, provider_id = (
                f"storm-{tag}@storm{i % 7}.example.com",
                f"<{tag}@closeflow.test>",
            )
        else:
            address, provider_id = f"+1415{i:07d}", "SM" + uuid.uuid4().hex
        target = Target(uuid.uuid4().hex, pid, channel, address, provider_id, f"unsub-{tag}")
        targets.append(target)
        rows.append(
            models.Message(
                id=target.row_id,
                journey_id=journey_id(pid),
                touch_key=f"step-{tag}",
                channel=channel,
                kind="cadence",
                prospect_id=pid,
                to_address=address,
                subject="Quick question" if channel == "email" else "",
                body="Hello",
                status="sending" if kind == UNRECORDED else "submitted",
                provider_status="accepted" if channel == "sms" else "",
                provider_id=None if kind == UNRECORDED else provider_id,
                unsubscribe_token=target.unsubscribe_token if channel == "email" else None,
            )
        )
    async with rig.sessions() as s:
        s.add_all(rows)
        await s.commit()
    return targets


def _notification(tag: str, i: int) -> Target:
    row_id = uuid.uuid4().hex
    address = f"rep-{tag}@storm{i % 7}.example.com"
    message_id = provider_told.message_id(row_id, "closeflow.test")
    return Target(row_id, "", "email", address, message_id, "")


# --- every webhook, as (channel of its ledger row, how to build its event) -------------------

STOP, REPLY = Sig.STOP_CADENCE, Sig.REPLY_RECEIVED
Builder = Callable[[Rig, Target], Event]


def _tw_reply(rig: Rig, t: Target) -> Event:
    req = twilio_inbound(rig, t.address, "Sounds good, call me")
    return Event("twilio sms reply", req, t.prospect_id, replies_to=t.row_id, signal=REPLY)


def _tw_stop(rig: Rig, t: Target) -> Event:
    req = twilio_inbound(rig, t.address, "STOP")
    return Event("twilio sms STOP", req, t.prospect_id, ("sms", t.address), signal=STOP)


def _tw_status(rig: Rig, t: Target) -> Event:
    req = twilio_status(rig, t, "delivered")
    return Event("twilio status", req, t.prospect_id, moves_to=(t.row_id, "delivered"))


def _tw_status_unrecorded(rig: Rig, t: Target) -> Event:
    req = twilio_status(rig, t, "delivered")
    moves = (t.row_id, "delivered")
    return Event("twilio status, sid not recorded", req, t.prospect_id, moves_to=moves,
                 records=(t.row_id, t.provider_id))  # fmt: skip


def _mg_inbound(rig: Rig, t: Target) -> Event:
    req = mailgun_inbound(rig, t.address, t.provider_id)
    return Event("mailgun inbound reply", req, t.prospect_id, replies_to=t.row_id, signal=REPLY)


def _mg_event(event: str, status: str | None) -> Builder:
    def build(rig: Rig, t: Target) -> Event:
        req = json_request(
            "/webhooks/mailgun/events", mailgun_event(rig, event, t.address, t.provider_id)
        )
        if status is not None:
            return Event(f"mailgun {event}", req, t.prospect_id, moves_to=(t.row_id, status))
        return Event(f"mailgun {event}", req, t.prospect_id, ("email", t.address), signal=STOP)

    return build


def _sg_event(kind: str, status: str | None) -> Builder:
    def build(rig: Rig, t: Target) -> Event:
        item = sendgrid.event(kind, email=t.address, smtp_id=t.provider_id, now=time.time())
        req = sendgrid_batch([item])
        if status is not None:
            return Event(f"sendgrid {kind}", req, t.prospect_id, moves_to=(t.row_id, status))
        return Event(f"sendgrid {kind}", req, t.prospect_id, ("email", t.address), signal=STOP)

    return build


def _pm_event(kind: str) -> Builder:
    def build(rig: Rig, t: Target) -> Event:
        # as Postmark posts them: its own MessageID, ours in the metadata of the header we send
        now, pm_id = time.time(), postmark.new_message_id()
        named = postmark.metadata_of(postmark.message_id_header(t.provider_id))
        path = "/webhooks/postmark/events"
        if kind == "Delivery":
            doc = postmark.delivery(recipient=t.address, message_id=pm_id, now=now, metadata=named)
            req = postmark_request(path, doc)
            return Event("postmark Delivery", req, t.prospect_id, moves_to=(t.row_id, "delivered"))
        if kind == "Bounce":
            doc = postmark.bounce(email=t.address, message_id=pm_id, now=now, metadata=named)
        elif kind == "SpamComplaint":
            doc = postmark.spam_complaint(
                email=t.address, message_id=pm_id, now=now, metadata=named
            )
        else:
            doc = postmark.subscription_change(
                recipient=t.address, message_id=pm_id, now=now, metadata=named
            )
        req = postmark_request(path, doc)
        return Event(f"postmark {kind}", req, t.prospect_id, ("email", t.address), signal=STOP)

    return build


def _pm_inbound(rig: Rig, t: Target) -> Event:
    req = postmark_request("/webhooks/postmark/inbound", postmark_inbound(t.address, t.provider_id))
    return Event("postmark inbound reply", req, t.prospect_id, replies_to=t.row_id, signal=REPLY)


def _mg_notification_bounce(rig: Rig, t: Target) -> Event:
    """A hard bounce of a rep's notification email: for a prospect's it would suppress the
    address and stop the cadence; here it only says Mailgun had the message."""
    req = json_request(
        "/webhooks/mailgun/events", mailgun_event(rig, "failed", t.address, t.provider_id)
    )
    return Event("mailgun failed, rep notification", req, "", notifies=(t.row_id, t.provider_id))


def _pm_notification_delivery(rig: Rig, t: Target) -> Event:
    named = postmark.metadata_of(postmark.message_id_header(t.provider_id))
    doc = postmark.delivery(
        recipient=t.address, message_id=postmark.new_message_id(), now=time.time(), metadata=named
    )
    req = postmark_request("/webhooks/postmark/events", doc)
    return Event("postmark Delivery, rep notification", req, "",
                 notifies=(t.row_id, t.provider_id))  # fmt: skip


def _unsubscribe_link(rig: Rig, t: Target) -> Event:
    req = Request(f"/unsubscribe/{t.unsubscribe_token}")
    return Event("unsubscribe link", req, t.prospect_id, ("email", t.address), signal=STOP)


KINDS: list[tuple[str, Builder]] = [
    ("sms", _tw_reply),
    ("sms", _tw_stop),
    ("sms", _tw_status),
    (UNRECORDED, _tw_status_unrecorded),
    ("email", _mg_inbound),
    ("email", _mg_event("failed", None)),
    ("email", _mg_event("complained", None)),
    ("email", _mg_event("unsubscribed", None)),
    ("email", _mg_event("delivered", "delivered")),
    ("email", _sg_event("bounce", None)),
    ("email", _sg_event("spamreport", None)),
    ("email", _sg_event("unsubscribe", None)),
    ("email", _sg_event("delivered", "delivered")),
    ("email", _pm_event("Bounce")),
    ("email", _pm_event("SpamComplaint")),
    ("email", _pm_event("SubscriptionChange")),
    ("email", _pm_event("Delivery")),
    ("email", _pm_inbound),
    ("email", _unsubscribe_link),
    (NOTIFICATION, _mg_notification_bounce),
    (NOTIFICATION, _pm_notification_delivery),
]


async def post_all(rig: Rig, requests: list[Request]) -> list[int]:
    """Every request, CONCURRENCY at a time, in the order given; the status codes in that order.
    The first few 5xx answers are printed (what went wrong is the point of a storm)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    shown: list[str] = []

    async def one(req: Request) -> int:
        async with gate:
            response = await rig.http.post(req.path, content=req.body, headers=req.headers)
            if response.status_code >= 500 and len(shown) < 3:
                shown.append(f"{req.path}: {response.status_code} {response.text[:300]}")
                print(shown[-1], flush=True)
            return response.status_code

    return list(await asyncio.gather(*(one(r) for r in requests)))


async def row_counts(rig: Rig) -> dict[str, int]:
    """Rows in every table of the outreach database."""
    async with rig.sessions() as s:
        out = {}
        for t in models.Base.metadata.sorted_tables:
            out[t.name] = int(await s.scalar(select(func.count()).select_from(t)) or 0)
        return out


# --- the duplicate storm ------------------------------------------------------------------------


async def test_duplicated_deliveries_have_one_effect_each(
    webhooks: WebhookRigs, capsys: pytest.CaptureFixture[str]
) -> None:
    n = storm_n()
    distinct = max(len(KINDS), n // COPIES)
    async with webhooks(**overrides()) as rig, rig.journeys():
        prospects = [uuid.uuid4().hex for _ in range(min(JOURNEYS, distinct))]
        for pid in prospects:
            await rig.start_journey(pid)
        kinds = [KINDS[i % len(KINDS)] for i in range(distinct)]
        targets = await ledger_rows(rig, [channel for channel, _ in kinds], prospects)
        events = [build(rig, t) for (_, build), t in zip(kinds, targets, strict=True)]
        deliveries = [e for e in events for _ in range(COPIES)]
        random.shuffle(deliveries)
        started = time.perf_counter()
        codes = await post_all(rig, [e.request for e in deliveries])
        seconds = time.perf_counter() - started
        refused = Counter(c for c in codes if not 200 <= c < 300)
        expected_signals = Counter((e.prospect_id, e.signal) for e in events if e.signal)

        async def all_delivered() -> bool:
            async with rig.sessions() as s:
                pending = await s.scalar(
                    select(func.count())
                    .select_from(models.InboxEvent)
                    .where(models.InboxEvent.delivery == "pending")
                )
            return pending == 0

        await eventually(all_delivered, "every journey signal delivered", timeout=300)
        got_signals: Counter[tuple[str, str]] = Counter()
        for pid in prospects:
            handle = rig.client.get_workflow_handle(journey_id(pid))
            for s in await signals_of(handle):
                got_signals[(pid, s["name"])] += 1
        async with rig.sessions() as s:
            inbox = int(await s.scalar(select(func.count()).select_from(models.InboxEvent)) or 0)
            suppressions = set(
                (
                    await s.execute(select(models.Suppression.channel, models.Suppression.address))
                ).tuples()
            )
            messages = {m.id: m for m in (await s.scalars(select(models.Message))).all()}
            notifications = {
                n.id: n for n in (await s.scalars(select(models.TaskNotification))).all()
            }
    told = [e.notifies for e in events if e.notifies]
    recorded = sum(
        1
        for row_id, message_id in told
        if (notifications[row_id].status, notifications[row_id].provider_id) == ("sent", message_id)
    )

    rows = []
    for kind in sorted({e.kind for e in events}):
        mine = [e for e in events if e.kind == kind]
        sup = [e for e in mine if e.suppresses]
        rep = [e for e in mine if e.replies_to]
        mov = [e for e in mine if e.moves_to or e.notifies]
        rows.append(
            [
                kind,
                len(mine) * COPIES,
                len(mine),
                sum(1 for e in sup if e.suppresses in suppressions) if sup else "-",
                sum(1 for e in rep if messages[e.replies_to].replied_at is not None)
                if rep
                else "-",
                sum(1 for e in mov if _moved(e, messages, notifications)) if mov else "-",
                sum(1 for e in mine if e.signal) or "-",
            ]
        )
    signals_sent = sum(expected_signals.values())
    doubled = sum(max(0, got_signals[k] - v) for k, v in expected_signals.items())
    doubled += sum(v for k, v in got_signals.items() if k not in expected_signals)
    lost = sum(max(0, v - got_signals[k]) for k, v in expected_signals.items())
    suppressing = {e.suppresses for e in events if e.suppresses}
    show(
        capsys,
        table(
            f"Duplicated webhook deliveries ({rig.settings.database_url('outreach').split(':')[0]}): "
            f"{len(deliveries)} deliveries of {len(events)} events x{COPIES}, shuffled, "
            f"{CONCURRENCY} concurrent, {len(deliveries) / seconds:.0f} req/s",
            [
                "webhook",
                "deliveries",
                "events",
                "suppressed",
                "replies marked",
                "status moved",
                "signals due",
            ],
            rows,
        )
        + "\n\n"
        + table(
            "Duplicate storm: effects",
            ["measure", "expected", "seen", "double effects"],
            [
                ["non-2xx answers", 0, sum(refused.values()), "-"],
                ["inbox rows", len(events), inbox, max(0, inbox - len(events))],
                [
                    "suppressions",
                    len(suppressing),
                    len(suppressions),
                    max(0, len(suppressions) - len(suppressing)),
                ],
                ["journey signals", signals_sent, sum(got_signals.values()), doubled],
                ["journey signals lost", 0, lost, "-"],
                ["rep notifications recorded sent", len(told), recorded, "-"],
            ],
        ),
    )
    assert not refused, refused
    assert inbox == len(events)
    assert suppressions == suppressing
    for e in events:
        if e.replies_to:
            assert messages[e.replies_to].replied_at is not None, e.kind
        if e.moves_to:
            assert messages[e.moves_to[0]].status == e.moves_to[1], e.kind
        if e.records:
            assert messages[e.records[0]].provider_id == e.records[1], e.kind
    assert recorded == len(told)
    assert doubled == 0 and lost == 0, (doubled, lost)


def _moved(
    e: Event,
    messages: dict[str, models.Message],
    notifications: dict[str, models.TaskNotification],
) -> bool:
    """The row the event moves is where it must be: a ledger row's status, or a rep's
    notification recorded sent with its Message-ID."""
    if e.notifies:
        row = notifications[e.notifies[0]]
        return (row.status, row.provider_id) == ("sent", e.notifies[1])
    assert e.moves_to is not None
    return messages[e.moves_to[0]].status == e.moves_to[1]


# --- the forgery storm ------------------------------------------------------------------------


def _altered(req: Request, old: bytes, new: bytes) -> Request:
    assert old in req.body, (old, req.body[:200])
    return Request(req.path, req.body.replace(old, new, 1), req.headers)


def _forgeries(rig: Rig, t: Target, used: dict[str, Any]) -> list[tuple[str, Request]]:
    """Each way a request may be forged, aimed at ledger row `t` (an email and an SMS row share
    one index here: t is the email one, used['sms'] the text one)."""
    sms: Target = used["sms"]
    # just outside each provider's window (SendGrid's 15 minutes, Mailgun's 8 hours)
    sendgrid_stale = time.time() - rig.settings.sendgrid_max_age_seconds - 60
    mailgun_stale = time.time() - rig.settings.mailgun_max_age_seconds - 60
    stop = twilio_inbound(rig, sms.address, "STOP")
    status = twilio_status(rig, sms, "delivered")
    failed = twilio_status(rig, sms, "failed")  # signed for sms's own row
    sg_item = sendgrid.event("bounce", email=t.address, smtp_id=t.provider_id, now=time.time())
    sg = sendgrid_batch([sg_item])
    pm_doc = postmark.bounce(email=t.address, message_id=t.provider_id, now=time.time())
    # a captured (already used) Mailgun signature sent again with another body
    captured: dict[str, Any] = used["mailgun"]
    replayed = {
        **captured,
        "event-data": {**captured["event-data"], "recipient": t.address, "id": uuid.uuid4().hex},
    }
    bad_sig = dict(stop.headers, **{SIGNATURE_HEADER: "AAAA" + stop.headers[SIGNATURE_HEADER][4:]})
    mg_bad = mailgun_event(rig, "failed", t.address, t.provider_id)
    mg_bad["signature"]["signature"] = "0" * 64
    return [
        ("twilio sms: bad signature", Request(stop.path, stop.body, bad_sig)),
        ("twilio sms: altered body", _altered(stop, b"Body=STOP", b"Body=STOPALL")),
        ("twilio sms: wrong key", twilio_inbound(rig, sms.address, "STOP", token=WRONG)),
        (
            "twilio status: altered body",
            _altered(status, b"MessageStatus=delivered", b"MessageStatus=failed"),
        ),
        (
            "twilio status: wrong key",
            twilio_status(rig, sms, "failed", token=WRONG),
        ),
        (
            "twilio status: another row named in the signed URL",
            Request(
                twilio_status(rig, sms, "failed", named=t.row_id).path,
                failed.body,
                failed.headers,
            ),
        ),
        ("mailgun event: bad signature", json_request("/webhooks/mailgun/events", mg_bad)),
        (
            "mailgun event: wrong key",
            json_request(
                "/webhooks/mailgun/events",
                mailgun_event(rig, "failed", t.address, t.provider_id, key=WRONG),
            ),
        ),
        (
            "mailgun event: old timestamp",
            json_request(
                "/webhooks/mailgun/events",
                mailgun_event(rig, "failed", t.address, t.provider_id, now=mailgun_stale),
            ),
        ),
        (
            "mailgun event: replayed token, other body",
            json_request("/webhooks/mailgun/events", replayed),
        ),
        ("mailgun inbound: wrong key", mailgun_inbound(rig, t.address, t.provider_id, key=WRONG)),
        ("sendgrid: altered body", _altered(sg, b'"bounce"', b'"spamreport"')),
        ("sendgrid: wrong key", sendgrid_batch([sg_item], key=SG_OTHER)),
        ("sendgrid: old timestamp", sendgrid_batch([sg_item], now=sendgrid_stale)),
        (
            "sendgrid: bad signature",
            Request(
                sg.path,
                sg.body,
                dict(sg.headers, **{sendgrid.SIGNATURE_HEADER: "MEUCIQ" + "A" * 90}),
            ),
        ),
        (
            "postmark: wrong password",
            postmark_request("/webhooks/postmark/events", pm_doc, pw=WRONG),
        ),
        (
            "postmark: wrong user",
            postmark_request("/webhooks/postmark/events", pm_doc, user="intruder"),
        ),
        ("postmark: no credentials", json_request("/webhooks/postmark/events", pm_doc)),
        (
            "postmark inbound: wrong password",
            postmark_request(
                "/webhooks/postmark/inbound", postmark_inbound(t.address, t.provider_id), pw=WRONG
            ),
        ),
    ]


async def test_forged_deliveries_are_refused_and_store_nothing(
    webhooks: WebhookRigs, capsys: pytest.CaptureFixture[str]
) -> None:
    n = storm_n()
    async with webhooks(**overrides()) as rig:
        # the genuine Mailgun events whose captured signatures the replays reuse
        originals = max(1, min(100, n // 100))
        pids = [uuid.uuid4().hex for _ in range(originals)]
        genuine_targets = await ledger_rows(rig, ["email"] * originals, pids)
        captured = [
            mailgun_event(rig, "delivered", t.address, t.provider_id) for t in genuine_targets
        ]
        codes = await post_all(rig, [json_request("/webhooks/mailgun/events", c) for c in captured])
        assert set(codes) == {200}, codes
        per_target = len(
            _forgeries(rig, genuine_targets[0], {"sms": genuine_targets[0], "mailgun": captured[0]})
        )
        pairs = -(-n // per_target)
        emails = await ledger_rows(rig, ["email"] * pairs, pids)
        texts = await ledger_rows(rig, ["sms"] * pairs, pids)
        forged = [
            f
            for i, (e, s) in enumerate(zip(emails, texts, strict=True))
            for f in _forgeries(rig, e, {"sms": s, "mailgun": captured[i % originals]})
        ][:n]
        random.shuffle(forged)
        before = await row_counts(rig)
        started = time.perf_counter()
        codes = await post_all(rig, [req for _, req in forged])
        seconds = time.perf_counter() - started
        after = await row_counts(rig)
        async with rig.sessions() as s:
            # the forged events' rows are untouched: still as the send activity left them
            aimed_at = [t.row_id for t in emails + texts]
            moved = await s.scalar(
                select(func.count())
                .select_from(models.Message)
                .where(models.Message.id.in_(aimed_at))
                .where(
                    (models.Message.status != "submitted") | models.Message.replied_at.is_not(None)
                )
            )

    by_kind: dict[str, Counter[int]] = {}
    for (kind, _), code in zip(forged, codes, strict=True):
        by_kind.setdefault(kind, Counter())[code] += 1
    rows = [
        [
            kind,
            sum(c.values()),
            c[401],
            c[403],
            sum(v for k, v in c.items() if k not in (401, 403)),
            sum(v for k, v in c.items() if 200 <= k < 300),
        ]
        for kind, c in sorted(by_kind.items())
    ]
    grown = {t: after[t] - before[t] for t in before if after[t] != before[t]}
    show(
        capsys,
        table(
            f"Forged webhook deliveries ({rig.settings.database_url('outreach').split(':')[0]}): "
            f"{len(forged)} requests, shuffled, {CONCURRENCY} concurrent, {len(forged) / seconds:.0f} req/s",
            ["forgery", "sent", "401", "403", "other", "accepted"],
            rows,
        )
        + "\n\n"
        + table(
            "Forgery storm: what was stored",
            ["measure", "seen"],
            [
                ["accepted (2xx)", sum(r[5] for r in rows)],
                ["answers other than 401/403", sum(r[4] for r in rows)],
                [f"rows added to the {len(before)} outreach tables", sum(grown.values())],
                ["ledger rows moved or marked replied", moved],
            ],
        ),
    )
    assert all(code in (401, 403) for code in codes), Counter(codes)
    assert grown == {}, grown
    assert moved == 0
