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

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.deals.core import history
from services.deals.models import (
    CLOSED_STAGES,
    DEAL_STAGES,
    CloseReason,
    Deal,
    Meeting,
    Objection,
    ObjectionCategory,
    QualificationAnswer,
    QualificationFramework,
    utcnow,
)
from services.deals.playbook import matching as pb
from services.deals.playbook import ranking as obj
from services.deals.qualification import framework_json as fws
from services.deals.qualification import scoring as q
from shared.contracts.journey import OpenDealRequest, Stage
from shared.errors import AppError, conflict, invalid, not_found

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
            selectinload(Deal.answers),
            selectinload(Deal.meetings),
            selectinload(Deal.objections),
            selectinload(Deal.history),
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
    history.opened(deal, req.cause, session)
    await session.flush()
    return deal


async def expire_qualification(session: AsyncSession, deal_id: str) -> Deal:
    """Disqualify a deal still waiting for its qualification; any recorded outcome stands."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage == Stage.QUALIFYING:
        history.move(deal, Stage.DISQUALIFIED, QUALIFICATION_TIMEOUT, session)
        deal.qualified = False
        deal.qualification_reasons = [QUALIFICATION_TIMEOUT]
        deal.close_reason = QUALIFICATION_TIMEOUT
        deal.closed_at = utcnow()
        await session.flush()
    return deal


TIMEOUT_OUTCOMES = (Stage.DISQUALIFIED, Stage.NURTURE)


async def time_out_qualification(
    session: AsyncSession, deal_id: str, outcome: str, cause: str
) -> Deal:
    """The cadence's outcome for a deal nobody qualified in time (disqualified or nurture),
    recorded with its cause; a verdict recorded before the deadline stands."""
    if outcome not in TIMEOUT_OUTCOMES:
        raise invalid("outcome", f"must be one of {', '.join(TIMEOUT_OUTCOMES)}, not {outcome!r}")
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage == Stage.QUALIFYING:
        history.move(deal, outcome, cause, session)
        deal.qualified = False
        deal.qualification_reasons = [cause]
        deal.close_reason = cause
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
    *,
    partial: bool = False,
) -> QualificationOutcome:
    """Score the deal's answers with its framework; decide unless `partial`.

    Answers add to the ones stored earlier (partial submissions), so a rep can fill the
    framework in over several calls and the gate judges the whole.
    """
    deal = await get_deal(session, deal_id, lock=True)
    framework = await deal_framework(session, deal)
    stored = await _stored_answers(session, deal.id, framework.name) or {}
    try:
        verdict = q.evaluate({**stored, **answers}, framework)
    except q.AnswerError as err:
        raise invalid(f"answers.{err.key}", err.problem) from err

    if deal.stage != Stage.QUALIFYING:
        # A client retrying after "stored, but the journey could not be told" sends the same
        # answers again: answer as before so the caller can signal the journey once more.
        if not partial and stored and stored == verdict.answers and deal.qualified is not None:
            replay = q.Verdict(
                bool(deal.qualified),
                deal.qualification_score or 0,
                list(deal.qualification_reasons),
            )
            return QualificationOutcome(deal, replay, replayed=True)
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: qualification is recorded while qualifying",
            [{"field": "stage", "problem": deal.stage}],
        )

    await _store_answers(session, deal, framework, verdict)
    deal.qualification_score = verdict.score
    deal.qualification_reasons = list(verdict.reasons)
    if partial:
        await session.flush()
        return QualificationOutcome(deal, verdict, replayed=False)
    deal.qualified = verdict.qualified
    if verdict.qualified:
        history.move(deal, Stage.PRESENTING, f"qualified (score {verdict.score})", session)
    else:
        history.move(
            deal, Stage.DISQUALIFIED, "not qualified: " + "; ".join(verdict.reasons), session
        )
        deal.close_reason = "not qualified: " + "; ".join(verdict.reasons)
        deal.closed_at = utcnow()
    await session.flush()
    return QualificationOutcome(deal, verdict, replayed=False)


async def _store_answers(
    session: AsyncSession, deal: Deal, framework: q.Framework, verdict: q.Verdict
) -> None:
    # one row per criterion of the current framework; rows of another framework are replaced
    await session.execute(delete(QualificationAnswer).where(QualificationAnswer.deal_id == deal.id))
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


# --- the gate to presenting ---------------------------------------------------------------------


async def gate_failures(session: AsyncSession, deal: Deal) -> tuple[q.Verdict, list[str]]:
    """The verdict on the stored answers and the criteria that keep the deal from presenting."""
    framework = await deal_framework(session, deal)
    stored = await _stored_answers(session, deal.id, framework.name) or {}
    verdict = q.evaluate(stored, framework)
    if verdict.qualified:
        return verdict, []
    failing = [c.key for c in framework.criteria if not verdict.passed[c.key]]
    return verdict, failing or ["score"]


def _gate_error(deal: Deal, verdict: q.Verdict, failing: list[str], action: str) -> AppError:
    details = [
        {"field": f"qualification.{key}", "problem": _reason_for(key, verdict)} for key in failing
    ]
    return conflict(
        "invalid_stage",
        f"deal {deal.id} is qualifying and fails the qualification gate ({action} needs it "
        f"to pass): " + "; ".join(d["field"].removeprefix("qualification.") for d in details),
        details,
    )


def _reason_for(key: str, verdict: q.Verdict) -> str:
    if key == "score":
        return f"score {verdict.score} is below the framework's pass score"
    prefix = f"{key}: "
    found = next((r for r in verdict.reasons if r.startswith(prefix)), None)
    return found.removeprefix(prefix) if found else "failing"


async def move_stage(session: AsyncSession, deal_id: str, target: str) -> tuple[Deal, bool]:
    """Move an open deal forward; (deal, passed_gate) where passed_gate means it just left
    qualifying, which the journey hears as a positive qualification."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.is_closed:
        _require_stage(deal, (), "moving")
    if deal.stage == target:
        return deal, False
    if deal.stage == Stage.QUALIFYING:
        verdict, failing = await gate_failures(session, deal)
        if failing:
            raise _gate_error(deal, verdict, failing, f"moving to {target}")
        deal.qualified = True
        deal.qualification_score = verdict.score
        deal.qualification_reasons = list(verdict.reasons)
        history.move(
            deal, target, f"passed the qualification gate (score {verdict.score})", session
        )
        await session.flush()
        return deal, True
    history.move(deal, target, "moved by the rep", session)
    await session.flush()
    return deal, False


