"""Use cases of objections and the playbook: the ops-edited categories, an objection logged on a
deal (matched to a category, answered with the ranked responses), and the rep's outcome of a
response. Each takes a session and never commits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.core.service import QUALIFIED_STAGES, get_deal, require_stage
from services.deals.models import Deal, Objection, ObjectionCategory, ObjectionOutcome
from services.deals.playbook import matching as pb
from services.deals.playbook.ranking import (
    ResponseStats,
    all_responses,
    find_entry,
    ranked_responses,
)
from shared.contracts.journey import Stage
from shared.errors import invalid, not_found

OBJECTION_STAGES = QUALIFIED_STAGES


# --- the playbook -------------------------------------------------------------------------------


async def list_playbook(session: AsyncSession) -> Sequence[ObjectionCategory]:
    stmt = select(ObjectionCategory).order_by(ObjectionCategory.category)
    return (await session.execute(stmt)).scalars().all()


async def get_playbook_entry(session: AsyncSession, category: str) -> ObjectionCategory:
    entry = await find_entry(session, category)
    if entry is None:
        raise not_found("playbook_category", category)
    return entry


async def put_playbook_entry(
    session: AsyncSession,
    category: str,
    label: str | None,
    triggers: list[str],
    answers: list[str],
    stage_answers: dict[str, list[str]] | None = None,
) -> tuple[ObjectionCategory, bool]:
    """Create or replace a category; returns (entry, created)."""
    entry = await find_entry(session, category)
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
    ranked: list[ResponseStats]


async def log_objection(
    session: AsyncSession, deal_id: str, text: str, category: str | None
) -> LoggedObjection:
    deal = await get_deal(session, deal_id, lock=True)
    require_stage(deal, OBJECTION_STAGES, "logging an objection")
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

    objection = Objection(deal_id=deal.id, category=match.category, text=text, stage=deal.stage)
    session.add(objection)
    if deal.stage == Stage.PRESENTING:
        history.move(deal, Stage.OBJECTIONS, f"objection: {match.category}", session)
    await session.flush()
    return await _answered(session, deal, objection, match.triggers)


async def logged_objection(session: AsyncSession, objection_id: str) -> LoggedObjection:
    """An objection logged already, answered as when it was logged (the retry of a request
    whose signal failed after it was stored: shared/idempotency.py)."""
    objection = await session.get(Objection, objection_id)
    if objection is None:
        raise not_found("objection", objection_id)
    deal = await get_deal(session, objection.deal_id)
    entries = [
        pb.PlaybookCategory(e.category, e.triggers, e.answers) for e in await list_playbook(session)
    ]
    triggers = pb.matching_triggers(objection.text, _triggers_of(objection.category, entries))
    return await _answered(session, deal, objection, triggers)


async def _answered(
    session: AsyncSession, deal: Deal, objection: Objection, triggers: Sequence[str]
) -> LoggedObjection:
    """The objection with its prepared answers, ranked for the stage it was heard at."""
    entry = await find_entry(session, objection.category)
    ranked = await ranked_responses(session, entry, objection.category, objection.stage)
    answers = [r.response for r in ranked]
    return LoggedObjection(deal, objection, answers, list(triggers), ranked)


def _triggers_of(category: str, entries: Sequence[pb.PlaybookCategory]) -> Sequence[str]:
    return next((e.triggers for e in entries if e.category == category), ())


async def record_outcome(
    session: AsyncSession, objection_id: str, response: str, resolved: bool
) -> tuple[Objection, ObjectionOutcome]:
    """One outcome per (objection, response); recording it again replaces the verdict."""
    objection = await session.get(Objection, objection_id)
    if objection is None:
        raise not_found("objection", objection_id)
    entry = await find_entry(session, objection.category)
    allowed = all_responses(entry) if entry is not None else []
    text = response.strip()
    if text not in allowed:
        raise invalid(
            "response",
            f"not a prepared response of {objection.category!r}; prepared: "
            + (" | ".join(allowed) or "none"),
        )
    key = hashlib.sha256(text.encode()).hexdigest()
    stmt_o = select(ObjectionOutcome).where(
        ObjectionOutcome.objection_id == objection.id, ObjectionOutcome.response_key == key
    )
    outcome = (await session.execute(stmt_o)).scalar_one_or_none()
    if outcome is None:
        outcome = ObjectionOutcome(objection_id=objection.id, response_key=key, response=text)
        session.add(outcome)
    outcome.resolved = resolved
    await session.flush()
    return objection, outcome
