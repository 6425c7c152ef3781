"""Referral analytics: asks and referrals from the referrals service, meeting and win rates of
referred and cold prospects from the deals service's source counts over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from temporalio.testing import WorkflowEnvironment

from services.deals.app import create_app as create_deals_app
from services.deals.models import Deal, Meeting
from services.referrals.activities import ReferralsActivities
from services.referrals.app import create_app as create_referrals_app
from services.referrals.models import Referral, ReferralAsk
from shared.contracts.journey import LinkReferral, ReferralAskRequest
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import AUTH, make_settings

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=90)


@pytest.fixture
async def settings(database_urls: dict[str, str], tmp_path: Path, queue_prefix: str) -> Settings:
    port = free_port()
    settings = make_settings(
        tmp_path,
        database_urls,
        task_queue_prefix=queue_prefix,
        deals_url=f"http://127.0.0.1:{port}",
        deals_port=port,
    )
    for service in ("deals", "referrals"):
        await asyncio.to_thread(upgrade, settings, service)
    return settings


@pytest.fixture
async def apps(
    settings: Settings, temporal_local: WorkflowEnvironment
) -> AsyncIterator[tuple[Any, Any, httpx.AsyncClient]]:
    deals = create_deals_app(settings, temporal_client=temporal_local.client)
    referrals = create_referrals_app(settings, temporal_client=temporal_local.client)
    async with serve(deals, settings.deals_port) as deals_url:
        async with referrals.router.lifespan_context(referrals):
            transport = httpx.ASGITransport(referrals)
            async with httpx.AsyncClient(
                timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test", headers=AUTH
            ) as http:
                yield deals, referrals, http
    assert deals_url == settings.deals_url


async def seed_deals(deals_app: Any) -> None:
    """Referred: 4 deals, 3 with a meeting (one cancelled does not count), 2 won.
    Cold: 5 deals, 1 with a meeting, 1 won. One old referral deal outside the period."""
    rows: list[tuple[str, str, int, bool]] = [  # source, stage, meetings, one cancelled
        ("referral", "won", 1, False),
        ("referral", "won", 2, False),
        ("referral", "presenting", 1, False),
        ("referral", "qualifying", 1, True),
        ("cold", "won", 1, False),
        ("cold", "lost", 0, False),
        ("cold", "qualifying", 0, False),
        ("cold", "disqualified", 0, False),
        ("cold", "presenting", 0, False),
    ]
    async with deals_app.state.sessions() as session:
        for n, (source, stage, meetings, cancelled) in enumerate(rows):
            deal = Deal(
                prospect_id=f"p{n}",
                journey_id=f"journey-p{n}",
                rep_id=None,
                source=source,
                stage=stage,
            )
            session.add(deal)
            await session.flush()
            for m in range(meetings):
                status = "cancelled" if cancelled else "scheduled"
                session.add(
                    Meeting(
                        deal_id=deal.id,
                        starts_at=NOW + timedelta(days=m + 1),
                        title="Demo",
                        duration_minutes=30,
                        status=status,
                    )
                )
        old = Deal(
            prospect_id="old",
            journey_id="journey-old",
            rep_id=None,
            source="referral",
            stage="won",
            created_at=LONG_AGO,
        )
        session.add(old)
        await session.commit()


async def seed_referrals(referrals_app: Any, http: httpx.AsyncClient) -> None:
    """Three asks in the period (Ada refers 2, Bob 1, Cy none), one old ask with a referral."""
    acts = ReferralsActivities(referrals_app.state.sessions, "https://r.example.com")
    asks = {}
    for client in ("ada", "bob", "cy", "old"):
        made = await acts.create_referral_ask(
            ReferralAskRequest(client, f"journey-{client}", client.title(), None, "cad")
        )
        asks[client] = made.ask_id
    for client, count in (("ada", 2), ("bob", 1), ("old", 1)):
        people = [
            {"first_name": f"P{n}", "email": f"{client}{n}@example.com"} for n in range(count)
        ]
        resp = await http.post(f"/asks/{asks[client]}/referrals", json={"people": people})
        assert resp.status_code == 201, resp.text
    async with referrals_app.state.sessions() as session:
        await session.execute(
            update(ReferralAsk).where(ReferralAsk.id == asks["old"]).values(created_at=LONG_AGO)
        )
        await session.execute(
            update(Referral).where(Referral.ask_id == asks["old"]).values(created_at=LONG_AGO)
        )
        await session.commit()


def period(days: int = 30) -> dict[str, str]:
    return {
        "from": (NOW - timedelta(days=days)).isoformat(),
        "to": (NOW + timedelta(hours=1)).isoformat(),
    }


async def test_deals_counts_by_source_in_a_period(
    apps: tuple[Any, Any, httpx.AsyncClient], settings: Settings
) -> None:
    deals_app, _, _ = apps
    await seed_deals(deals_app)
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, base_url=settings.deals_url, headers=AUTH
    ) as http:
        resp = await http.get("/analytics/sources", params=period())
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["sources"] == [
            {"source": "cold", "deals": 5, "with_meeting": 1, "won": 1},
            {"source": "referral", "deals": 4, "with_meeting": 3, "won": 2},
        ]
        assert set(body) == {"from", "to", "sources"}
        wider = (await http.get("/analytics/sources", params=period(120))).json()
        assert wider["sources"][1] == {
            "source": "referral",
            "deals": 5,
            "with_meeting": 3,
            "won": 3,
        }

        backwards = await http.get(
            "/analytics/sources", params={"from": NOW.isoformat(), "to": LONG_AGO.isoformat()}
        )
        assert backwards.status_code == 422
        assert backwards.json()["error"]["details"][0]["field"] == "from"
        assert (await http.get("/analytics/sources", headers={"X-API-Key": ""})).status_code == 401


async def test_referral_analytics_compares_referred_with_cold_in_the_period(
    apps: tuple[Any, Any, httpx.AsyncClient],
) -> None:
    deals_app, referrals_app, http = apps
    await seed_deals(deals_app)
    await seed_referrals(referrals_app, http)

    resp = await http.get("/analytics", params=period())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["asks_sent"] == 3
    assert body["referrals"] == 3 and body["clients_referring"] == 2
    assert [(c["client_prospect_id"], c["referrals"]) for c in body["referrals_per_client"]] == [
        ("ada", 2),
        ("bob", 1),
    ]
    assert body["referred"] == {
        "source": "referral",
        "deals": 4,
        "with_meeting": 3,
        "won": 2,
        "meeting_rate": 0.75,
        "win_rate": 0.5,
    }
    assert body["cold"] == {
        "source": "cold",
        "deals": 5,
        "with_meeting": 1,
        "won": 1,
        "meeting_rate": 0.2,
        "win_rate": 0.2,
    }

    everything = (await http.get("/analytics", params=period(120))).json()
    assert (everything["asks_sent"], everything["referrals"]) == (4, 4)
    assert everything["referred"]["win_rate"] == 0.6

    empty = (
        await http.get(
            "/analytics",
            params={"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"},
        )
    ).json()
    assert empty["asks_sent"] == 0 and empty["referrals_per_client"] == []
    assert empty["referred"]["meeting_rate"] is None and empty["cold"]["deals"] == 0

    backwards = await http.get(
        "/analytics", params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"]["details"][0]["field"] == "from"
    assert (await http.get("/analytics", headers={"X-API-Key": ""})).status_code == 401


async def test_a_client_naming_themselves_is_not_counted_as_referring(
    apps: tuple[Any, Any, httpx.AsyncClient],
) -> None:
    """Cy names their own address: the intake finds Cy (prospecting's dedupe) and outreach
    refuses the run (`self_referral`). That referral is refused, not one Cy made: Cy is not a
    client who referred, and the count is the others' 3."""
    deals_app, referrals_app, http = apps
    await seed_deals(deals_app)
    await seed_referrals(referrals_app, http)
    (cy_ask,) = (await http.get("/asks", params={"client_prospect_id": "cy"})).json()
    resp = await http.post(
        f"/asks/{cy_ask['id']}/referrals",
        json={"people": [{"first_name": "Cy", "phone": "+14155550142"}]},
    )
    assert resp.status_code == 201, resp.text
    acts = ReferralsActivities(referrals_app.state.sessions, "https://r.example.com")
    await acts.link_referral(LinkReferral(resp.json()[0]["id"], "cy"))  # the intake's link

    body = (await http.get("/analytics", params=period())).json()
    assert (body["referrals"], body["clients_referring"]) == (3, 2), body
    assert "cy" not in [c["client_prospect_id"] for c in body["referrals_per_client"]]


BAD_PERIODS = [
    # (query, the parameter at fault, what the 422 says): a 500 before (OverflowError)
    ({"to": "0001-01-02T00:00:00Z"}, "to", "must be between 1900-01-01 and 9000-01-01"),
    # no such moment in UTC at all: refused where any moment a caller names is read
    ({"to": "0001-01-01T00:00:00+05:00"}, "to", "no such moment in UTC"),
    ({"from": "9999-12-31T23:00:00-05:00"}, "from", "no such moment in UTC"),
    # a time without its offset: refused, as everywhere else in the API (it was taken as UTC)
    ({"from": "2026-01-01T00:00:00"}, "from", "UTC offset"),
    ({"to": "2026-02-01"}, "to", "UTC offset"),
]


@pytest.mark.parametrize(("params", "field", "problem"), BAD_PERIODS)
async def test_a_bad_period_is_a_422_naming_the_parameter(
    apps: tuple[Any, Any, httpx.AsyncClient],
    settings: Settings,
    params: dict[str, str],
    field: str,
    problem: str,
) -> None:
    _, _, referrals = apps
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, base_url=settings.deals_url, headers=AUTH
    ) as deals:
        for http, path in ((deals, "/analytics/sources"), (referrals, "/analytics")):
            resp = await http.get(path, params=params)
            assert resp.status_code == 422, (path, resp.text)
            (detail,) = resp.json()["error"]["details"]
            assert detail["field"] == field and problem in detail["problem"], (path, detail)


