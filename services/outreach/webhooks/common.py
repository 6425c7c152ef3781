"""What every provider's webhook shares: lookups in the send ledger, one meaning of each email
event for the ledger and consent, and the journey signals those events cause.

Handler order is always: authenticate (nothing is stored for a request that fails), store the
event with the signal it causes (unique on the provider's id, so a repeat has no effect), apply
its effects, commit, then deliver the signal (services.outreach.inbox retries what fails).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.consent import service as consent
from services.outreach.consent import suppressions
from services.outreach.consent.erasure import (
    from_erased_person,
    strings_without_erased_addresses,
)
from services.outreach.inbox import JourneySignal, Outbound, Stored, reject, store_event
from services.outreach.notifications import provider_told
from services.outreach.webhooks import replies
from shared.contracts.journey import (
    PauseJourney,
    PauseKind,
    ReplyReceived,
    StopCadence,
    system_actor,
)
from shared.contracts.names import Sig
from shared.providers.mailgun import strip_angle_brackets
from shared.settings import Settings

# What an email event means, whichever provider reported it.
DELIVERED = "delivered"
HARD_BOUNCE = "hard_bounce"  # the address will never take mail: suppress it
SOFT_FAILURE = "soft_failure"  # this message did not arrive (blocked, dropped): the address stays
COMPLAINT = "complaint"
UNSUBSCRIBE = "unsubscribe"
NOTED = "noted"  # stored for the record, no effect (opens, clicks, deferrals, soft bounces)

# the inbox kind of a delivery-status report that names none of our sends (_receive_bounce)
UNMATCHED_BOUNCE = "email_unmatched_bounce"

SUPPRESSING = {HARD_BOUNCE: "hard bounce", COMPLAINT: "spam complaint", UNSUBSCRIBE: "unsubscribe"}

# RFC 5321's longest address (64 + "@" + 255), and the width of every column that keeps one
# (Suppression.address, ConsentRecord.email, Message.to_address)
MAX_ADDRESS = 320
# InboxEvent.event_id's width
MAX_EVENT_ID = 200


class UnusableEmail(ValueError):
    """An authenticated inbound email that cannot be stored as it is (an address longer than any
    column holds): each entry path sets it aside in rejected_items and answers 2xx (or moves the
    mailbox's cursor past it), since sending it again would change nothing."""


def inbound_address(value: str, field: str) -> str:
    """A stranger's address as the ledger and consent keep it (stripped, lower case), checked
    where it enters: stored later it broke the transaction on PostgreSQL (varchar(320)), a 500
    the provider gives up on, or a mailbox blocked for good. The reason names the field and the
    length, never the address."""
    address = value.strip().lower()
    if len(address) > MAX_ADDRESS:
        raise UnusableEmail(f"{field} address of {len(address)} characters (at most {MAX_ADDRESS})")
    return address


def inbound_event_id(message_id: str) -> str:
    """The inbox's id of an inbound email: `inbound:<Message-ID>`, or the Message-ID's hash
    when it is longer than the column (cut, two long ids with the same start were one event and
    the second email was dropped as a repeat)."""
    event_id = f"inbound:{message_id}"
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return "inbound:sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def set_aside(
    request: Request, session: AsyncSession, provider: str, text: str, reason: str
) -> Response:
    """An authenticated item nobody can store as it is: kept in rejected_items with why, and
    answered 200 (the provider would only send the same again)."""
    await reject(
        session, provider, text, reason, settings_of(request).erasure_pepper.get_secret_value()
    )
    await session.commit()
    return Response(status_code=200)


async def deliver(request: Request, stored: Iterable[Stored | None]) -> None:
    """After the commit: tell the journeys at once; the inbox relay retries what fails."""
    items: Sequence[Outbound] = [s.outbound for s in stored if s and s.outbound]
    await request.app.state.inbox.deliver_now(items)


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def as_object(value: Any) -> dict[str, Any]:
    """A part of an authenticated payload that should be a JSON object, or {} when it is not
    (a provider's odd document is stored and acted on as far as it can be read, not a 500)."""
    return value if isinstance(value, dict) else {}


def stop_cadence(prospect_id: str | None, reason: str) -> JourneySignal:
    return JourneySignal(prospect_id, Sig.STOP_CADENCE, StopCadence(reason=reason))


# --- the send ledger --------------------------------------------------------------------------


