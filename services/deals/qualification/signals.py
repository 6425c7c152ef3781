"""What the journey hears from qualification: the verdict, whichever route reached it (the
qualification itself, or a stage move or booked meeting that passed the gate)."""

from __future__ import annotations

from fastapi import Request

from services.deals.core.runs import signal_deal
from services.deals.models import Deal
from shared.audit import request_actor
from shared.contracts.journey import QualificationRecorded
from shared.contracts.names import Sig


async def signal_verdict(
    request: Request, deal: Deal, qualified: bool, reasons: list[str], actor: str = ""
) -> None:
    """`actor`: who passed the verdict; by default the request's key holder."""
    await signal_deal(
        request.app.state.temporal,
        deal,
        Sig.QUALIFICATION_RECORDED,
        QualificationRecorded(deal.id, qualified, reasons, actor or request_actor(request)),
    )


async def signal_gate_passed(request: Request, deal: Deal, actor: str = "") -> None:
    await signal_verdict(request, deal, True, list(deal.qualification_reasons), actor)
