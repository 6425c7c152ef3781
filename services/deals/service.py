"""Use cases of the deals service. Each takes a session and never commits (the caller does).

Writes lock the deal row (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer anyway),
so a request racing the journey's qualification timeout sees one outcome, not both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.deals import playbook as pb
from services.deals import qualification as q
from services.deals.models import (
    CLOSED_STAGES,
    Deal,
    Meeting,
    Objection,
    ObjectionCategory,
    QualificationAnswer,
    utcnow,
)
from shared.contracts.journey import OpenDealRequest, Stage
from shared.errors import conflict, invalid, not_found

MEETING_STAGES = (Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING)
OBJECTION_STAGES = MEETING_STAGES
CLOSABLE_STAGES = MEETING_STAGES
QUALIFICATION_TIMEOUT = "qualification timeout"


# --- reading ------------------------------------------------------------------------------------


async def get_deal(
    session: AsyncSession, deal_id: str, *, detail: bool = False, lock: bool = False
) -> Deal:
    stmt = select(Deal).where(Deal.id == deal_id)
    if detail:
        stmt = stmt.options(
            selectinload(Deal.answers), selectinload(Deal.meetings), selectinload(Deal.objections)
        )
    if lock:
        stmt = stmt.with_for_update()
    deal = (await session.execute(stmt)).scalar_one_or_none()
    if deal is None:
        raise not_found("deal", deal_id)
    return deal


async def list_deals(
    session: AsyncSession,
    *,
    prospect_id: str | None = None,
    stage: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Deal]:
    stmt = select(Deal).order_by(Deal.created_at.desc(), Deal.id).limit(limit).offset(offset)
    if prospect_id is not None:
        stmt = stmt.where(Deal.prospect_id == prospect_id)
    if stage is not None:
        stmt = stmt.where(Deal.stage == stage)
    return (await session.execute(stmt)).scalars().all()


def _require_stage(deal: Deal, allowed: Sequence[str], action: str) -> None:
    if deal.is_closed:
        raise conflict(
            "already_closed",
            f"deal {deal.id} is already {deal.stage}",
            [{"field": "stage", "problem": deal.stage}],
        )
    if deal.stage not in allowed:
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: {action} needs it to be "
            + " or ".join(str(s) for s in allowed),
            [{"field": "stage", "problem": deal.stage}],
        )


# --- opening and the qualification deadline (journey activities) -------------------------------


async def find_deal_by_journey(session: AsyncSession, journey_id: str) -> Deal | None:
    stmt = select(Deal).where(Deal.journey_id == journey_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_deal(session: AsyncSession, req: OpenDealRequest) -> Deal:
    """The journey's deal, created on first call (a retry finds the same row)."""
    existing = await find_deal_by_journey(session, req.journey_id)
    if existing is not None:
        return existing
    deal = Deal(
        prospect_id=req.prospect_id,
        journey_id=req.journey_id,
        rep_id=req.rep_id,
        source=req.source,
        stage=Stage.QUALIFYING,
        qualification_reasons=[],
    )
    session.add(deal)
    await session.flush()
    return deal


