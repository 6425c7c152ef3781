"""bench/journey_shape.py: the ceiling `make bench` prints is measured on the journey's own
commands, so its workflow must schedule what a journey schedules for its first touch."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from bench.journey_shape import Shape
from bench.journeys import shape_workers
from tests.support.settings import make_settings

# a journey of the latest recorded version, enrolled on a cadence whose first step is a touch
JOURNEY = Path(__file__).parents[1] / "workflows/histories/journey_late_touch_keeps_gaps_v6.json"


def first_commands(events: list[HistoryEvent]) -> list[tuple[object, ...]]:
    """What the first workflow task scheduled: each activity's options, and the queues told
    apart by order of appearance (the journey's are outreach's and prospecting's)."""
    done = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    scheduled, queues = [], []
    for event in events[done + 1 :]:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            break
        a = event.activity_task_scheduled_event_attributes
        if a.task_queue.name not in queues:
            queues.append(a.task_queue.name)
        scheduled.append(
            (
                queues.index(a.task_queue.name),
                a.start_to_close_timeout.ToSeconds(),
                a.heartbeat_timeout.ToSeconds(),
                a.retry_policy.initial_interval.ToSeconds(),
                a.retry_policy.maximum_interval.ToSeconds(),
            )
        )
    return scheduled


def after_touches(events: list[HistoryEvent]) -> list[EventType.ValueType]:
    """What the workflow task after both activities' completion recorded first."""
    completed = [
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    task = next(
        i
        for i in range(completed[1], len(events))
        if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    return [e.event_type for e in events[task + 1 : task + 3]]


async def test_the_shape_schedules_what_a_journey_schedules_for_its_first_touch(
    temporal_local: WorkflowEnvironment, queue_prefix: str, tmp_path: Path
) -> None:
    journey = WorkflowHistory.from_json("journey", JOURNEY.read_text())
    touch_and_stage = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in journey.events[:8]
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert touch_and_stage == ["outreach.send_touch", "prospecting.record_stage"]

    client = temporal_local.client
    queue = f"{queue_prefix}shape"
    settings = make_settings(tmp_path, temporal_address=client.service_client.config.target_host)
    with shape_workers(settings, queue):
        handle = await client.start_workflow(
            Shape.run, args=[queue, ["touch", "stage"]], id=queue, task_queue=queue
        )
        await handle.result()
        shape = await handle.fetch_history()

    expected = first_commands(list(journey.events))
    assert len(expected) == 2
    assert first_commands(list(shape.events)) == expected
    assert after_touches(list(journey.events)) == [
        EventType.EVENT_TYPE_MARKER_RECORDED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    ]
    assert after_touches(list(shape.events)) == after_touches(list(journey.events))
