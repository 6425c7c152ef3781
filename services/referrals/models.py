"""Referrals' tables: the asks sent to won clients and the people they refer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

import shared.db
from shared.audit import AuditColumns
from shared.db import UTCDateTime, new_id, utcnow
from shared.erasure import ErasedPersonColumns
from shared.idempotency import IdempotencyColumns


class Base(shared.db.Base):
    __abstract__ = True
    metadata = MetaData()


class ReferralAsk(Base):
    __tablename__ = "referral_asks"
    # the list's pages (all, or a rep's) and the analytics' window: index ranges in page order
    __table_args__ = (
        Index("ix_referral_asks_page", "created_at", "id"),
        Index("ix_referral_asks_rep_page", "rep_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    client_prospect_id: Mapped[str] = mapped_column(String(32), index=True)
    journey_id: Mapped[str] = mapped_column(String(200), unique=True)  # one ask per journey
    client_name: Mapped[str] = mapped_column(String(400))
    rep_id: Mapped[str | None] = mapped_column(String(32))
    cadence_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # set by the first submission of the public form: the link is single-use
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # set when the client was erased: the ask takes no more referrals, by its link or the API
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Referral(Base):
    __tablename__ = "referrals"
    # the list's pages and the analytics' window
    __table_args__ = (Index("ix_referrals_page", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ask_id: Mapped[str] = mapped_column(ForeignKey("referral_asks.id"), index=True)
    referrer_prospect_id: Mapped[str] = mapped_column(String(32), index=True)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    prospect_id: Mapped[str | None] = mapped_column(String(32))
    # set once the intake workflow is known to exist; until then the intake relay
    # (services.referrals.intakes) retries the start: its attempts, the last error, and when
    # it is due next (the lease of an attempt in flight, then the backoff)
    intake_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    intake_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    intake_last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    intake_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # when the referrer was thanked for this referral's first meeting, and for its win
    thanked_for_meeting_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    thanked_for_win_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    ask: Mapped[ReferralAsk] = relationship(lazy="raise")


class ErasedPerson(ErasedPersonColumns, Base):
    """The keyed digests of people erased on request (from the erasure order): a client naming
    one of them again stores nothing of them (services.referrals.service.erased_rows)."""

    __tablename__ = "erased_people"


class AuditEntry(AuditColumns, Base):
    """Who changed what through the API (shared.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = AuditColumns.indexes("audit_log")


class IdempotencyKey(IdempotencyColumns, Base):
    """The Idempotency-Key of each creating request, with its answer (shared.idempotency)."""

    __tablename__ = "idempotency_keys"
