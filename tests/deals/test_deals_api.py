"""The deals API and activities on real databases and a real Temporal dev server.

A recording workflow stands in for the journey (same workflow id, its own task queue): it keeps
every signal it receives, so each test asserts what the API told the journey, and that a
request refused by validation told it nothing.
"""

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from services.deals.activities import activities_for
from services.deals.models import Deal
from shared.contracts.errors import NOT_FOUND
from shared.contracts.journey import DealRef, OpenDealRequest, journey_id
from shared.contracts.names import Sig
from tests.support.apps import assert_pages, deleting
from tests.support.deals import (
    DEFAULT_CATEGORIES,
    GOOD_ANSWERS,
    DealsEnv,
    error,
    fields,
    in_an_hour,
    signals,
)
from tests.support.settings import ADMIN_ACTOR, make_settings


async def test_every_route_needs_an_api_key(env: DealsEnv) -> None:
    deal_id, _, _ = await env.open_deal()
    calls = [
        ("GET", "/deals", None),
        ("GET", f"/deals/{deal_id}", None),
        ("POST", f"/deals/{deal_id}/qualification", {"answers": GOOD_ANSWERS}),
        ("POST", f"/deals/{deal_id}/meetings", {"starts_at": "2099-01-01T10:00:00Z", "title": "x"}),
        ("POST", f"/deals/{deal_id}/objections", {"text": "too expensive"}),
        ("POST", f"/deals/{deal_id}/close", {"outcome": "won", "reason": "signed"}),
        ("GET", "/playbook", None),
        ("PUT", "/playbook/price", {"answers": ["x"]}),
        ("DELETE", "/playbook/price", None),
        ("GET", "/qualification/framework", None),
    ]
    for method, url, body in calls:
        r = await env.anon.request(method, url, json=body)
        assert r.status_code == 401, (method, url)
        assert error(r)["code"] == "missing_api_key"
    r = await env.anon.get("/deals", headers={"X-API-Key": "wrong"})
    assert (r.status_code, error(r)["code"]) == (401, "invalid_api_key")
    # nothing happened: the deal is untouched and the playbook intact
    r = await env.http.get(f"/deals/{deal_id}")
    assert r.json()["stage"] == "qualifying"
    assert [e["category"] for e in (await env.http.get("/playbook")).json()] == DEFAULT_CATEGORIES


async def test_unknown_deal_is_404(env: DealsEnv) -> None:
    for method, url, body in [
        ("GET", "/deals/nope", None),
        ("POST", "/deals/nope/qualification", {"answers": GOOD_ANSWERS}),
        ("POST", "/deals/nope/meetings", {"starts_at": in_an_hour().isoformat(), "title": "x"}),
        ("POST", "/deals/nope/objections", {"text": "too expensive"}),
        ("POST", "/deals/nope/close", {"outcome": "lost", "reason": "gone"}),
    ]:
        r = await env.http.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.text)
        assert error(r)["code"] == "deal_not_found"


async def test_list_filters_by_prospect_and_stage(env: DealsEnv) -> None:
    qualifying_id, prospect_id, _ = await env.open_deal()
    presenting_id, _ = await env.presenting_deal()

    r = await env.http.get("/deals", params={"prospect_id": prospect_id})
    assert [d["id"] for d in r.json()] == [qualifying_id]
    r = await env.http.get("/deals", params={"stage": "presenting"})
    assert [d["id"] for d in r.json()] == [presenting_id]
    r = await env.http.get("/deals")
    assert {d["id"] for d in r.json()} == {qualifying_id, presenting_id}

    r = await env.http.get("/deals", params={"stage": "bogus"})
    assert r.status_code == 422
    assert fields(r) == {"stage"}


