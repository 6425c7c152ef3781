"""What the rep reads before a meeting, and what is still open when the decision is due.

The brief: the prospect's qualification answers (text answers first: their problem in their own
words), company facts from the journey's snapshot, and the objections most often heard in the
deal's segment with their best-ranked responses (the ranking of playbook/ranking.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.service import get_deal
from services.deals.models import Deal, Objection, ObjectionOutcome
from services.deals.playbook.ranking import best_response
from services.deals.qualification.service import deal_framework, stored_answers
from shared.contracts.journey import Contact, OpenObjection, Stage

TOP_OBJECTIONS = 3


@dataclass(frozen=True)
class Brief:
    answers: list[tuple[str, str]]  # (question, answer), text answers first
    facts: list[tuple[str, str]]  # (label, value)
    segment: str  # the segment the objections come from ("" = every deal)
    objections: list[tuple[str, int, str]]  # (category, times heard, best response)

    def body(self) -> str:
        lines = ["What they told us when qualifying:"]
        lines += [f"- {q} {a}" for q, a in self.answers] or ["- (no answers recorded)"]
        lines.append("Company facts:")
        lines += [f"- {label}: {value}" for label, value in self.facts] or ["- (none known)"]
        where = f"in segment {self.segment}" if self.segment else "across all deals"
        lines.append(f"Objections heard most often {where}, with the best-ranked response:")
        lines += [
            f"- {cat} (heard {n}x): {best or '(no prepared response)'}"
            for cat, n, best in self.objections
        ] or ["- (none heard yet)"]
        return "\n".join(lines)

    def context(self) -> dict[str, str]:
        """Flat strings (the rep task's context is str -> str)."""
        out = {f"answer.{i}": f"{q} {a}" for i, (q, a) in enumerate(self.answers)}
        out |= {f"fact.{label}": value for label, value in self.facts}
        out |= {f"objection.{cat}": best for cat, _n, best in self.objections}
        if self.segment:
            out["segment"] = self.segment
        return out


def company_facts(contact: Contact) -> list[tuple[str, str]]:
    facts = [
        ("company", contact.company),
        ("title", contact.title),
        ("industry", contact.industry),
        ("company size", str(contact.company_size) if contact.company_size is not None else ""),
        ("country", contact.country),
        ("time zone", contact.timezone),
    ]
    return [(label, value) for label, value in facts if value]


async def build(session: AsyncSession, deal_id: str, contact: Contact) -> Brief:
    deal = await get_deal(session, deal_id)
    framework = await deal_framework(session, deal)
    stored = await stored_answers(session, deal.id, framework) or {}
    answers: list[tuple[int, str, str]] = []
    for criterion in framework.criteria:
        if criterion.key not in stored:
            continue
        value = stored[criterion.key]
        # free text is the prospect's own words: it leads
        rank = 0 if isinstance(value, str) and criterion.answer_type == "text" else 1
        answers.append((rank, criterion.question, _answer_text(value)))
    answers.sort(key=lambda a: a[0])
    segment = deal.segment or ""
    return Brief(
        answers=[(q, a) for _, q, a in answers],
        facts=company_facts(contact),
        segment=segment,
        objections=await _frequent_objections(session, deal.segment),
    )


def _answer_text(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


async def _frequent_objections(
    session: AsyncSession, segment: str | None
) -> list[tuple[str, int, str]]:
    count = func.count(Objection.id)
    stmt = (
        select(Objection.category, count)
        .join(Deal, Deal.id == Objection.deal_id)
        .group_by(Objection.category)
        .order_by(count.desc(), Objection.category)
        .limit(TOP_OBJECTIONS)
    )
    if segment:
        stmt = stmt.where(Deal.segment == segment)
    out = []
    for category, n in (await session.execute(stmt)).all():
        out.append((category, int(n), await best_response(session, category, Stage.PRESENTING)))
    return out


async def open_objections(session: AsyncSession, deal_id: str) -> tuple[Deal, list[OpenObjection]]:
    """The deal's objections no recorded outcome resolved, oldest first, each with the response
    ranked best for its category at the stage it was heard."""
    deal = await get_deal(session, deal_id)
    resolved = select(ObjectionOutcome.objection_id).where(ObjectionOutcome.resolved.is_(True))
    stmt = (
        select(Objection)
        .where(Objection.deal_id == deal.id, Objection.id.not_in(resolved))
        .order_by(Objection.created_at, Objection.id)
    )
    out = []
    for o in (await session.execute(stmt)).scalars():
        best = await best_response(session, o.category, o.stage)
        out.append(OpenObjection(o.id, o.category, o.text, best))
    return deal, out
