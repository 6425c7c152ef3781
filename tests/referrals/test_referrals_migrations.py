"""Referrals' data migrations, on rows an earlier release stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text as sql

from shared.db import create_engine
from shared.erasure import digest
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.settings import make_settings

AT = datetime(2026, 11, 30, 9, tzinfo=UTC)
ASK = (
    "INSERT INTO referral_asks (id, token, client_prospect_id, journey_id, client_name, rep_id, "
    "cadence_id, created_at, used_at) VALUES (:id, :id, :client, :id, :name, 'r1', 'c1', :t, :used)"
)
REFERRAL = (
    "INSERT INTO referrals (id, ask_id, referrer_prospect_id, first_name, last_name, company, "
    "title, timezone, status, prospect_id, created_at, email, phone) "
    "VALUES (:id, 'ask', 'client', :id, '', '', '', '', :status, :prospect, :t, :email, :phone)"
)
NO_ADDRESS = {"email": None, "phone": None}


async def migrated(
    settings: Settings, before: str, rows: list[tuple[str, dict[str, Any]]], query: str
) -> list[tuple[Any, ...]]:
    """`rows` stored at revision `before`, then the rows of `query` once upgraded to the heads."""
    await asyncio.to_thread(upgrade, settings, "referrals", before)
    engine = create_engine(settings.database_url("referrals"))
    async with engine.begin() as conn:
        for statement, values in rows:
            await conn.execute(sql(statement), {"t": AT, **values})
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "referrals")
    engine = create_engine(settings.database_url("referrals"))
    async with engine.connect() as conn:
        found = [tuple(row) for row in (await conn.execute(sql(query))).all()]
    await engine.dispose()
    return found


@pytest.fixture
def settings(tmp_path: Path, database_urls: dict[str, str]) -> Settings:
    return make_settings(tmp_path, {"referrals": database_urls["referrals"]})


@pytest.mark.empty_databases
async def test_asks_closed_by_an_earlier_erasure_are_closed(settings: Settings) -> None:
    """An erasure before 0008 blanked the client's name and used the link: that ask is closed
    as of then, so the API refuses it too. One before the links were closed only blanked the
    name: its link still opened the form, and now opens nothing (a token nobody holds, used).
    A living client's asks stay open, used or not."""
    asks = [
        {"id": "erased", "client": "p-gone", "name": "", "used": AT},
        {"id": "blanked", "client": "p-gone", "name": "", "used": None},
        {"id": "used", "client": "p-kept", "name": "Ada Lovelace", "used": AT},
        {"id": "open", "client": "p-kept", "name": "Ada Lovelace", "used": None},
    ]
    rows = await migrated(
        settings,
        "0007_page_indexes",
        [(ASK, ask) for ask in asks],
        "SELECT id, closed_at, used_at, token FROM referral_asks",
    )
    found = {r[0]: (r[1] is not None, r[2] is not None, r[3] == r[0]) for r in rows}
    assert found == {  # closed, used, the token it had
        "erased": (True, True, False),
        "blanked": (True, True, False),
        "used": (False, True, True),
        "open": (False, False, True),
    }


@pytest.mark.empty_databases
async def test_referrals_of_the_client_themselves_are_refused(settings: Settings) -> None:
    """An intake before 0009 linked a client's own address to the client: that referral is a
    refused `self_referral` with no prospect; the others keep what they were."""
    ask = {"id": "ask", "client": "client", "name": "Ada", "used": None}
    referrals = [
        {"id": "self", "status": "prospect_created", "prospect": "client"},
        {"id": "other", "status": "prospect_created", "prospect": "p-other"},
        {"id": "waiting", "status": "received", "prospect": None},
    ]
    rows = await migrated(
        settings,
        "0008_asks_closed",
        [(ASK, ask), *((REFERRAL, {**NO_ADDRESS, **r}) for r in referrals)],
        "SELECT id, status, prospect_id FROM referrals",
    )
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "self": ("self_referral", None),
        "other": ("prospect_created", "p-other"),
        "waiting": ("received", None),
    }


@pytest.mark.empty_databases
async def test_referrals_of_people_erased_before_digests_were_kept_are_forgotten(
    settings: Settings,
) -> None:
    """Gus was erased before 0005; a client named him later (by email, and by phone on another
    row). His digests came afterwards, through a release that kept them without forgetting
    those rows: the upgrade deletes both, and keeps Ada's."""
    pepper = settings.erasure_pepper.get_secret_value()
    ask = {"id": "ask", "client": "client", "name": "Cy", "used": None}
    erased = (
        "INSERT INTO erased_people (kind, digest, erasure_id, created_at) "
        "VALUES (:kind, :digest, 'e-gus', :t)"
    )
    referrals = [
        {"id": "gus-email", "email": "gus@example.com", "phone": None},
        {"id": "gus-phone", "email": None, "phone": "+14155550142"},
        {"id": "ada", "email": "ada@example.com", "phone": "+14155550100"},
    ]
    rows = await migrated(
        settings,
        "0009_self_referrals_refused",
        [
            (ASK, ask),
            (erased, {"kind": "email", "digest": digest(pepper, "email", "gus@example.com")}),
            (erased, {"kind": "phone", "digest": digest(pepper, "phone", "+14155550142")}),
            *((REFERRAL, {"status": "received", "prospect": None, **r}) for r in referrals),
        ],
        "SELECT id FROM referrals",
    )
    assert rows == [("ada",)]