async def test_pages_after_a_deal_skip_and_repeat_none_while_deals_open(env: DealsEnv) -> None:
    """Newest first, `after` the last deal of the previous page: a deal opened meanwhile lands
    on the first page and shifts nothing (with `offset` the next page repeated a deal)."""
    ids = [(await env.open_deal(journey=False))[0] for _ in range(3)]
    first = (await env.http.get("/deals", params={"limit": 2})).json()
    assert [d["id"] for d in first] == ids[:0:-1]
    newest, _, _ = await env.open_deal(journey=False)
    rest = await env.http.get("/deals", params={"limit": 2, "after": first[-1]["id"]})
    assert rest.status_code == 200, rest.text
    assert [d["id"] for d in rest.json()] == [ids[0]]
    everything = (await env.http.get("/deals")).json()
    assert [d["id"] for d in everything] == [newest, *ids[::-1]]
    r = await env.http.get("/deals", params={"after": "no-such-deal"})
    assert (r.status_code, fields(r)) == (422, {"after"})

    # the CSV export reads its pages the same way: a page of one deal at a time
    settings = env.app.state.settings
    env.app.state.settings = settings.model_copy(update={"export_page_size": 1})
    try:
        export = await env.http.get("/exports/deals.csv")
    finally:
        env.app.state.settings = settings
    assert [r["id"] for r in csv.DictReader(io.StringIO(export.text))] == [newest, *ids[::-1]]


async def test_pages_go_on_when_the_last_deal_of_a_page_is_erased(env: DealsEnv) -> None:
    """The next page starts after the keys its cursor carries: the last deal of a page erased
    before the next one is asked took the paging with it (a 422: no deal <id>)."""
    for _ in range(5):
        await env.open_deal(journey=False)
    await assert_pages(env.http, "/deals", 5, forget=deleting(env.app.state.sessions, Deal))


# --- the activities -----------------------------------------------------------------------------


async def test_open_deal_is_idempotent_on_journey_id(env: DealsEnv) -> None:
    prospect_id = uuid.uuid4().hex
    req = OpenDealRequest(prospect_id, journey_id(prospect_id), "rep-7", "referral", "referred")
    first = await ActivityEnvironment().run(env.acts.open_deal, req)
    again = await env.acts.open_deal(req)
    racing = await asyncio.gather(*(env.acts.open_deal(req) for _ in range(5)))
    assert {first.deal_id, again.deal_id, *(s.deal_id for s in racing)} == {first.deal_id}

    r = await env.http.get("/deals", params={"prospect_id": prospect_id})
    [deal] = r.json()
    assert deal["id"] == first.deal_id
    assert (deal["stage"], deal["rep_id"], deal["source"]) == ("qualifying", "rep-7", "referral")
    assert (deal["qualified"], deal["qualification_reasons"]) == (None, [])
    assert deal["journey_id"] == journey_id(prospect_id)


async def test_expire_qualification_disqualifies_a_waiting_deal(env: DealsEnv) -> None:
    deal_id, _, _ = await env.open_deal()
    status = await ActivityEnvironment().run(env.acts.expire_qualification, DealRef(deal_id))
    assert (status.deal_id, status.stage) == (deal_id, "disqualified")
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert deal["stage"] == "disqualified"
    assert deal["qualified"] is False
    assert deal["close_reason"] == "qualification timeout"
    assert deal["qualification_reasons"] == ["qualification timeout"]
    assert deal["closed_at"] is not None
    # a retried activity changes nothing
    assert (await env.acts.expire_qualification(DealRef(deal_id))).stage == "disqualified"
    # and the late API answer is refused: the journey already moved on
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")


