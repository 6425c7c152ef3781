"""Deals v2 on real databases and a real Temporal dev server: frameworks, the gate to
presenting, closing details, close reasons, reopen and the pipeline.

Reuses the recording journey of test_deals_api: each test asserts what the journey was told.
"""

from typing import Any

from temporalio.client import WorkflowHandle

from shared.contracts.journey import DealRef, RepAssigned
from shared.contracts.names import Sig
from tests.support.deals import GOOD_ANSWERS, DealsEnv, error, fields, in_an_hour, signals
from tests.support.settings import ADMIN_ACTOR, SERVICE_AUTH

MEDDIC_KEYS = [
    "metrics",
    "economic_buyer",
    "decision_criteria",
    "decision_process",
    "identify_pain",
    "champion",
]
CUSTOM: dict[str, Any] = {
    "name": "seats-fit",
    "label": "Seats and plan",
    "pass_score": 100,
    "criteria": [
        {"key": "pain", "question": "Pain?", "answer_type": "bool", "rule": {"allowed": [True]}},
        {"key": "seats", "question": "Seats?", "answer_type": "number", "rule": {"min": 10}},
        {
            "key": "plan",
            "question": "Plan?",
            "answer_type": "choice",
            "choices": ["basic", "pro"],
            "rule": {"allowed": ["pro"]},
            "weight": 3,
        },
    ],
}


async def journey_names(handle: Any, count: int) -> list[str]:
    return [s["name"] for s in await signals(handle, count)]


# --- frameworks ---------------------------------------------------------------------------------


async def test_bant_and_meddic_are_listed_and_bant_is_the_default(env: DealsEnv) -> None:
    r = await env.http.get("/frameworks")
    assert r.status_code == 200
    listed = {f["name"]: f for f in r.json()}
    assert {"bant", "meddic"} <= set(listed)
    assert [c["key"] for c in listed["meddic"]["criteria"]] == MEDDIC_KEYS
    assert listed["meddic"]["builtin"] is True
    deal_id, _, _ = await env.open_deal()
    assert (await env.http.get(f"/deals/{deal_id}")).json()["framework"] == "bant"


