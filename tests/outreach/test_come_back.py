"""Come back (issue 10, point 1) through the whole stack on the real Temporal dev server: a
prospect whose journey ended is enrolled again as a new run of `journey-<id>` (same or another
cadence) with the earlier run's history kept; enrolling while a journey runs stays idempotent;
the minimum gap; a follow-up cadence after nurture (to an active rep, started by its retry when
its start failed), and one refused by do-not-contact."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from temporalio.client import WorkflowExecutionStatus

from services.outreach.cadences import follow_ups
from services.outreach.models import Enrollment
from services.outreach.prospects import ProspectDirectory
from shared.db import create_engine, session_factory
from shared.relay import Outcome
from tests.support.eventually import eventually
from tests.support.gate import temporal_away_at_start
from tests.support.runs import (
    cadence,
    first_run_nurtured,
    handed_over,
    rep_left_after_the_journey,
    rita_s,
    runs_of,
    stop_to_nurture,
    wait_run,
)
from tests.support.settings import SERVICE_AUTH
from tests.support.stack import StackDriver


async def test_a_prospect_enrolled_again_after_their_rep_left_goes_to_an_active_rep(
    stack: StackDriver,
) -> None:
    """Eve's journey ended under Rita, deactivated since (a journey that is over is not handed
    over then). Enrolled again, Eve comes back to an active rep (Ben, by the assignment rules):
    the new run, and so its tasks and deal, are his, not those of a rep who left."""
    d = stack
    rita, _ = await d.setup()
    plan = await cadence(d)
    eve = await d.new_prospect("Eve")
    await first_run_nurtured(d, eve, plan["id"])
    ben = await rep_left_after_the_journey(d, rita["id"])

    second = await d.enroll(eve["id"], plan["id"])
    assert second["run"] == 2 and second["rep_id"] == ben["id"], second
    assert await handed_over(d, eve["id"], rita["id"]) == ben["id"]


async def test_a_nurtured_prospect_comes_back_in_the_same_and_another_cadence(
    stack: StackDriver,
) -> None:
    d = stack
    await d.setup()
    first, other = await cadence(d), await cadence(d)
    eve = await d.new_prospect("Eve")
    enrolled = await d.enroll(eve["id"], first["id"])
    assert (enrolled["run"], enrolled["run_key"]) == (1, f"journey-{eve['id']}")

    # while the journey runs: the same cadence is the same run, another one is refused
    again = await d.http.post(
        f"{d.u.outreach}/enrollments", json={"prospect_id": eve["id"], "cadence_id": first["id"]}
    )
    assert again.status_code == 200 and again.json()["id"] == enrolled["id"]
    elsewhere = await d.http.post(
        f"{d.u.outreach}/enrollments", json={"prospect_id": eve["id"], "cadence_id": other["id"]}
    )
    assert elsewhere.status_code == 409, elsewhere.text
    error = elsewhere.json()["error"]
    assert error["code"] == "already_enrolled" and first["id"] in error["message"]

    await d.wait_mails(eve["email"], 1)
    await stop_to_nurture(d, eve["id"], 1)

    # back in the same cadence: run 2 of the same workflow id, a new Temporal run
    second = await d.enroll(eve["id"], first["id"])
    assert second["run"] == 2 and second["journey_id"] == enrolled["journey_id"]
    assert second["run_key"] == f"journey-{eve['id']}.r2"
    await d.wait_mails(eve["email"], 2)  # run 2 touches again: its ledger keys are its own
    runs = await wait_run(d, eve["id"], 2, status="running")
    assert [(r["run"], r["status"], r["outcome"], r["current"]) for r in runs] == [
        (1, "ended", "nurture", False),
        (2, "running", None, True),
    ]
    assert runs[0]["run_id"] and runs[1]["run_id"] and runs[0]["run_id"] != runs[1]["run_id"]
    messages = await d.ok("GET", f"{d.u.outreach}/prospects/{eve['id']}/messages")
    assert {m["journey_id"] for m in messages} == {runs[0]["run_key"], runs[1]["run_key"]}

    # and in another cadence once run 2 ended too
    await stop_to_nurture(d, eve["id"], 2)
    third = await d.enroll(eve["id"], other["id"])
    assert (third["run"], third["cadence_id"]) == (3, other["id"])
    runs = await wait_run(d, eve["id"], 3, status="running")
    assert [(r["run"], r["cadence_id"]) for r in runs] == [
        (1, first["id"]),
        (2, first["id"]),
        (3, other["id"]),
    ]

    # the stage history keeps every run: contacting -> nurture twice, then contacting again
    async def third_run_contacting() -> list[str] | None:
        path = await d.stages(eve["id"])
        return path if len(path) == 6 else None

    path = await eventually(third_run_contacting, "run 3 in contacting")
    assert path == [
        "prospecting",
        "contacting",
        "nurture",
        "contacting",
        "nurture",
        "contacting",
    ]
    rows = await d.ok("GET", f"{d.u.prospecting}/prospects/{eve['id']}/stages")
    assert [r["run"] for r in rows] == [1, 1, 1, 2, 2, 3]
    # the current run is what the journey API and pausing act on
    current = await d.ok("GET", f"{d.u.outreach}/prospects/{eve['id']}/enrollment")
    assert current["run"] == 3
    paused = await d.ok("POST", f"{d.u.outreach}/cadences/{first['id']}/pause", json={})
    assert eve["id"] not in paused["signalled"] + list(paused["skipped"])


async def test_coming_back_inside_the_minimum_gap_says_from_when(stack: StackDriver) -> None:
    d = stack
    await d.setup()
    patient = await cadence(d, reenroll_min_gap_days=30)
    fay = await d.new_prospect("Fay")
    await d.enroll(fay["id"], patient["id"])
    await d.wait_mails(fay["email"], 1)
    runs = await stop_to_nurture(d, fay["id"], 1)
    refused = await d.http.post(
        f"{d.u.outreach}/enrollments", json={"prospect_id": fay["id"], "cadence_id": patient["id"]}
    )
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "reenroll_too_soon"
    possible = error["details"][0]["possible_from"]
    assert possible > runs[0]["ended_at"] and "30 days" in error["message"]
    assert [r["run"] for r in await runs_of(d, fay["id"])] == [1]


async def test_a_nurtured_prospect_enters_the_follow_up_cadence_unless_they_may_not(
    stack: StackDriver,
) -> None:
    d = stack
    await d.setup()
    follow_up = await cadence(d, name="Re-engagement")
    # the follow-up holds no minimum gap: its own delay is ops' choice
    outbound = await cadence(
        d,
        reenroll_min_gap_days=365,
        follow_up_cadence_id=follow_up["id"],
        follow_up_after_seconds=1,
    )
    gil, hal = await d.new_prospect("Gil"), await d.new_prospect("Hal")
    for person in (gil, hal):
        await d.enroll(person["id"], outbound["id"])
        await d.wait_mails(person["email"], 1)

    # Gil is nurtured: a second later the follow-up cadence takes him, as run 2
    await stop_to_nurture(d, gil["id"], 1)
    runs = await wait_run(d, gil["id"], 2, cadence_id=follow_up["id"], origin="follow_up")
    assert runs[0]["outcome"] == "nurture"
    await d.wait_mails(gil["email"], 2)
    (done,) = await d.ok("GET", f"{d.u.outreach}/follow-ups", params={"prospect_id": gil["id"]})
    assert (done["status"], done["run"], done["after_run"]) == ("enrolled", 2, 1)

    # Hal's address goes on the do-not-contact list: his journey stops (nurture), and the
    # follow-up that falls due is refused, with the reason
    await d.ok(
        "POST",
        f"{d.u.outreach}/do-not-contact",
        json={"value": hal["email"], "reason": "asked by phone"},
    )
    await wait_run(d, hal["id"], 1, outcome="nurture")

    async def refused() -> dict[str, object] | None:
        rows = await d.ok("GET", f"{d.u.outreach}/follow-ups", params={"prospect_id": hal["id"]})
        return rows[0] if rows and rows[0]["status"] == "refused" else None

    row = await eventually(refused, "Hal's follow-up refused")
    assert "do not contact" in str(row["reason"]) and hal["email"] in str(row["reason"])
    assert [r["run"] for r in await runs_of(d, hal["id"])] == [1]


async def test_a_follow_up_run_goes_to_an_active_rep(stack: StackDriver) -> None:
    """Gil was nurtured under Rita, deactivated since (a journey that is over is not handed
    over). His follow-up brings him back to an active rep, as enrolling him again would: the
    new run, its messages and tasks are an active rep's, not those of a rep who left."""
    d = stack
    rita, _ = await d.setup()
    follow_up = await cadence(d, name="Re-engagement")
    outbound = await cadence(d, follow_up_cadence_id=follow_up["id"], follow_up_after_seconds=3)
    gil = await d.new_prospect("Gil")
    await rita_s(d, gil, rita)
    await first_run_nurtured(d, gil, outbound["id"])
    await rep_left_after_the_journey(d, rita["id"])

    runs = await wait_run(d, gil["id"], 2, origin="follow_up", status="running")
    now_with = await handed_over(d, gil["id"], rita["id"])
    assert runs[1]["rep_id"] == now_with