async def test_expire_qualification_leaves_a_recorded_verdict(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    status = await env.acts.expire_qualification(DealRef(deal_id))
    assert status.stage == "presenting"
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (deal["stage"], deal["qualified"], deal["closed_at"]) == ("presenting", True, None)


async def test_expire_qualification_of_unknown_deal_is_not_retryable(env: DealsEnv) -> None:
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(env.acts.expire_qualification, DealRef("missing"))
    assert err.value.non_retryable
    assert err.value.type == NOT_FOUND


def test_activities_for_lists_the_bound_activities(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    acts = activities_for(make_settings(tmp_path), async_sessionmaker())
    names = sorted(a.__temporal_activity_definition.name for a in acts)  # type: ignore[attr-defined]
    assert names == [
        "deals.expire_qualification",
        "deals.meeting_brief",
        "deals.note_deal",
        "deals.open_deal",
        "deals.open_objections",
        "deals.record_invite",
        "deals.time_out_qualification",
    ]


# --- qualification ------------------------------------------------------------------------------


async def test_qualified_deal_moves_to_presenting_and_tells_the_journey(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    assert journey is not None
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["qualified"], body["score"], body["reasons"]) == (True, 100, [])
    assert body["deal"]["stage"] == "presenting"
    assert body["deal"]["qualification_score"] == 100

    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert detail["stage"] == "presenting"
    assert [
        (a["criterion"], a["answer"], a["passed"]) for a in detail["qualification_answers"]
    ] == [
        ("budget", True, True),
        ("authority", "decision_maker", True),
        ("need", GOOD_ANSWERS["need"], True),
        ("timeline", 2, True),
    ]

    assert await signals(journey, 1) == [
        {
            "name": Sig.QUALIFICATION_RECORDED,
            "payload": {"deal_id": deal_id, "qualified": True, "reasons": [], "actor": ADMIN_ACTOR},
        }
    ]


async def test_unqualified_deal_is_disqualified_with_reasons(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    assert journey is not None
    answers = {"budget": False, "authority": "champion", "timeline": 9}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": answers})
    assert r.status_code == 200, r.text
    reasons = [
        "budget: no budget confirmed",
        "need: not answered",
        "timeline: no purchase planned within 6 months",
    ]
    body = r.json()
    assert (body["qualified"], body["score"], body["reasons"]) == (False, 25, reasons)
    deal = body["deal"]
    assert (deal["stage"], deal["qualified"], deal["qualification_reasons"]) == (
        "disqualified",
        False,
        reasons,
    )
    assert deal["closed_at"] is not None
    assert await signals(journey, 1) == [
        {
            "name": Sig.QUALIFICATION_RECORDED,
            "payload": {
                "deal_id": deal_id,
                "qualified": False,
                "reasons": reasons,
                "actor": ADMIN_ACTOR,
            },
        }
    ]

    # a different verdict later is a conflict that names the stage
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")
    assert "disqualified" in error(r)["message"]


async def test_malformed_answers_write_and_signal_nothing(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    assert journey is not None
    for answers, field_name in [
        ({**GOOD_ANSWERS, "budget": "maybe"}, "answers.budget"),
        ({**GOOD_ANSWERS, "timeline": "soon"}, "answers.timeline"),
        ({**GOOD_ANSWERS, "budgett": True}, "answers.budgett"),
    ]:
        r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": answers})
        assert r.status_code == 422, r.text
        assert fields(r) == {field_name}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": ["budget"]})
    assert (r.status_code, fields(r)) == (422, {"answers"})

    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (detail["stage"], detail["qualified"], detail["qualification_answers"]) == (
        "qualifying",
        None,
        [],
    )
    # the next valid request is the first thing the journey hears
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    assert r.status_code == 200
    got = await signals(journey, 1)
    await asyncio.sleep(0.2)
    assert [s["name"] for s in await signals(journey, 1)] == [Sig.QUALIFICATION_RECORDED]
    assert len(got) == 1


async def test_committed_before_signal_and_a_journey_started_later_is_not_told(
    env: DealsEnv,
) -> None:
    deal_id, prospect_id, _ = await env.open_deal(journey=False)
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    # no journey to tell, but the verdict was committed first
    assert (r.status_code, error(r)["code"]) == (409, "journey_not_running")
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "presenting"

    # a run of the prospect's journey started after the deal was opened did not open it: it
    # is some later run with its own course (services.deals.core.runs), and hears nothing
    journey = await env.start_journey(prospect_id)
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "objections"})
    assert (r.status_code, error(r)["code"]) == (409, "journey_not_running"), r.text
    assert "stored" in error(r)["message"]
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "objections"
    assert await journey.query("signals") == []


async def test_a_deal_opened_before_runs_were_recorded_reaches_the_run_that_opened_it(
    env: DealsEnv,
) -> None:
    """No run on the deal (opened before deals recorded it): the run running since before the
    deal was opened is the run that opened it."""
    prospect_id = uuid.uuid4().hex
    journey = await env.start_journey(prospect_id)
    status = await env.acts.open_deal(  # no activity context: no run recorded
        OpenDealRequest(prospect_id, journey_id(prospect_id), "rep-1", "cold", "replied")
    )
    r = await env.http.post(
        f"/deals/{status.deal_id}/qualification", json={"answers": GOOD_ANSWERS}
    )
    assert r.status_code == 200, r.text
    assert [s["name"] for s in await signals(journey, 1)] == [Sig.QUALIFICATION_RECORDED]


async def test_framework_lists_the_questions(env: DealsEnv) -> None:
    r = await env.http.get("/qualification/framework")
    body = r.json()
    assert body["name"] == "bant"
    assert [c["key"] for c in body["criteria"]] == ["budget", "authority", "need", "timeline"]
    assert {c["answer_type"] for c in body["criteria"]} == {"yes_no", "choice", "text", "number"}


# --- meetings -----------------------------------------------------------------------------------


async def test_meeting_is_scheduled_and_signalled(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    local = (in_an_hour() + timedelta(days=1)).astimezone(timezone(timedelta(hours=2)))
    r = await env.http.post(
        f"/deals/{deal_id}/meetings",
        json={"starts_at": local.isoformat(), "title": "Demo", "duration_minutes": 45},
    )
    assert r.status_code == 201, r.text
    meeting = r.json()
    assert (meeting["deal_id"], meeting["title"], meeting["duration_minutes"]) == (
        deal_id,
        "Demo",
        45,
    )
    assert meeting["status"] == "scheduled"
    starts = datetime.fromisoformat(meeting["starts_at"])
    assert starts == local
    assert starts.utcoffset() == timedelta(0)

    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert [m["id"] for m in detail["meetings"]] == [meeting["id"]]

    got = await signals(journey, 2)
    assert got[1] == {
        "name": Sig.MEETING_SCHEDULED,
        "payload": {
            "meeting_id": meeting["id"],
            "deal_id": deal_id,
            "starts_at": local.astimezone(UTC).isoformat(),
            "title": "Demo",
            "revision": 0,
            "actor": ADMIN_ACTOR,
        },
    }


async def test_meeting_validation_and_stage(env: DealsEnv) -> None:
    qualifying_id, _, _ = await env.open_deal()
    r = await env.http.post(
        f"/deals/{qualifying_id}/meetings",
        json={"starts_at": in_an_hour().isoformat(), "title": "Demo"},
    )
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")
    assert "qualifying" in error(r)["message"]

    deal_id, journey = await env.presenting_deal()
    naive = in_an_hour().replace(tzinfo=None).isoformat()
    r = await env.http.post(f"/deals/{deal_id}/meetings", json={"starts_at": naive, "title": "D"})
    assert r.status_code == 422
    assert fields(r) == {"starts_at"}
    assert "UTC offset" in error(r)["message"]

    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = await env.http.post(f"/deals/{deal_id}/meetings", json={"starts_at": past, "title": "D"})
    assert (r.status_code, fields(r)) == (422, {"starts_at"})
    assert "future" in error(r)["message"]

    r = await env.http.post(
        f"/deals/{deal_id}/meetings",
        json={"starts_at": in_an_hour().isoformat(), "title": " ", "duration_minutes": 0},
    )
    assert (r.status_code, fields(r)) == (422, {"title", "duration_minutes"})

    assert (await env.http.get(f"/deals/{deal_id}")).json()["meetings"] == []
    await asyncio.sleep(0.2)
    assert [s["name"] for s in await signals(journey, 1)] == [Sig.QUALIFICATION_RECORDED]

    lost_id, _ = await env.presenting_deal()
    await env.http.post(f"/deals/{lost_id}/close", json={"outcome": "lost", "reason": "no"})
    r = await env.http.post(
        f"/deals/{lost_id}/meetings", json={"starts_at": in_an_hour().isoformat(), "title": "D"}
    )
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")


# --- objections and the playbook ----------------------------------------------------------------


async def test_objection_is_matched_answered_and_signalled(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    playbook = {e["category"]: e for e in (await env.http.get("/playbook")).json()}
    assert sorted(playbook) == DEFAULT_CATEGORIES
    assert all(e["answers"] and e["triggers"] for e in playbook.values())

    text = "Honestly it is too expensive, the price is way above what we pay now"
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": text})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["category"] == "price"
    assert body["answers"] == playbook["price"]["answers"]
    assert set(body["matched_triggers"]) >= {"too expensive", "price"}
    objection = body["objection"]
    assert (objection["deal_id"], objection["category"], objection["text"]) == (
        deal_id,
        "price",
        text,
    )

    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert detail["stage"] == "objections"
    assert [o["id"] for o in detail["objections"]] == [objection["id"]]

    got = await signals(journey, 2)
    assert got[1] == {
        "name": Sig.OBJECTION_LOGGED,
        "payload": {
            "objection_id": objection["id"],
            "deal_id": deal_id,
            "category": "price",
            "text": text,
            "answers": playbook["price"]["answers"],
            "actor": ADMIN_ACTOR,
        },
    }

    # nothing matches: "other", with no prepared answers until ops write some
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "The logo is ugly"})
    assert (r.json()["category"], r.json()["answers"]) == ("other", [])
    r = await env.http.put("/playbook/other", json={"answers": ["Tell me more about that."]})
    assert r.status_code == 201
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "The logo is ugly"})
    assert (r.json()["category"], r.json()["answers"]) == ("other", ["Tell me more about that."])

    # a rep may name the category; the stage stays "objections"
    r = await env.http.post(
        f"/deals/{deal_id}/objections", json={"text": "Let me think", "category": "timing"}
    )
    assert (r.status_code, r.json()["category"]) == (201, "timing")
    assert r.json()["answers"] == playbook["timing"]["answers"]
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "objections"
    assert len(await signals(journey, 5)) == 5


