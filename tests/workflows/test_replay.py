"""Stored histories of finished journeys must replay on today's workflow code.

A change that alters the command sequence of running journeys fails here unless it is guarded
with workflow.patched(). Add a history here whenever a guarded change lands.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.journey import ProspectJourney
from workflows.referral_intake import ReferralIntake

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_stored_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(workflows=[ProspectJourney, ReferralIntake]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_present() -> None:
    assert len(HISTORIES) >= 2
