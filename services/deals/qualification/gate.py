"""The gate out of qualifying: a deal leaves it for presenting (by a stage move or a booked
meeting) only when its stored answers pass its framework; otherwise 409 naming the criteria.
The journey hears a pass as a positive verdict, and again when the request that passed is
repeated (just_passed)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.models import Deal
from services.deals.qualification import scoring as q
from services.deals.qualification.service import deal_framework, stored_answers
from shared.contracts.journey import Stage
from shared.errors import AppError, conflict

GATE_PASSED = "passed the qualification gate"  # how the deal's history names the pass


async def gate_failures(session: AsyncSession, deal: Deal) -> tuple[q.Verdict, list[str]]:
    """The verdict on the stored answers and the criteria that keep the deal from presenting."""
    framework = await deal_framework(session, deal)
    stored = await stored_answers(session, deal.id, framework) or {}
    verdict = q.evaluate(stored, framework)
    if verdict.qualified:
        return verdict, []
    failing = [c.key for c in framework.criteria if not verdict.passed[c.key]]
    return verdict, failing or ["score"]


async def pass_gate(session: AsyncSession, deal: Deal, target: str) -> None:
    """Move a qualifying deal to `target` as qualified, or raise the 409 of the failing gate.
    The caller tells the journey: it hears this as a positive qualification."""
    verdict, failing = await gate_failures(session, deal)
    if failing:
        raise _gate_error(deal, verdict, failing, f"moving to {target}")
    deal.qualified = True
    deal.qualification_score = verdict.score
    deal.qualification_reasons = list(verdict.reasons)
    history.move(deal, target, f"{GATE_PASSED} (score {verdict.score})", session)
    await session.flush()


async def just_passed(session: AsyncSession, deal: Deal) -> bool:
    """The deal's latest change of stage is its pass through the gate to the stage it is at:
    a request repeating that pass (the retry a 503 after its commit asks for) finds nothing
    left to move but must tell the journey the verdict again, the first telling may have
    failed. Anything that moved the deal since ends that."""
    last = await history.last_move(session, deal.id)
    return (
        last is not None
        and last.from_stage == Stage.QUALIFYING
        and last.to_stage == deal.stage
        and last.cause.startswith(GATE_PASSED)
    )


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
