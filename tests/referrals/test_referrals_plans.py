"""The referral lists' pages and the analytics' window read referral_asks and referrals, tables
that grow with every won deal and every referral, through an index: never the whole table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.referrals import analytics, service
from services.referrals.models import Referral, ReferralAsk
from shared.db import create_engine, session_factory
from tests.support.plans import plans_of
from tests.support.settings import make_settings

END = datetime(2026, 11, 1, tzinfo=UTC)
Call = Callable[[AsyncSession], Awaitable[object]]
CALLS: dict[str, tuple[Call, tuple[str, ...]]] = {
    # name: (the code path, the indexes its statements must read through)
    "asks page": (
        lambda s: service.list_asks(s, None, after="ask1", limit=50),
        ("ix_referral_asks_page",),
    ),
    "a rep's asks page": (
        lambda s: service.list_asks(s, None, "rep1", after="ask1", limit=50),
        ("ix_referral_asks_rep_page",),
    ),
    "referrals page": (
        lambda s: service.list_referrals(s, None, after="ref1", limit=50),
        ("ix_referrals_page",),
    ),
    "analytics window": (  # the asks sent in it, the referrals made in it
        lambda s: analytics._local_counts(s, END - timedelta(days=30), END),
        ("ix_referral_asks_page", "ix_referrals_page"),
    ),
}


@pytest.mark.parametrize("name", CALLS)
async def test_lists_and_analytics_read_their_rows_through_an_index(
    name: str, tmp_path: Path, database_urls: dict[str, str]
) -> None:
    run, indexes = CALLS[name]
    engine = create_engine(make_settings(tmp_path, database_urls).database_url("referrals"))
    try:
        async with session_factory(engine)() as session:  # the anchors `after` names
            ask = ReferralAsk(
                id="ask1", token="t", client_prospect_id="c", journey_id="j", client_name="C",
                rep_id="rep1", cadence_id="cad", created_at=END - timedelta(days=1),
            )  # fmt: skip
            session.add(ask)
            await session.flush()
            session.add(
                Referral(id="ref1", ask_id="ask1", referrer_prospect_id="c", first_name="R")
            )
            await session.commit()
        plans = await plans_of(engine, run)
    finally:
        await engine.dispose()
    plan = "\n\n".join(plan for _, plan in plans)
    assert [i for i in indexes if i not in plan] == [], plans
