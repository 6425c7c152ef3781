"""Recording a deal's qualification: answers scored by the deal's framework, then a verdict.
Use cases take a session and never commit (the caller does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.core.service import get_deal
from services.deals.models import Deal, QualificationAnswer
from services.deals.qualification import scoring as q
from services.deals.qualification.frameworks import get_framework
from shared.contracts.journey import Stage
from shared.db import utcnow
from shared.errors import conflict, invalid


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
    stored = await stored_answers(session, deal.id, framework) or {}
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


async def deal_framework(session: AsyncSession, deal: Deal) -> q.Framework:
    return await get_framework(session, deal.framework or q.DEFAULT_FRAMEWORK.name)


async def stored_answers(
    session: AsyncSession, deal_id: str, framework: q.Framework
) -> dict[str, Any] | None:
    """The deal's answers under `framework` (criterion -> answer) that it takes as it is now
    (q.still_fitting); None when none is stored."""
    rows = (
        await session.execute(
            select(QualificationAnswer).where(
                QualificationAnswer.deal_id == deal_id,
                QualificationAnswer.framework == framework.name,
            )
        )
    ).scalars()
    stored = list(rows)
    if not stored:
        return None
    given = {r.criterion: r.answer for r in stored if r.answer is not None}
    return q.still_fitting(given, framework)


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
