"""Prospecting's tables: reps, prospects, their stage history and the assignment cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

import shared.db
from shared.audit import AuditColumns
from shared.db import UTCDateTime, new_id, utcnow
from shared.idempotency import IdempotencyColumns


class Base(shared.db.Base):
    __abstract__ = True
    metadata = MetaData()


class Rep(Base):
    __tablename__ = "reps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    # the rep's manager (another rep): told when a qualification runs past its deadline
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("reps.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # an inactive rep (left, on leave) gets no new prospects; theirs moved on when deactivated
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    __table_args__ = (Index("ix_reps_order", "created_at", "id"),)


class Prospect(Base):
    __tablename__ = "prospects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200), default="")
    # NULLs never collide, so these stay unique only among prospects that have one
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(20), default="cold")
    referrer_prospect_id: Mapped[str | None] = mapped_column(String(32), index=True)
    referral_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    rep_id: Mapped[str | None] = mapped_column(ForeignKey("reps.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20), default="prospecting")
    industry: Mapped[str] = mapped_column(String(200), default="")
    company_size: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str] = mapped_column(String(100), default="")
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fit_score: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str] = mapped_column(String(1), default="D")
    fit_explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # how the rep was chosen, or why nobody was (every rep of the territory at capacity)
    assignment_note: Mapped[str] = mapped_column(String(300), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    rep: Mapped[Rep | None] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_prospects_page", "created_at", "id"),
        Index("ix_prospects_stage_page", "stage", "created_at", "id"),
        Index("ix_prospects_tier_page", "tier", "created_at", "id"),
        Index("ix_prospects_fit_page", "fit_score", "id"),
        Index("ix_prospects_rep_page", "rep_id", "created_at", "id"),
    )


class StageHistory(Base):
    __tablename__ = "stage_history"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # unique per transition: a retried record_stage activity finds its row and stops
    key: Mapped[str] = mapped_column(String(200), unique=True)
    prospect_id: Mapped[str] = mapped_column(ForeignKey("prospects.id"))
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    cause: Mapped[str] = mapped_column(String(200))
    # who: a key holder or "journey" (the journey records most changes: shared.audit.actor_of)
    actor: Mapped[str] = mapped_column(String(120), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Denormalised at record time for the funnel (services/prospecting/funnel.py): what the
    # change is counted by, as it was then ("" = none/unknown), and the time spent in from_stage.
    cadence_id: Mapped[str] = mapped_column(String(32), default="")
    rep_id: Mapped[str] = mapped_column(String(32), default="")
    source: Mapped[str] = mapped_column(String(20), default="cold")
    seconds_in_stage: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_stage_history_prospect", "prospect_id", "at"),)


class FunnelPending(Base):
    """A recorded stage change not yet added to the funnel's aggregates (funnel_queue.py)."""

    __tablename__ = "funnel_pending"

    stage_history_id: Mapped[str] = mapped_column(
        ForeignKey("stage_history.id", ondelete="CASCADE"), primary_key=True
    )
    # read by /metrics (closeflow_relay_oldest_age_seconds{relay="funnel"}): a stalled roll-up shows
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FunnelCount(Base):
    """Stage changes counted per period x transition x (drop-off) cause x cadence x rep x source.

    Each change adds 1 to 24 rows: grain "d" (period = YYYY-MM-DD), "b" (its 8-day block of the
    month, period = the block's first day) and "m" (YYYY-MM), each with every dimension either
    its value or "*" (all), so a query reads only the rows of its own filters.
    """

    __tablename__ = "funnel_counts"

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    cadence_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rep_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    from_stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    to_stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    cause: Mapped[str] = mapped_column(String(200), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


# Time-in-stage histogram width: bucket 0 holds stays under 1 s, bucket b >= 1 the stays in
# [2**((b-1)/8), 2**(b/8)) seconds, the last one everything from 2**25 s (388 days) on.
HISTOGRAM_BUCKETS = 202


class FunnelDuration(Base):
    """Time-in-stage histogram of the stays in a stage that ended in the period (funnel.py).

    One row per period x stage x cadence x rep x source (same grains and "*" as FunnelCount)
    with one column per bucket (b0..b201), not one row per bucket: a query then reads a row per
    stage and sums columns, instead of reading and grouping a row for every bucket present.
    """

    __table__ = Table(
        "funnel_durations",
        Base.metadata,
        Column("grain", String(1), primary_key=True),
        Column("cadence_id", String(32), primary_key=True),
        Column("rep_id", String(32), primary_key=True),
        Column("source", String(20), primary_key=True),
        Column("period", String(10), primary_key=True),
        Column("stage", String(20), primary_key=True),
        *(
            Column(f"b{i}", BigInteger, nullable=False, default=0, server_default="0")
            for i in range(HISTOGRAM_BUCKETS)
        ),
    )


class AssignmentCursor(Base):
    """One row per assignment strategy; locked while a prospect is assigned."""

    __tablename__ = "assignment_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_rep_id: Mapped[str | None] = mapped_column(String(32))
    last_rep_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    assigned: Mapped[int] = mapped_column(Integer, default=0)


class OpsRules:
    """Rules ops edit as one versioned document: one row (id "default") per table."""

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Icp(OpsRules, Base):
    """The ideal-customer profile."""

    __tablename__ = "icp"


class Import(Base):
    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    format: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="running")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    merged: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ImportRefusal(Base):
    __tablename__ = "import_refusals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    import_id: Mapped[str] = mapped_column(ForeignKey("imports.id"))
    line: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))

    __table_args__ = (Index("ix_import_refusals_import", "import_id", "line"),)


class AssignmentRules(OpsRules, Base):
    """Territories and rep capacities."""

    __tablename__ = "assignment_rules"


class OutboxMessage(Base):
    """A call to another service, written in the transaction that decided it and relayed
    (services.prospecting.outbox) until the service answers 2xx: a service that is down gets
    it later, never not at all. Targets are idempotent, so a repeat is harmless."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # rep_move | rep_tasks | rep_standing | erasure | auto_enroll | event | contact_change
    kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(20))  # outreach | deals | referrals
    path: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # what the message is about: the prospect (rep moves), the rep (rep_tasks, rep_standing)
    # or the erasure
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    # pending -> done | failed (refused with a 4xx) | superseded (a newer move of the prospect)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_status_created_at", "status", "created_at"),  # the prune
    )


class Erasure(Base):
    """A right-to-erasure request. The prospect's rows are gone; what stays are the keyed
    digests of the email and phone (shared.erasure), which refuse the person coming back."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prospect_id: Mapped[str] = mapped_column(String(32), unique=True)
    email_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(12), default="in_progress")  # -> done
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IssuedKey(Base):
    """An API key an admin issued through the API (services.prospecting.api_keys). Only the
    SHA-256 of the key is stored: the key is shown once, when it is made."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(10))  # admin | ops | rep
    rep_id: Mapped[str | None] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the key's first characters, to recognise it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(AuditColumns, Base):
    """Who changed what through the API (shared.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = AuditColumns.indexes("audit_log")


class IdempotencyKey(IdempotencyColumns, Base):
    """The Idempotency-Key of each creating request, with its answer (shared.idempotency)."""

    __tablename__ = "idempotency_keys"