async def message_by_provider_id(
    session: AsyncSession, channel: str, provider_id: str
) -> models.Message | None:
    if not provider_id:
        return None
    return await session.scalar(
        select(models.Message)
        .where(models.Message.channel == channel, models.Message.provider_id == provider_id)
        .limit(1)
    )


async def latest_message_to(
    session: AsyncSession, channel: str, address: str
) -> models.Message | None:
    if not address:
        return None
    return await session.scalar(
        select(models.Message)
        .where(
            models.Message.channel == channel,
            models.Message.to_address == suppressions.normalise_address(channel, address),
        )
        .order_by(models.Message.created_at.desc())
        .limit(1)
    )


def as_message_id(value: str) -> str:
    """'<id@host>' whatever the provider did to the brackets: the ledger keeps them on."""
    bare = strip_angle_brackets(value)
    return f"<{bare}>" if bare else ""


async def email_for(
    session: AsyncSession, message_ids: Iterable[str], recipient: str
) -> models.Message | None:
    """The ledger row an email event or reply is about: by Message-ID first (In-Reply-To,
    References, the provider's copy of it), else the latest email to that address."""
    for ref in message_ids:
        row = await message_by_provider_id(session, "email", as_message_id(ref))
        if row is not None:
            return row
    return await latest_message_to(session, "email", recipient)


def names_message(row: models.Message | None, message_ids: Iterable[str]) -> bool:
    """Whether the event names `row` by its Message-ID (not only by the address it went to)."""
    return (
        row is not None
        and bool(row.provider_id)
        and any(as_message_id(ref) == row.provider_id for ref in message_ids)
    )


async def apply_email_event(
    session: AsyncSession,
    row: models.Message | None,
    recipient: str,
    meaning: str,
    provider_status: str,
    detail: str = "",
    *,
    named: bool = False,
) -> str | None:
    """The ledger and consent after an email event. Returns why the cadence must stop, if so.
    `named`: the event names the row by its Message-ID, so the provider has that message."""
    if row is not None and provider_status:
        row.provider_status = provider_status[:20]
    if named and row is not None and row.status == "sending":
        # Whatever the event (accepted, processed, deferred, opened...), the provider has the
        # message. An attempt that died between the provider's acceptance and its record left
        # the row `sending`: its retry now finds it sent instead of sending the email again.
        row.status, row.sending_until = "submitted", None
        row.sent_at = row.sent_at or datetime.now(UTC)
    # A row still `sending` here was not named: the event may be about an earlier email to the
    # address, and this row's attempt may have died before its provider call. Recording it
    # delivered or failed would make its retry skip a send that never happened.
    if meaning == DELIVERED:
        if row is not None and row.status == "submitted":
            row.status = "delivered"  # never over bounced/failed: a late 'delivered' is stale
        return None
    if meaning == HARD_BOUNCE and row is not None and row.status != "sending":
        # a row still `sending`: the address is suppressed below, and its retry finds it so
        row.status, row.error = "bounced", detail[:1000]
    if meaning == SOFT_FAILURE and row is not None and row.status == "submitted":
        row.status, row.error = "failed", detail[:1000]
    reason = SUPPRESSING.get(meaning)
    if reason is None:
        return None
    if recipient:
        # a hard bounce is about the address; a complaint or an unsubscribe is the person's say
        await consent.opt_out(
            session,
            "email",
            recipient,
            reason,
            prospect_id=row.prospect_id if row is not None else None,
            person=meaning != HARD_BOUNCE,
        )
    return reason


