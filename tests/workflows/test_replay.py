"""Stored histories of finished journeys must replay on today's workflow code.

A change that alters the command sequence of running journeys fails here unless it is guarded
with workflow.patched(). Add a history here whenever a guarded change lands.

Each history replays twice: in the SDK's strict sandbox (every workflow module imported afresh
and checked for non-deterministic calls) and with the runner the journeys worker uses (the
workflow modules passed through, closeflow/worker.py): both must take the same path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from closeflow.worker import JOURNEY_RUNNER
from workflows.journey import ProspectJourney, versions
from workflows.journey.versions import REGISTRY, Patch
from workflows.referral_intake import ReferralIntake

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


RUNNERS = {"strict": SandboxedWorkflowRunner(), "worker": JOURNEY_RUNNER}


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_stored_history_replays(path: Path, runner: str) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    chosen: WorkflowRunner = RUNNERS[runner]
    replayer = Replayer(workflows=[ProspectJourney, ReferralIntake], workflow_runner=chosen)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


# patches whose covering histories are proven to need them: with the patch forced off (the old
# path), each of its histories must fail to replay, so the history really takes the new path
PROVEN_OFF = [
    Patch.REOPENING_DROPS_STALE_DEAL_EVENTS,
    Patch.REPLIES_TOLD_AFTER_RUN_END,
    Patch.VERDICT_FROM_DEAL_STAGE,
    Patch.ZONE_CHANGE_REPLANS_STEP,
    Patch.REMINDERS_STOP_AT_USED_LINK,
    Patch.VERDICT_FROM_DEAL_EVENTS,
    Patch.DECIDED_DEAL_MEETINGS_ASKED,
    Patch.MIGRATION_KEPT_AT_REPLY,
    Patch.REFERRAL_ASKED_BY_EARLIER_RUN,
    Patch.DEADLINE_CHANGE_CLOSES_LAST_CHANCE,
    Patch.REOPENED_DEAL_PREPARES_MEETINGS,
    Patch.REOPENED_DEAL_SKIPS_MOVED_MEETINGS,
]


@pytest.mark.parametrize(
    ("patch", "name"),
    [(p, name) for p in PROVEN_OFF for name in REGISTRY[p].histories],
    ids=[name for p in PROVEN_OFF for name in REGISTRY[p].histories],
)
async def test_history_fails_to_replay_with_its_patch_forced_off(
    patch: Patch, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(__file__).parent / "histories" / f"{name}.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    patched = versions.patched
    # the worker's runner passes the workflow modules through: the journey calls this one. The
    # marker is still read (workflow.patched is called), so the replay fails on the commands the
    # old path issues, not on a marker left unread
    monkeypatch.setattr(versions, "patched", lambda p: patched(p) and p != patch)
    replayer = Replayer(workflows=[ProspectJourney, ReferralIntake], workflow_runner=JOURNEY_RUNNER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None, f"{name} replays without {patch.value}"


def test_histories_are_present() -> None:
    assert len(HISTORIES) >= 2
