"""Outreach's tables: cadences (versioned), enrollments, the send ledger, consent, inbox, rep tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.audit import AuditColumns
from shared.db import Base as SharedBase
from shared.db import UTCDateTime, new_id, utcnow
from shared.erasure import ErasedPersonColumns
from shared.idempotency import IdempotencyColumns


class Base(SharedBase):
    __abstract__ = True
    metadata = MetaData()


class Cadence(Base):
    __tablename__ = "cadences"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CadenceVersion(Base):
    """Every edit makes a new row; journeys keep the version they started on."""

    __tablename__ = "cadence_versions"
    __table_args__ = (UniqueConstraint("cadence_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cadence_id: Mapped[str] = mapped_column(ForeignKey("cadences.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Enrollment(Base):
    """One run of a prospect's journey (workflow `journey-<prospect id>`): the first enrollment
    is run 1; a prospect whose journey ended comes back as run 2, 3, ... of the same workflow id
    (a new Temporal run), and the earlier rows stay as the record of the earlier runs. `current`
    marks each prospect's latest run: what pausing, stopping and do-not-contact act on."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("prospect_id", "run", name="uq_enrollments_prospect_run"),
        Index("ix_enrollments_prospect_current", "prospect_id", "current"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prospect_id: Mapped[str] = mapped_column(String(64))
    cadence_id: Mapped[str] = mapped_column(ForeignKey("cadences.id"), index=True)
    cadence_version: Mapped[int] = mapped_column(Integer)
    journey_id: Mapped[str] = mapped_column(String(100))  # the workflow id, the same every run
    rep_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    company_key: Mapped[str] = mapped_column(String(200), index=True, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # the addresses the journey reaches the prospect at (normalised), so a do-not-contact
    # entry finds the journeys it covers (consent.covered_prospects)
    email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    phone: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    # --- runs (issue 10) ---
    run: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    current: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # the Temporal run id once started (None: the start is still to be made or retried)
    run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # enrollment | follow_up | late_reply | referral | deal_reopened
    origin: Mapped[str] = mapped_column(
        String(20), default="enrollment", server_default="enrollment"
    )
    start_stage: Mapped[str] = mapped_column(
        String(20), default="contacting", server_default="contacting"
    )
    # the run's last stage (nurture, lost, disqualified, won) and when, told by the journey
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class FollowUp(Base):
    """A nurtured prospect's re-engagement: due at `due_at`, enrolled in the follow-up cadence
    by outreach's relay (durable: survives restarts; retried with backoff while Temporal is
    away). status: pending -> enrolled | refused (reason kept) | cancelled (the prospect
    opted out, was erased or enrolled by hand meanwhile)."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        UniqueConstraint("prospect_id", "after_run", name="uq_follow_ups_prospect_run"),
        Index("ix_follow_ups_due", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prospect_id: Mapped[str] = mapped_column(String(64), index=True)
    after_run: Mapped[int] = mapped_column(Integer)  # the nurtured run it follows
    from_cadence_id: Mapped[str] = mapped_column(String(32))
    cadence_id: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str] = mapped_column(Text, default="")
    run: Mapped[int | None] = mapped_column(Integer, default=None)  # the run it started
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    """The send ledger: one row per (journey, touch, channel), so a retry never sends twice."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("journey_id", "touch_key", "channel"),
        # the caps count recent slots per sender and per recipient domain
        Index("ix_messages_sender_claimed", "sender_id", "claimed_at"),
        Index("ix_messages_domain_claimed", "to_domain", "claimed_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    journey_id: Mapped[str] = mapped_column(String(100))
    touch_key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    prospect_id: Mapped[str] = mapped_column(String(64), index=True)
    to_address: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    # pending -> sending -> submitted -> delivered | bounced | failed; or suppressed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    provider_status: Mapped[str] = mapped_column(String(20), default="")
    provider_id: Mapped[str | None] = mapped_column(String(200), index=True, default=None)
    unsubscribe_token: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Email only, set once when the send takes its slot under the caps (a retry keeps them):
    # which sender, its From header, the recipient's domain and when the slot was taken.
    sender_id: Mapped[str | None] = mapped_column(String(32), default=None)
    from_address: Mapped[str | None] = mapped_column(String(400), default=None)
    to_domain: Mapped[str | None] = mapped_column(String(255), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # While `sending`: until when the attempt that claimed the row may still be talking to the
    # provider (services/outreach/send_lease.py); None once that attempt is over.
    sending_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # what the numbers per cadence step and A/B variant are counted by
    cadence_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    variant: Mapped[str] = mapped_column(String(40), default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Email only: the address replies go to is local+r-<reply_token>@domain, so a reply is
    # matched to this row even without In-Reply-To (unguessable: 128 random bits).
    reply_token: Mapped[str | None] = mapped_column(
        String(32), unique=True, index=True, default=None
    )
    # The prospect's zone when the row was made ("" unknown): out-of-office dates are read in it.
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Email only: whether they write 03/04 for March 4, decided when the row was made (a zone
    # taken by default says nothing of it, their phone's country does); None on rows made
    # before it was kept: their `timezone` decides.
    month_first: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # A send that stands in for a channel of the same touch refused by consent or a hard bounce
    # (issue 10): that channel, and why it was refused ("" for an ordinary send).
    fallback_for: Mapped[str] = mapped_column(String(20), default="", server_default="")
    fallback_reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class Suppression(Base):
    """Consent: an address opted out of a channel stays out, whatever journey would send."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConsentRecord(Base):
    """One person's consent across channels: keyed by prospect when known, plus the addresses
    the opt-outs came from. The per-address `suppressions` rows are kept in step with it (each
    opt-out writes both in one transaction); a send is checked against both and the do-not-contact
    list (services.outreach.consent.service)."""

    __tablename__ = "consent_records"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prospect_id: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, default=None
    )
    email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    phone: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    # opted_in | opted_out, why and when it last changed, per channel
    email_status: Mapped[str] = mapped_column(String(20), default="opted_in")
    email_reason: Mapped[str] = mapped_column(String(200), default="")
    email_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sms_status: Mapped[str] = mapped_column(String(20), default="opted_in")
    sms_reason: Mapped[str] = mapped_column(String(200), default="")
    sms_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DoNotContact(Base):
    """The global do-not-contact list: an email address, an E.164 number or a whole domain."""

    __tablename__ = "do_not_contact"
    __table_args__ = (UniqueConstraint("kind", "value"),)
    __audit_private__ = frozenset({"value"})  # an address or a number (shared.audit)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10))  # email | phone | domain
    value: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InboxEvent(Base):
    """Provider callbacks, stored before anything acts on them; the provider's id dedupes.

    The row is also the outbox of the journey signal the event causes: `delivery` moves
    none (nothing to tell) | pending -> delivered | no_journey | failed, retried with backoff
    (`attempts`, `next_attempt_at`) until Temporal has it, so an acknowledged event is never lost.
    """

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        # the relay's claim, each lane (bulk or not) a range in due order (shared.relay)
        Index("ix_inbox_events_due_lane", "delivery", "bulk", "next_attempt_at", "id"),
        # a prospect's events, newest first: their timeline, GET /inbox-events?prospect_id=
        Index("ix_inbox_events_prospect", "prospect_id", "id"),
        # the retention's prune of old delivery reports (shared.relay.Retained)
        Index("ix_inbox_events_created_at", "created_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prospect_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    workflow_id: Mapped[str | None] = mapped_column(String(100), default=None)
    signal_name: Mapped[str | None] = mapped_column(String(60), default=None)
    signal_payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    delivery: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # one of many rows a single act stores (a cadence's pause, one per journey): the relay
    # claims the other rows (a prospect's reply, opt-out...) first, so none waits behind these
    bulk: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # what became of the event, visible through GET /inbox-events (issue 10): delivered,
    # late_reply_task, restarted, won_client_task, unknown_sender, journey_ended, ...
    outcome: Mapped[str] = mapped_column(String(30), default="", server_default="")
    outcome_detail: Mapped[str] = mapped_column(Text, default="", server_default="")


class RejectedItem(Base):
    """An authenticated provider item that could not be understood, kept aside with the reason."""

    __tablename__ = "rejected_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class WebhookToken(Base):
    """Single-use tokens of signed requests (Mailgun): a token comes back only with its body."""

    __tablename__ = "webhook_tokens"
    __table_args__ = (UniqueConstraint("provider", "token"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    token: Mapped[str] = mapped_column(String(200))
    body_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RepTask(Base):
    """A thing a rep must do, with the context to do it (services.outreach.tasks.service ranks them)."""

    __tablename__ = "rep_tasks"
    __table_args__ = (
        # the sweep looks for open tasks by due time; the inbox for one rep's open tasks
        Index("ix_rep_tasks_status_due", "status", "due_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    rep_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    prospect_id: Mapped[str] = mapped_column(String(64), index=True)
    journey_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="open")
    outcome: Mapped[str | None] = mapped_column(String(40), default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Who the task is about, read from prospecting when the task is made (name, company,
    # title, email, phone, fit_score, tier, stage): the rep acts without searching.
    prospect_card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # hidden from the inbox until then
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # set once: an urgent signal was noticed / the task went overdue past the ops limit
    urgent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    urgent_reason: Mapped[str] = mapped_column(String(300), default="", server_default="")
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reassigned_from: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # for this person whoever the prospect's rep is (a manager's escalation): a reassignment of
    # the prospect leaves it with them (RepTaskRequest.fixed_rep)
    fixed_rep: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class TaskPolicy(Base):
    """Ops' settings of the rep inbox (one row, id 1; defaults apply while there is none)."""

    __tablename__ = "task_policy"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    escalate_after_seconds: Mapped[int] = mapped_column(Integer)
    hot_reply_seconds: Mapped[int] = mapped_column(Integer)
    meeting_soon_seconds: Mapped[int] = mapped_column(Integer)
    due_soon_seconds: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RepPause(Base):
    """A rep's pause of their journeys (POST /reps/{id}/journeys/pause, e.g. a vacation), kept
    until their resume: a journey carries it while its prospect is that rep's, so a prospect
    handed to another rep leaves it behind (services/outreach/cadences/rep_pauses.py)."""

    __tablename__ = "rep_pauses"
    rep_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)  # lifts by itself
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RepNotificationPrefs(Base):
    """How a rep hears about urgent tasks: email or SMS (their choice) plus a signed webhook."""

    __tablename__ = "rep_notification_prefs"
    # a Slack incoming webhook's path is its credential (shared.audit)
    __audit_private__ = frozenset({"webhook_url"})
    rep_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(10), default="email")  # email | sms | none
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(200), default=None)
    # who hears about this rep's overdue tasks when prospecting knows no manager
    escalate_to: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TaskNotification(Base):
    """The outbox of notifications: one row per (task, reason, recipient, channel), sent once.

    status: pending -> sent | failed (gave up after the last attempt); retried with backoff.
    claims: how often the relay claimed the row. More claims than recorded attempts plus the
    current one means an earlier attempt ended unrecorded (a crash, a stop past its grace):
    whether its email or text went is unknown, and the notifier asks before sending again.
    """

    __tablename__ = "task_notifications"
    __table_args__ = (
        UniqueConstraint("task_id", "reason", "recipient_rep_id", "channel"),
        Index("ix_task_notifications_due", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(String(20))  # urgent | escalation
    recipient_rep_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(10))  # email | sms | webhook
    target: Mapped[str] = mapped_column(String(2000))  # address, number or URL
    subject: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    provider_id: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Sender(Base):
    """A mailbox emails go out from; sends rotate over the active ones that have capacity."""

    __tablename__ = "senders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    from_address: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    daily_cap: Mapped[int] = mapped_column(Integer, default=0)  # per rolling 24 h; 0 = none
    hourly_cap: Mapped[int] = mapped_column(Integer, default=0)  # per rolling hour; 0 = none
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SendQuotaLock(Base):
    """One row per quota; updating it first serialises every claim on SQLite and PostgreSQL."""

    __tablename__ = "send_quota_locks"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    claims: Mapped[int] = mapped_column(Integer, default=0)


class ErasedPerson(ErasedPersonColumns, Base):
    """What stays of a person who asked to be erased: keyed digests of their email and phone
    (shared.erasure). Enrollment of a prospect with either is refused, and so is a send."""

    __tablename__ = "erased_people"


class ErasedProspect(Base):
    """The ids of the prospects erased here (random ids, no personal data): an event about one
    that was on its way (deals' or prospecting's outbox relayed it after the erasure) is
    dropped, not stored for the subscribers (services.outreach.events.service.emit)."""

    __tablename__ = "erased_prospects"
    prospect_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImapMailbox(Base):
    """A reply mailbox watched over IMAP (services.outreach.mailbox): how far it was read
    (UIDVALIDITY and the last UID whose message is stored, advanced in the same transaction as
    that message's inbox event) and the lease that lets one replica at a time watch it."""

    __tablename__ = "imap_mailboxes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(400), unique=True)  # user@host:port/folder
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    processed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str] = mapped_column(String(64), default="", server_default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- event subscriptions (issue 14) ---------------------------------------------------------


class EventSubscription(Base):
    """A URL that gets the events it names, signed per Standard Webhooks with its secret.

    status: active | disabled (by ops, or after a delivery gave up: `disabled_reason` says why).
    The secret is shown once (at creation and at each rotation); each secret a rotation retired
    keeps signing too, beside it, until its own overlap ends (`retired_secrets`)."""

    __tablename__ = "event_subscriptions"
    # where the events go: a Slack- or Zapier-style URL carries its credential (shared.audit)
    __audit_private__ = frozenset({"url"})
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(300), default="")
    secret: Mapped[str] = mapped_column(String(100))
    # [{"secret", "until" (ISO time)}], oldest first; replaced, never changed in place (None:
    # a row a replica of the release before inserted during the upgrade, none retired)
    retired_secrets: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), default="active")
    disabled_reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def retired_until(self, now: datetime) -> list[tuple[str, datetime]]:
        """The retired secrets still signing at `now`, with when each stops."""
        retired = [
            (r["secret"], datetime.fromisoformat(r["until"])) for r in self.retired_secrets or []
        ]
        return [(secret, until) for secret, until in retired if until > now]

    @property
    def previous_secret_until(self) -> datetime | None:
        """Until when deliveries carry a signature with a retired secret too."""
        return max((until for _, until in self.retired_until(utcnow())), default=None)


class WebhookEvent(Base):
    """One event, once: its id is derived from the fact (shared.events.event_id)."""

    __tablename__ = "webhook_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # the delivered body, as sent
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class EventDelivery(Base):
    """One event to one subscription: pending -> delivered | failed (gave up), retried with
    backoff by the relay; a manual redelivery makes it pending again (same webhook-id)."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_event_deliveries_due", "status", "next_attempt_at"),
        Index("ix_event_deliveries_subscription", "subscription_id", "created_at"),
        Index("ix_event_deliveries_status_created_at", "status", "created_at"),  # the prune
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("event_subscriptions.id", ondelete="CASCADE")
    )
    # indexed: an event is pruned once no delivery names it
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)  # the answer's code
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(AuditColumns, Base):
    """Who changed what through the API (shared.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = AuditColumns.indexes("audit_log")


class IdempotencyKey(IdempotencyColumns, Base):
    """The Idempotency-Key of each creating request, with its answer (shared.idempotency)."""

    __tablename__ = "idempotency_keys"