async def test_meddic_deal_is_scored_with_meddic(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    r = await env.http.patch(f"/deals/{deal_id}", json={"framework": "meddic"})
    assert (r.status_code, r.json()["framework"]) == (200, "meddic")
    # BANT answers no longer fit: refused, nothing decided
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
    assert r.status_code == 422
    answers = {k: "yes, described" for k in MEDDIC_KEYS}
    answers |= {"economic_buyer": True, "champion": False}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": answers})
    body = r.json()
    assert (body["qualified"], body["score"], body["reasons"]) == (
        False,
        85,
        ["champion: no champion"],
    )
    assert body["deal"]["stage"] == "disqualified"
    got = await signals(journey, 1)
    assert got[0]["payload"]["reasons"] == ["champion: no champion"]
    # the stored answers are MEDDIC's
    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    assert {a["framework"] for a in detail["qualification_answers"]} == {"meddic"}


async def test_custom_framework_create_read_replace_and_use(env: DealsEnv) -> None:
    r = await env.http.post("/frameworks", json=CUSTOM)
    assert r.status_code == 201, r.text
    assert r.json()["builtin"] is False
    r = await env.http.post("/frameworks", json=CUSTOM)
    assert (r.status_code, error(r)["code"]) == (409, "framework_exists")
    r = await env.http.post("/frameworks", json={**CUSTOM, "name": "bant"})
    assert (r.status_code, error(r)["code"]) == (409, "builtin_framework")
    r = await env.http.put("/frameworks/meddic", json={k: CUSTOM[k] for k in ("label", "criteria")})
    assert (r.status_code, error(r)["code"]) == (409, "builtin_framework")
    r = await env.http.put("/frameworks/nope", json={"label": "x", "criteria": CUSTOM["criteria"]})
    assert r.status_code == 404
    bad = {
        **CUSTOM,
        "name": "bad",
        "criteria": [{"key": "x", "question": "?", "answer_type": "choice"}],
    }
    r = await env.http.post("/frameworks", json=bad)
    assert r.status_code == 422
    assert any(f.startswith("criteria") for f in fields(r))
    dupes = {**CUSTOM, "name": "dupes", "criteria": CUSTOM["criteria"] + CUSTOM["criteria"][:1]}
    assert (await env.http.post("/frameworks", json=dupes)).status_code == 422

    # ops lower the seat threshold: PUT replaces the framework
    criteria = [dict(c) for c in CUSTOM["criteria"]]
    criteria[1] = {**criteria[1], "rule": {"min": 5}}
    r = await env.http.put(
        "/frameworks/seats-fit", json={"label": "Seats v2", "pass_score": 80, "criteria": criteria}
    )
    assert (r.status_code, r.json()["label"]) == (200, "Seats v2")
    got = (await env.http.get("/frameworks/seats-fit")).json()
    assert (got["pass_score"], got["criteria"][1]["rule"]["min"]) == (80, 5)

    deal_id, _, _ = await env.open_deal()
    r = await env.http.patch(f"/deals/{deal_id}", json={"framework": "unknown-one"})
    assert (r.status_code, fields(r)) == (422, {"framework"})
    await env.http.patch(f"/deals/{deal_id}", json={"framework": "seats-fit"})
    r = await env.http.post(
        f"/deals/{deal_id}/qualification",
        json={"answers": {"pain": False, "seats": 6, "plan": "pro"}},
    )
    body = r.json()
    # 1 + 3 of 5: passes 80 despite the failing "pain"
    assert (body["qualified"], body["score"], body["reasons"]) == (
        True,
        80,
        ["pain: not one of yes"],
    )
    assert body["deal"]["stage"] == "presenting"
    # the framework is fixed once qualifying is over
    r = await env.http.patch(f"/deals/{deal_id}", json={"framework": "bant"})
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")


# --- the gate -----------------------------------------------------------------------------------


async def test_gate_refuses_presenting_listing_the_criteria(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "presenting"})
    assert r.status_code == 409
    assert fields(r) == {f"qualification.{k}" for k in GOOD_ANSWERS}

    partial = {"budget": True, "authority": "influencer"}
    r = await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": partial, "partial": True}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["qualified"], r.json()["deal"]["stage"]) == (False, "qualifying")
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "presenting"})
    assert r.status_code == 409
    details = {d["field"]: d["problem"] for d in error(r)["details"]}
    assert details == {
        "qualification.authority": "contact can neither make nor sponsor the decision",
        "qualification.need": "not answered",
        "qualification.timeline": "not answered",
    }
    # scheduling a meeting is presenting too: the same gate
    meeting = {"starts_at": in_an_hour().isoformat(), "title": "Demo"}
    r = await env.http.post(f"/deals/{deal_id}/meetings", json=meeting)
    assert r.status_code == 409
    assert "qualification.need" in fields(r)
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (deal["stage"], deal["meetings"]) == ("qualifying", [])
    # signals are sent before the response: none arrived, none will
    assert await journey.query("signals") == []  # nothing decided, nothing told

    rest = {"authority": "champion", "need": "manual reports", "timeline": 1}
    r = await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": rest, "partial": True}
    )
    assert (r.json()["qualified"], r.json()["score"]) == (True, 100)
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "presenting"})
    assert (r.status_code, r.json()["stage"], r.json()["qualified"]) == (200, "presenting", True)
    got = await signals(journey, 1)
    assert got == [
        {
            "name": "qualification_recorded",
            "payload": {
                "deal_id": deal_id,
                "qualified": True,
                "reasons": [],
                "actor": ADMIN_ACTOR,
            },
        }
    ]


async def test_meeting_on_a_qualifying_deal_passing_the_gate(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS, "partial": True}
    )
    r = await env.http.post(
        f"/deals/{deal_id}/meetings", json={"starts_at": in_an_hour().isoformat(), "title": "Demo"}
    )
    assert r.status_code == 201, r.text
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "presenting"
    # the journey hears the qualification before the meeting, as if recorded first
    assert await journey_names(journey, 2) == ["qualification_recorded", "meeting_scheduled"]