async def expire_qualification(session: AsyncSession, deal_id: str) -> Deal:
    """Disqualify a deal still waiting for its qualification; any recorded outcome stands."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage == Stage.QUALIFYING:
        deal.stage = Stage.DISQUALIFIED
        deal.qualified = False
        deal.qualification_reasons = [QUALIFICATION_TIMEOUT]
        deal.close_reason = QUALIFICATION_TIMEOUT
        deal.closed_at = utcnow()
        await session.flush()
    return deal


# --- qualification ------------------------------------------------------------------------------


@dataclass
class QualificationOutcome:
    deal: Deal
    verdict: q.Verdict
    replayed: bool  # the same answers were already recorded: nothing written, answer again


async def record_qualification(
    session: AsyncSession,
    deal_id: str,
    answers: dict[str, Any],
    framework: q.Framework = q.DEFAULT_FRAMEWORK,
) -> QualificationOutcome:
    deal = await get_deal(session, deal_id, lock=True)
    try:
        verdict = q.evaluate(answers, framework)
    except q.AnswerError as err:
        raise invalid(f"answers.{err.key}", err.problem) from err

    if deal.stage != Stage.QUALIFYING:
        # A client retrying after "stored, but the journey could not be told" sends the same
        # answers again: answer as before so the caller can signal the journey once more.
        if (
            await _stored_answers(session, deal.id) == verdict.answers
            and deal.qualified is not None
        ):
            stored = q.Verdict(
                bool(deal.qualified),
                deal.qualification_score or 0,
                list(deal.qualification_reasons),
            )
            return QualificationOutcome(deal, stored, replayed=True)
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: qualification is recorded while qualifying",
            [{"field": "stage", "problem": deal.stage}],
        )

    for position, criterion in enumerate(framework.criteria):
        session.add(
            QualificationAnswer(
                deal_id=deal.id,
                framework=framework.name,
                criterion=criterion.key,
                position=position,
                answer=verdict.answers.get(criterion.key),
                passed=verdict.passed[criterion.key],
            )
        )
    deal.qualified = verdict.qualified
    deal.qualification_score = verdict.score
    deal.qualification_reasons = list(verdict.reasons)
    if verdict.qualified:
        deal.stage = Stage.PRESENTING
    else:
        deal.stage = Stage.DISQUALIFIED
        deal.close_reason = "not qualified: " + "; ".join(verdict.reasons)
        deal.closed_at = utcnow()
    await session.flush()
    return QualificationOutcome(deal, verdict, replayed=False)


async def _stored_answers(session: AsyncSession, deal_id: str) -> dict[str, Any] | None:
    rows = (
        await session.execute(
            select(QualificationAnswer).where(QualificationAnswer.deal_id == deal_id)
        )
    ).scalars()
    stored = list(rows)
    if not stored:
        return None
    return {r.criterion: r.answer for r in stored if r.answer is not None}


# --- meetings -----------------------------------------------------------------------------------


async def schedule_meeting(
    session: AsyncSession, deal_id: str, starts_at: datetime, title: str, duration_minutes: int
) -> tuple[Deal, Meeting]:
    deal = await get_deal(session, deal_id, lock=True)
    _require_stage(deal, MEETING_STAGES, "scheduling a meeting")
    meeting = Meeting(
        deal_id=deal.id,
        starts_at=starts_at,
        title=title,
        duration_minutes=duration_minutes,
        status="scheduled",
    )
    session.add(meeting)
    await session.flush()
    return deal, meeting


# --- playbook -----------------------------------------------------------------------------------


async def list_playbook(session: AsyncSession) -> Sequence[ObjectionCategory]:
    stmt = select(ObjectionCategory).order_by(ObjectionCategory.category)
    return (await session.execute(stmt)).scalars().all()


async def get_playbook_entry(session: AsyncSession, category: str) -> ObjectionCategory:
    entry = await _find_entry(session, category)
    if entry is None:
        raise not_found("playbook_category", category)
    return entry


async def _find_entry(session: AsyncSession, category: str) -> ObjectionCategory | None:
    stmt = select(ObjectionCategory).where(ObjectionCategory.category == category)
    return (await session.execute(stmt)).scalar_one_or_none()


async def put_playbook_entry(
    session: AsyncSession, category: str, label: str | None, triggers: list[str], answers: list[str]
) -> tuple[ObjectionCategory, bool]:
    """Create or replace a category; returns (entry, created)."""
    entry = await _find_entry(session, category)
    created = entry is None
    if entry is None:
        entry = ObjectionCategory(category=category)
        session.add(entry)
    entry.label = label or category.replace("_", " ").replace("-", " ").capitalize()
    entry.triggers = list(triggers)
    entry.answers = list(answers)
    await session.flush()
    return entry, created


async def delete_playbook_entry(session: AsyncSession, category: str) -> None:
    entry = await get_playbook_entry(session, category)
    await session.delete(entry)
    await session.flush()


# --- objections ---------------------------------------------------------------------------------


@dataclass
class LoggedObjection:
    deal: Deal
    objection: Objection
    answers: list[str]
    matched_triggers: list[str]


async def log_objection(
    session: AsyncSession, deal_id: str, text: str, category: str | None
) -> LoggedObjection:
    deal = await get_deal(session, deal_id, lock=True)
    _require_stage(deal, OBJECTION_STAGES, "logging an objection")
    entries = [
        pb.PlaybookCategory(e.category, e.triggers, e.answers) for e in await list_playbook(session)
    ]
    if category is None:
        match = pb.match_objection(text, entries)
    else:
        known = {e.category for e in entries}
        if category != pb.OTHER and category not in known:
            raise invalid(
                "category",
                f"unknown playbook category {category!r}; known: "
                + ", ".join(sorted(known | {pb.OTHER})),
            )
        match = pb.Match(category, pb.matching_triggers(text, _triggers_of(category, entries)))

    objection = Objection(deal_id=deal.id, category=match.category, text=text)
    session.add(objection)
    if deal.stage == Stage.PRESENTING:
        deal.stage = Stage.OBJECTIONS
    await session.flush()
    return LoggedObjection(deal, objection, pb.answers_for(match.category, entries), match.triggers)


def _triggers_of(category: str, entries: Sequence[pb.PlaybookCategory]) -> Sequence[str]:
    return next((e.triggers for e in entries if e.category == category), ())


# --- closing ------------------------------------------------------------------------------------


@dataclass
class CloseOutcome:
    deal: Deal
    replayed: bool


async def close_deal(
    session: AsyncSession,
    deal_id: str,
    *,
    won: bool,
    reason: str,
    value: Decimal | None,
    currency: str | None,
) -> CloseOutcome:
    deal = await get_deal(session, deal_id, lock=True)
    outcome = Stage.WON if won else Stage.LOST
    if deal.stage in CLOSED_STAGES and _same_close(deal, outcome, reason, value, currency):
        # the retry of a close whose signal failed: answer again, write nothing
        return CloseOutcome(deal, replayed=True)
    _require_stage(deal, CLOSABLE_STAGES, "closing")
    deal.stage = outcome
    deal.close_reason = reason
    deal.closed_at = utcnow()
    if value is not None:
        deal.value = value
    if currency is not None:
        deal.currency = currency
    await session.flush()
    return CloseOutcome(deal, replayed=False)


def _same_close(
    deal: Deal, outcome: str, reason: str, value: Decimal | None, currency: str | None
) -> bool:
    return (
        deal.stage == outcome
        and deal.close_reason == reason
        and (value is None or deal.value == value)
        and (currency is None or deal.currency == currency)
    )
