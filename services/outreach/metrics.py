"""Outreach's business gauges on /metrics, read from its database at scrape (shared/metrics.py):
the send ledger, replies, opt-outs and rep tasks. Labels are channels and statuses, never an
address or a person."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.metrics import DbGauge, Rows
from shared.relay import utcnow


async def messages(session: AsyncSession) -> Rows:
    query = select(models.Message.channel, models.Message.status, func.count()).group_by(
        models.Message.channel, models.Message.status
    )
    return [((channel, status), float(n)) for channel, status, n in await session.execute(query)]


async def replies(session: AsyncSession) -> Rows:
    query = (
        select(models.Message.channel, func.count())
        .where(models.Message.replied_at.is_not(None))
        .group_by(models.Message.channel)
    )
    return [((channel,), float(n)) for channel, n in await session.execute(query)]


async def opt_outs(session: AsyncSession) -> Rows:
    query = select(models.Suppression.channel, func.count()).group_by(models.Suppression.channel)
    return [((channel,), float(n)) for channel, n in await session.execute(query)]


async def tasks_open(session: AsyncSession) -> Rows:
    query = select(func.count()).where(models.RepTask.status == "open")
    return [((), float(await session.scalar(query) or 0))]


async def tasks_overdue(session: AsyncSession) -> Rows:
    query = select(func.count()).where(
        models.RepTask.status == "open", models.RepTask.due_at < utcnow()
    )
    return [((), float(await session.scalar(query) or 0))]


GAUGES = (
    DbGauge(
        "messages",
        "send ledger rows by channel and status (pending, sending, submitted, delivered, "
        "bounced, failed, suppressed)",
        messages,
        ("channel", "status"),
    ),
    DbGauge("replies", "sent messages that got a reply, by channel", replies, ("channel",)),
    DbGauge(
        "opt_outs",
        "addresses suppressed (opt-out, bounce, complaint) by channel",
        opt_outs,
        ("channel",),
    ),
    DbGauge("tasks_open", "rep tasks open", tasks_open),
    DbGauge("tasks_overdue", "rep tasks open past their due time", tasks_overdue),
)
