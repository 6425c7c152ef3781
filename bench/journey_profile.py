"""Where a journey's time goes, read from the histories of a `make bench` run (BENCH_PROFILE=1).

For each activity type: how long it waited in its task queue (scheduled -> started) and how
long it ran (started -> completed); the same for workflow tasks; history events per journey up
to the first touch's completion, and the time from the journey's start to that completion.
Only event timestamps and types are read: no payload is decoded, so no key is needed.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

SEND_TOUCH = "outreach.send_touch"


def _at(event: object) -> datetime:
    return event.event_time.ToDatetime()  # type: ignore[attr-defined, no-any-return]


def _quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return f"n={len(ordered):4d} p50={q(0.5):6.2f}s p90={q(0.9):6.2f}s max={ordered[-1]:6.2f}s"


class Profile:
    def __init__(self) -> None:
        self.waits: dict[str, list[float]] = defaultdict(list)
        self.runs: dict[str, list[float]] = defaultdict(list)
        self.events_to_touch: list[float] = []
        self.to_touch: list[float] = []
        self.retried: dict[str, list[str]] = defaultdict(list)
        self.workflow_task_failures: list[str] = []

    def add(self, events: Sequence[object]) -> None:
        scheduled: dict[int, tuple[str, datetime]] = {}
        started: dict[int, datetime] = {}
        wf_scheduled: dict[int, datetime] = {}
        wf_started: dict[int, datetime] = {}
        begin = _at(events[0])
        touched = False
        for event in events:
            kind = event.event_type  # type: ignore[attr-defined]
            eid = event.event_id  # type: ignore[attr-defined]
            at = _at(event)
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes  # type: ignore[attr-defined]
                scheduled[eid] = (attrs.activity_type.name, at)
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = event.activity_task_started_event_attributes  # type: ignore[attr-defined]
                name, when = scheduled[attrs.scheduled_event_id]
                self.waits[name].append((at - when).total_seconds())
                if attrs.attempt > 1:
                    # the started event is the last attempt's: the wait includes the others
                    self.retried[name].append(attrs.last_failure.message[:120])
                started[attrs.scheduled_event_id] = at
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = event.activity_task_completed_event_attributes  # type: ignore[attr-defined]
                name, _ = scheduled[attrs.scheduled_event_id]
                self.runs[name].append((at - started[attrs.scheduled_event_id]).total_seconds())
                if name == SEND_TOUCH and not touched:
                    touched = True
                    self.events_to_touch.append(eid)
                    self.to_touch.append((at - begin).total_seconds())
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                wf_scheduled[eid] = at
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                attrs = event.workflow_task_started_event_attributes  # type: ignore[attr-defined]
                del attrs
                # a started event follows its scheduled event
                prev = max(wf_scheduled)
                # the first is on the shared queue (and on the path to the first touch); the
                # others mostly on the worker's sticky queue
                name = "(first workflow task)" if not wf_started else "(workflow task)"
                self.waits[name].append((at - wf_scheduled[prev]).total_seconds())
                wf_started[eid] = at
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                attrs = event.workflow_task_completed_event_attributes  # type: ignore[attr-defined]
                when = wf_started[attrs.started_event_id]
                first = attrs.started_event_id == min(wf_started)
                name = "(first workflow task)" if first else "(workflow task)"
                self.runs[name].append((at - when).total_seconds())
            elif kind in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            ):
                self.workflow_task_failures.append(EventType.Name(kind))
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                attrs = event.activity_task_failed_event_attributes  # type: ignore[attr-defined]
                name, _ = scheduled[attrs.scheduled_event_id]
                self.runs[name + " (failed)"].append(
                    (at - started[attrs.scheduled_event_id]).total_seconds()
                )

    def lines(self) -> list[str]:
        out = ["profile: queue wait (scheduled -> started), run (started -> completed)"]
        for name in sorted(set(self.waits) | set(self.runs)):
            out.append(f"  {name:34s} wait {_quantiles(self.waits.get(name, []))}")
            out.append(f"  {'':34s} run  {_quantiles(self.runs.get(name, []))}")
        for name, failures in sorted(self.retried.items()):
            out.append(f"  {name}: {len(failures)} retried, e.g. {failures[0]!r}")
        if self.workflow_task_failures:
            kinds = Counter(self.workflow_task_failures)
            out.append(f"  workflow tasks lost: {dict(kinds)}")
        out.append(f"  journey start -> first touch done   {_quantiles(self.to_touch)}")
        if self.events_to_touch:
            mean = sum(self.events_to_touch) / len(self.events_to_touch)
            out.append(f"  history events up to the first touch: mean {mean:.1f}")
        return out


async def profile(address: str, workflow_ids: Sequence[str]) -> list[str]:
    client = await Client.connect(address)
    result = Profile()
    sem = asyncio.Semaphore(16)

    async def one(wid: str) -> None:
        async with sem:
            history = await client.get_workflow_handle(wid).fetch_history()
        result.add(list(history.events))

    await asyncio.gather(*(one(w) for w in workflow_ids))
    return result.lines()