# --- frameworks ---------------------------------------------------------------------------------


async def deal_framework(session: AsyncSession, deal: Deal) -> q.Framework:
    return await get_framework(session, deal.framework or q.DEFAULT_FRAMEWORK.name)


async def get_framework(session: AsyncSession, name: str) -> q.Framework:
    builtin = q.BUILTIN_FRAMEWORKS.get(name)
    if builtin is not None:
        return builtin
    row = await _find_framework(session, name)
    if row is None:
        raise not_found("framework", name)
    return fws.framework_from_spec(row.name, row.label, row.pass_score, row.criteria)


async def _find_framework(session: AsyncSession, name: str) -> QualificationFramework | None:
    stmt = select(QualificationFramework).where(QualificationFramework.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_frameworks(session: AsyncSession) -> list[dict[str, Any]]:
    out = [fws.describe(fw, builtin=True) for fw in q.BUILTIN_FRAMEWORKS.values()]
    rows = (
        await session.execute(select(QualificationFramework).order_by(QualificationFramework.name))
    ).scalars()
    for row in rows:
        fw = fws.framework_from_spec(row.name, row.label, row.pass_score, row.criteria)
        out.append(fws.describe(fw, builtin=False))
    return out


async def describe_framework(session: AsyncSession, name: str) -> dict[str, Any]:
    return fws.describe(await get_framework(session, name), builtin=name in q.BUILTIN_FRAMEWORKS)


async def save_framework(
    session: AsyncSession,
    name: str,
    label: str,
    pass_score: int,
    criteria: list[dict[str, Any]],
    *,
    create: bool,
) -> dict[str, Any]:
    if name in q.BUILTIN_FRAMEWORKS:
        raise conflict(
            "builtin_framework",
            f"{name} is built in and cannot be changed; create a custom framework instead",
            [{"field": "name", "problem": "built in"}],
        )
    row = await _find_framework(session, name)
    if create and row is not None:
        raise conflict(
            "framework_exists",
            f"framework {name} exists; PUT /frameworks/{name} replaces it",
            [{"field": "name", "problem": "exists"}],
        )
    if not create and row is None:
        raise not_found("framework", name)
    if row is None:
        row = QualificationFramework(name=name)
        session.add(row)
    row.label, row.pass_score, row.criteria = label, pass_score, criteria
    await session.flush()
    fw = fws.framework_from_spec(name, label, pass_score, criteria)
    return fws.describe(fw, builtin=False)


async def _stored_answers(
    session: AsyncSession, deal_id: str, framework: str
) -> dict[str, Any] | None:
    rows = (
        await session.execute(
            select(QualificationAnswer).where(
                QualificationAnswer.deal_id == deal_id, QualificationAnswer.framework == framework
            )
        )
    ).scalars()
    stored = list(rows)
    if not stored:
        return None
    return {r.criterion: r.answer for r in stored if r.answer is not None}


# --- meetings -----------------------------------------------------------------------------------


async def schedule_meeting(
    session: AsyncSession, deal_id: str, starts_at: datetime, title: str, duration_minutes: int
) -> tuple[Deal, Meeting, bool]:
    """(deal, meeting, passed_gate): passed_gate when the meeting took the deal out of
    qualifying, which the journey must hear as a qualification first."""
    deal = await get_deal(session, deal_id, lock=True)
    passed_gate = False
    if deal.stage == Stage.QUALIFYING:
        # a meeting means presenting: only through the gate
        deal, passed_gate = await move_stage(session, deal_id, Stage.PRESENTING)
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
    return deal, meeting, passed_gate


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
    session: AsyncSession,
    category: str,
    label: str | None,
    triggers: list[str],
    answers: list[str],
    stage_answers: dict[str, list[str]] | None = None,
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
    entry.stage_answers = {k: list(v) for k, v in (stage_answers or {}).items() if v}
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
    ranked: list[obj.ResponseStats]


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

    heard_at = deal.stage
    objection = Objection(deal_id=deal.id, category=match.category, text=text, stage=heard_at)
    session.add(objection)
    if deal.stage == Stage.PRESENTING:
        history.move(deal, Stage.OBJECTIONS, f"objection: {match.category}", session)
    await session.flush()
    entry = await _find_entry(session, match.category)
    ranked = await obj.ranked_responses(session, entry, match.category, heard_at)
    answers = [r.response for r in ranked]
    return LoggedObjection(deal, objection, answers, match.triggers, ranked)


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
    reason_code: str | None = None,
) -> CloseOutcome:
    deal = await get_deal(session, deal_id, lock=True)
    outcome = Stage.WON if won else Stage.LOST
    if reason_code is not None:
        allowed = [r.code for r in await list_close_reasons(session) if r.outcome == outcome]
        if reason_code not in allowed:
            raise invalid(
                "reason_code",
                f"unknown {outcome} reason {reason_code!r}; allowed: " + ", ".join(allowed),
            )
    if (
        deal.stage in CLOSED_STAGES
        and _same_close(deal, outcome, reason, value, currency)
        and (reason_code is None or deal.close_reason_code == reason_code)
    ):
        # the retry of a close whose signal failed: answer again, write nothing
        return CloseOutcome(deal, replayed=True)
    _require_stage(deal, CLOSABLE_STAGES, "closing")
    if value is not None and currency is None and deal.currency is None:
        raise invalid("currency", "required when value is given")
    deal.stage_before_close = deal.stage
    history.move(deal, outcome, f"closed {outcome}: {reason}", session)
    deal.close_reason = reason
    deal.close_reason_code = reason_code
    deal.closed_at = utcnow()
    if value is not None:
        deal.value = value
    if currency is not None:
        deal.currency = currency
    await session.flush()
    return CloseOutcome(deal, replayed=False)