async def test_referral_analytics_says_when_deals_cannot_be_reached(
    settings: Settings, temporal_local: WorkflowEnvironment
) -> None:
    down = settings.model_copy(update={"deals_url": f"http://127.0.0.1:{free_port()}"})
    app = create_referrals_app(down, temporal_client=temporal_local.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://t", headers=AUTH
        ) as c:
            resp = await c.get("/analytics")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "deals_unreachable"


async def test_a_client_asked_twice_is_one_client_referring(
    apps: tuple[Any, Any, httpx.AsyncClient],
) -> None:
    """Ada won again in a later run of her journey (a second ask), her name corrected since:
    she is one client referring, with all her referrals, under her latest name; she was two
    rows (one per name) and counted twice in `clients_referring`."""
    _, referrals_app, http = apps
    acts = ReferralsActivities(referrals_app.state.sessions, "https://r.example.com")
    for n, (journey, name) in enumerate((("journey-ada", "Ada"), ("journey-ada.r2", "Ada King"))):
        made = await acts.create_referral_ask(ReferralAskRequest("ada", journey, name, None, "cad"))
        people = [{"first_name": "P", "email": f"p{n}@example.com"}]
        resp = await http.post(f"/asks/{made.ask_id}/referrals", json={"people": people})
        assert resp.status_code == 201, resp.text

    body = (await http.get("/analytics", params=period())).json()
    assert (body["asks_sent"], body["referrals"], body["clients_referring"]) == (2, 2, 1)
    assert body["referrals_per_client"] == [
        {"client_prospect_id": "ada", "client_name": "Ada King", "referrals": 2}
    ]
