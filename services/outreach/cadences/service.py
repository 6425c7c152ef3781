"""Outreach use cases. Each takes a session and never commits: the caller owns the transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.cadences import schemas
from services.outreach.cadences.templates import RenderLimits, render_problem
from shared.contracts.journey import CadenceSnapshot, CadenceStep, SendWindow, StepVariant
from shared.db import insert_or_winner
from shared.errors import AppError, not_found

# --- cadences ---------------------------------------------------------------------------------


def check_templates(data: schemas.CadenceIn, limits: RenderLimits) -> None:
    """Every templated field of every step (and variant) renders for a full sample prospect and
    for one with the optional values missing, within its channel's size; else a 422 naming each
    field (`steps[2].body`, `steps[0].variants[1].subject`)."""
    details: list[dict[str, Any]] = []
    for index, step in enumerate(data.steps):
        parts: list[tuple[str, schemas.StepIn | schemas.VariantIn]] = [(f"steps[{index}]", step)]
        parts += [(f"steps[{index}].variants[{i}]", v) for i, v in enumerate(step.variants)]
        for where, part in parts:
            for name in ("subject", "body", "html"):
                source = getattr(part, name)
                problem = render_problem(source, step.channel, name, limits) if source else None
                if problem is not None:
                    details.append({"field": f"{where}.{name}", "problem": problem})
    if details:
        message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        raise AppError(422, "template_error", message, details)


async def create_cadence(
    session: AsyncSession, data: schemas.CadenceIn, limits: RenderLimits | None = None
) -> schemas.Cadence:
    check_templates(data, limits or RenderLimits())
    cadence = models.Cadence(name=data.name, current_version=1)
    session.add(cadence)
    await session.flush()
    session.add(
        models.CadenceVersion(cadence_id=cadence.id, version=1, definition=data.model_dump())
    )
    await session.flush()
    return _cadence_out(cadence, data.model_dump())


async def update_cadence(
    session: AsyncSession,
    cadence_id: str,
    data: schemas.CadenceIn,
    limits: RenderLimits | None = None,
) -> schemas.Cadence:
    check_templates(data, limits or RenderLimits())
    cadence = await _get_cadence(session, cadence_id, lock=True)
    cadence.current_version += 1
    cadence.name = data.name
    cadence.updated_at = datetime.now(UTC)
    session.add(
        models.CadenceVersion(
            cadence_id=cadence.id, version=cadence.current_version, definition=data.model_dump()
        )
    )
    await session.flush()
    return _cadence_out(cadence, data.model_dump())


async def get_cadence(
    session: AsyncSession, cadence_id: str, version: int | None = None
) -> schemas.Cadence:
    cadence = await _get_cadence(session, cadence_id)
    row = await _version(session, cadence, version)
    return _cadence_out(cadence, row.definition, row.version)


async def list_cadences(session: AsyncSession) -> list[schemas.Cadence]:
    """Oldest first, each at its current version: one statement, not one per cadence."""
    c, v = models.Cadence, models.CadenceVersion
    rows = await session.execute(
        select(c, v.definition)
        .join(v, and_(v.cadence_id == c.id, v.version == c.current_version))
        .order_by(c.created_at, c.id)
    )
    return [_cadence_out(cadence, definition) for cadence, definition in rows.all()]


async def cadence_snapshot(
    session: AsyncSession, cadence_id: str, version: int | None = None
) -> CadenceSnapshot:
    cadence = await _get_cadence(session, cadence_id)
    row = await _version(session, cadence, version)
    return snapshot_from_definition(cadence.id, row.version, row.definition)


def snapshot_from_definition(cadence_id: str, version: int, d: dict[str, Any]) -> CadenceSnapshot:
    steps = sorted(d["steps"], key=lambda s: (s.get("business_days", 0), s["offset_seconds"]))
    return CadenceSnapshot(
        cadence_id=cadence_id,
        version=version,
        name=d["name"],
        steps=[
            CadenceStep(
                channel=s["channel"],
                offset_seconds=s["offset_seconds"],
                body=s["body"],
                subject=s.get("subject", ""),
                business_days=s.get("business_days", 0),
                condition=s.get("condition", ""),
                html=s.get("html", ""),
                variants=[StepVariant(**v) for v in s.get("variants", [])],
            )
            for s in steps
        ],
        send_window=SendWindow(**d["send_window"]),
        nurture_after_seconds=d["nurture_after_seconds"],
        qualification_reminder_seconds=d["qualification_reminder_seconds"],
        qualification_timeout_seconds=d["qualification_timeout_seconds"],
        meeting_reminder_seconds=d["meeting_reminder_seconds"],
        # versions saved before several reminders existed keep their single one
        meeting_reminders_seconds=list(d.get("meeting_reminders_seconds") or []),
        qualification_timeout_outcome=d.get("qualification_timeout_outcome", "disqualified"),
        referral_delay_seconds=d["referral_delay_seconds"],
        pause_company_on_reply=d.get("pause_company_on_reply", False),
        # versions saved before reminders existed get the defaults
        referral_reminders=d.get("referral_reminders", 2),
        referral_reminder_interval_seconds=d.get("referral_reminder_interval_seconds", 3 * 86400),
    )


async def _get_cadence(
    session: AsyncSession, cadence_id: str, lock: bool = False
) -> models.Cadence:
    query = select(models.Cadence).where(models.Cadence.id == cadence_id)
    if lock:
        query = query.with_for_update()
    cadence = await session.scalar(query)
    if cadence is None:
        raise not_found("cadence", cadence_id)
    return cadence


async def _version(
    session: AsyncSession, cadence: models.Cadence, version: int | None
) -> models.CadenceVersion:
    wanted = version or cadence.current_version
    row = await session.scalar(
        select(models.CadenceVersion).where(
            models.CadenceVersion.cadence_id == cadence.id,
            models.CadenceVersion.version == wanted,
        )
    )
    if row is None:
        raise not_found("cadence version", f"{cadence.id} v{wanted}")
    return row


def _cadence_out(
    cadence: models.Cadence, definition: dict[str, Any], version: int | None = None
) -> schemas.Cadence:
    return schemas.Cadence(
        **definition,
        id=cadence.id,
        version=version or cadence.current_version,
        created_at=cadence.created_at,
        updated_at=cadence.updated_at,
    )


# --- enrollments -------------------------------------------------------------------------------


def company_key(company: str) -> str:
    """One spelling per company: "ACME Inc." and "acme inc" are colleagues."""
    return " ".join(company.lower().replace(".", " ").replace(",", " ").split())


async def find_enrollment(session: AsyncSession, prospect_id: str) -> models.Enrollment | None:
    """The prospect's current (latest) run; the earlier runs are kept beside it."""
    e = models.Enrollment
    return await session.scalar(
        select(e).where(e.prospect_id == prospect_id).order_by(e.run.desc()).limit(1)
    )


async def add_enrollment(session: AsyncSession, row: models.Enrollment) -> models.Enrollment:
    """Insert, or return the enrollment a concurrent request inserted first."""
    added, _ = await insert_or_winner(
        session, row, lambda: find_enrollment(session, row.prospect_id)
    )
    return added


# --- messages -------------------------------------------------------------------------------------


async def list_messages(session: AsyncSession, prospect_id: str) -> list[models.Message]:
    rows = await session.scalars(
        select(models.Message)
        .where(models.Message.prospect_id == prospect_id)
        .order_by(models.Message.created_at, models.Message.channel)
    )
    return list(rows.all())


async def prospects_where(session: AsyncSession, **where: str) -> list[str]:
    """The prospects whose current enrollment has each column at its value (cadence_id,
    rep_id): an earlier run in this cadence is not their journey now."""
    query = select(models.Enrollment.prospect_id).where(models.Enrollment.current.is_(True))
    for column, value in where.items():
        query = query.where(getattr(models.Enrollment, column) == value)
    return list((await session.scalars(query)).all())
