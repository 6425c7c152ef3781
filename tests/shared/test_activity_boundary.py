"""Every service's activities go through the one boundary (shared.activity_boundary): the
errors a retry cannot fix reach the journey as the non-retryable types it lists, anything else
stays retryable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from services.deals.activities import activities_for as deals_activities
from services.outreach.activities import activities_for as outreach_activities
from services.outreach.activities import close_activities
from services.prospecting.activities import activities_for as prospecting_activities
from services.referrals.activities import activities_for as referrals_activities
from shared.activity_boundary import MARK, activity_boundary
from shared.contracts.errors import CONFLICT, INVALID_INPUT, NON_RETRYABLE, NOT_FOUND
from shared.contracts.journey import (
    CadenceRef,
    DealRef,
    ProspectRef,
    QualificationTimeout,
    ReferralAskRef,
    ReferrerThanks,
    RepRef,
)
from shared.db import create_engine, session_factory
from shared.errors import AppError, conflict, invalid, not_found
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.settings import make_settings

Factory = Callable[[Settings, async_sessionmaker[AsyncSession]], list[Callable[..., Any]]]
SERVICES: dict[str, Factory] = {
    "prospecting": prospecting_activities,
    "outreach": outreach_activities,  # type: ignore[dict-item]
    "deals": deals_activities,
    "referrals": referrals_activities,
}

# What each service raises for requests no retry can fix, through its real activities.
ERRORS: dict[str, list[tuple[str, object, str]]] = {
    "prospecting": [
        ("prospecting.get_contact", ProspectRef("nobody"), NOT_FOUND),
        ("prospecting.get_rep_manager", RepRef("nobody"), NOT_FOUND),
    ],
    "outreach": [("outreach.get_cadence", CadenceRef("nope"), NOT_FOUND)],
    "deals": [
        ("deals.expire_qualification", DealRef("missing"), NOT_FOUND),
        ("deals.open_objections", DealRef("missing"), NOT_FOUND),
        (
            "deals.time_out_qualification",
            QualificationTimeout("missing", "lunch", "timeout"),
            INVALID_INPUT,
        ),
    ],
    "referrals": [
        ("referrals.referral_ask_status", ReferralAskRef("nope"), NOT_FOUND),
        (
            "referrals.record_referrer_thanks",
            ReferrerThanks("nope", "lunch", "2026-12-01T09:00:00+00:00"),
            INVALID_INPUT,
        ),
    ],
}
# One call per service that needs its database: to show a transient failure stays retryable.
TRANSIENT = {
    "prospecting": ("prospecting.get_contact", ProspectRef("p1")),
    "outreach": ("outreach.get_cadence", CadenceRef("c1")),
    "deals": ("deals.expire_qualification", DealRef("d1")),
    "referrals": ("referrals.referral_ask_status", ReferralAskRef("a1")),
}


def by_name(activities: list[Callable[..., Any]], name: str) -> Callable[..., Any]:
    return next(a for a in activities if definition(a).name == name)


def definition(activity: Callable[..., Any]) -> Any:
    return activity.__temporal_activity_definition  # type: ignore[attr-defined]


@pytest.fixture
def settings(tmp_path: Path, database_urls: dict[str, str]) -> Settings:
    return make_settings(tmp_path, database_urls)


async def bound(
    service: str, settings: Settings, url: str | None = None
) -> AsyncIterator[list[Callable[..., Any]]]:
    if url is None:
        await asyncio.to_thread(upgrade, settings, service)
    engine = create_engine(url or settings.database_url(service))
    activities = SERVICES[service](settings, session_factory(engine))
    try:
        yield activities
    finally:
        if service == "outreach":
            await close_activities(activities)
        await engine.dispose()


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_activity_goes_through_the_boundary(service: str, tmp_path: Path) -> None:
    async for activities in bound(service, make_settings(tmp_path)):
        assert activities
        for activity in activities:
            assert getattr(activity, MARK, False), definition(activity).name
            # one dataclass in (never a bare str): the journey passes contracts, not ids
            (arg_type,) = definition(activity).arg_types
            assert hasattr(arg_type, "__dataclass_fields__"), definition(activity).name


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_services_errors_are_the_journeys_non_retryable_types(
    service: str, settings: Settings
) -> None:
    async for activities in bound(service, settings):
        for name, arg, kind in ERRORS[service]:
            with pytest.raises(ApplicationError) as raised:
                await ActivityEnvironment().run(by_name(activities, name), arg)
            assert (name, raised.value.type) == (name, kind)
            assert raised.value.type in NON_RETRYABLE and raised.value.non_retryable


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_transient_failure_stays_retryable(
    service: str, settings: Settings, tmp_path: Path
) -> None:
    # a database that cannot be opened: as when it is briefly away
    away = f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite'}"
    name, arg = TRANSIENT[service]
    async for activities in bound(service, settings, away):
        with pytest.raises(Exception) as raised:
            await ActivityEnvironment().run(by_name(activities, name), arg)
        assert not isinstance(raised.value, ApplicationError), raised.value


class Probe:
    """A service's activities in miniature: the boundary's mapping of each status."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity_boundary("test.probe")
    async def probe(self, session: AsyncSession, ref: DealRef) -> None:
        raise {
            "404": not_found("thing", ref.deal_id),
            "409": conflict("closed", "it is closed"),
            "422": invalid("field", "bad"),
            "400": AppError(400, "bad_request", "bad"),
            "503": AppError(503, "peer_unreachable", "try again"),
        }[ref.deal_id]


@pytest.mark.parametrize(
    ("status", "kind"),
    [("404", NOT_FOUND), ("409", CONFLICT), ("422", INVALID_INPUT), ("400", INVALID_INPUT)],
)
async def test_the_boundary_maps_statuses(status: str, kind: str, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    probe = Probe(session_factory(engine))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(probe.probe, DealRef(status))
    await engine.dispose()
    assert (raised.value.type, raised.value.non_retryable) == (kind, True)
    assert raised.value.details[0]["code"]  # the service's own code travels along


async def test_a_status_a_retry_may_fix_is_left_to_temporal(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    probe = Probe(session_factory(engine))
    with pytest.raises(AppError) as raised:
        await ActivityEnvironment().run(probe.probe, DealRef("503"))
    await engine.dispose()
    assert raised.value.status == 503
