"""The pipeline as CSV: every deal GET /deals would list with the same filters (and a rep),
newest first, streamed page by page (shared.csv_export); ops and admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import schemas
from services.deals.core import service as svc
from shared.auth import require_api_key
from shared.csv_export import csv_response, paged_rows
from shared.ids import IdFilter

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["exports"])

DEAL_COLUMNS = (
    "id",
    "prospect_id",
    "rep_id",
    "source",
    "stage",
    "qualified",
    "qualification_score",
    "framework",
    "value",
    "currency",
    "expected_close_date",
    "segment",
    "decision_deadline",
    "close_reason_code",
    "close_reason",
    "stage_before_close",
    "closed_at",
    "created_at",
    "updated_at",
)


@router.get("/exports/deals.csv", response_class=StreamingResponse)
async def export_deals(
    request: Request,
    prospect_id: IdFilter = None,
    stage: schemas.DealStage | None = None,
    rep_id: IdFilter = None,
) -> StreamingResponse:
    size: int = request.app.state.settings.export_page_size

    async def page(
        session: AsyncSession, last: tuple[datetime, str] | None
    ) -> tuple[list[list[Any]], Any]:
        # after the previous page's last deal (its created_at and id, not its rank): deals opened
        # or erased while the export streams shift no page, so none is repeated or skipped
        deals = await svc.list_deals(
            session, prospect_id=prospect_id, stage=stage, rep_id=rep_id, limit=size, anchor=last
        )
        rows = [[getattr(d, c) for c in DEAL_COLUMNS] for d in deals]
        return rows, ((deals[-1].created_at, deals[-1].id) if len(deals) == size else None)

    return csv_response("deals.csv", DEAL_COLUMNS, paged_rows(request.app.state.sessions, page))
