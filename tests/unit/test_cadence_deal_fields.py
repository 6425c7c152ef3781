"""The cadence fields of the deal stages: meeting reminders at several offsets (older
definitions keep their single reminder) and the qualification timeout's outcome."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.outreach.cadences.schemas import CadenceIn
from services.outreach.cadences.service import snapshot_from_definition
from tests.support.scenarios import fast_cadence


def definition(**overrides: Any) -> dict[str, Any]:
    body = fast_cadence()
    body.pop("meeting_reminder_seconds")
    return body | overrides


def test_reminders_default_to_a_day_and_an_hour_before() -> None:
    cadence = CadenceIn(**definition())
    assert cadence.meeting_reminders_seconds == [86400, 3600]
    assert cadence.qualification_timeout_outcome == "disqualified"


def test_a_definition_with_only_the_single_reminder_keeps_it() -> None:
    cadence = CadenceIn(**definition(meeting_reminder_seconds=7200))
    assert cadence.meeting_reminders_seconds == [7200]


def test_reminder_offsets_are_ordered_and_distinct() -> None:
    cadence = CadenceIn(**definition(meeting_reminders_seconds=[3600, 172800]))
    assert cadence.meeting_reminders_seconds == [172800, 3600]
    with pytest.raises(ValidationError, match="meeting_reminders_seconds"):
        CadenceIn(**definition(meeting_reminders_seconds=[3600, 3600]))
    with pytest.raises(ValidationError, match="meeting_reminders_seconds"):
        CadenceIn(**definition(meeting_reminders_seconds=[0]))


def test_timeout_outcome_is_disqualified_or_nurture() -> None:
    assert (
        CadenceIn(**definition(qualification_timeout_outcome="nurture")).model_dump()[
            "qualification_timeout_outcome"
        ]
        == "nurture"
    )
    with pytest.raises(ValidationError, match="qualification_timeout_outcome"):
        CadenceIn(**definition(qualification_timeout_outcome="lost"))


def test_snapshots_of_stored_versions_old_and_new() -> None:
    new = CadenceIn(
        **definition(meeting_reminders_seconds=[600], qualification_timeout_outcome="nurture")
    ).model_dump()
    snap = snapshot_from_definition("c1", 2, new)
    assert snap.meeting_reminder_offsets() == [600]
    assert snap.qualification_timeout_outcome == "nurture"
    # a version stored before these fields existed
    old = dict(new)
    del old["meeting_reminders_seconds"], old["qualification_timeout_outcome"]
    old["meeting_reminder_seconds"] = 7200
    snap = snapshot_from_definition("c1", 1, old)
    assert snap.meeting_reminder_offsets() == [7200]
    assert snap.qualification_timeout_outcome == "disqualified"
