"""Who changed a deal (issue 14): the deal's history names the actor of each move, and deals'
audit log has the close with the stage before and after; the journey's own moves say so. And
the pipeline exported as CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from shared.auth import key_fingerprint
from shared.contracts.names import Sig
from tests.support.deals import DealsEnv, signals
from tests.support.settings import API_KEY

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


async def test_qualification_answers_in_the_reps_words_are_not_in_the_audit_log(
    env: DealsEnv,
) -> None:
    """An answer is free text about the prospect's people: the audit log records that it
    changed, never the words (its entry names no prospect, so erasure could not redact it)."""
    deal_id, _, _ = await env.open_deal()
    need = "Jane Doe, their CFO, loses two days a month on reports"
    answers = {"budget": True, "authority": "decision_maker", "need": need, "timeline": 2}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": answers})
    assert r.status_code == 200, r.text

    page = (await env.http.get("/audit", params={"limit": "1000"})).json()
    recorded = [e for e in page["entries"] if e["resource"] == "qualification_answers"]
    assert recorded, page
    assert all(e["changes"]["answer"] == {"changed": True} for e in recorded)
    assert "Jane Doe" not in json.dumps(page)