async def test_refused_objection_writes_and_signals_nothing(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    for body, field_name in [
        ({"text": "too expensive", "category": "unheard-of"}, "category"),
        ({"text": "too expensive", "category": "Not A Slug"}, "category"),
        ({"text": "   "}, "text"),
        ({}, "text"),
    ]:
        r = await env.http.post(f"/deals/{deal_id}/objections", json=body)
        assert r.status_code == 422, r.text
        assert fields(r) == {field_name}
    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (detail["stage"], detail["objections"]) == ("presenting", [])
    await asyncio.sleep(0.2)
    assert len(await signals(journey, 1)) == 1

    qualifying_id, _, _ = await env.open_deal()
    r = await env.http.post(f"/deals/{qualifying_id}/objections", json={"text": "too expensive"})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")


async def test_playbook_editing(env: DealsEnv) -> None:
    entry = {"label": "Security review", "triggers": [" SOC 2 ", "soc 2", "pen test"]}
    r = await env.http.put("/playbook/security", json={**entry, "answers": ["Our report."]})
    assert r.status_code == 201, r.text
    assert r.json()["triggers"] == ["SOC 2", "pen test"]
    r = await env.http.put(
        "/playbook/security", json={**entry, "answers": ["Our SOC 2 report.", "A pen test."]}
    )
    assert r.status_code == 200
    assert (await env.http.get("/playbook/security")).json()["answers"] == [
        "Our SOC 2 report.",
        "A pen test.",
    ]

    deal_id, _ = await env.presenting_deal()
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "Do you have SOC 2?"})
    assert (r.json()["category"], r.json()["answers"][0]) == ("security", "Our SOC 2 report.")

    # refused edits change nothing
    for body, field_name in [
        ({"answers": []}, "answers"),
        ({"answers": ["  ", ""]}, "answers"),
        ({"triggers": ["x"]}, "answers"),
        ({"answers": "just one"}, "answers"),
    ]:
        r = await env.http.put("/playbook/security", json=body)
        assert r.status_code == 422, r.text
        assert fields(r) == {field_name}
    r = await env.http.put("/playbook/Bad Slug", json={"answers": ["x"]})
    assert (r.status_code, fields(r)) == (422, {"category"})
    assert (await env.http.get("/playbook/security")).json()["label"] == "Security review"

    # replacing a default keeps one row per category; deleting removes it for matching
    r = await env.http.put("/playbook/price", json={"triggers": ["pricey"], "answers": ["ROI"]})
    assert (r.status_code, r.json()["label"]) == (200, "Price")
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    assert r.json()["category"] == "other"
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "a bit pricey"})
    assert (r.json()["category"], r.json()["answers"]) == ("price", ["ROI"])

    assert (await env.http.delete("/playbook/security")).status_code == 204
    r = await env.http.delete("/playbook/security")
    assert (r.status_code, error(r)["code"]) == (404, "playbook_category_not_found")
    assert (await env.http.get("/playbook/security")).status_code == 404
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "Do you have SOC 2?"})
    assert r.json()["category"] == "other"
    # objections logged under a deleted category keep it
    categories = [
        o["category"] for o in (await env.http.get(f"/deals/{deal_id}")).json()["objections"]
    ]
    assert categories[0] == "security"
    assert [e["category"] for e in (await env.http.get("/playbook")).json()] == DEFAULT_CATEGORIES


