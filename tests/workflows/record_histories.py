"""Record journey histories for test_replay.py: `.venv/bin/python tests/workflows/record_histories.py`.

Run it when a guarded (workflow.patched) change lands, with scenarios that take the new paths;
the histories it writes then keep those paths replayable. These are the v3 ones: referral
reminders, referrer thanks, closing old preparation tasks, a rep change.
"""

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, ".")
from temporalio.testing import WorkflowEnvironment

from shared.contracts.journey import (
    DealClosed,
    MeetingChanged,
    MeetingScheduled,
    ObjectionLogged,
    QualificationRecorded,
    Referrer,
    RepAssigned,
    ReplyReceived,
    Stage,
)
from shared.contracts.names import Sig
from tests.support.fixtures import binary
from tests.workflows import test_journey as tj

OUT = Path("tests/workflows/histories")


async def record(env: WorkflowEnvironment, name: str, scenario: Any, **start: Any) -> None:
    h = tj.Harness(env, f"hist-{name}-")
    async with h:
        handle = await h.start(**start)
        await scenario(env, h, handle)
        result = await handle.result()
        history = await handle.fetch_history()
    (OUT / f"{name}.json").write_text(history.to_json())
    print(name, result, len(history.events), [t.kind for t in h.rec.touches])


async def won_with_reminders(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    now = await env.get_current_time()
    at = lambda d: (now + timedelta(days=d)).isoformat()  # noqa: E731
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", at(3), "Demo"))
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", at(4), "Demo", 1))
    await handle.signal(Sig.REP_ASSIGNED, RepAssigned("r2", "Nia New", "nia@example.com", None))
    await handle.signal(
        Sig.OBJECTION_LOGGED, ObjectionLogged("o1", "deal-1", "price", "too much", ["ROI"])
    )
    await env.sleep(timedelta(days=4))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", at(4), "Demo", 1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def referred_thanks(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    now = await env.get_current_time()
    await handle.signal(
        Sig.MEETING_SCHEDULED,
        MeetingScheduled("m1", "deal-1", (now + timedelta(days=2)).isoformat(), "Intro"),
    )
    await env.sleep(timedelta(days=3))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    try:
        await record(env, "journey_won_reminders_rep_change_v3", won_with_reminders)
        await record(
            env,
            "journey_referred_thanks_v3",
            referred_thanks,
            start_stage=Stage.QUALIFYING,
            referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
        )
    finally:
        await env.shutdown()


asyncio.run(main())
