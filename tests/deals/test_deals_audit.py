"""Who changed a deal (issue 14): the deal's history names the actor of each move, and deals'
audit log has the close with the stage before and after; the journey's own moves say so. And
the pipeline exported as CSV."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from services.deals.models import AuditEntry
from shared.auth import key_fingerprint
from shared.contracts.names import Sig
from tests.support.deals import GOOD_ANSWERS, DealsEnv, in_an_hour, signals
from tests.support.settings import API_KEY, SERVICE_AUTH

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True),
]


async def test_deal_history_and_audit_name_who_moved_the_deal(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    reason = "=cmd|' /C calc'!A0"  # a formula, as a rep's words: the export must defuse it
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": reason})
    assert r.status_code == 200, r.text
    open_id, _, _ = await env.open_deal()

    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    actors = [(h["to_stage"], h["actor"]) for h in deal["history"]]
    me = f"admin ({key_fingerprint(API_KEY)})"
    # opened by the journey's activity; qualified and closed by the test's admin key
    assert actors[0] == ("qualifying", "journey")
    assert ("presenting", me) in actors and actors[-1] == ("won", me)
    # the journey hears who, and names them in the prospect's stage history (issue 14)
    told = [(s["name"], s["payload"]["actor"]) for s in await signals(journey, 2)]
    assert told == [(Sig.QUALIFICATION_RECORDED, me), (Sig.DEAL_CLOSED, me)]

    page = (await env.http.get("/audit", params={"resource": "deals"})).json()
    closes = [e for e in page["entries"] if e["route"] == "POST /deals/{deal_id}/close"]
    assert len(closes) == 1
    [close] = closes
    assert close["resource_id"] == deal_id and close["action"] == "update"
    assert close["actor_role"] == "admin" and close["actor_key_id"] == key_fingerprint(API_KEY)
    assert close["changes"]["stage"] == {"before": "presenting", "after": "won"}
    assert close["changes"]["close_reason"] == {"changed": True}  # free text: not kept
    # the event for subscribers was queued in the same transaction, and is not audited
    assert not [e for e in page["entries"] if e["resource"] == "event_outbox"]

    # the pipeline as CSV, with the list's filters
    export = await env.http.get("/exports/deals.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["id"]: r["stage"] for r in rows} == {deal_id: "won", open_id: "qualifying"}
    won = next(r for r in rows if r["id"] == deal_id)
    assert won["close_reason"] == "'" + reason and won["rep_id"] == "rep-1"
    only = await env.http.get("/exports/deals.csv", params={"stage": "qualifying"})
    assert [r["id"] for r in csv.DictReader(io.StringIO(only.text))] == [open_id]
    assert (await env.http.get("/exports/deals.csv", params={"stage": "x"})).status_code == 422


async def test_a_qualification_answer_naming_the_prospect_leaves_no_trace_in_the_audit_log(
    env: DealsEnv,
) -> None:
    """A rep's free-text answer (who signs, in their words) is personal data: the audit log,
    which outlives the deal (an erasure deletes the deal and its answers, but an answer's entry
    names no prospect to redact it by), records that it changed and whether it passed, not what
    it says."""
    deal_id, prospect_id, _ = await env.open_deal()
    answers = {**GOOD_ANSWERS, "need": "Ada Lovelace signs; her team loses two days a month"}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": answers})
    assert r.status_code == 200, r.text
    page = (await env.http.get("/audit", params={"resource": "qualification_answers"})).json()
    by_answer = {e["changes"]["criterion"]["after"]: e["changes"] for e in page["entries"]}
    assert by_answer["need"]["answer"] == {"changed": True}
    assert by_answer["need"]["passed"] == {"after": True}

    order = {"erasure_id": "e1", "prospect_id": prospect_id}
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    async with env.app.state.sessions() as session:
        kept = repr((await session.execute(select(AuditEntry.__table__))).all())
    assert "ada lovelace" not in kept.lower(), kept


async def test_the_entries_of_a_deals_rows_name_its_prospect_and_go_with_their_erasure(
    env: DealsEnv,
) -> None:
    """A deal's qualification answers, meetings, objections and their outcomes are about the
    deal's prospect: their audit entries name that prospect (as the deal's own do), so that the
    prospect's erasure redacts them, and not another prospect's."""
    deal_id, prospect_id, _ = await env.open_deal()
    other_deal, other_prospect, _ = await env.open_deal()
    for deal in (deal_id, other_deal):
        r = await env.http.post(f"/deals/{deal}/qualification", json={"answers": GOOD_ANSWERS})
        assert r.status_code == 200, r.text
    meeting = {"starts_at": in_an_hour().isoformat(), "title": "Demo", "duration_minutes": 45}
    r = await env.http.post(f"/deals/{deal_id}/meetings", json=meeting)
    assert r.status_code == 201, r.text
    r = await env.http.post(f"/deals/{deal_id}/meetings/{r.json()['id']}/cancel", json={})
    assert r.status_code == 200, r.text
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    assert r.status_code == 201, r.text
    objection_id = r.json()["objection"]["id"]
    prepared = r.json()["responses"][0]["response"]
    outcome = {"response": prepared, "resolved": True}
    r = await env.http.post(f"/objections/{objection_id}/outcome", json=outcome)
    assert r.status_code == 200, r.text

    async with env.app.state.sessions() as session:
        entries = (await session.scalars(select(AuditEntry))).all()
    subjects = {(e.resource, e.subject_id) for e in entries if e.resource_id != other_deal}
    children = ("qualification_answers", "meetings", "objections", "objection_outcomes")
    for resource in children:
        assert (resource, prospect_id) in subjects, resource
    assert [s for s in subjects if s[1] not in (prospect_id, other_prospect)] == []

    order = {"erasure_id": "e1", "prospect_id": prospect_id}
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    async with env.app.state.sessions() as session:
        entries = (await session.scalars(select(AuditEntry))).all()
    kept = {
        e.resource
        for e in entries
        if e.subject_id == other_prospect and "redacted" not in e.changes
    }
    assert set(children[:1]) <= kept  # the other prospect's entries keep their values
    left = [(e.resource, e.changes) for e in entries if e.subject_id != other_prospect]
    assert left and all(c == {"redacted": "the prospect was erased"} for _, c in left), left