async def test_a_follow_up_whose_start_failed_is_started_by_its_retry(
    stack: StackDriver,
) -> None:
    """Gil's follow-up falls due while Temporal is away: its run is stored, not started. The
    relay's next attempt at the same follow-up starts that run (no second row); it used to
    take that row for an enrollment made meanwhile and cancel the follow-up."""
    d = stack
    await d.setup()
    follow_up = await cadence(d, name="Re-engagement")
    # due in an hour: the test makes the relay's attempts itself, with the Temporal it chooses
    outbound = await cadence(d, follow_up_cadence_id=follow_up["id"], follow_up_after_seconds=3600)
    gil = await d.new_prospect("Gil")
    await first_run_nurtured(d, gil, outbound["id"])
    (pending,) = await d.ok("GET", f"{d.u.outreach}/follow-ups", params={"prospect_id": gil["id"]})

    engine = create_engine(d.u.settings.database_url("outreach"))
    sessions = session_factory(engine)
    prospects = ProspectDirectory.from_settings(d.u.settings)
    away = await temporal_away_at_start(d.env.client)

    async def attempt(temporal: object) -> Outcome:
        relay = follow_ups.FollowUpRelay(
            lambda: sessions,
            lambda: temporal,
            lambda: prospects,
            d.u.settings,
        )
        async with sessions() as session:
            (item,) = await follow_ups._load(session, [pending["id"]])
        return await relay._enroll(item)

    try:
        failed = await attempt(away)
        assert failed.retry and "did not start" in failed.error, failed
        runs = await runs_of(d, gil["id"])
        assert [(r["run"], r["origin"], r["status"]) for r in runs] == [
            (1, "enrollment", "ended"),
            (2, "follow_up", "not_started"),
        ]
        started = await attempt(d.env.client)
        assert not started.retry and started.values["status"] == "enrolled", started
        assert started.values["run"] == 2
    finally:
        await prospects.close()
        await engine.dispose()
    runs = await wait_run(d, gil["id"], 2, status="running", origin="follow_up")
    assert len(runs) == 2 and runs[1]["cadence_id"] == follow_up["id"]
    await d.wait_mails(gil["email"], 2)