async def reopen_deal(session: AsyncSession, deal_id: str) -> Deal:
    """Back to the stage before closing. The journey is NOT told: a finished journey stays
    finished (its referral follow-up may already have run), the deal is worked by hand."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage not in (Stage.WON, Stage.LOST) or deal.stage_before_close is None:
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: only a won or lost deal can be reopened",
            [{"field": "stage", "problem": deal.stage}],
        )
    history.move(deal, deal.stage_before_close, "reopened", session)
    deal.stage_before_close = None
    deal.close_reason = None
    deal.close_reason_code = None
    deal.closed_at = None
    await session.flush()
    return deal


async def patch_deal(session: AsyncSession, deal_id: str, changes: dict[str, Any]) -> Deal:
    deal = await get_deal(session, deal_id, lock=True)
    if deal.is_closed:
        _require_stage(deal, (), "editing")
    if "framework" in changes:
        name = changes["framework"] or q.DEFAULT_FRAMEWORK.name
        if name != (deal.framework or q.DEFAULT_FRAMEWORK.name):
            if deal.stage != Stage.QUALIFYING:
                raise conflict(
                    "invalid_stage",
                    f"deal {deal.id} is {deal.stage}: the framework is chosen while qualifying",
                    [{"field": "stage", "problem": deal.stage}],
                )
            try:
                await get_framework(session, name)
            except AppError as err:
                raise invalid("framework", f"unknown framework {name!r}") from err
            deal.framework = name
    if changes.get("value") is not None and not (changes.get("currency") or deal.currency):
        raise invalid("currency", "required when value is given")
    for key in ("value", "currency", "expected_close_date", "segment", "decision_deadline"):
        if key in changes:
            setattr(deal, key, changes[key])
    await session.flush()
    return deal


# --- close reasons ------------------------------------------------------------------------------


async def list_close_reasons(session: AsyncSession) -> Sequence[CloseReason]:
    stmt = select(CloseReason).order_by(CloseReason.outcome.desc(), CloseReason.position)
    return (await session.execute(stmt)).scalars().all()


async def put_close_reasons(
    session: AsyncSession, reasons: list[tuple[str, str, str]]
) -> Sequence[CloseReason]:
    """Replace the list with (outcome, code, label) rows; closed deals keep their codes."""
    await session.execute(delete(CloseReason))
    for position, (outcome, code, label) in enumerate(reasons):
        session.add(CloseReason(outcome=outcome, code=code, label=label, position=position))
    await session.flush()
    return await list_close_reasons(session)


# --- pipeline -----------------------------------------------------------------------------------


@dataclass
class PipelineRow:
    stage: str
    count: int
    value: dict[str, Decimal]


async def pipeline(session: AsyncSession, rep_id: str | None = None) -> list[PipelineRow]:
    stmt = select(Deal.stage, Deal.currency, func.count(), func.sum(Deal.value)).group_by(
        Deal.stage, Deal.currency
    )
    if rep_id is not None:
        stmt = stmt.where(Deal.rep_id == rep_id)
    rows = {stage: PipelineRow(stage, 0, {}) for stage in DEAL_STAGES}
    for stage, currency, count, total in (await session.execute(stmt)).all():
        row = rows[stage]
        row.count += count
        if currency is not None and total is not None:
            # SQLite sums NUMERIC as a float: back to cents exactly
            row.value[currency] = Decimal(str(total)).quantize(Decimal("0.01"))
    return list(rows.values())


def _same_close(
    deal: Deal, outcome: str, reason: str, value: Decimal | None, currency: str | None
) -> bool:
    return (
        deal.stage == outcome
        and deal.close_reason == reason
        and (value is None or deal.value == value)
        and (currency is None or deal.currency == currency)
    )