async def test_stage_moves_on_open_deals_only(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "closing"})
    assert (r.status_code, r.json()["stage"]) == (200, "closing")
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "qualifying"})
    assert (r.status_code, fields(r)) == (422, {"stage"})
    await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "signed"})
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "presenting"})
    assert (r.status_code, error(r)["code"]) == (409, "already_closed")
    assert await journey_names(journey, 3) == [
        "qualification_recorded",
        "deal_stage_moved",  # the journey records the move in the prospect's history
        "deal_closed",
    ]


# --- closing ------------------------------------------------------------------------------------


async def test_deal_value_currency_and_expected_close_date(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    r = await env.http.patch(f"/deals/{deal_id}", json={"value": "1200.50"})
    assert (r.status_code, fields(r)) == (422, {"currency"})
    r = await env.http.patch(
        f"/deals/{deal_id}",
        json={"value": "1200.50", "currency": "eur", "expected_close_date": "2030-03-31"},
    )
    assert r.status_code == 200, r.text
    deal = r.json()
    assert (deal["value"], deal["currency"], deal["expected_close_date"]) == (
        "1200.50",
        "EUR",
        "2030-03-31",
    )
    r = await env.http.patch(f"/deals/{deal_id}", json={"segment": "smb"})
    assert (r.json()["segment"], r.json()["value"]) == ("smb", "1200.50")  # others kept
    r = await env.http.patch(f"/deals/{deal_id}", json={"currency": "EURO"})
    assert (r.status_code, fields(r)) == (422, {"currency"})


async def test_close_reasons_are_seeded_enforced_and_editable(env: DealsEnv) -> None:
    reasons = (await env.http.get("/close-reasons")).json()
    lost = [r["code"] for r in reasons if r["outcome"] == "lost"]
    assert {"price", "competitor", "no_decision", "other"} <= set(lost)
    assert "best_fit" in [r["code"] for r in reasons if r["outcome"] == "won"]

    deal_id, journey = await env.presenting_deal()
    r = await env.http.post(
        f"/deals/{deal_id}/close",
        json={"outcome": "lost", "reason": "went elsewhere", "reason_code": "best_fit"},
    )
    assert (r.status_code, fields(r)) == (422, {"reason_code"})
    assert "competitor" in error(r)["message"]  # the allowed ones are listed
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "presenting"

    r = await env.http.put(
        "/close-reasons",
        json={
            "reasons": [
                {"outcome": "won", "code": "signed", "label": "Signed"},
                {"outcome": "lost", "code": "ghosted", "label": "Stopped answering"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [x["code"] for x in (await env.http.get("/close-reasons")).json()] == [
        "signed",
        "ghosted",
    ]
    r = await env.http.put(
        "/close-reasons", json={"reasons": [{"outcome": "won", "code": "x", "label": "X"}]}
    )
    assert r.status_code == 422  # both outcomes need a reason
    r = await env.http.post(
        f"/deals/{deal_id}/close",
        json={"outcome": "lost", "reason": "no reply since May", "reason_code": "ghosted"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["stage"], r.json()["close_reason_code"]) == ("lost", "ghosted")
    got = await signals(journey, 2)
    assert got[1]["payload"] == {
        "deal_id": deal_id,
        "won": False,
        "reason": "no reply since May",
        "actor": ADMIN_ACTOR,
    }


async def test_reopen_returns_to_the_stage_before_closing_and_tells_the_running_journey(
    env: DealsEnv,
) -> None:
    deal_id, journey = await env.presenting_deal()
    r = await env.http.post(f"/deals/{deal_id}/reopen")
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    r = await env.http.post(
        f"/deals/{deal_id}/close",
        json={"outcome": "lost", "reason": "price", "reason_code": "price"},
    )
    assert r.json()["stage"] == "lost"
    r = await env.http.post(f"/deals/{deal_id}/reopen")
    assert r.status_code == 200, r.text
    deal = r.json()
    assert (deal["stage"], deal["closed_at"], deal["close_reason"], deal["close_reason_code"]) == (
        "objections",
        None,
        None,
        None,
    )
    await signals(journey, 4)
    got = await journey.query("signals")  # the journey still runs: it hears of the reopening
    assert [s["name"] for s in got] == [
        "qualification_recorded",
        "objection_logged",
        "deal_closed",
        "deal_reopened",
    ]
    assert got[3]["payload"] == {
        "deal_id": deal_id,
        "stage": "objections",
        "cause": "deal reopened",
        "actor": ADMIN_ACTOR,
    }
    # a disqualified deal is not reopened here
    other_id, _, _ = await env.open_deal()
    await env.acts.expire_qualification(DealRef(other_id))
    r = await env.http.post(f"/deals/{other_id}/reopen")
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage")


async def next_run(env: DealsEnv, journey: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
    """The deal's run ends and the prospect's journey runs again: a later run of the same
    workflow id (enrolled again, or back by a late reply), with its own course."""
    await journey.terminate("the run ended")
    env.journeys.remove(journey)  # nothing left to end after the test
    return await env.start_journey(journey.id.removeprefix("journey-"))


async def test_a_deal_of_an_ended_run_does_not_reach_the_prospects_next_run(
    env: DealsEnv,
) -> None:
    deal_id, journey = await env.presenting_deal()
    later = await next_run(env, journey)
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "closing"})
    assert (r.status_code, error(r)["code"]) == (409, "journey_not_running"), r.text
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "won", "reason": "ok"})
    assert (r.status_code, error(r)["code"]) == (409, "journey_not_running"), r.text
    # stored, but the later run would have taken this close for its own deal: it hears nothing
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "won"
    assert await later.query("signals") == []


async def test_reopening_a_deal_while_a_later_run_runs_is_refused_and_changes_nothing(
    env: DealsEnv,
) -> None:
    deal_id, journey = await env.presenting_deal()
    lost = {"outcome": "lost", "reason": "price", "reason_code": "price"}
    assert (await env.http.post(f"/deals/{deal_id}/close", json=lost)).status_code == 200
    later = await next_run(env, journey)
    r = await env.http.post(f"/deals/{deal_id}/reopen")
    # the running run would neither follow the deal nor let a new run start for it
    assert (r.status_code, error(r)["code"]) == (409, "another_run_running"), r.text
    assert "/stop" in error(r)["message"]
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert (deal["stage"], deal["close_reason"], deal["close_reason_code"]) == (
        "lost",
        "price",
        "price",
    )
    assert await later.query("signals") == []


async def test_a_reopening_whose_journey_did_not_restart_can_be_repeated(env: DealsEnv) -> None:
    """The deal's run ended; outreach, which starts the new run, cannot be reached: the deal is
    reopened and the answer is 503. Repeating the reopen does the journey's part again (here,
    outreach still away: 503 again) and reopens nothing twice; once the deal moves, it is over."""
    deal_id, journey = await env.presenting_deal()
    lost = {"outcome": "lost", "reason": "price", "reason_code": "price"}
    assert (await env.http.post(f"/deals/{deal_id}/close", json=lost)).status_code == 200
    await journey.terminate("the run ended")
    env.journeys.remove(journey)
    for _ in range(2):
        r = await env.http.post(f"/deals/{deal_id}/reopen")
        assert (r.status_code, error(r)["code"]) == (503, "journey_not_restarted"), r.text
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert deal["stage"] == "presenting"
    causes = [h["cause"] for h in deal["history"]]
    assert causes.count("reopened") == 1, causes
    await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    r = await env.http.post(f"/deals/{deal_id}/reopen")
    assert (r.status_code, error(r)["code"]) == (409, "invalid_stage"), r.text


async def test_a_reopened_deal_goes_to_the_rep_its_journey_signs_as(env: DealsEnv) -> None:
    """Won under rep-1; the client is handed to rep-2 while asked for referrals: outreach tells
    the journey, deals moves the open deals only (a closed deal keeps the rep who closed it).
    Reopened, the deal is open again in a journey signed by rep-2: it is rep-2's."""
    deal_id, journey = await env.presenting_deal()
    won = {"outcome": "won", "reason": "signed"}
    deal = (await env.http.post(f"/deals/{deal_id}/close", json=won)).json()
    await journey.signal(Sig.REP_ASSIGNED, RepAssigned("rep-2"))
    moved = await env.http.post(
        f"/internal/prospects/{deal['prospect_id']}/rep",
        json={"rep_id": "rep-2"},
        headers=SERVICE_AUTH,
    )
    assert moved.json()["moved"] == 0, moved.text
    r = await env.http.post(f"/deals/{deal_id}/reopen")
    assert r.status_code == 200, r.text
    assert (r.json()["stage"], r.json()["rep_id"]) == ("presenting", "rep-2")
    got = await signals(journey, 4)
    assert [s["name"] for s in got][-1] == Sig.DEAL_REOPENED


async def test_pipeline_counts_and_sums_per_stage_and_currency(env: DealsEnv) -> None:
    rep = "rep-pipeline-" + in_an_hour().strftime("%f")
    before = (await env.http.get("/pipeline", params={"rep_id": rep})).json()
    assert before["total"] == 0
    assert [s["stage"] for s in before["stages"]][:4] == [
        "qualifying",
        "presenting",
        "objections",
        "closing",
    ]
    await env.http.get("/pipeline")  # all reps: answers too
    ids = [(await env.presenting_deal())[0] for _ in range(3)]
    await env.open_deal()
    values = [("100.10", "EUR"), ("200.20", "EUR"), ("50.00", "USD")]
    for deal_id, (value, currency) in zip(ids, values, strict=True):
        await env.http.patch(f"/deals/{deal_id}", json={"value": value, "currency": currency})
    await env.http.post(
        f"/deals/{ids[2]}/close", json={"outcome": "won", "reason": "ok", "reason_code": "other"}
    )
    r = await env.http.get("/pipeline", params={"rep_id": "rep-1"})
    assert r.status_code == 200
    stages = {s["stage"]: s for s in r.json()["stages"]}
    # rep-1 owns every deal the fixture opens, so compare against what the list endpoint says
    listed = (await env.http.get("/deals", params={"stage": "presenting", "limit": 500})).json()
    assert stages["presenting"]["count"] == len(listed)
    assert stages["presenting"]["value"]["EUR"] == "300.30"
    assert "USD" not in stages["presenting"]["value"]
    assert stages["won"]["value"]["USD"] == "50.00"
    assert stages["qualifying"]["count"] >= 1


# --- objections ---------------------------------------------------------------------------------

PRICE = {
    "triggers": ["too expensive"],
    "answers": ["Look at the cost of the problem.", "Start smaller."],
    "stage_answers": {"closing": ["Pay quarterly instead."]},
}


async def objection(env: DealsEnv, deal_id: str) -> dict[str, Any]:
    r = await env.http.post(f"/deals/{deal_id}/objections", json={"text": "too expensive"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def outcome(env: DealsEnv, objection_id: str, response: str, resolved: bool) -> None:
    r = await env.http.post(
        f"/objections/{objection_id}/outcome", json={"response": response, "resolved": resolved}
    )
    assert r.status_code == 200, r.text


async def test_responses_per_stage_ranked_by_resolved_and_won(env: DealsEnv) -> None:
    assert (await env.http.put("/playbook/price", json=PRICE)).status_code == 200
    entry = (await env.http.get("/playbook/price")).json()
    assert entry["stage_answers"] == {"closing": ["Pay quarterly instead."]}
    cost, smaller, quarterly = (
        "Look at the cost of the problem.",
        "Start smaller.",
        "Pay quarterly instead.",
    )

    won_id, _ = await env.presenting_deal()
    first = await objection(env, won_id)
    # heard while presenting: the closing response is not offered, playbook order
    assert first["answers"] == [cost, smaller]
    assert first["objection"]["id"]
    await outcome(env, first["objection"]["id"], cost, False)
    await outcome(env, first["objection"]["id"], smaller, True)
    await env.http.post(f"/deals/{won_id}/close", json={"outcome": "won", "reason": "signed"})

    lost_id, _ = await env.presenting_deal()
    second = await objection(env, lost_id)
    assert second["answers"] == [smaller, cost]  # resolved and won beats playbook order
    await outcome(env, second["objection"]["id"], cost, True)
    await env.http.post(f"/deals/{lost_id}/close", json={"outcome": "lost", "reason": "no"})

    closing_id, journey = await env.presenting_deal()
    await env.http.post(f"/deals/{closing_id}/stage", json={"stage": "closing"})
    third = await objection(env, closing_id)
    # won first, then resolved (on a lost deal), then untried
    assert third["answers"] == [smaller, cost, quarterly]
    assert [(r["used"], r["resolved"], r["won"]) for r in third["responses"]] == [
        (1, 1, 1),
        (2, 1, 0),
        (0, 0, 0),
    ]
    # the journey gets the ranked answers, as before in its ObjectionLogged signal
    got = await signals(journey, 3)
    assert [s["name"] for s in got] == [
        "qualification_recorded",
        "deal_stage_moved",
        "objection_logged",
    ]
    assert got[2]["payload"]["answers"] == [smaller, cost, quarterly]

    # recording the same response again replaces its verdict instead of counting twice
    await outcome(env, third["objection"]["id"], quarterly, False)
    await outcome(env, third["objection"]["id"], quarterly, True)
    fourth = await objection(env, closing_id)
    # tied with "cost" on resolved (neither won): the closing stage's own response goes first
    assert fourth["answers"] == [smaller, quarterly, cost]
    assert fourth["responses"][1] == {
        "response": quarterly,
        "used": 1,
        "resolved": 1,
        "won": 0,
        "resolution_rate": 1.0,
    }


async def test_objection_outcome_validation(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    logged = await objection(env, deal_id)
    r = await env.http.post(
        f"/objections/{logged['objection']['id']}/outcome",
        json={"response": "Something improvised", "resolved": True},
    )
    assert (r.status_code, fields(r)) == (422, {"response"})
    assert logged["answers"][0] in error(r)["message"]  # the prepared ones are listed
    r = await env.http.post(
        f"/objections/{logged['objection']['id']}/outcome", json={"response": "x"}
    )
    assert (r.status_code, fields(r)) == (422, {"resolved"})
    r = await env.http.post("/objections/nope/outcome", json={"response": "x", "resolved": True})
    assert (r.status_code, error(r)["code"]) == (404, "objection_not_found")
    stats = (await env.http.get("/analytics/objections")).json()["responses"]
    assert stats == []


async def test_objection_analytics_by_stage_segment_and_response(env: DealsEnv) -> None:
    await env.http.put("/playbook/price", json=PRICE)
    smb_id, _ = await env.presenting_deal()
    ent_id, _ = await env.presenting_deal()
    await env.http.patch(f"/deals/{smb_id}", json={"segment": "smb"})
    await env.http.patch(f"/deals/{ent_id}", json={"segment": "enterprise"})
    a = await objection(env, smb_id)  # presenting
    await objection(env, smb_id)  # objections
    await env.http.post(f"/deals/{smb_id}/objections", json={"text": "bad timing, next quarter"})
    await env.http.post(
        f"/deals/{ent_id}/objections", json={"text": "not now", "category": "timing"}
    )
    await outcome(env, a["objection"]["id"], "Start smaller.", True)
    await outcome(env, a["objection"]["id"], "Look at the cost of the problem.", False)

    r = await env.http.get("/analytics/objections")
    assert r.status_code == 200
    body = r.json()
    by_stage = {s["stage"]: s["objections"] for s in body["by_stage"]}
    assert by_stage["presenting"] == [
        {"category": "price", "count": 1},
        {"category": "timing", "count": 1},
    ]
    assert by_stage["objections"] == [
        {"category": "price", "count": 1},
        {"category": "timing", "count": 1},
    ]
    by_segment = {s["segment"]: s["objections"] for s in body["by_segment"]}
    assert by_segment == {
        "enterprise": [{"category": "timing", "count": 1}],
        "smb": [{"category": "price", "count": 2}, {"category": "timing", "count": 1}],
    }
    rates = {(x["category"], x["response"]): x["resolution_rate"] for x in body["responses"]}
    assert rates == {
        ("price", "Start smaller."): 1.0,
        ("price", "Look at the cost of the problem."): 0.0,
    }

    only = (await env.http.get("/analytics/objections", params={"segment": "enterprise"})).json()
    assert [s["segment"] for s in only["by_segment"]] == ["enterprise"]
    assert {s["stage"]: s["objections"] for s in only["by_stage"]} == {
        "presenting": [{"category": "timing", "count": 1}]
    }
    # the segment narrows the responses too: no enterprise deal has an outcome recorded
    assert only["responses"] == []
    smb = (await env.http.get("/analytics/objections", params={"segment": "smb"})).json()
    assert smb["responses"] == body["responses"]


async def test_new_routes_need_an_api_key(env: DealsEnv) -> None:
    deal_id, _, _ = await env.open_deal()
    calls = [
        ("GET", "/frameworks", None),
        ("GET", "/frameworks/bant", None),
        ("POST", "/frameworks", CUSTOM),
        ("PUT", "/frameworks/x", CUSTOM),
        ("PATCH", f"/deals/{deal_id}", {"segment": "x"}),
        ("POST", f"/deals/{deal_id}/stage", {"stage": "presenting"}),
        ("POST", f"/deals/{deal_id}/reopen", None),
        ("GET", "/close-reasons", None),
        ("PUT", "/close-reasons", {"reasons": []}),
        ("GET", "/pipeline", None),
        ("POST", "/objections/x/outcome", {"response": "x", "resolved": True}),
        ("GET", "/analytics/objections", None),
    ]
    for method, url, body in calls:
        r = await env.anon.request(method, url, json=body)
        assert r.status_code == 401, (method, url)
    assert (await env.http.get(f"/deals/{deal_id}")).json()["segment"] is None


async def test_answers_a_replaced_framework_no_longer_asks_do_not_block_the_deal(
    env: DealsEnv,
) -> None:
    """Ops replace a framework (PUT /frameworks/{name}) while deals are being qualified by it:
    the answers stored for a criterion it no longer asks, or of a type it no longer takes, made
    every stage move and booked meeting of those deals a 500 and every later qualification a
    422 naming a criterion the rep never sent: the deal could not be qualified at all. They are
    left out now (a changed criterion is asked again, as unanswered)."""
    framework = {**CUSTOM, "name": "fit-v1"}
    assert (await env.http.post("/frameworks", json=framework)).status_code == 201
    deal_id, _, journey = await env.open_deal()
    await env.http.patch(f"/deals/{deal_id}", json={"framework": "fit-v1"})
    r = await env.http.post(
        f"/deals/{deal_id}/qualification",
        json={"answers": {"pain": True, "seats": 12}, "partial": True},
    )
    assert r.status_code == 200, r.text
    # "seats" goes; "pain" becomes a choice
    replaced = [
        {
            **CUSTOM["criteria"][0],
            "answer_type": "choice",
            "choices": ["yes", "no"],
            "rule": {"allowed": ["yes"]},
        },
        CUSTOM["criteria"][2],
    ]
    r = await env.http.put(
        "/frameworks/fit-v1", json={"label": "Fit v2", "pass_score": 100, "criteria": replaced}
    )
    assert r.status_code == 200, r.text

    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "presenting"})
    assert r.status_code == 409, r.text
    assert fields(r) == {"qualification.pain", "qualification.plan"}
    r = await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": {"pain": "yes", "plan": "pro"}}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["qualified"], r.json()["deal"]["stage"]) == (True, "presenting")
    assert (await signals(journey, 1))[0]["payload"]["qualified"] is True
