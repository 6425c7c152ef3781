"""Outreach activities: send touches through the ledger, create rep tasks, hand out cadences.

Exactly-once for a touch rests on the ledger row (journey, touch, channel):
  pending/sending -> provider call -> submitted (committed) -> activity returns.
A retry finds `submitted` and sends nothing. One attempt at a time may talk to the provider for
a row (the send lease, services/outreach/send_lease.py): a retry of an attempt that timed out
but may still be running waits until that attempt is over. The one window left is a crash between
the provider accepting and the commit of `submitted`: the row is then `sending`, and the retry
re-sends email with the SAME Message-ID (mail systems such as Gmail collapse such copies; others
show two) and, for SMS, first asks Twilio whether a message with that body already went to that
number.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from temporalio import activity
from twilio.base.exceptions import TwilioRestException

from services.outreach import invites, models, send_lease
from services.outreach.booking_links import BookingLinks, uses_booking_link
from services.outreach.cadences import runs, service
from services.outreach.cadences.follow_ups import RunActivities
from services.outreach.cadences.referred_runs import ReferredRunActivities, register_unenrolled_run
from services.outreach.cadences.send_window import next_allowed, window_for
from services.outreach.cadences.stored_templates import StoredTemplates, for_journey
from services.outreach.cadences.templates import (
    SYSTEM_TEMPLATES,
    RenderFailure,
    field_limit,
    limits_from,
    render,
    render_html,
    variables_for,
)
from services.outreach.consent import service as consent
from services.outreach.consent import suppressions
from services.outreach.consent.erasure import (
    ERASED_PROSPECT,
    UNNAMED_REFERRER,
    erased_reason,
    hold_against_erasure,
)
from services.outreach.events import service as events
from services.outreach.invites import InvitePart
from services.outreach.mailbox import sent_folder
from services.outreach.senders import service as senders
from services.outreach.tasks import service as tasks
from services.outreach.tasks.colleagues import ColleagueActivities
from services.outreach.tasks.reps import RepDirectory
from services.outreach.webhooks import replies, sms_status
from shared.activity_boundary import activity_boundary
from shared.contracts.errors import TEMPLATE_ERROR_CODE
from shared.contracts.journey import (
    REACH_OUT_TASK_KINDS,
    REPLY_TASK_KINDS,
    CadenceRef,
    CadenceSnapshot,
    ChannelOutcome,
    CloseRepTasks,
    Contact,
    RepTaskRequest,
    Stage,
    StageEntered,
    TouchRequest,
    TouchResult,
)
from shared.contracts.meetings import InviteRequest
from shared.contracts.names import Act
from shared.db import database_away, new_id, utcnow
from shared.errors import AppError
from shared.providers import postmark
from shared.providers.email import EmailSendError, OutgoingEmail, SmtpEmail, logged_id
from shared.providers.sms import SmsSendError, TwilioSms
from shared.settings import Settings
from shared.timezones import prospect_zone

log = logging.getLogger(__name__)
SENT_STATES = frozenset({"submitted", "delivered", "bounced", "failed"})
# how long the send path's writes after a claim (recording the send, giving the lease back) wait
# out a database that is away, outside an activity (no attempt deadline)
RECORD_SENT_PATIENCE = timedelta(seconds=10)
AfterSend = Callable[[models.Message], Awaitable[None]]
# the wall clock the send windows are read on (a test's stands for the minutes a slow exchange
# takes, which a real clock would need a real evening for)
Clock = Callable[[], datetime]
T = TypeVar("T")


class SendFaults:
    """Fault-injection seam of the exactly-once tests (tests/outreach/test_exactly_once.py).

    Production passes None. A test subclasses this and makes a hook raise (the activity fails and
    Temporal retries it) or kill the worker process, at the three moments that matter for a send:
    the ledger row is `sending` and the provider not yet called; the provider accepted but
    `submitted` is not committed; `submitted` is committed but the activity has not returned.
    """

    async def before_provider_call(self, row: models.Message) -> None:
        return None

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        return None

    async def after_ledger_commit(self, row: models.Message) -> None:
        return None


MESSAGE_CHANNELS = frozenset({"email", "sms"})
# a cadence step that reached the touch without its text: never sent as an empty message
NO_TEMPLATE = (
    "the step carries no template (a journey with stored templates run by a journeys worker "
    "of a release before them: docs/operations.md)"
)
TASK_CHANNELS = frozenset({"call_task", "social_task"})
# the subject of an email that stands in for a refused text (the text's words are its body)
FALLBACK_SUBJECT = "A message from {{ rep_name }}"


@dataclass
class PlannedSend:
    channel: str
    subject: str
    body: str
    variant: str = ""
    condition: str = ""
    html: str = ""
    fallback_for: str = ""  # a stand-in for this refused channel of the touch
    why: str = ""  # why that channel was refused


@dataclass(frozen=True)
class Rendered:
    """A channel's text, rendered once before anything of the touch goes out."""

    subject: str
    body: str
    html: str = ""
    invite: InvitePart | None = None  # a meeting invitation's calendar part (email only)


class WindowShut(Exception):
    """The send window closed between the touch's look and its provider call: deferred."""

    def __init__(self, opens: datetime) -> None:
        super().__init__(f"the send window opens at {opens.isoformat()}")
        self.opens = opens


@dataclass(frozen=True)
class LateRun:
    """A touch of a journey run whose end outreach recorded (runs.calling_run_ended): nothing of
    it goes out now, but a message channel an earlier attempt claimed in the ledger is a retry,
    reconciled as ever (found sent, or re-sent with its Message-ID), never refused."""

    why: str
    claimed: frozenset[str]

    def refusal(self, channel: str) -> ChannelOutcome | None:
        return None if channel in self.claimed else ChannelOutcome(channel, "skipped", self.why)


