"""A reopened deal whose journey ended (issue 10) through the whole stack on the real Temporal dev
server: the journey comes back as a new run at presenting with the same deal, which it then
follows to its close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.prospecting.models import OutboxMessage
from services.prospecting.outbox import DONE
from services.prospecting.service import REP_MOVE_DEALS
from shared.contracts.journey import journey_id
from shared.db import create_engine, session_factory
from shared.journeys import query_state
from tests.support.eventually import eventually
from tests.support.runs import (
    cadence,
    decide,
    rep_left_after_the_journey,
    runs_of,
    stop_to_nurture,
    wait_run,
)
from tests.support.stack import StackDriver


async def una_lost(d: StackDriver) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Una, whose run 1 lost her deal: (the prospect, the deal, the cadence)."""
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    una = await d.new_prospect("Una")
    deal = await decide(d, una, plan["id"], "lost")
    await wait_run(d, una["id"], 1, outcome="lost", status="ended")
    return una, deal, plan


async def back_in_presenting(d: StackDriver, prospect_id: str) -> list[str]:
    """The prospect's stages, once the last two are the loss and the way back."""

    async def probe() -> list[str] | None:
        path = await d.stages(prospect_id)
        return path if path[-2:] == ["lost", "presenting"] else None

    return await eventually(probe, f"{prospect_id} back in presenting")


async def a_repeat_changes_nothing(d: StackDriver, prospect_id: str, deal_id: str) -> None:
    """Once run 2 follows the reopened deal, the reopen again: no run 3, no second reopening
    (the run is not told of it a second time)."""
    path = await back_in_presenting(d, prospect_id)
    again = await d.ok("POST", f"{d.u.deals}/deals/{deal_id}/reopen")
    assert again["stage"] == "presenting"
    assert len(await wait_run(d, prospect_id, 2, status="running")) == 2
    assert await d.stages(prospect_id) == path
    state = await query_state(d.env.client.get_workflow_handle(journey_id(prospect_id)))
    assert state is not None and state.reopenings_heard == 0


async def test_reopening_a_lost_deal_starts_a_run_at_presenting(stack: StackDriver) -> None:
    d = stack
    una, deal, _ = await una_lost(d)

    reopened = await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/reopen")
    assert reopened["stage"] == "presenting"
    runs = await wait_run(d, una["id"], 2, status="running", origin="deal_reopened")
    assert runs[1]["start_stage"] == "presenting"

    await a_repeat_changes_nothing(d, una["id"], deal["id"])
    # the new run knows the deal: closing it now ends run 2
    won = {"outcome": "won", "reason": "came back", "value": 500, "currency": "EUR"}
    await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/close", json=won)
    await d.wait_stage(una["id"], "won")
    await wait_run(d, una["id"], 2, outcome="won", status="ended")


async def test_a_new_run_of_a_reopened_deal_prepares_its_meeting_still_ahead(
    stack: StackDriver,
) -> None:
    """Run 1 planned the meeting and its close stopped that; run 2 knew nothing of it (nor of the
    decision deadline): deals tells it what the reopened deal still has ahead."""
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    una = await d.new_prospect("Una")
    await d.enroll(una["id"], plan["id"])
    await d.reply_to_first_mail(una, "Interested")
    await d.wait_stage(una["id"], "qualifying")
    deal = await d.deal_of(una["id"])
    answers = {"budget": True, "authority": "decision_maker", "need": "Reports", "timeline": 3}
    url = f"{d.u.deals}/deals/{deal['id']}"
    await d.ok("POST", f"{url}/qualification", json={"answers": answers})
    await d.wait_stage(una["id"], "presenting")
    starts = datetime.now(UTC) + timedelta(days=3)
    meeting = await d.ok(
        "POST", f"{url}/meetings", json={"starts_at": starts.isoformat(), "title": "Demo"}
    )
    await d.ok("PATCH", url, json={"decision_deadline": (starts + timedelta(days=2)).isoformat()})

    async def prepared(count: int) -> list[dict[str, Any]] | None:
        found = [t for t in await d.tasks_of(una["id"]) if t["kind"] == "prepare_meeting"]
        return found if len(found) >= count else None

    await eventually(lambda: prepared(1), "run 1's preparation task")
    await d.ok("POST", f"{url}/close", json={"outcome": "lost", "reason": "went with a rival"})
    await wait_run(d, una["id"], 1, outcome="lost", status="ended")
    # the loss closed the preparation and left the rep the question of the meeting ahead
    (question,) = [t for t in await d.tasks_of(una["id"]) if t["kind"] == "meeting_after_decision"]
    assert (question["status"], question["context"]["meeting_id"]) == ("open", meeting["id"])
    assert f"/deals/{deal['id']}/meetings/{meeting['id']}/cancel" in question["body"]
    await d.ok("POST", f"{url}/reopen")
    await wait_run(d, una["id"], 2, status="running")
    tasks = await eventually(lambda: prepared(2), "run 2's preparation task of the meeting")
    assert {t["context"]["meeting_id"] for t in tasks} == {meeting["id"]}
    # reopened, the deal's meeting is the deal's again: run 1's question is closed
    (question,) = [t for t in await d.tasks_of(una["id"]) if t["kind"] == "meeting_after_decision"]
    assert question["status"] == "closed", question
    assert question["notes"] == f"deal {deal['id']} reopened: the deal is open again"