# --- closing ------------------------------------------------------------------------------------


async def test_close_won_records_value_and_tells_the_journey(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    r = await env.http.post(
        f"/deals/{deal_id}/close",
        json={
            "outcome": "won",
            "reason": "signed annual plan",
            "value": "12500.50",
            "currency": "eur",
        },
    )
    assert r.status_code == 200, r.text
    deal = r.json()
    assert (deal["stage"], deal["close_reason"], deal["currency"]) == (
        "won",
        "signed annual plan",
        "EUR",
    )
    assert float(deal["value"]) == 12500.50
    assert datetime.fromisoformat(deal["closed_at"]) <= datetime.now(UTC)

    got = await signals(journey, 2)
    assert got[1] == {
        "name": Sig.DEAL_CLOSED,
        "payload": {
            "deal_id": deal_id,
            "won": True,
            "reason": "signed annual plan",
            "actor": ADMIN_ACTOR,
        },
    }

    # a different close of a closed deal is refused
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "x"})
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")
    assert "won" in error(r)["message"]
    # the same close again is a retry: answered as before and signalled again
    r = await env.http.post(
        f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "signed annual plan"}
    )
    assert (r.status_code, r.json()["closed_at"]) == (200, deal["closed_at"])
    assert [s["name"] for s in await signals(journey, 3)] == [
        Sig.QUALIFICATION_RECORDED,
        Sig.DEAL_CLOSED,
        Sig.DEAL_CLOSED,
    ]


