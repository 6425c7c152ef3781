"""Tables of the deals service: deals, qualification answers, meetings, objections, playbook."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared import db
from shared.audit import AuditColumns
from shared.contracts.journey import Stage
from shared.db import UTCDateTime, new_id, utcnow
from shared.events import EventOutboxColumns
from shared.idempotency import IdempotencyColumns

# Named constraints: SQLite batch migrations can only drop or alter what has a name.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OPEN_STAGES = (Stage.QUALIFYING, Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING)
# nurture: nobody qualified the deal in time and the cadence says to nurture, not disqualify
CLOSED_STAGES = (Stage.WON, Stage.LOST, Stage.DISQUALIFIED, Stage.NURTURE)
DEAL_STAGES = OPEN_STAGES + CLOSED_STAGES


class Base(db.Base):
    __abstract__ = True
    metadata = MetaData(naming_convention=NAMING)


class Deal(Base):
    __tablename__ = "deals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prospect_id: Mapped[str] = mapped_column(String(64), index=True)
    journey_id: Mapped[str] = mapped_column(String(200), unique=True)
    # the Temporal run of `journey-<prospect id>` that carries the deal: the one that opened it,
    # then the one that took it back when it was reopened. Every run has the same workflow id,
    # so only this tells the deal's run from a later one (services.deals.core.runs). None: a
    # deal opened before it was recorded, or by hand.
    journey_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    rep_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(20), index=True, default=Stage.QUALIFYING)
    qualified: Mapped[bool | None]
    qualification_score: Mapped[int | None] = mapped_column(Integer)
    qualification_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    close_reason: Mapped[str | None] = mapped_column(Text)
    # the ops-defined reason (close_reasons.code); close_reason keeps the rep's own words
    close_reason_code: Mapped[str | None] = mapped_column(String(40))
    # where a reopened deal goes back to
    stage_before_close: Mapped[str | None] = mapped_column(String(20))
    # None means the default framework (BANT)
    framework: Mapped[str | None] = mapped_column(String(40))
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    segment: Mapped[str | None] = mapped_column(String(100), index=True)
    # when the buyer said they would decide; passing it undecided gives a "last chance" task
    decision_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # indexed: the analytics count the deals opened in a window (core/source_analytics.py)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    answers: Mapped[list[QualificationAnswer]] = relationship(
        back_populates="deal", order_by="QualificationAnswer.position"
    )
    meetings: Mapped[list[Meeting]] = relationship(
        back_populates="deal", order_by="Meeting.starts_at"
    )
    objections: Mapped[list[Objection]] = relationship(
        back_populates="deal", order_by="Objection.created_at"
    )
    history: Mapped[list[DealHistory]] = relationship(
        back_populates="deal", order_by="DealHistory.at"
    )

    @property
    def is_closed(self) -> bool:
        return self.stage in CLOSED_STAGES


class QualificationAnswer(Base):
    """One answered (or missing) criterion of the deal's qualification."""

    __tablename__ = "qualification_answers"
    __table_args__ = (UniqueConstraint("deal_id", "criterion"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deal_id: Mapped[str] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    framework: Mapped[str] = mapped_column(String(40))
    criterion: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[Any | None] = mapped_column(JSON)
    passed: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    deal: Mapped[Deal] = relationship(back_populates="answers")


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deal_id: Mapped[str] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    title: Mapped[str] = mapped_column(String(200))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    # +1 on every reschedule: the journey keys its reminders by it
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, onupdate=utcnow)
    # --- booking links (issue 14) ---
    # the rep whose slot the meeting holds (booked through a link, or scheduled through the API
    # on the deal of that rep): two scheduled meetings can never hold the same rep's slot (the
    # partial unique index below), whoever books first wins
    booked_rep_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # --- the prospect's calendar invitation (issue 14): the latest one's fate ---
    # sent | not_sent (opted out, listed, bounced, no address: the rep got their own)
    invite_status: Mapped[str | None] = mapped_column(String(20), default=None)
    invite_detail: Mapped[str | None] = mapped_column(Text, default=None)
    invite_sequence: Mapped[int | None] = mapped_column(Integer, default=None)
    # the UID of every invitation of the meeting, fixed when the first one goes: a calendar
    # matches an update or a cancellation to its event by it (meetings/invites.py)
    invite_uid: Mapped[str | None] = mapped_column(String(320), default=None)
    # hand-overs to another rep (the prospect reassigned): each raises its invitations' SEQUENCE
    # (meetings/invites.py), the revision staying the time's
    handovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the rep whose calendar holds the meeting until the update and that rep's cancellation of
    # a hand-over have started
    handed_over_from: Mapped[str | None] = mapped_column(String(64), default=None)

    deal: Mapped[Deal] = relationship(back_populates="meetings")

    __table_args__ = (
        Index(
            "uq_meetings_booked_slot",
            "booked_rep_id",
            "starts_at",
            unique=True,
            sqlite_where=text("status = 'scheduled' AND booked_rep_id IS NOT NULL"),
            postgresql_where=text("status = 'scheduled' AND booked_rep_id IS NOT NULL"),
        ),
    )


class RepAvailability(Base):
    """When a rep takes meetings booked through links: working hours in the rep's own zone on
    the given weekdays, the meeting's length, the gap kept around every meeting, how soon and
    how far ahead a slot may be booked."""

    __tablename__ = "rep_availability"

    rep_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    days: Mapped[list[int]] = mapped_column(JSON)  # 0 = Monday
    start_minute: Mapped[int] = mapped_column(Integer)  # of the local day
    end_minute: Mapped[int] = mapped_column(Integer)
    meeting_minutes: Mapped[int] = mapped_column(Integer)
    buffer_minutes: Mapped[int] = mapped_column(Integer)
    min_notice_minutes: Mapped[int] = mapped_column(Integer)
    days_ahead: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RepStanding(Base):
    """Whether a rep takes meetings, as prospecting (where reps live) last said: it tells deals
    on every deactivation and reactivation. A rep with no row was never deactivated. A
    deactivated rep's booking links offer no times and book nothing."""

    __tablename__ = "rep_standing"

    rep_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    # when prospecting changed it: a word delivered late never overwrites a newer one
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignedLinkHold(Base):
    """What became of a prospect for the booking links signed before links were stored (a `.`
    in the token: shared.booking), which are no rows to revoke, delete or move: their revocation
    or erasure (`revoked_at`: such a link opens nothing) and their rep now (`rep_id`: such a link
    books that rep's times, not the one it names). One row per prospect, ids only."""

    __tablename__ = "signed_link_holds"

    prospect_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    rep_id: Mapped[str | None] = mapped_column(String(64), default=None)


class BookingLink(Base):
    """A prospect's booking link (issue 14): the token in `/book/<token>` is this row's random
    key (128 bits), so the link is short, says nothing about the person, and is revoked by
    marking the row (outreach asks for one when it renders `{{ booking_link }}`)."""

    __tablename__ = "booking_links"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    prospect_id: Mapped[str] = mapped_column(String(64), index=True)
    rep_id: Mapped[str] = mapped_column(String(64))
    journey_key: Mapped[str] = mapped_column(String(128))
    zone: Mapped[str] = mapped_column(String(64))  # the prospect's: the page shows slots in it
    source: Mapped[str] = mapped_column(String(32))  # for the deal a booking opens
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_booking_links_journey_rep", "journey_key", "rep_id"),)


class DealHistory(Base):
    """The deal's stage changes and notable events (reminders, escalations) with their cause."""

    __tablename__ = "deal_history"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deal_id: Mapped[str] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    # set for entries written by the journey: a retried activity writes its entry once
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    cause: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # who: a key holder ("ops (cfg_…)", "rep r1 (key id)") or "journey" (shared.audit.actor_of)
    actor: Mapped[str] = mapped_column(String(120), default="")

    deal: Mapped[Deal] = relationship(back_populates="history")


class Objection(Base):
    __tablename__ = "objections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deal_id: Mapped[str] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    # a slug, not a foreign key: history keeps its category when ops delete a playbook entry
    category: Mapped[str] = mapped_column(String(40), index=True)
    text: Mapped[str] = mapped_column(Text)
    # the deal's stage when the objection was heard (None: logged before stages were kept)
    stage: Mapped[str | None] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    deal: Mapped[Deal] = relationship(back_populates="objections")


class ObjectionOutcome(Base):
    """Which prepared response a rep used on an objection and whether it resolved it."""

    __tablename__ = "objection_outcomes"
    __table_args__ = (UniqueConstraint("objection_id", "response_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    objection_id: Mapped[str] = mapped_column(
        ForeignKey("objections.id", ondelete="CASCADE"), index=True
    )
    # responses are long texts: a digest keeps the uniqueness index small on every database
    response_key: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    resolved: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ObjectionCategory(Base):
    """A playbook entry: the phrases that reveal an objection and the answers prepared for it."""

    __tablename__ = "objection_categories"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    category: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    triggers: Mapped[list[str]] = mapped_column(JSON, default=list)
    answers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # stage -> responses prepared for that stage, offered before the general answers
    stage_answers: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class QualificationFramework(Base):
    """An ops-defined framework; the built-in ones (BANT, MEDDIC) live in code, not here."""

    __tablename__ = "qualification_frameworks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    pass_score: Mapped[int] = mapped_column(Integer)
    # [{key, question, answer_type, choices, rule: {required, min, max, allowed}, weight}]
    criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CloseReason(Base):
    """An ops-defined reason a deal is won or lost; closing with another code is refused."""

    __tablename__ = "close_reasons"
    __table_args__ = (UniqueConstraint("outcome", "code"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    outcome: Mapped[str] = mapped_column(String(10))  # won | lost
    code: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)


class AuditEntry(AuditColumns, Base):
    """Who changed what through the API (shared.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = AuditColumns.indexes("audit_log")


class EventOutbox(EventOutboxColumns, Base):
    """Deals' events (meeting booked, deal won or lost) on their way to outreach (shared.events)."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_status_created_at", "status", "created_at"),)


class IdempotencyKey(IdempotencyColumns, Base):
    """The Idempotency-Key of each creating request, with its answer (shared.idempotency)."""

    __tablename__ = "idempotency_keys"