@pytest.mark.stack(gated=["outreach"])
async def test_a_reopening_repeated_once_outreach_is_back_restarts_the_journey(
    stack: StackDriver,
) -> None:
    """Una's run lost her deal. The deal is reopened while outreach, which starts the new run,
    cannot be reached: the deal is open again and the answer is 503 `journey_not_restarted`.
    Once outreach is back, the same request again brings the journey back at presenting; a
    third changes nothing more (docs/guides/deals.md, on `journey_not_restarted`)."""
    d = stack
    una, deal, _ = await una_lost(d)
    url = f"{d.u.deals}/deals/{deal['id']}"

    async with d.u.gates["outreach"].closed():
        r = await d.http.post(f"{url}/reopen")
        assert (r.status_code, r.json()["error"]["code"]) == (503, "journey_not_restarted"), r.text
        assert f"repeat POST /deals/{deal['id']}/reopen" in r.json()["error"]["message"]
        assert (await d.ok("GET", url))["stage"] == "presenting"
    runs = await runs_of(d, una["id"])
    assert [(r["run"], r["status"], r["outcome"]) for r in runs] == [(1, "ended", "lost")]

    again = await d.ok("POST", f"{url}/reopen")
    assert again["stage"] == "presenting"
    await wait_run(d, una["id"], 2, status="running", origin="deal_reopened")

    await a_repeat_changes_nothing(d, una["id"], deal["id"])
    causes = [h["cause"] for h in (await d.ok("GET", url))["history"]]
    assert causes.count("reopened") == 1, causes
    # the new run follows the deal: its close ends run 2
    await d.ok("POST", f"{url}/close", json={"outcome": "won", "reason": "came back"})
    await wait_run(d, una["id"], 2, outcome="won", status="ended")


async def test_an_earlier_runs_deal_is_not_reopened_into_a_later_run(stack: StackDriver) -> None:
    """Run 1 lost the deal; Una was enrolled again (run 2, contacting). Run 2 would not follow
    the reopened deal, and would later take its close for its own deal: the reopening is refused
    and changes nothing. Once run 2 is stopped, the deal comes back as run 3, which its close
    ends."""
    d = stack
    una, deal, plan = await una_lost(d)
    await d.enroll(una["id"], plan["id"])
    await wait_run(d, una["id"], 2, status="running")

    url = f"{d.u.deals}/deals/{deal['id']}"
    r = await d.http.post(f"{url}/reopen")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "another_run_running"), r.text
    assert (await d.ok("GET", url))["stage"] == "lost"

    await stop_to_nurture(d, una["id"], 2)
    assert (await d.ok("POST", f"{url}/reopen"))["stage"] == "presenting"
    await wait_run(d, una["id"], 3, status="running", origin="deal_reopened")
    await d.wait_stage(una["id"], "presenting")
    await d.ok("POST", f"{url}/close", json={"outcome": "won", "reason": "came back"})
    await d.wait_stage(una["id"], "won")
    await wait_run(d, una["id"], 3, outcome="won", status="ended")