async def test_close_lost_from_objections(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "price"})
    assert (r.status_code, r.json()["stage"], r.json()["value"]) == (200, "lost", None)
    got = await signals(journey, 3)
    assert got[2]["payload"] == {
        "deal_id": deal_id,
        "won": False,
        "reason": "price",
        "actor": ADMIN_ACTOR,
    }


async def test_close_refusals_write_and_signal_nothing(env: DealsEnv) -> None:
    qualifying_id, _, _ = await env.open_deal()
    r = await env.http.post(f"/deals/{qualifying_id}/close", json={"outcome": "won", "reason": "x"})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")

    deal_id, journey = await env.presenting_deal()
    for body, names in [
        ({"outcome": "maybe", "reason": "x"}, {"outcome"}),
        ({"outcome": "won", "reason": "   "}, {"reason"}),
        ({"outcome": "won"}, {"reason"}),
        ({"outcome": "won", "reason": "x", "value": "-1", "currency": "EUR"}, {"value"}),
        ({"outcome": "won", "reason": "x", "value": "10"}, {"currency"}),
        ({"outcome": "won", "reason": "x", "value": "1.234", "currency": "EUR"}, {"value"}),
        ({"outcome": "won", "reason": "x", "currency": "EURO"}, {"currency"}),
        ({"outcome": "tie", "reason": ""}, {"outcome", "reason"}),
    ]:
        r = await env.http.post(f"/deals/{deal_id}/close", json=body)
        assert r.status_code == 422, (body, r.text)
        assert fields(r) == names, body
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (deal["stage"], deal["closed_at"], deal["close_reason"], deal["value"]) == (
        "presenting",
        None,
        None,
        None,
    )
    await asyncio.sleep(0.2)
    assert len(await signals(journey, 1)) == 1

    disqualified_id, _, _ = await env.open_deal()
    await env.acts.expire_qualification(DealRef(disqualified_id))
    r = await env.http.post(
        f"/deals/{disqualified_id}/close", json={"outcome": "won", "reason": "x"}
    )
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")