class FieldFailure(RenderFailure):
    """A render failure and the field ("subject", "body", "html") it came from."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


def _channel_refusal(outcome: ChannelOutcome) -> str | None:
    """Why a message channel was refused for this address alone (consent or a hard bounce),
    or None: sent, waiting, or refused for the person (do not contact, erased), which no other
    channel may work around."""
    if outcome.detail.startswith("template"):
        return None  # a template to fix: another channel would not be the message meant
    if outcome.status == "failed":
        return outcome.detail or "refused by the provider"
    if outcome.status == "suppressed" and outcome.detail.startswith(("opted out", "suppressed")):
        return outcome.detail
    return None


def _consent_of(row: models.Message) -> str | None:
    """Whose consent a send needs beyond its address's: the prospect's, except for the rep's
    own meeting invitation (to the rep, about a meeting the rep organises)."""
    return None if row.kind in invites.REP_COPY_KINDS else row.prospect_id


def substitute_channel(channel: str, contact: Contact) -> str:
    """A channel the prospect lacks becomes a rep task, so the first touch stays dual-channel."""
    if channel == "email" and not contact.email:
        return "call_task" if contact.phone else "social_task"
    if channel in ("sms", "call_task") and not contact.phone:
        return "social_task"
    return channel


def address_for(channel: str, contact: Contact) -> str:
    return (contact.email if channel == "email" else contact.phone) or ""


class OutreachActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        email: SmtpEmail,
        sms: TwilioSms,
        after_send: AfterSend | None = None,
        faults: SendFaults | None = None,
        reps: RepDirectory | None = None,
        booking_links: BookingLinks | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._reps = reps
        self._booking_links = booking_links  # None: `{{ booking_link }}` renders empty
        self._settings = settings
        self._email = email
        self._sms = sms
        # Fault injection point for the exactly-once tests: runs after the ledger committed.
        self._after_send = after_send
        self._faults = faults
        self._limits = limits_from(settings)
        self._templates = StoredTemplates(sessions)

    # --- touches ----------------------------------------------------------------------------

    async def _referrer_name(self, variables: dict[str, str]) -> str:
        """The referrer's name, looked up at send time: journeys carry their id only (issue 11),
        so an erased referrer's name is in no one else's workflow. Erased or unknown: a
        neutral phrase; prospecting unreachable: the activity fails and is retried."""
        referrer_id = variables.get("referrer_prospect_id", "")
        if not referrer_id or self._reps is None:
            return UNNAMED_REFERRER
        try:
            card = await self._reps.prospect_card(referrer_id)
        except AppError as err:
            if err.status != 404:
                raise
            return UNNAMED_REFERRER
        return str(card["name"]) or UNNAMED_REFERRER

    @activity_boundary(Act.SEND_TOUCH)
    async def send_touch(self, req: TouchRequest) -> TouchResult:
        return await self._touch(await self._templates.fill(req))

    @activity_boundary(Act.SEND_MEETING_INVITE)
    async def send_meeting_invite(self, req: InviteRequest) -> TouchResult:
        """A meeting's calendar invitation (services/outreach/invites.py) by email, through the
        ledger like any touch: a retried activity finds its row and sends nothing again."""
        organizer = parseaddr(self._settings.email_from)[1]
        if not req.contact.email:
            result = TouchResult([ChannelOutcome("email", "skipped", "no email address")])
        else:
            part = invites.part_for(req, self._email.domain, organizer)
            result = await self._touch(invites.touch_for(req), part)
        (prospect,) = result.outcomes
        if prospect.status not in invites.NOT_REACHED or not req.contact.rep_email:
            return result
        # the prospect gets none: the rep still gets theirs (they organise the meeting)
        why = f"{prospect.status}: {prospect.detail}" if prospect.detail else prospect.status
        part = invites.part_for(req, self._email.domain, organizer, not_sent=f"invitation: {why}")
        mine = await self._touch(invites.touch_for(req, rep_copy=True), part)
        return TouchResult(result.outcomes + mine.outcomes, mine.defer_until)

    @activity_boundary(Act.SEND_HANDED_OVER_CANCEL)
    async def send_handed_over_cancel(self, req: InviteRequest) -> TouchResult:
        """A hand-over's cancellation, to the rep the meeting left only (their details read now:
        journeys carry no one's but the current rep's), through the ledger like any invitation.
        A rep prospecting no longer knows, or one without an address, gets nothing; prospecting
        away: retried."""
        organizer = parseaddr(self._settings.email_from)[1]
        former = None
        if self._reps is not None:
            try:
                former = await self._reps.rep(req.invite.former_rep_id)
            except AppError as err:
                if err.status != 404:
                    raise
        if former is None or not former.email:
            why = "the rep the meeting left has no address"
            return TouchResult([ChannelOutcome("email", "skipped", why)])
        theirs = invites.former_rep_request(req, former)
        note = invites.handed_over_note(req.contact.rep_name)
        part = invites.part_for(theirs, self._email.domain, organizer, not_sent=note)
        touch = invites.touch_for(theirs, rep_copy=True, new_rep_name=req.contact.rep_name)
        return await self._touch(touch, part)

    async def _touch(self, req: TouchRequest, invite: InvitePart | None = None) -> TouchResult:
        late = await self._late_run(req)
        if late is not None and not late.claimed:
            # nothing of it started: no booking link, no render, no send
            log.info("journey %s %s: not sent, %s", req.journey_id, req.touch_key, late.why)
            channels = [substitute_channel(p.channel, req.contact) for p in self._plan(req)]
            return TouchResult([ChannelOutcome(c, "skipped", late.why) for c in channels])
        outcomes: list[ChannelOutcome] = []
        defer_until: datetime | None = None
        values = variables_for(req.contact, req.variables)
        if req.kind == "cadence":
            if uses_booking_link(req) and self._booking_links is not None:
                link = await self._booking_links.link_for(req.contact, req.journey_id)
                values["booking_link"] = link
        if req.kind == "warm_intro" and not values["referrer_name"]:
            values["referrer_name"] = await self._referrer_name(req.variables)
        if req.kind == "cadence":
            await self._stop_if_listed(req)
        if req.kind == "warm_intro":
            # a journey that started without an enrollment (a referral intake) gets its row
            async with self.sessions() as session:
                await register_unenrolled_run(session, req)
        planned = [(p, substitute_channel(p.channel, req.contact)) for p in self._plan(req)]
        texts = await self._render_touch(req, planned, values)
        if invite is not None:
            texts = [replace(t, invite=invite) if t is not None else t for t in texts]
        in_touch = {channel for _, channel in planned}
        for (plan, channel), text in zip(planned, texts, strict=True):
            if text is None:
                outcomes.append(ChannelOutcome(channel, "failed", "template"))
                continue
            unmet = await self._unmet_condition(req, plan.condition)
            if unmet:
                outcomes.append(ChannelOutcome(channel, "skipped", unmet))
                continue
            outcome, wait = await self._one_channel(req, plan, channel, text, late)
            outcomes.append(outcome)
            waits = [wait]
            fallback = self._fallback(req, channel, text, outcome, in_touch)
            if fallback is not None:
                # the touch was meant to reach the prospect twice: another way in, recorded
                outcome, wait = await self._one_channel(req, *fallback, late)
                outcomes.append(outcome)
                waits.append(wait)
            for when in waits:
                if when is not None:
                    defer_until = min(defer_until or when, when)
        return TouchResult(outcomes, defer_until.isoformat() if defer_until else None)

    async def _late_run(self, req: TouchRequest) -> LateRun | None:
        """None while the calling journey run runs; else why its touch must not go, and the
        channels an earlier attempt of it claimed in the ledger."""
        async with self.sessions() as session:
            # an early look, to spare the render; the claim asks again, held (_send_once)
            why = await runs.calling_run_ended(session, hold=False)
            if not why:
                return None
            m = models.Message
            claimed = await session.scalars(
                select(m.channel).where(
                    m.journey_id == req.journey_id,
                    m.touch_key == req.touch_key,
                    m.status != "pending",
                )
            )
            return LateRun(why, frozenset(claimed.all()))

    async def _one_channel(
        self,
        req: TouchRequest,
        plan: PlannedSend,
        channel: str,
        text: Rendered,
        late: LateRun | None = None,
    ) -> tuple[ChannelOutcome, datetime | None]:
        """One channel of the touch: a rep task, or a send now, or the time it may go; or
        nothing, for a run that ended."""
        refusal = late.refusal(channel) if late is not None else None
        if refusal is not None:
            return refusal, None
        # read now, not once per touch: the channel before may have taken minutes (a slow SMTP
        # exchange) and carried the moment past the window's end
        now, allowed = self._window_now(req, channel)
        if channel in TASK_CHANNELS:
            # made now (the rep sees it coming, the journey does not wait for it), due when it
            # may reach the prospect: a call within the window and the quiet hours
            return await self._task_for_touch(req, plan, channel, text, allowed), None
        if allowed > now:
            return ChannelOutcome(channel, "deferred", allowed.isoformat()), allowed
        # the send itself may still have to wait for a sender's or a domain's cap
        return await self._send_once(req, plan, channel, text)

    def _window_now(self, req: TouchRequest, channel: str) -> tuple[datetime, datetime]:
        """(now, the earliest moment at or after it when `channel` may reach the prospect)."""
        now = self._clock()
        window = window_for(req.kind, req.send_window)
        return now, next_allowed(now, req.contact.timezone, channel, window, req.contact.phone)

    def _fallback(
        self,
        req: TouchRequest,
        channel: str,
        text: Rendered,
        outcome: ChannelOutcome,
        in_touch: set[str],
    ) -> tuple[PlannedSend, str, Rendered] | None:
        """What stands in for a message channel of a multi-channel cadence touch (the first
        touch is one) that consent or a hard bounce refused: the other message channel when the
        touch lacks it and the prospect has it, else a rep task when the touch has none. None
        when nothing does (the refusal is about the person, or the touch is covered)."""
        if req.kind != "cadence" or len(req.steps) < 2 or channel not in MESSAGE_CHANNELS:
            return None
        reason = _channel_refusal(outcome)
        if reason is None:
            return None
        why = f"{channel} refused: {reason}"
        other = "sms" if channel == "email" else "email"
        if other not in in_touch and address_for(other, req.contact):
            subject = render(FALLBACK_SUBJECT, variables_for(req.contact, req.variables))
            if other == "email" or len(text.body) <= self._limits.sms:
                stand_in = Rendered(subject if other == "email" else "", text.body)
                return PlannedSend(other, "", "", fallback_for=channel, why=why), other, stand_in
        if in_touch & TASK_CHANNELS:
            return None  # the rep has a task for this touch already
        task = substitute_channel("call_task", req.contact)
        return PlannedSend(task, "", "", fallback_for=channel, why=why), task, text

    async def _render_touch(
        self, req: TouchRequest, planned: list[tuple[PlannedSend, str]], values: dict[str, str]
    ) -> list[Rendered | None]:
        """Every channel's text, rendered before anything goes out. A cadence template that
        cannot render for this prospect fails the whole touch at once, not retried
        (TemplateError: the journey marks the step failed and gives the rep a task to fix it);
        a failed ledger row per message channel records why. A built-in touch sends what
        renders (None: that channel failed, recorded the same way)."""
        texts: list[Rendered | None] = []
        problems: list[dict[str, str]] = []
        for plan, channel in planned:
            try:
                if req.kind == "cadence" and not plan.body.strip():
                    # a saved step always has a body: this one lost it on the way
                    raise FieldFailure("body", NO_TEMPLATE)
                texts.append(self._render_one(plan, channel, values))
            except FieldFailure as err:
                texts.append(None)
                problems.append(
                    {
                        "step": req.touch_key,
                        "channel": plan.channel,
                        "field": err.field,
                        "problem": str(err),
                    }
                )
        if not problems:
            return texts
        message = "; ".join(
            f"{p['step']} {p['channel']} {p['field']}: {p['problem']}" for p in problems
        )
        for (plan, channel), text in zip(planned, texts, strict=True):
            if text is None and channel in MESSAGE_CHANNELS:
                await self._record_template_failure(req, plan, channel, message)
        if req.kind != "cadence":
            return texts
        raise AppError(422, TEMPLATE_ERROR_CODE, message, list(problems))

    def _render_one(self, plan: PlannedSend, channel: str, values: dict[str, str]) -> Rendered:
        limits = self._limits
        fields = (("subject", plan.subject), ("body", plan.body), ("html", plan.html))
        rendered: dict[str, str] = {}
        for name, source in fields:
            if name != "body" and channel != "email":
                continue  # a task or a text uses the body alone
            try:
                limit = field_limit(channel, name, limits)
                draw = render_html if name == "html" else render
                rendered[name] = draw(source, values, limit) if source else ""
            except RenderFailure as err:
                raise FieldFailure(name, str(err)) from err
        return Rendered(rendered.get("subject", ""), rendered["body"], rendered.get("html", ""))

    async def _record_template_failure(
        self, req: TouchRequest, plan: PlannedSend, channel: str, reason: str
    ) -> None:
        """A failed ledger row says why the channel never went (the messages API shows it);
        a row that went further on an earlier attempt stays as it is."""
        address = address_for(channel, req.contact)
        async with self.sessions() as session:
            if await self._erased(session, req, channel, address):
                return  # nothing of an erased person is written back (_send_once)
            row = await self._ledger_row(session, req, channel, address, plan, Rendered("", ""))
            if row.status == "pending":
                row.status = "failed"
                row.error = f"template: {reason}"
                row.updated_at = datetime.now(UTC)
                await session.commit()

    async def _unmet_condition(self, req: TouchRequest, condition: str) -> str:
        """Why a conditional step must not go out ("" when it may)."""
        if not condition:
            return ""
        async with self.sessions() as session:
            previous = await session.scalar(
                select(models.Message)
                .where(
                    models.Message.journey_id == req.journey_id,
                    models.Message.channel == "email",
                    models.Message.touch_key != req.touch_key,
                )
                .order_by(models.Message.created_at.desc())
                .limit(1)
            )
        delivered = previous is not None and previous.status == "delivered"
        if condition == "previous_email_delivered" and not delivered:
            return "the previous email was not (yet) reported delivered"
        if condition == "previous_email_not_delivered" and delivered:
            return "the previous email was delivered"
        return ""

    def _plan(self, req: TouchRequest) -> list[PlannedSend]:
        if req.kind == "cadence":
            return [
                PlannedSend(s.channel, s.subject, s.body, s.variant, s.condition, s.html)
                for s in req.steps
            ]
        subject, email_body, sms_body = SYSTEM_TEMPLATES[req.kind]
        return [
            PlannedSend(
                ch, subject if ch == "email" else "", email_body if ch == "email" else sms_body
            )
            for ch in req.channels
        ]

    async def _send_once(
        self, req: TouchRequest, planned: PlannedSend, channel: str, text: Rendered
    ) -> tuple[ChannelOutcome, datetime | None]:
        """The outcome, and when to come back if the send must wait for a cap."""
        address = address_for(channel, req.contact)
        async with self.sessions() as session:
            erased = await self._erased(session, req, channel, address)
            if erased is not None:
                # Asked before the ledger row: a row would put their address and the text for
                # them back after the erasure deleted them. A retry asks again: the same answer.
                return ChannelOutcome(channel, "suppressed", erased), None
            row = await self._ledger_row(session, req, channel, address, planned, text)
            if row.status == "failed":
                # refused for good by the provider (or its template): said again on a repeat,
                # so that a touch sent again after a wait keeps its fallback
                return ChannelOutcome(channel, "failed", row.error), None
            if row.status in SENT_STATES:
                return ChannelOutcome(channel, "already_sent", row.provider_id or ""), None
            if row.status == "suppressed":
                return ChannelOutcome(channel, "suppressed", row.error or "opted out"), None
            refusal = await consent.blocked(session, channel, address, _consent_of(row))
            if refusal is not None:
                return await _suppress(session, row, refusal), None
            resend = row.status == "sending"
            now = datetime.now(UTC)
            if resend and row.sending_until is not None and row.sending_until > now:
                raise send_lease.in_flight(channel, row.sending_until)
            seen_status, seen_attempts = row.status, row.attempts
            if channel == "email" and row.claimed_at is None and not resend:
                # The quota lock must open its transaction (SQLite takes its write lock there).
                await session.commit()
                decision = await senders.claim_email_slot(
                    session,
                    row,
                    default_from=self._settings.email_from,
                    per_domain_hourly_cap=self._settings.per_domain_hourly_cap,
                )
                if decision.defer_until is not None:
                    await session.rollback()  # releases the lock; the row stays pending
                    until = decision.defer_until
                    return ChannelOutcome(channel, "deferred", until.isoformat()), until
            if not resend:
                # _touch asked before rendering; asked again in the claim's transaction, held
                # to its commit: an end recorded since sends nothing (a retry of a claim is
                # reconciled, whatever became of the run)
                ended = await runs.calling_run_ended(session)
                if ended:
                    await session.rollback()  # the row stays pending, unclaimed
                    return ChannelOutcome(channel, "skipped", ended), None
            deadline = send_lease.attempt_deadline()
            lease = send_lease.lease_end(deadline, self._provider_timeout(channel))
            claim = {
                "status": "sending",
                "attempts": seen_attempts + 1,
                "updated_at": now,
                "sending_until": lease,
            }
            claimed = await session.execute(
                update(models.Message)
                .where(
                    models.Message.id == row.id,
                    models.Message.status == seen_status,
                    models.Message.attempts == seen_attempts,
                )
                .values(**claim)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], claimed).rowcount != 1:
                # another attempt claimed it between our read and now: it sends, not us
                await session.rollback()
                raise send_lease.in_flight(channel, lease or now)
            for column, value in claim.items():
                # the claim wrote them: setattr would have the commit write them all again
                set_committed_value(row, column, value)
            await session.commit()
            call = send_lease.ProviderCall()
            try:
                outcome = await self._call_provider(
                    session, req, row, resend, deadline, call, text.invite
                )
            except WindowShut as shut:
                # nothing went to the provider: the row is as it was before the claim
                await self._give_back_lease(row, deadline, status=seen_status)
                return ChannelOutcome(channel, "deferred", shut.opens.isoformat()), shut.opens
            except BaseException:
                if call.may_give_back():
                    await self._give_back_lease(row, deadline)
                raise
            if outcome is not None:
                return outcome, None
        if self._faults is not None:
            await self._faults.after_ledger_commit(row)
        if self._after_send is not None:
            await self._after_send(row)
        return ChannelOutcome(channel, "sent", row.provider_id or ""), None

    async def _erased(
        self, session: AsyncSession, req: TouchRequest, channel: str, address: str
    ) -> str | None:
        """Why nothing may go to, nor be kept of, this recipient: the prospect was erased (their
        journey's activity was under way when the erasure came), or the address belonged to a
        person erased on request (services.outreach.consent.erasure), under any prospect.
        The answer holds to the transaction's end, where the caller's ledger row is written: an
        erasure of the prospect under way deletes that row after it (hold_against_erasure)."""
        kept = channel in ("email", "sms") and bool(address)
        normal = suppressions.normalise_address(channel, address) if kept else ""
        await hold_against_erasure(session, req.contact.prospect_id, normal)
        if await session.get(models.ErasedProspect, req.contact.prospect_id) is not None:
            return ERASED_PROSPECT
        if not normal:
            return None
        pepper = self._settings.erasure_pepper.get_secret_value()
        return await erased_reason(session, pepper, channel, normal)

    def _provider_timeout(self, channel: str) -> float:
        return self._email.longest_wait if channel == "email" else self._sms.longest_wait

    async def _call_provider(
        self,
        session: AsyncSession,
        req: TouchRequest,
        row: models.Message,
        resend: bool,
        deadline: datetime | None,
        call: send_lease.ProviderCall,
        invite: InvitePart | None = None,
    ) -> ChannelOutcome | None:
        """The provider call of a claimed row, and `submitted` committed; or the outcome that
        stopped it (refused for good, opted out meanwhile)."""
        channel = row.channel
        if self._faults is not None:
            await self._faults.before_provider_call(row)
        try:
            provider_id, refusal = await self._deliver_if_allowed(
                session, req, row, resend, deadline, call, invite
            )
        except (EmailSendError, SmsSendError) as err:
            if not err.permanent:
                raise
            # The provider refused the address (or the text) for good: retrying cannot help.
            row.status = "failed"
            row.error = str(err)
            row.sending_until = None
            await session.commit()
            return ChannelOutcome(channel, "failed", str(err))
        if refusal is not None:
            # an opt-out or a do-not-contact entry committed since the first check
            if not resend:
                # nothing went (an earlier attempt's may have: then the slot stays counted)
                senders.release_slot(row)
            return await _suppress(session, row, refusal)
        try:
            if self._faults is not None:
                await self._faults.after_provider_accepted(row, provider_id)
        finally:
            # The provider has the message: whatever failed since, the ledger says so, or a
            # retry would send the email again. Shielded: an activity cancelled meanwhile (a
            # worker's shutdown) still writes it.
            await asyncio.shield(self._record_sent(row, provider_id, deadline))
        return None

    async def _record_sent(
        self, row: models.Message, provider_id: str, deadline: datetime | None
    ) -> None:
        """`submitted` with the provider's id, committed. The provider has the message: a
        database away for a moment (a restart, a failover) is waited out until the attempt's
        deadline instead of failing the attempt, whose retry could only send the email again or
        go looking for the text once the send lease is over (make chaos: a PostgreSQL restart
        sent emails twice). A text's status callbacks that came first are applied here too."""
        sent_at = datetime.now(UTC)

        async def write(session: AsyncSession) -> sms_status.LedgerState:
            # afresh each try: _write_sent moves it with the status callbacks it finds
            state = sms_status.LedgerState("submitted", row.provider_status, row.error)
            await self._write_sent(session, row, provider_id, sent_at, state)
            return state

        state = await self._while_database_away(f"recording sent message {row.id}", write, deadline)
        values = {"status": state.status, "provider_id": provider_id, "sent_at": sent_at,
                  "updated_at": sent_at, "sending_until": None,
                  "provider_status": state.provider_status, "error": state.error}  # fmt: skip
        for key, value in values.items():
            # the row as committed; its own session (the claim's) never writes it again
            set_committed_value(row, key, value)

    async def _write_sent(
        self,
        session: AsyncSession,
        row: models.Message,
        provider_id: str,
        sent_at: datetime,
        state: sms_status.LedgerState,
    ) -> None:
        if row.channel == "sms":
            # the status writer's order, the sid's lock before the row: it may be adopting
            # this row for a callback that came first (sms_status)
            await session.run_sync(
                lambda s: sms_status.lock_messages(s.connection(), [provider_id])
            )
        # our claim's row: a commit whose answer was lost may have written it already (then
        # this changes nothing)
        mine = (models.Message.id == row.id, models.Message.attempts == row.attempts)
        await session.execute(
            update(models.Message)
            .where(*mine, models.Message.status == "sending")
            .values(
                status="submitted",
                provider_id=provider_id,
                sent_at=sent_at,
                updated_at=sent_at,
                sending_until=None,
            )
        )
        if row.channel == "sms":
            # after the row's write (sms_status.catch_up says why)
            moved = await session.run_sync(
                lambda s: sms_status.catch_up(s.connection(), provider_id, state)
            )
            if moved:
                await session.execute(
                    update(models.Message)
                    .where(*mine)
                    .values(
                        status=state.status,
                        provider_status=state.provider_status,
                        error=state.error,
                    )
                )
        await session.commit()

    async def _give_back_lease(
        self, row: models.Message, deadline: datetime | None, status: str = "sending"
    ) -> None:
        """This attempt is over (it failed, or deferred the send): a retry may re-send at once.
        Only our own claim's lease: a later attempt's claim has a higher count. An attempt that
        failed because the database went away gives it back once the database is there again:
        kept, the lease would hold the send for minutes after a restart of seconds (make chaos).
        `status`: the row's before the claim (`pending` for a first send, which nothing
        reached the provider for: it gives its slot under the caps back too, or it would count
        against them though nothing went, and go later on that stale slot without asking them)."""
        values: dict[str, object] = {"sending_until": None, "status": status}
        if status == "pending":
            values |= senders.SLOT_RELEASED

        async def give_back(session: AsyncSession) -> None:
            await session.execute(
                update(models.Message)
                .where(models.Message.id == row.id, models.Message.attempts == row.attempts)
                .where(models.Message.status == "sending")
                .values(**values)
            )
            await session.commit()

        await self._while_database_away(f"giving back the lease of {row.id}", give_back, deadline)

    async def _while_database_away(
        self,
        what: str,
        write: Callable[[AsyncSession], Awaitable[T]],
        deadline: datetime | None,
    ) -> T:
        """`write` in a session of its own, and what it returns; while the database is away (a
        restart, a failover), again, until the attempt's `deadline` (or RECORD_SENT_PATIENCE
        from now)."""
        give_up = deadline or datetime.now(UTC) + RECORD_SENT_PATIENCE
        pause = 0.1
        while True:
            try:
                async with self.sessions() as session:
                    return await write(session)
            except Exception as err:
                if (
                    not database_away(err)
                    or datetime.now(UTC) + timedelta(seconds=pause) >= give_up
                ):
                    raise
                log.warning("%s: database away (%s); again", what, err)
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 1.5)

    async def _ledger_row(
        self,
        session: AsyncSession,
        req: TouchRequest,
        channel: str,
        address: str,
        planned: PlannedSend,
        text: Rendered,
    ) -> models.Message:
        key = (req.journey_id, req.touch_key, channel)
        row = await _find_ledger(session, *key)
        if row is not None:
            return row
        zone = prospect_zone(req.contact.timezone, req.contact.phone)
        row = models.Message(
            journey_id=req.journey_id,
            touch_key=req.touch_key,
            channel=channel,
            kind=req.kind,
            prospect_id=req.contact.prospect_id,
            to_address=suppressions.normalise_address(channel, address),
            subject=text.subject if channel == "email" else "",
            body=text.body,
            html_body=text.html if channel == "email" else "",
            cadence_id=req.cadence_id or None,
            variant=planned.variant,
            timezone=zone.name,
            fallback_for=planned.fallback_for,
            fallback_reason=planned.why,
        )
        if channel == "email":
            # Chosen once, before the first attempt: a re-send reuses it.
            row.provider_id = self._email.new_message_id()
            row.unsubscribe_token = secrets.token_urlsafe(24)
            row.reply_token = replies.new_reply_token()
            row.month_first = replies.writes_month_first(zone)
        # The insert is the transaction's only write: no savepoint (two statements more on every
        # message) is needed to keep anything else when it fails.
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            # A concurrent attempt of the same activity inserted it first.
            await session.rollback()
            existing = await _find_ledger(session, *key)
            if existing is None:
                raise
            return existing
        return row

    async def _deliver_if_allowed(
        self,
        session: AsyncSession,
        req: TouchRequest,
        row: models.Message,
        resend: bool,
        deadline: datetime | None,
        call: send_lease.ProviderCall,
        invite: InvitePart | None = None,
    ) -> tuple[str, str | None]:
        """(provider id, None), or ("", why not) when consent forbids the send now: checked
        again right before the provider call, under the locks opt-outs take (consent.send_guard).
        WindowShut when the send window closed since the touch looked (the locks, the claim)."""
        if resend and row.channel == "email":
            # Not a send, so not under the guard's locks (opt-outs would wait on the mailbox):
            # the SMTP server filed the earlier attempt's copy, so it went (mailbox/sent_folder.py)
            if await sent_folder.went_out(self._settings, row.provider_id or ""):
                log.info(
                    "email %s found in the Sent folder: not sent again",
                    logged_id(row.provider_id or ""),
                )
                return str(row.provider_id), None
        guard = consent.send_guard(session, row.channel, row.to_address, _consent_of(row))
        async with guard as refusal:
            if refusal is not None:
                return "", refusal
            if deadline is not None and datetime.now(UTC) >= deadline:
                # the guard's locks took this attempt past its time: its lease says how long a
                # retry waits, and it only covers a call started before the deadline
                raise send_lease.expired(row.channel)
            now, allowed = self._window_now(req, row.channel)
            if allowed > now:
                raise WindowShut(allowed)
            with call:
                if row.channel == "email":
                    return await self._deliver_email(row, invite), None
                return await self._deliver_sms(row, resend), None

    async def _deliver_email(self, row: models.Message, invite: InvitePart | None = None) -> str:
        unsubscribe_url = (
            f"{self._settings.outreach_public_url}/unsubscribe/{row.unsubscribe_token}"
        )
        postal = self._settings.postal_address.strip()
        footer = "\n\n--\n" + (f"{postal}\n" if postal else "")
        if invite is not None:
            # transactional, and the rep's copy must not unsubscribe the prospect (invites.py)
            unsubscribe_url = ""
        else:
            footer += f"No more emails from us: {unsubscribe_url}"
        message_id = row.provider_id or self._email.new_message_id()
        # the slot's sender (rows from before senders existed use the default From)
        headers = {"From": row.from_address} if row.from_address else {}
        # Postmark's events then name this row: an event before a killed attempt's lease is
        # over records the email sent, as Mailgun's and SendGrid's do
        headers |= postmark.tracking_header(self._settings, message_id)
        msg = OutgoingEmail(
            to=row.to_address,
            subject=row.subject,
            text=row.body + footer,
            html=_html(row.body, unsubscribe_url, postal, row.html_body),
            message_id=message_id,
            unsubscribe_url=unsubscribe_url,
            headers=headers,
            # replies come back to an address that names this row, In-Reply-To or not
            reply_to=replies.reply_address(
                row.from_address or self._settings.email_from,
                row.reply_token,
                self._settings.reply_domain,
            )
            if row.reply_token
            else None,
        )
        if invite is not None:
            msg.calendar, msg.calendar_method, msg.cc = invite.calendar, invite.method, invite.cc
        return await self._email.send(msg)

    async def _deliver_sms(self, row: models.Message, resend: bool) -> str:
        since = row.created_at - timedelta(minutes=1) if resend else None
        callback = sms_status.callback_url(self._settings.outreach_public_url, row.id)
        try:
            return await self._sms.deliver(row.to_address, row.body, callback, since)
        except TwilioRestException as err:
            # Twilio's answer says whether the text was created and whether a retry can help
            raise SmsSendError.of(err) from err

    async def _stop_if_listed(self, req: TouchRequest) -> None:
        """A do-not-contact entry covers this prospect: the entry's own lookup ends the
        journeys it finds; this catches one it missed (enrolled as the entry was made, or
        reached at an address the enrollment did not record). Stored once per entry and
        prospect, and delivered by the outreach app's inbox relay."""
        async with self.sessions() as session:
            c = req.contact
            entry = await consent.dnc_for_contact(session, c.email, c.phone)
            if entry is not None and c.prospect_id:
                if await consent.stop_journey_for_dnc(session, entry, c.prospect_id, relay=True):
                    log.info("journey %s: %s, cadence stop stored", req.journey_id, entry.value)
                await session.commit()

    async def _task_for_touch(
        self, req: TouchRequest, planned: PlannedSend, channel: str, text: Rendered, due: datetime
    ) -> ChannelOutcome:
        c = req.contact
        async with self.sessions() as session:
            refusal = await consent.task_refusal(session, c.prospect_id, c.email, c.phone)
        if refusal is not None:
            # a rep calling or messaging a person who said no, or is listed, is still contact
            log.info("journey %s %s: no %s, %s", req.journey_id, req.touch_key, channel, refusal[0])
            return ChannelOutcome(channel, "suppressed", refusal[0])
        what = "Call" if channel == "call_task" else "Connect on a social network with"
        name = f"{c.first_name} {c.last_name}".strip()
        instead = planned.fallback_for or planned.channel
        why = f" ({planned.why})" if planned.why else ""
        # a fallback task has a key of its own: the touch may have a task of that kind already
        suffix = f"fallback-{planned.fallback_for}" if planned.fallback_for else channel
        task = RepTaskRequest(
            key=f"{req.journey_id}:{req.touch_key}:{suffix}",
            rep_id=req.contact.rep_id,
            prospect_id=req.contact.prospect_id,
            journey_id=req.journey_id,
            kind=channel,
            title=f"{what} {name} ({req.contact.company})".strip(),
            body=f"Touch {req.touch_key} of the cadence, instead of {instead}{why}.\n{text.body}",
            context={
                "stage": Stage.CONTACTING,
                "phone": req.contact.phone or "",
                "company": req.contact.company,
            },
            due_at=due.isoformat(),
        )
        await self.create_rep_task(task)
        detail = f"fallback for {planned.fallback_for}: {planned.why}" if why else planned.channel
        return ChannelOutcome(channel, "task_created", detail)

    # --- rep tasks, cadences ----------------------------------------------------------------

    @activity_boundary(Act.CREATE_REP_TASK)
    async def create_rep_task(self, req: RepTaskRequest) -> str:
        async with self.sessions() as session:
            existing = await session.scalar(
                select(models.RepTask.id).where(models.RepTask.key == req.key)
            )
            if existing is not None:
                return existing
        # Who the task is about and their fit, and the prospect's rep now (a reassignment
        # since the journey started wins), read from prospecting outside any transaction.
        card = await tasks.task_card(self._reps, req) if self._reps is not None else {}
        async with self.sessions() as session:
            task = models.RepTask(
                id=new_id(),  # known before the flush: the event names it
                key=req.key,
                rep_id=req.assignee(card.pop("rep_id", None)),
                fixed_rep=req.fixed_rep,
                prospect_card=card,
                prospect_id=req.prospect_id,
                journey_id=req.journey_id,
                kind=req.kind,
                title=req.title,
                body=req.body,
                context=dict(req.context),
                due_at=datetime.fromisoformat(req.due_at) if req.due_at else datetime.now(UTC),
            )
            # asked after the card is read (the run's end may be recorded meanwhile), and held
            # to the commit: an end is recorded before this check, or after the task
            ended = await runs.calling_run_ended(session)
            if ended == runs.PROSPECT_ERASED:
                # not even kept closed: its title, body and card would bring the person back
                log.info("task %s not made: %s", req.key, ended)
                return ""
            if req.kind in REPLY_TASK_KINDS:
                # a reply accepted until the run's end is told after its end report: the
                # person wrote, so the rep answers, however the run ended
                ended = ""
            if not ended and req.kind in REACH_OUT_TASK_KINDS:
                # a journey with a deal under way goes on after a do-not-contact entry or an
                # opt-out of everything: the rep is not asked to reach them either
                refusal = await consent.task_refusal(
                    session, req.prospect_id, card.get("email") or None, card.get("phone") or None
                )
                ended = refusal[0] if refusal is not None else ""
            if ended:
                _not_opened(task, ended)
            session.add(task)
            try:
                if not ended:  # no task.created: subscribers would act on a closed task
                    await events.task_created(session, task)  # flushes: a repeat fails here
                    await tasks.close_rebooking_calls(session, task)
                await session.commit()
            except IntegrityError:
                await session.rollback()
                found = await session.scalar(
                    select(models.RepTask.id).where(models.RepTask.key == req.key)
                )
                if found is None:
                    raise
                return found
        if not ended and not req.fixed_rep and "unavailable" not in card:
            await self._follow_reassignment(task.id, req.prospect_id, task.rep_id)
        return task.id

    async def _follow_reassignment(
        self, task_id: str, prospect_id: str, made_for: str | None
    ) -> None:
        """The prospect's rep read again once the task exists: a reassignment committed while
        the card was read moved the prospect's open tasks (prospecting's outbox) before this
        one was there, and it stayed with the rep they left. A later one moves it with the
        rest. Only this task moves (a task someone handed to another rep stays theirs), and
        only from the rep it was made for; best effort, as the card."""
        assert self._reps is not None
        try:
            rep_id = (await self._reps.prospect_card(prospect_id)).get("rep_id")
        except AppError:
            return
        if rep_id is None or rep_id == made_for:
            return
        t = models.RepTask
        async with self.sessions() as session:
            moved = await session.execute(
                update(t)
                .where(t.id == task_id, t.rep_id.is_not_distinct_from(made_for))
                .where(t.status == tasks.OPEN)
                .values(reassigned_from=t.rep_id, rep_id=rep_id, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        if cast(CursorResult[Any], moved).rowcount:
            log.info("task %s follows the prospect's reassignment to rep %s", task_id, rep_id)

    @activity_boundary(Act.CLOSE_REP_TASKS)
    async def close_rep_tasks(self, req: CloseRepTasks) -> int:
        """Idempotent: a retry finds them closed already. A meeting's preparation closes with
        the rep's in-person reminders of it (tasks.meeting_reminder_prefix): the journey closes
        the one when the meeting moves or is over, and the others are as moot."""
        t = models.RepTask
        closing = t.key.startswith(req.key_prefix, autoescape=True)
        reminders = tasks.meeting_reminder_prefix(req.key_prefix)
        if reminders is not None:
            closing = closing | t.key.startswith(reminders, autoescape=True)
        query = (
            update(t)
            .where(closing, t.status == tasks.OPEN)
            .values(status=tasks.CLOSED, notes=req.reason, completed_at=datetime.now(UTC))
        )
        if req.keep_key is not None:
            query = query.where(t.key != req.keep_key)
        async with self.sessions() as session:
            # an UPDATE's result is a CursorResult (it has the row count); execute() is typed
            # for SELECTs
            closed = cast(CursorResult[Any], await session.execute(query)).rowcount or 0
            await session.commit()
        return int(closed)

    @activity_boundary(Act.FOLLOW_STAGE)
    async def follow_stage(self, session: AsyncSession, entered: StageEntered) -> int:
        return await tasks.follow_stage(session, entered)

    @activity_boundary(Act.GET_CADENCE)
    async def get_cadence(self, session: AsyncSession, ref: CadenceRef) -> CadenceSnapshot:
        # the cadence of a referred prospect's journey, which the intake starts
        snapshot = await service.cadence_snapshot(session, ref.cadence_id)
        return await for_journey(snapshot, self._settings, activity.client())


def _not_opened(task: models.RepTask, why: str) -> None:
    """A task not to open: late work of a journey run that is over (a meeting reminder's task
    of a lost deal), or one asking the rep to reach a person who said no to us. Kept for the
    record with the reason, closed, so never in the inbox."""
    task.status, task.notes = tasks.CLOSED, f"not opened: {why}"
    task.completed_at = datetime.now(UTC)
    log.info("task %s not opened: %s", task.key, why)


async def _suppress(session: AsyncSession, row: models.Message, reason: str) -> ChannelOutcome:
    row.status = "suppressed"
    row.error = reason
    row.updated_at = datetime.now(UTC)
    await session.commit()
    return ChannelOutcome(row.channel, "suppressed", reason)


async def _find_ledger(
    session: AsyncSession, journey_id: str, touch_key: str, channel: str
) -> models.Message | None:
    return await session.scalar(
        select(models.Message).where(
            models.Message.journey_id == journey_id,
            models.Message.touch_key == touch_key,
            models.Message.channel == channel,
        )
    )


def _html(text: str, unsubscribe_url: str, postal_address: str = "", html_part: str = "") -> str:
    """The step's own HTML part when it has one, else one made from the text; the footer
    (postal address, unsubscribe link) is added either way."""
    from html import escape

    postal = escape(postal_address).replace("\n", "<br>") + "<br>" if postal_address else ""
    link = f'<a href="{escape(unsubscribe_url)}">Unsubscribe</a>' if unsubscribe_url else ""
    footer = f'<hr><p style="font-size:12px;color:#666">{postal}{link}</p>'

    if html_part:
        if "</body>" in html_part:
            return html_part.replace("</body>", f"{footer}</body>", 1)
        return f"<html><body>{html_part}{footer}</body></html>"
    paragraphs = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return f"<html><body>{paragraphs}{footer}</body></html>"


def activities_for(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    after_send: AfterSend | None = None,
    *,
    faults: SendFaults | None = None,
    clock: Clock | None = None,
) -> list[Callable[..., Any]]:
    colleagues = ColleagueActivities(sessions)
    run_ends = RunActivities(sessions)
    referred_runs = ReferredRunActivities(sessions, settings)
    acts = OutreachActivities(
        sessions,
        settings,
        SmtpEmail.from_settings(settings),
        TwilioSms.from_settings(settings),
        after_send,
        faults,
        RepDirectory.from_settings(settings),
        BookingLinks.from_settings(settings),
        clock,
    )
    return [
        acts.send_touch,
        acts.send_meeting_invite,
        acts.send_handed_over_cancel,
        acts.create_rep_task,
        acts.close_rep_tasks,
        acts.follow_stage,
        acts.get_cadence,
        colleagues.pause_colleagues,
        run_ends.record_run_end,
        referred_runs.start_referred_run,
    ]


async def close_activities(activities: list[Callable[..., Any]]) -> None:
    owner = getattr(activities[0], "__self__", None)
    if isinstance(owner, OutreachActivities):
        await owner._sms.close()
        if owner._reps is not None:
            await owner._reps.close()
        if owner._booking_links is not None:
            await owner._booking_links.close()
