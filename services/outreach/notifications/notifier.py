"""Urgent and overdue rep tasks reach people: email or SMS (the rep's choice) and a signed,
Slack-compatible webhook. Durable and sent once per (task, reason, recipient, channel).

A loop runs in the outreach app and, each pass:
  1. marks open tasks that turned urgent (a fresh reply, a meeting soon) once, and queues a
     notification to their rep;
  2. escalates open tasks still open `escalate_after_seconds` after due, once: the task's
     priority rises (services.outreach.tasks.service) and the rep's manager is told;
  3. delivers the queued rows through the one relay (shared.relay): claimed with a lease
     (replicas skip them), sent, marked sent; a failure is retried with the relay's backoff, a
     permanent one (or the last attempt) marks failed.
Marking and queueing happen in one transaction (`urgent_at`/`escalated_at` are set only where
still empty), so a notification is queued exactly once even with several replicas; the unique
key of `task_notifications` guards it too. A crash between the provider accepting and the row
being marked sent is the one window left. The relay counts each row's claims, so the retry
knows an earlier attempt ended unrecorded (or failed in a way that may follow the provider's
acceptance, a timeout say). Then, before sending again, it looks for the text in Twilio's
list, and for the email in the Sent folder when CLOSEFLOW_IMAP_SENT_FOLDER names one
(services.outreach.mailbox.sent_folder); found, it is recorded sent. Not found, email goes
again with the same Message-ID and the webhook with the same X-Closeflow-Delivery id
(receivers dedupe on it). Before any retry, a text's status callback (its URL names the row)
and any email provider event naming the email's Message-ID record it sent (provider_told.py).

Webhook signature: X-Closeflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" under the rep's webhook_secret> (docs/guides/rep-inbox.md has a verification
snippet).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from twilio.base.exceptions import TwilioRestException

from services.outreach import models
from services.outreach.mailbox import sent_folder
from services.outreach.notifications import provider_told, text_status
from services.outreach.notifications.provider_told import PENDING, SENT
from services.outreach.notifications.webhook_targets import check_webhook_url, webhook_policy
from services.outreach.tasks import service as tasks
from services.outreach.tasks.reps import RepDirectory, RepInfo
from shared.app import run_during_lifespan
from shared.auth import secrets_match
from shared.db import new_id
from shared.errors import AppError
from shared.outbound import BLOCKED, DeliveryRefused, PinnedClientOwner, post_checked
from shared.providers import postmark
from shared.providers.email import EmailSendError, OutgoingEmail, SmtpEmail
from shared.providers.sms import TwilioSms
from shared.relay import LeasedTable, Outcome, Relay, RelayTiming, done, give_up, retry
from shared.settings import Settings

log = logging.getLogger(__name__)

URGENT, ESCALATION = "urgent", "escalation"
# a reply after the journey ended, or from a won client (services.outreach.late_replies)
FAILED = "failed"  # and PENDING, SENT (provider_told: the providers' word sets SENT too)
SIGNATURE_HEADER = "X-Closeflow-Signature"
DELIVERY_HEADER = "X-Closeflow-Delivery"
EVENT_HEADER = "X-Closeflow-Event"


@dataclass(frozen=True)
class NotifierTiming(RelayTiming):
    poll_seconds: float = 5.0
    base_delay: float = 2.0
    max_delay: float = 600.0
    # one at a time, each recorded at once: the window of a re-send after a crash is one row
    concurrency: int = 1
    max_attempts: int = 12
    webhook_timeout: float = 10.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (tests use it): the HMAC matches and the timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return secrets_match(expected, parts.get("v1", ""))


def slack_payload(subject: str, text: str, url: str) -> dict[str, Any]:
    """Slack's incoming-webhook shape: `text` is the fallback, `blocks` the layout."""
    return {
        "text": f"{subject}\n{url}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the inbox"},
                        "url": url,
                    }
                ],
            },
        ],
    }


# --- preferences ------------------------------------------------------------------------------


async def get_prefs(session: AsyncSession, rep_id: str) -> models.RepNotificationPrefs | None:
    return await session.get(models.RepNotificationPrefs, rep_id)


async def put_prefs(
    session: AsyncSession, rep_id: str, values: dict[str, Any]
) -> models.RepNotificationPrefs:
    row = await session.get(models.RepNotificationPrefs, rep_id, with_for_update=True)
    if row is None:
        row = models.RepNotificationPrefs(rep_id=rep_id)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


# --- what a notification says -----------------------------------------------------------------


def inbox_url(settings: Settings, rep_id: str) -> str:
    return f"{settings.outreach_public_url.rstrip('/')}/ui/reps/{rep_id}/inbox"


