"""Prospecting API against a migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.prospecting import service
from services.prospecting.activities import ProspectingActivities
from services.prospecting.schemas import ProspectCreate
from shared.contracts.journey import StageChange
from tests.support.apps import Api as ApiClient
from tests.support.apps import ServiceApp


class Prospecting:
    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http

    async def rep(self, name: str) -> dict[str, Any]:
        email = f"{name.lower()}@closeflow.example.com"
        resp = await self.http.post("/reps", json={"name": name, "email": email})
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def prospect(self, **fields: Any) -> dict[str, Any]:
        resp = await self.http.post("/prospects", json={"first_name": "Ada", **fields})
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def record_stage(self, change: StageChange) -> None:
        await ProspectingActivities(self.app.state.sessions).record_stage(change)


@pytest.fixture
async def prospecting(service_app: ServiceApp, api: ApiClient) -> Prospecting:
    app = await service_app("prospecting")
    return Prospecting(app, await api(app))


def _fields(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    body = resp.json()["error"]
    assert body["code"] == "validation_error"
    return [d["field"] for d in body["details"]]


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/reps", "/prospects", "/prospects/x", "/prospects/x/stages"])
async def test_every_route_needs_an_api_key(prospecting: Prospecting, path: str) -> None:
    missing = await prospecting.http.get(path, headers={"X-API-Key": ""})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = await prospecting.http.get(path, headers={"X-API-Key": "not-the-key"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    post = await prospecting.http.post("/prospects", json={}, headers={"X-API-Key": "nope"})
    assert post.status_code == 401  # auth is checked before the body


# --- reps ---------------------------------------------------------------------------------------


async def test_reps_are_validated_and_listed_in_creation_order(prospecting: Prospecting) -> None:
    resp = await prospecting.http.post(
        "/reps", json={"name": "Rita", "email": "Rita@Example.COM", "phone": "+1 (415) 555-2671"}
    )
    assert resp.status_code == 201, resp.text
    rita = resp.json()
    assert (rita["email"], rita["phone"]) == ("rita@example.com", "+14155552671")
    bob = await prospecting.rep("Bob")

    assert _fields(await prospecting.http.post("/reps", json={"name": "X", "email": "nope"})) == [
        "email"
    ]
    bad_phone = {"name": "X", "email": "x@example.com", "phone": "12"}
    assert _fields(await prospecting.http.post("/reps", json=bad_phone)) == ["phone"]
    assert _fields(
        await prospecting.http.post("/reps", json={"name": " ", "email": "x@example.com"})
    ) == ["name"]

    listed = (await prospecting.http.get("/reps")).json()
    assert [r["id"] for r in listed] == [rita["id"], bob["id"]]
    assert (await prospecting.http.get(f"/reps/{bob['id']}")).json() == bob
    missing = await prospecting.http.get("/reps/unknown")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "rep_not_found"


# --- prospects ----------------------------------------------------------------------------------


async def test_create_prospect_normalises_fields_and_records_the_first_stage(
    prospecting: Prospecting,
) -> None:
    created = await prospecting.prospect(
        last_name="Lovelace",
        email="  Ada.Lovelace@Example.COM ",
        phone="+1 415 555 0100",
        company="Analytical Engines",
        title="CTO",
        timezone="Europe/London",
    )
    assert created["email"] == "ada.lovelace@example.com"
    assert created["phone"] == "+14155550100"
    assert created["timezone"] == "Europe/London"
    assert (created["source"], created["stage"]) == ("cold", "prospecting")
    assert created["rep"] is None and created["rep_id"] is None  # no reps yet
    assert created["created_at"].endswith(("+00:00", "Z"))

    fetched = (await prospecting.http.get(f"/prospects/{created['id']}")).json()
    assert fetched == created

    phone_only = await prospecting.prospect(phone="+44 20 7946 0958")
    assert phone_only["email"] is None and phone_only["timezone"] == ""

    stages = (await prospecting.http.get(f"/prospects/{created['id']}/stages")).json()
    assert [(s["from_stage"], s["to_stage"], s["cause"]) for s in stages] == [
        (None, "prospecting", "created")
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com"}, "first_name"),
        ({"first_name": "  ", "email": "a@example.com"}, "first_name"),
        ({"first_name": "A", "email": "not-an-email"}, "email"),
        ({"first_name": "A", "phone": "415 555 0100"}, "phone"),  # no country code
        ({"first_name": "A", "phone": "+1 555"}, "phone"),
        ({"first_name": "A", "email": "a@example.com", "timezone": "Mars/Base"}, "timezone"),
        ({"first_name": "A", "email": "a@example.com", "source": "spam"}, "source"),
        ({"first_name": "A"}, "phone"),  # neither email nor phone
        ({"first_name": "A", "email": "", "phone": ""}, "phone"),
    ],
)
async def test_invalid_prospects_are_rejected_naming_the_field(
    prospecting: Prospecting, body: dict[str, str], field: str
) -> None:
    resp = await prospecting.http.post("/prospects", json=body)
    assert _fields(resp) == [field]
    assert field in resp.json()["error"]["message"]
    assert (await prospecting.http.get("/prospects")).json()["items"] == []


async def test_duplicate_email_or_phone_is_a_conflict_naming_the_existing_prospect(
    prospecting: Prospecting,
) -> None:
    first = await prospecting.prospect(email="ada@example.com", phone="+14155550100")
    for body, field in [
        ({"email": "ADA@example.com"}, "email"),
        ({"phone": "+1 (415) 555-0100"}, "phone"),
        ({"email": "other@example.com", "phone": "+1 415 555 0100"}, "phone"),
    ]:
        resp = await prospecting.http.post("/prospects", json={"first_name": "Copy", **body})
        assert resp.status_code == 409, resp.text
        error = resp.json()["error"]
        assert error["code"] == "duplicate_prospect"
        assert first["id"] in error["message"]
        assert error["details"][0]["existing_id"] == first["id"]
        assert error["details"][0]["field"] == field
    assert len((await prospecting.http.get("/prospects")).json()["items"]) == 1


async def test_unknown_referrer_is_rejected(prospecting: Prospecting) -> None:
    resp = await prospecting.http.post(
        "/prospects",
        json={"first_name": "A", "email": "a@example.com", "referrer_prospect_id": "nobody"},
    )
    assert _fields(resp) == ["referrer_prospect_id"]


async def test_round_robin_assignment_across_three_reps_survives_a_restart(
    prospecting: Prospecting, api: ApiClient
) -> None:
    reps = [await prospecting.rep(name) for name in ("Ann", "Ben", "Cat")]
    assigned = [
        (await prospecting.prospect(email=f"p{i}@example.com"))["rep"]["id"] for i in range(4)
    ]
    expected = [r["id"] for r in reps]
    assert assigned == [*expected, expected[0]]

    # A new process on the same database continues where the last one stopped.
    http = await api("prospecting")
    resp = await http.post("/prospects", json={"first_name": "R", "email": "r@example.com"})
    assert resp.json()["rep"] == {k: reps[1][k] for k in ("id", "name", "email", "phone")}


async def test_round_robin_is_fair_under_concurrent_creations(prospecting: Prospecting) -> None:
    reps = [await prospecting.rep(name) for name in ("Ann", "Ben", "Cat")]
    responses = await asyncio.gather(
        *(
            prospecting.http.post(
                "/prospects", json={"first_name": "C", "email": f"c{i}@example.com"}
            )
            for i in range(12)
        )
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    counts = Counter(r.json()["rep_id"] for r in responses)
    assert counts == {rep["id"]: 4 for rep in reps}


async def test_pagination_walks_every_prospect_once_and_filters_by_stage(
    prospecting: Prospecting,
) -> None:
    ids = [(await prospecting.prospect(email=f"page{i}@example.com"))["id"] for i in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await prospecting.http.get("/prospects", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3

    for pid in (ids[1], ids[3]):
        await prospecting.record_stage(
            StageChange(
                f"k-{pid}",
                pid,
                "prospecting",
                "contacting",
                "enrolled",
                "2030-01-01T00:00:00+00:00",
            )
        )
    contacting = (await prospecting.http.get("/prospects", params={"stage": "contacting"})).json()
    assert [p["id"] for p in contacting["items"]] == [ids[1], ids[3]]
    assert contacting["next_cursor"] is None
    first = (
        await prospecting.http.get("/prospects", params={"stage": "prospecting", "limit": 1})
    ).json()
    rest = (
        await prospecting.http.get(
            "/prospects", params={"stage": "prospecting", "cursor": first["next_cursor"]}
        )
    ).json()
    assert [p["id"] for p in first["items"] + rest["items"]] == [ids[0], ids[2], ids[4]]

    assert _fields(await prospecting.http.get("/prospects", params={"limit": 0})) == ["limit"]
    assert _fields(await prospecting.http.get("/prospects", params={"limit": 201})) == ["limit"]
    assert _fields(await prospecting.http.get("/prospects", params={"stage": "sleeping"})) == [
        "stage"
    ]
    assert _fields(await prospecting.http.get("/prospects", params={"cursor": "garbage!"})) == [
        "cursor"
    ]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "raw"),
    [
        ("fit_score", "fit:99999999999999999999|x"),  # beyond the column's integers
        ("-fit_score", "fit:-99999999999999999999|x"),
        ("created_at", "0001-01-01T00:00:00+14:00|x"),  # before year 1 in UTC
        ("-created_at", "9999-12-31T23:59:59-14:00|x"),  # after year 9999 in UTC
    ],
)
async def test_a_tampered_cursor_out_of_range_is_a_422_not_a_500(
    prospecting: Prospecting, sort: str, raw: str
) -> None:
    await prospecting.prospect(email="tampered@example.com")
    resp = await prospecting.http.get("/prospects", params={"sort": sort, "cursor": _cursor(raw)})
    assert _fields(resp) == ["cursor"]


async def test_stage_history_is_recorded_once_per_key_oldest_first(
    prospecting: Prospecting,
) -> None:
    pid = (await prospecting.prospect(email="stages@example.com"))["id"]
    moves = [
        StageChange(
            "j1:contacting",
            pid,
            "prospecting",
            "contacting",
            "enrolled",
            "2030-01-01T09:00:00+00:00",
        ),
        StageChange(
            "j1:qualifying", pid, "contacting", "qualifying", "reply", "2030-01-02T09:00:00+00:00"
        ),
    ]
    for change in [*moves, moves[0]]:  # the repeated key is a retry: no second row, no regress
        await prospecting.record_stage(change)

    history = (await prospecting.http.get(f"/prospects/{pid}/stages")).json()
    assert [(h["from_stage"], h["to_stage"], h["cause"]) for h in history] == [
        (None, "prospecting", "created"),
        ("prospecting", "contacting", "enrolled"),
        ("contacting", "qualifying", "reply"),
    ]
    assert history[2]["at"].startswith("2030-01-02T09:00:00")
    assert (await prospecting.http.get(f"/prospects/{pid}")).json()["stage"] == "qualifying"
    assert (await prospecting.http.get("/prospects/nobody/stages")).status_code == 404


async def test_a_later_runs_first_change_leaves_the_stage_the_last_run_ended_in(
    prospecting: Prospecting,
) -> None:
    """Every run starts at prospecting: run 2's first change, 90 days after run 1 nurtured
    the person, said they left prospecting (and the funnel counted a 90-day prospecting stay,
    and no nurture stay ever). They leave nurture."""
    pid = (await prospecting.prospect(email="back@example.com"))["id"]
    run_1 = [
        StageChange("j:1", pid, "prospecting", "contacting", "enrolled", "2030-01-01T09:00:00Z"),
        StageChange("j:2", pid, "contacting", "nurture", "no reply", "2030-01-10T09:00:00Z"),
    ]
    run_2 = StageChange(
        "j.r2:1", pid, "prospecting", "contacting", "follow-up", "2030-04-10T09:00:00+00:00"
    )
    for change in [*run_1, run_2]:
        await prospecting.record_stage(change)

    history = (await prospecting.http.get(f"/prospects/{pid}/stages")).json()
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        (None, "prospecting"),
        ("prospecting", "contacting"),
        ("contacting", "nurture"),
        ("nurture", "contacting"),
    ]


async def test_a_late_stage_record_stays_in_the_history_but_not_the_stage(
    prospecting: Prospecting,
) -> None:
    """A won client's referrals record, cancelled when the deal was reopened, finishes after the
    journey recorded the reopened stage: the prospect is in objections, not referrals."""
    pid = (await prospecting.prospect(email="late@example.com"))["id"]
    won = StageChange("j1:5", pid, "closing", "won", "closed won", "2030-01-01T09:00:00+00:00")
    late = StageChange("j1:6", pid, "won", "referrals", "asked", "2030-01-01T09:00:05+00:00")
    back = StageChange(
        "j1:7", pid, "referrals", "objections", "deal reopened", "2030-01-01T09:00:06+00:00"
    )
    for change in (won, back, late):
        await prospecting.record_stage(change)

    history = (await prospecting.http.get(f"/prospects/{pid}/stages")).json()
    assert [h["to_stage"] for h in history] == ["prospecting", "won", "referrals", "objections"]
    assert (await prospecting.http.get(f"/prospects/{pid}")).json()["stage"] == "objections"


@pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_creation_waits_for_no_other_still_in_its_transaction(
    prospecting: Prospecting,
) -> None:
    """Without capacity limits the rotation moves in a short transaction of its own: a creation
    whose transaction is still open holds up no other (the rotation's lock held to the end of
    every creation halved their rate), and the two still get the next reps in turn."""
    reps = {(await prospecting.rep(name))["id"] for name in ("Ann", "Ben")}
    settings = prospecting.app.state.settings
    pepper, keys = settings.erasure_pepper.get_secret_value(), settings.master_keys
    sessions = prospecting.app.state.sessions
    async with sessions() as open_one:
        first = await service.create_prospect(
            open_one, ProspectCreate(first_name="A", email="a@example.com"), pepper, keys
        )
        async with sessions() as other:
            await other.execute(text("SET LOCAL lock_timeout = '3s'"))
            second = await service.create_prospect(
                other, ProspectCreate(first_name="B", email="b@example.com"), pepper, keys
            )  # raised LockNotAvailable while the first held the rotation
            await other.commit()
        await open_one.commit()
    assert {first.rep_id, second.rep_id} == reps