async def test_a_repeat_knows_the_run_its_lost_start_made_whatever_the_clocks(
    stack: StackDriver,
) -> None:
    """Eve's second run was started, but the answer never came back (its Temporal id is not
    stored), and outreach's clock ran ahead of Temporal's when it stored the row. The repeated
    request knows the run by the run number its start carried, not by comparing the two clocks:
    it takes that run for its row (it used to take it for the run before and answer 409
    `journey_running` after waiting for it to end)."""
    d = stack
    await d.setup()
    plan = await cadence(d)
    eve = await d.new_prospect("Eve")
    await first_run_nurtured(d, eve, plan["id"])
    second = await d.enroll(eve["id"], plan["id"])
    assert second["run"] == 2 and second["run_id"]

    engine = create_engine(d.u.settings.database_url("outreach"))
    try:
        async with session_factory(engine)() as session:
            stored = datetime.fromisoformat(second["created_at"])
            await session.execute(
                update(Enrollment)
                .where(Enrollment.id == second["id"])
                .values(run_id=None, created_at=stored + timedelta(seconds=30))
            )
            await session.commit()
    finally:
        await engine.dispose()
    again = await d.enroll(eve["id"], plan["id"])
    assert (again["id"], again["run"], again["run_id"]) == (second["id"], 2, second["run_id"])
    runs = await runs_of(d, eve["id"])
    assert [(r["run"], r["status"]) for r in runs] == [(1, "ended"), (2, "running")]


async def test_an_auto_enrolment_leaves_a_run_that_ended_as_it_is(stack: StackDriver) -> None:
    """Eve's second run ended; her tier is then raised (an ICP change), and prospecting asks
    outreach to auto-enrol her: outreach started that ended run again, a second execution
    under its keys sending its cadence once more. It is left as it is, and said why."""
    d = stack
    await d.setup()
    plan = await cadence(d, auto_enroll=True, auto_enroll_min_tier="D")
    eve = await d.new_prospect("Eve")
    await first_run_nurtured(d, eve, plan["id"])
    await d.enroll(eve["id"], plan["id"])
    await d.wait_mails(eve["email"], 2)
    await stop_to_nurture(d, eve["id"], 2)
    mails = len(await d.mails_to(eve["email"]))

    asked = {"items": [{"prospect_id": eve["id"], "tier": "A"}]}
    r = await d.http.post(
        f"{d.u.outreach}/internal/auto-enrollments", json=asked, headers=SERVICE_AUTH
    )
    assert r.status_code == 200, r.text
    why = r.json()["skipped"].get(eve["id"], "")
    assert why.startswith("enrolled before: run 2 ended (nurture)"), r.json()
    journey = d.env.client.get_workflow_handle(f"journey-{eve['id']}")
    assert (await journey.describe()).status != WorkflowExecutionStatus.RUNNING
    runs = await runs_of(d, eve["id"])
    assert [(r["run"], r["status"]) for r in runs] == [(1, "ended"), (2, "ended")]
    assert len(await d.mails_to(eve["email"])) == mails