def _who(task: models.RepTask) -> str:
    card = task.prospect_card or {}
    name = card.get("name") or ""
    where = " at ".join(x for x in (card.get("title") or "", card.get("company") or "") if x)
    reach = " · ".join(x for x in (card.get("phone") or "", card.get("email") or "") if x)
    return ", ".join(x for x in (name, where, reach) if x)


def message_for(task: models.RepTask, reason: str, why: str, url: str) -> tuple[str, str]:
    if reason == ESCALATION:
        subject = f"Overdue: {task.title}"
        first = f"Rep {task.rep_id}'s task is still open, due {task.due_at:%Y-%m-%d %H:%M} UTC."
    else:
        subject = f"Urgent: {task.title}"
        first = f"Why now: {why}."
    lines = [first, f"Who: {_who(task)}" if _who(task) else "", task.body[:800], f"Inbox: {url}"]
    return subject[:300], "\n".join(line for line in lines if line)


def _short(subject: str, why: str, url: str) -> str:
    return f"closeflow: {subject} ({why}) {url}"[:320]


# --- the sweep ----------------------------------------------------------------------------------


# mypy checks the bound before it applies the Mapped descriptors (sees Mapped[int], not int)
class Notifier(PinnedClientOwner, Relay[models.TaskNotification]):  # type: ignore[type-var]
    """The sweep (1, 2) runs before each pass of the one relay (shared.relay), which delivers
    the queued rows (3)."""

    timing: NotifierTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        settings: Settings,
        reps: Callable[[], RepDirectory],
        timing: NotifierTiming | None = None,
    ) -> None:
        timing = timing or NotifierTiming()
        email, sms = SmtpEmail.from_settings(settings), TwilioSms.from_settings(settings)
        super().__init__(
            "notifier",
            sessions,
            TABLE,
            self._deliver,
            timing,
            before_pass=self.sweep,
            # one notification's longest wait: an email's whole exchange, a text, a webhook (a
            # lease over before it: another replica sent it again)
            longest_attempt=max(email.longest_wait, sms.longest_wait, timing.webhook_timeout),
        )
        self._settings = settings
        self._reps = reps
        self._email = email
        self._sms = sms
        # the webhooks' connections: every resolved address checked, redirects refused
        self.outbound = webhook_policy(settings)

    def start(self) -> None:
        self.open_client(self.timing.webhook_timeout)
        super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.close_client()
        await self._sms.close()

    async def sweep(self) -> None:
        now = utcnow()
        await self.mark_urgent(now)
        await self.escalate(now)

    # 1. urgent tasks
    async def mark_urgent(self, now: datetime) -> int:
        t, m = models.RepTask, models.Message
        async with self._sessions()() as session:
            policy = await tasks.get_policy(session)
            since = now - timedelta(seconds=policy.hot_reply_seconds)
            replied = select(m.prospect_id).where(m.replied_at >= since)
            # only tasks that can be urgent now: a batch of others (the preparation tasks of
            # meetings long started) would fill every pass and keep the urgent ones out of it
            candidates = (
                await session.scalars(
                    select(t)
                    .where(
                        t.status == tasks.OPEN,
                        t.urgent_at.is_(None),
                        t.rep_id.is_not(None),
                        (t.snoozed_until.is_(None)) | (t.snoozed_until <= now),
                        t.prospect_id.in_(replied)
                        | tasks.meeting_soon(now, policy)
                        | (t.kind == "escalation")
                        | t.kind.in_(tasks.LATE_REPLY_KINDS),
                    )
                    .limit(self.timing.batch)
                )
            ).all()
            replies = await tasks.last_replies(session, [c.prospect_id for c in candidates], since)
        marked = 0
        for task in candidates:
            signals = tasks.urgent_signals(task, replies.get(task.prospect_id), now, policy)
            if signals:
                why = "; ".join(s.text for s in signals)
                recipient = task.rep_id or ""
                if await self._mark_and_queue(task, "urgent_at", why, URGENT, recipient, now):
                    marked += 1
        return marked

    # 2. overdue tasks
    async def escalate(self, now: datetime) -> int:
        t = models.RepTask
        async with self._sessions()() as session:
            policy = await tasks.get_policy(session)
            overdue = (
                await session.scalars(
                    select(t)
                    .where(
                        t.status == tasks.OPEN,
                        t.escalated_at.is_(None),
                        # an unassigned task waits for a rep: escalated then, with nobody to
                        # tell, it would stay marked once moved, and no manager would hear
                        t.rep_id.is_not(None),
                        tasks.escalation_due(now, policy),
                    )
                    .order_by(t.due_at)
                    .limit(self.timing.batch)
                )
            ).all()
        escalated = 0
        for task in overdue:
            try:
                manager = await self._manager_of(task.rep_id)
            except AppError as err:
                log.warning("task %s not escalated yet: %s", task.id, err.message)
                continue  # prospecting is away: the next pass tries again
            why = f"still open {tasks._ago(now - task.due_at)} after due"
            if await self._mark_and_queue(task, "escalated_at", why, ESCALATION, manager, now):
                escalated += 1
        return escalated

    async def _manager_of(self, rep_id: str | None) -> str | None:
        """Who hears about this rep's overdue tasks: the rep's `escalate_to` preference, else
        their manager in prospecting, else nobody (the task still rises in the inbox)."""
        if rep_id is None:
            return None
        async with self._sessions()() as session:
            prefs = await get_prefs(session, rep_id)
        if prefs is not None and prefs.escalate_to:
            return prefs.escalate_to
        try:
            return (await self._reps().rep(rep_id)).manager_id
        except AppError as err:
            if err.status == 404:
                return None
            raise

    async def _mark_and_queue(
        self,
        seen: models.RepTask,
        mark: str,
        why: str,
        reason: str,
        recipient: str | None,
        now: datetime,
    ) -> bool:
        """Set the task's mark where it is still empty and queue the recipient's notifications,
        in one transaction: whoever sets the mark queues, once. Only while the task is still the
        rep's it was `seen` with: one reassigned meanwhile is the new rep's (or their manager's)
        to hear about, at the next pass. A recipient who was deactivated is told nothing (nobody
        reads it); the mark is set all the same, as for a rep without a manager."""
        task_id, owner = seen.id, seen.rep_id
        info: RepInfo | None = None
        if recipient:
            try:
                info = await self._reps().rep(recipient)
            except AppError as err:
                if err.status != 404 and await self._needs_rep_details(recipient):
                    # the address is prospecting's: leave the task unmarked, the next pass
                    # tries again (marking now would lose the notification)
                    log.warning("task %s waits for rep %s's details: %s", task_id, recipient, err)
                    return False
                log.warning("no rep details for %s: %s", recipient, err.message)
        if info is not None and not info.active:
            log.info("task %s: %s not told, deactivated", task_id, recipient)
            recipient, info = None, None
        t = models.RepTask
        async with self._sessions()() as session:
            values: dict[str, Any] = {mark: now}
            if mark == "urgent_at":
                values["urgent_reason"] = why[:300]
            marked = await session.execute(
                update(t)
                .where(
                    t.id == task_id,
                    getattr(t, mark).is_(None),
                    t.status == tasks.OPEN,
                    t.rep_id.is_not_distinct_from(owner),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                return False
            task = await session.get(t, task_id)
            assert task is not None
            if recipient:
                await self._queue(session, task, reason, why, recipient, info, now)
            await session.commit()
        self.wake()
        return True

    async def _needs_rep_details(self, rep_id: str) -> bool:
        """True when the rep's preferences leave the email or SMS address to prospecting."""
        async with self._sessions()() as session:
            prefs = await get_prefs(session, rep_id)
        if prefs is None:
            return True
        return (prefs.channel == "email" and not prefs.email) or (
            prefs.channel == "sms" and not prefs.phone
        )

    async def _queue(
        self,
        session: AsyncSession,
        task: models.RepTask,
        reason: str,
        why: str,
        recipient: str,
        info: RepInfo | None,
        now: datetime,
    ) -> None:
        prefs = await get_prefs(session, recipient)
        url = inbox_url(self._settings, recipient if reason == URGENT else task.rep_id or "")
        subject, text = message_for(task, reason, why, url)
        targets: list[tuple[str, str, str]] = []  # channel, target, text
        channel = prefs.channel if prefs is not None else "email"  # no preferences: email
        if channel == "email":
            address = (prefs.email if prefs is not None else None) or (info.email if info else "")
            if address:
                targets.append(("email", address, text))
        elif channel == "sms":
            number = (prefs.phone if prefs is not None else None) or (info.phone if info else None)
            if number:
                targets.append(("sms", number, _short(subject, why, url)))
        if prefs is not None and prefs.webhook_url:
            targets.append(("webhook", prefs.webhook_url, text))
        if not targets:
            log.warning("rep %s has nowhere to be told about task %s", recipient, task.id)
        for channel_name, target, body in targets:
            await session.execute(
                _insert(session, models.TaskNotification)
                .values(
                    id=new_id(),
                    task_id=task.id,
                    reason=reason,
                    recipient_rep_id=recipient,
                    channel=channel_name,
                    target=target,
                    subject=subject,
                    text=body,
                    next_attempt_at=now,  # status, attempts, last_error: the model's defaults
                    created_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=["task_id", "reason", "recipient_rep_id", "channel"]
                )
            )

    # 3. delivery (the relay claims the due rows and records what _deliver says)
    async def _deliver(self, row: models.TaskNotification) -> Outcome:
        error, permanent = "", False
        try:
            provider_id = await self._send(row)
        except EmailSendError as err:
            error, permanent = str(err), err.permanent
        except TwilioRestException as err:
            error, permanent = f"Twilio {err.status} {err.code}: {err.msg}", 400 <= err.status < 500
        except WebhookRefused as err:
            error, permanent = str(err), err.permanent
        except (httpx.HTTPError, OSError) as err:
            error = f"{type(err).__name__}: {err}"
        else:
            return done(status=SENT, sent_at=utcnow(), provider_id=provider_id)
        error = f"{row.channel} notification: {error}"
        if permanent or row.attempts + 1 >= self.timing.max_attempts:
            return give_up(error, status=FAILED)
        return retry(error)

    async def _send(self, row: models.TaskNotification) -> str:
        if row.channel == "email":
            message_id = provider_told.message_id(row.id, self._email.domain)
            if tried_before(row) and await sent_folder.went_out(self._settings, message_id):
                return message_id
            return await self._email.send(
                OutgoingEmail(
                    to=row.target,
                    subject=row.subject,
                    text=row.text,
                    html=f"<p>{escape(row.text).replace(chr(10), '<br>')}</p>",
                    message_id=message_id,
                    unsubscribe_url=inbox_url(self._settings, row.recipient_rep_id),
                    headers={DELIVERY_HEADER: row.id}
                    | postmark.tracking_header(self._settings, message_id),
                )
            )
        if row.channel == "sms":
            since = row.created_at - timedelta(minutes=1) if tried_before(row) else None
            callback = text_status.callback_url(self._settings.outreach_public_url, row.id)
            return await self._sms.deliver(row.target, row.text, callback, since)
        return await self._post_webhook(row)

    async def _post_webhook(self, row: models.TaskNotification) -> str:
        async with self._sessions()() as session:
            prefs = await get_prefs(session, row.recipient_rep_id)
        secret = (prefs.webhook_secret if prefs is not None else None) or ""
        if not secret:
            raise WebhookRefused("the rep's webhook has no secret any more", permanent=True)
        try:  # the allowed hosts may have narrowed since the rep saved the URL
            check_webhook_url(row.target, self._settings)
        except AppError as err:
            log.warning("webhook notification %s refused: %s", row.id, err.message)
            raise WebhookRefused(BLOCKED, permanent=True) from err
        url = inbox_url(self._settings, row.recipient_rep_id)
        body = json.dumps(slack_payload(row.subject, row.text, url), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            DELIVERY_HEADER: row.id,
            EVENT_HEADER: f"task.{row.reason}",
        }
        status = await post_checked(self.http, row.target, body, headers)
        return f"webhook:{status}"


def tried_before(row: models.TaskNotification) -> bool:
    """Whether an earlier attempt may have reached the provider: a failed one (a timeout can
    follow the provider's acceptance), or a claim before this one that ended unrecorded (a
    crash, a stop past its grace)."""
    return row.attempts > 0 or row.claims > 1


# kept, not pruned: a task's notifications are its history (list_for_task)
# mypy checks the bound before it applies the Mapped descriptors (sees Mapped[int], not int)
TABLE: LeasedTable[models.TaskNotification] = LeasedTable.of(  # type: ignore[type-var]
    models.TaskNotification,
    pending=lambda: models.TaskNotification.status == PENDING,
    order_by=(models.TaskNotification.next_attempt_at,),
    count_claims=True,
)


# the rep's webhook refused: the shared outbound failure, under the name this module used
WebhookRefused = DeliveryRefused


async def list_for_task(session: AsyncSession, task_id: str) -> Sequence[models.TaskNotification]:
    n = models.TaskNotification
    query = select(n).where(n.task_id == task_id).order_by(n.created_at, n.channel)
    return (await session.scalars(query)).all()


def install_notifier(app: FastAPI, timing: NotifierTiming | None = None) -> Notifier:
    """app.state.notifier, its loop running while the app's lifespan does."""
    notifier = Notifier(
        lambda: app.state.sessions, app.state.settings, lambda: app.state.reps, timing
    )
    app.state.notifier = notifier
    run_during_lifespan(app, notifier)
    return notifier
