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
from tests.support.deals import GOOD_ANSWERS, DealsEnv, signals
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