async def rep_moves_delivered(d: StackDriver, prospect_id: str) -> None:
    """Prospecting's outbox has told deals of the prospect's new rep."""
    engine = create_engine(d.u.settings.database_url("prospecting"))
    sessions = session_factory(engine)

    async def delivered() -> bool:
        async with sessions() as session:
            states = await session.scalars(
                select(OutboxMessage.status).where(
                    OutboxMessage.subject_id == prospect_id,
                    OutboxMessage.kind == REP_MOVE_DEALS,
                )
            )
            return list(states.all()) == [DONE]

    try:
        await eventually(delivered, f"the rep move of {prospect_id} delivered to deals")
    finally:
        await engine.dispose()


async def test_a_reopened_deal_goes_to_the_prospects_rep_now(stack: StackDriver) -> None:
    """Una's deal was lost under Rita; Una was handed to Ben since. A closed deal keeps the rep
    who closed it, but reopened it is open again, in a new run that Ben signs: it is Ben's."""
    d = stack
    una, deal, _ = await una_lost(d)
    ben = await d.ok(
        "POST", f"{d.u.prospecting}/reps", json={"name": "Ben New", "email": "ben@example.org"}
    )
    await d.ok("PATCH", f"{d.u.prospecting}/prospects/{una['id']}", json={"rep_id": ben["id"]})
    await rep_moves_delivered(d, una["id"])
    url = f"{d.u.deals}/deals/{deal['id']}"
    assert (await d.ok("GET", url))["rep_id"] == una["rep"]["id"]

    reopened = await d.ok("POST", f"{url}/reopen")
    assert reopened["rep_id"] == ben["id"]
    await wait_run(d, una["id"], 2, status="running", origin="deal_reopened")
    journey = await d.ok("GET", f"{d.u.outreach}/journeys/{una['id']}")
    assert journey["rep_id"] == ben["id"]
    await d.wait_stage(una["id"], "presenting")


async def test_a_reopened_deal_of_a_deactivated_rep_goes_to_an_active_rep(
    stack: StackDriver,
) -> None:
    """Una's deal was lost under Rita, who was deactivated since: Una's journey was over, so
    she was not handed over then. Reopened, she comes back: she, the deal and the new run go to
    an active rep by the assignment rules (Ben, the only one), as on the deactivation."""
    d = stack
    una, deal, _ = await una_lost(d)
    ben = await rep_left_after_the_journey(d, una["rep"]["id"])

    reopened = await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/reopen")
    assert reopened["rep_id"] == ben["id"]
    prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{una['id']}")
    assert prospect["rep"]["id"] == ben["id"]
    assert "deactivated" in prospect["assignment_note"]
    await wait_run(d, una["id"], 2, status="running", origin="deal_reopened")
    journey = await d.ok("GET", f"{d.u.outreach}/journeys/{una['id']}")
    assert journey["rep_id"] == ben["id"]
    await d.wait_stage(una["id"], "presenting")


async def test_a_deal_won_again_in_a_new_run_asks_the_client_for_referrals_once(
    stack: StackDriver,
) -> None:
    """Una's run 1 won her deal, asked her for referrals and ended; the deal reopened came back
    as run 2 and was won again: she got a second request (deals.md promises a second win of
    the same journey does not ask again). The reopening closes the first win's thanks task,
    which was left open as a client's, and the second win makes none."""
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    una = await d.new_prospect("Una")
    deal = await decide(d, una, plan["id"], "won")
    await wait_run(d, una["id"], 1, outcome="won", status="ended")
    asks = f"{d.u.referrals}/asks"
    assert len(await d.ok("GET", asks, params={"client_prospect_id": una["id"]})) == 1

    url = f"{d.u.deals}/deals/{deal['id']}"
    await d.ok("POST", f"{url}/reopen")
    await wait_run(d, una["id"], 2, status="running")
    # not a client any more: the win's thanks left open is closed
    (thanks,) = [t for t in await d.tasks_of(una["id"]) if t["kind"] == "thank_client"]
    assert (thanks["status"], thanks["notes"]) == (
        "closed",
        f"deal {deal['id']} reopened: the deal is open again",
    ), thanks
    again = {"outcome": "won", "reason": "signed again", "value": 900, "currency": "EUR"}
    await d.ok("POST", f"{url}/close", json=again)
    await wait_run(d, una["id"], 2, outcome="won", status="ended")
    assert len(await d.ok("GET", asks, params={"client_prospect_id": una["id"]})) == 1
    path = await d.stages(una["id"])
    assert path[-2:] == ["won", "referrals"], path
    thanks = [t for t in await d.tasks_of(una["id"]) if t["kind"] == "thank_client"]
    assert len(thanks) == 1, thanks
