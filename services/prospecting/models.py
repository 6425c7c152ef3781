"""Prospecting's tables: reps, prospects, their stage history and the assignment cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

import shared.db
from shared.db import UTCDateTime, new_id, utcnow


class Base(shared.db.Base):
    __abstract__ = True
    metadata = MetaData()


class Rep(Base):
    __tablename__ = "reps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

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
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_stage_history_prospect", "prospect_id", "at"),)


class AssignmentCursor(Base):
    """One row per assignment strategy; locked while a prospect is assigned."""

    __tablename__ = "assignment_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_rep_id: Mapped[str | None] = mapped_column(String(32))
    last_rep_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    assigned: Mapped[int] = mapped_column(Integer, default=0)


class Icp(Base):
    """The ideal-customer profile: one row (id "default"), edited by ops."""

    __tablename__ = "icp"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


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