async def store_email_event(
    session: AsyncSession,
    provider: str,
    event_id: str,
    event: str,
    payload: dict[str, Any],
    *,
    message_ids: Iterable[str],
    recipient: str,
    meaning: str,
    provider_status: str,
    pepper: str,
    detail: str = "",
) -> tuple[Stored | None, models.Message | None]:
    """Store a provider's email event with the stop it causes and, the first time only, apply it
    to the ledger and consent. Returns what was stored (None for a repeat, or an event about an
    erased person's address: nothing of it is kept) and the ledger row.
    An event about a rep's notification email records that notification sent, if pending
    (provider_told), and touches neither the ledger, nor consent, nor a journey: it is not
    about a prospect's email, and matching it by address could take a prospect's row."""
    message_ids = list(message_ids)  # read more than once
    kind = f"email_{event}"[:40]
    notification, message_id = provider_told.named_by(message_ids)
    if notification:
        stored = await store_event(session, provider, event_id, kind, payload)
        if stored is not None:
            await provider_told.record_sent(session, notification, "email", message_id)
        return stored, None
    if await from_erased_person(session, pepper, "email", recipient):
        return None, None
    row = await email_for(session, message_ids, recipient)
    reason = SUPPRESSING.get(meaning)
    prospect_id = row.prospect_id if row else None
    stored = await store_event(
        session,
        provider,
        event_id,
        kind,
        payload,
        prospect_id=prospect_id,
        signal=stop_cadence(prospect_id, reason) if reason else None,
    )
    if stored is not None:
        address = recipient or (row.to_address if row else "")
        named = names_message(row, message_ids)
        await apply_email_event(
            session, row, address, meaning, provider_status, detail, named=named
        )
    return stored, row


def mark_replied(message: models.Message | None, stored: object | None) -> None:
    """Count the reply for the message it answers (per step and A/B variant), once."""
    if message is not None and stored is not None and message.replied_at is None:
        message.replied_at = datetime.now(UTC)


# --- inbound email: replies and automatic replies ------------------------------------------


async def message_by_reply_token(session: AsyncSession, token: str | None) -> models.Message | None:
    if not token:
        return None
    return await session.scalar(
        select(models.Message).where(models.Message.reply_token == token).limit(1)
    )


async def reply_row(
    session: AsyncSession, references: Iterable[str], recipients: Iterable[str], sender: str
) -> models.Message | None:
    """The ledger row an inbound email answers: by In-Reply-To / References, else by the reply
    token in the address it was sent to, else the latest email to the sender."""
    for ref in references:
        row = await message_by_provider_id(session, "email", as_message_id(ref))
        if row is not None:
            return row
    row = await message_by_reply_token(session, replies.reply_token(recipients))
    if row is not None:
        return row
    return await latest_message_to(session, "email", sender)


@dataclass(frozen=True)
class Bounce:
    """What a delivery status notification (RFC 3464) that came in as mail says of our email:
    the event a provider's webhook would have sent about it."""

    action: str  # failed, delayed, ...: the event's name
    recipient: str  # its Final-Recipient
    meaning: str  # HARD_BOUNCE, SOFT_FAILURE or NOTED
    status: str  # e.g. 5.1.1
    detail: str  # its Diagnostic-Code
    message_ids: list[str]  # the Message-ID of the original it returns


@dataclass
class InboundEmail:
    """An inbound email, whichever provider parsed it."""

    provider: str
    event_id: str  # what the inbox dedupes on
    message_id: str  # its Message-ID header (or the provider's id)
    sender: str
    recipients: list[str]  # every address it was sent to (the reply token may be in one)
    references: list[str]  # In-Reply-To and References
    headers: list[tuple[str, str]]
    subject: str
    text: str  # the writer's text, without the quoted original when the provider removed it
    date: str  # its Date header
    payload: dict[str, Any]
    bounce: Bounce | None = None  # the mail server's report that one of our emails failed


async def _without_erased_addresses(
    session: AsyncSession, pepper: str, mail: InboundEmail
) -> InboundEmail:
    """The email's kept parts without an erased person's address: mail about them from someone
    else (a mail server's plain-text bounce, a colleague's note) must not store it in clear."""
    payload, subject, text = await strings_without_erased_addresses(
        session, pepper, [mail.payload, mail.subject, mail.text]
    )
    return dataclasses.replace(mail, payload=payload, subject=subject, text=text)


async def bounced_send(
    session: AsyncSession, bounce: Bounce, references: Iterable[str]
) -> models.Message | None:
    """Our email a bounce reports: a send it names by Message-ID (the returned original's, or
    the one the report is threaded on) that went to the address it says failed. None for any
    other report: anyone can mail a delivery-status report, and one that names no send of ours
    to that address proves nothing about the address (matched by address alone, a forged one
    hard-bounced any prospect whose address the forger knew)."""
    recipient = suppressions.normalise_address("email", bounce.recipient)
    for ref in [*bounce.message_ids, *references]:
        row = await message_by_provider_id(session, "email", as_message_id(ref))
        if row is not None and row.to_address == recipient:
            return row
    return None


