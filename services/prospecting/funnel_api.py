"""Funnel routes: conversion, time in stage and drop-off per stage; the bottleneck stage.

Both read only the aggregate tables (funnel.py), never stage_history. Need an API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.prospecting import funnel, funnel_queue, schemas
from shared.auth import require_api_key
from shared.bounds import INT32_MAX
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["funnel"])

From = Annotated[
    date | None, Query(alias="from", description="first day (UTC), inclusive; default to - 30 days")
]
To = Annotated[date | None, Query(description="last day (UTC), exclusive; default tomorrow")]
CadenceId = Annotated[str | None, Query(max_length=32, description="only this cadence's changes")]
RepId = Annotated[str | None, Query(max_length=32, description="only this rep's changes")]
SourceFilter = Annotated[schemas.Source | None, Query(description="cold, referral, ...")]


@dataclass(frozen=True)
class Scope:
    """What both routes count over: the window of days and the cadence/rep/source filters (every
    change committed before the request in the counters: funnel_queue.counted)."""

    window: funnel.Window
    filters: funnel.Filters


def _scope(
    _counted: Annotated[None, Depends(funnel_queue.counted)],
    from_: From = None,
    to: To = None,
    cadence_id: CadenceId = None,
    rep_id: RepId = None,
    source: SourceFilter = None,
) -> Scope:
    return Scope(funnel.window(from_, to), funnel.Filters(cadence_id, rep_id, source))


FunnelScope = Annotated[Scope, Depends(_scope)]


@router.get("/funnel")
async def get_funnel(
    session: Session,
    scope: FunnelScope,
    group_by: Annotated[
        funnel.GroupBy | None,
        Query(description="one group per cadence, rep, source or month (UTC)"),
    ] = None,
) -> dict[str, Any]:
    """Per stage, for the changes made in [from, to): entered, left, advanced (to a later stage,
    won included), dropped (to lost, disqualified or nurture) with its causes, conversion
    (advanced / left), and the median and p90 time in stage of the stays that ended then."""
    return await funnel.funnel(session, scope.window, scope.filters, group_by)


@router.get("/funnel/bottleneck")
async def get_bottleneck(
    session: Session,
    scope: FunnelScope,
    periods: Annotated[
        int, Query(ge=1, le=24, description="benchmark: this many windows just before")
    ] = 4,
    min_left: Annotated[
        int,
        Query(
            ge=1, le=INT32_MAX, description="ignore stages fewer prospects left (in either window)"
        ),
    ] = 20,
) -> dict[str, Any]:
    """The stage whose conversion falls furthest below the team's own trailing benchmark."""
    return await funnel.bottleneck(session, scope.window, scope.filters, periods, min_left)
