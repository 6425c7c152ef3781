"""Use cases of closing: stage moves (through the qualification gate when qualifying), close
won or lost with a reason from the ops-edited list, reopen, and the pipeline. Each takes a
session and never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.core.service import QUALIFIED_STAGES, get_deal, require_stage
from services.deals.models import CLOSED_STAGES, DEAL_STAGES, CloseReason, Deal, EventOutbox
from services.deals.qualification.gate import just_passed, pass_gate
from shared.contracts.journey import Stage
from shared.db import utcnow
from shared.errors import conflict, invalid
from shared.events import DEAL_LOST, DEAL_WON, add_event

CLOSABLE_STAGES = QUALIFIED_STAGES


async def move_stage(session: AsyncSession, deal_id: str, target: str) -> tuple[Deal, bool]:
    """Move an open deal forward; (deal, passed_gate) where passed_gate means it left
    qualifying through the gate, which the journey hears as a positive qualification. A move
    to the stage the deal is at writes nothing: when the gate pass took it there and nothing
    has moved it since, it is the retry of that pass (after a 503 from its signals), and
    passed_gate is True again, so the journey hears everything the pass told it."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.is_closed:
        require_stage(deal, (), "moving")
    if deal.stage == target:
        return deal, await just_passed(session, deal)
    if deal.stage == Stage.QUALIFYING:
        await pass_gate(session, deal, target)
        return deal, True
    history.move(deal, target, "moved by the rep", session)
    await session.flush()
    return deal, False


# --- closing and reopening ----------------------------------------------------------------------


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
    require_stage(deal, CLOSABLE_STAGES, "closing")
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
    # the close (a reopened deal closed again is a new fact: its own closed_at)
    await add_event(
        session,
        EventOutbox,
        DEAL_WON if won else DEAL_LOST,
        f"{deal.id}:{utcnow().isoformat() if deal.closed_at is None else deal.closed_at.isoformat()}",
        {
            "deal_id": deal.id,
            "prospect_id": deal.prospect_id,
            "rep_id": deal.rep_id,
            "value": str(deal.value) if deal.value is not None else None,
            "currency": deal.currency,
            "reason_code": reason_code,
        },
    )
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


REOPENED = "reopened"


async def reopen_deal(session: AsyncSession, deal_id: str) -> tuple[Deal, bool]:
    """Back to the stage before closing (the API then tells the journey). With True: the deal
    was reopened already and nothing has moved it since, so this is a repeat that changes
    nothing here, for the journey's part (a 503 after the reopening's commit left it to do)."""
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage not in (Stage.WON, Stage.LOST) or deal.stage_before_close is None:
        if await history.last_move_cause(session, deal.id) == REOPENED:
            return deal, True
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: only a won or lost deal can be reopened (or a "
            "reopened one again, to repeat its journey's part, until something moves it)",
            [{"field": "stage", "problem": deal.stage}],
        )
    history.move(deal, deal.stage_before_close, REOPENED, session)
    deal.stage_before_close = None
    deal.close_reason = None
    deal.close_reason_code = None
    deal.closed_at = None
    await session.flush()
    return deal, False


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
    # keyed by the stage's text: the query reads plain strings (a Stage is equal to its text)
    rows: dict[str, PipelineRow] = {stage: PipelineRow(stage, 0, {}) for stage in DEAL_STAGES}
    for stage, currency, count, total in (await session.execute(stmt)).all():
        row = rows[stage]
        row.count += count
        if currency is not None and total is not None:
            # SQLite sums NUMERIC as a float: back to cents exactly
            row.value[currency] = Decimal(str(total)).quantize(Decimal("0.01"))
    return list(rows.values())