async def _receive_bounce(
    session: AsyncSession, mail: InboundEmail, bounce: Bounce, pepper: str
) -> Stored | None:
    """A bounce that names our send is the email event it reports, as a provider's webhook
    sends it (one about a rep's notification email records that); any other is only noted: kept
    in the inbox, no effect on the ledger, consent or a journey (not read as a reply or a STOP
    either: the original it returns may hold the words)."""
    message_ids = [*bounce.message_ids, *mail.references]
    notification, _ = provider_told.named_by(message_ids)
    row = None if notification else await bounced_send(session, bounce, mail.references)
    if notification or row is not None:
        stored, _ = await store_email_event(
            session,
            mail.provider,
            mail.event_id,
            bounce.action,
            mail.payload,
            # exactly the row found, not the first one some Message-ID names
            message_ids=message_ids if row is None else [row.provider_id or ""],
            recipient=bounce.recipient,
            meaning=bounce.meaning,
            provider_status=bounce.action,
            pepper=pepper,
            detail=bounce.detail,
        )
        return stored
    if await from_erased_person(session, pepper, "email", bounce.recipient):
        return None  # as store_email_event does: nothing about an erased person is kept
    note = {"bounce": "names none of our sends to its Final-Recipient: noted, no effect"}
    return await store_event(
        session,
        mail.provider,
        mail.event_id,
        UNMATCHED_BOUNCE,
        {**mail.payload, "closeflow": note},
    )


async def receive_email(
    session: AsyncSession, settings: Settings, mail: InboundEmail
) -> Stored | None:
    """Store an inbound email with what it tells the journey: a reply, a pause when it is an
    automatic reply (never a reply), or the end of the cadence when it asks to opt out (STOP,
    unsubscribe: the person is opted out of email, as an SMS STOP does for texts). None for a
    repeat, and for an erased person's email: nothing of it is kept. A bounce that names one of
    our sends is the email event it reports, as a provider's webhook would send it; any other
    bounce is only noted (_receive_bounce)."""
    pepper = settings.erasure_pepper.get_secret_value()
    mail = await _without_erased_addresses(session, pepper, mail)
    if mail.bounce is not None:  # before the STOP words: the returned original may hold them
        return await _receive_bounce(session, mail, mail.bounce, pepper)
    if await from_erased_person(session, pepper, "email", mail.sender):
        return None
    original = await reply_row(session, mail.references, mail.recipients, mail.sender)
    prospect_id = original.prospect_id if original else None
    if word := replies.stop_word(mail.subject, mail.text):
        stored = await store_event(
            session,
            mail.provider,
            mail.event_id,
            "email_stop",
            mail.payload,
            prospect_id=prospect_id,
            signal=stop_cadence(prospect_id, f"email {word}"),
        )
        address = mail.sender or (original.to_address if original else "")
        if stored is not None and address:
            await consent.opt_out(
                session, "email", address, f"email {word}", prospect_id=prospect_id
            )
        return stored
    why = replies.auto_reply_reason(mail.headers, mail.subject, mail.text)
    if why is None:
        reply = ReplyReceived(
            "email", mail.message_id, mail.text[:500], system_actor(f"reply via {mail.provider}")
        )
        stored = await store_event(
            session,
            mail.provider,
            mail.event_id,
            "email_reply",
            mail.payload,
            prospect_id=prospect_id,
            signal=JourneySignal(prospect_id, Sig.REPLY_RECEIVED, reply),
        )
        mark_replied(original, stored)
        return stored
    now = datetime.now(UTC)
    pause = replies.pause_for(
        f"{mail.subject}\n{replies.own_text(mail.text)}",
        replies.sent_at(mail.date, now),
        original.timezone if original is not None else "",
        settings.ooo_default_pause_days,
        now,
        in_month_first=original.month_first if original is not None else None,
    )
    # what was read, for whoever looks at the inbox later
    note = {
        "auto_reply": why,
        "return_date": pause.stated.isoformat() if pause.stated else None,
        "paused_until": pause.until.isoformat(),
    }
    return await store_event(
        session,
        mail.provider,
        mail.event_id,
        "email_auto_reply",
        {**mail.payload, "closeflow": note},
        prospect_id=prospect_id,
        signal=JourneySignal(
            prospect_id,
            Sig.PAUSE,
            PauseJourney(
                replies.OUT_OF_OFFICE, pause.until.isoformat(), kind=PauseKind.OUT_OF_OFFICE
            ),
        ),
    )
