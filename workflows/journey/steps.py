"""What every stage does the same way: call a service's activity, record a stage change, make a
task for the rep, send a touch and send it again once its send window opens, run work in the
background.

Deterministic: time comes from workflow.now(), every side effect is an activity on the owning
service's task queue, called by name, so no service code is imported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.contracts.errors import NON_RETRYABLE
    from shared.contracts.journey import (
        LASTING_TASK_KINDS,
        CadenceStep,
        Contact,
        RepTaskRequest,
        Stage,
        StageChange,
        StageEntered,
        TouchRequest,
        TouchResult,
    )
    from shared.contracts.names import Act

from workflows.journey import versions
from workflows.journey.state import State
from workflows.journey.versions import Patch

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    # what a later attempt cannot fix (the services' activity boundary raises these types)
    non_retryable_error_types=list(NON_RETRYABLE),
)

T = TypeVar("T")


@overload
async def call(name: str, arg: object, queue: str) -> None: ...


@overload
async def call(name: str, arg: object, queue: str, result_type: type[T]) -> T: ...


async def call(name: str, arg: object, queue: str, result_type: type[T] | None = None) -> T | None:
    """Run the activity `name` on the owning service's `queue`."""
    result: T | None = await workflow.execute_activity(
        name,
        arg,
        task_queue=queue,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=RETRY,
        result_type=result_type,
    )
    return result


def journey_id() -> str:
    return workflow.info().workflow_id


async def send_in_window(
    send: Callable[[], Awaitable[TouchResult]], wait: Callable[[datetime], Awaitable[bool]]
) -> None:
    """Send; while a channel must wait for its send window, `wait` for the time outreach named
    (False: give up) and send again. The ledger makes the repeat skip what already went out."""
    result = await send()
    while result.defer_until is not None:
        if not await wait(datetime.fromisoformat(result.defer_until)):
            return
        result = await send()


async def wait_for_window(when: datetime) -> bool:
    """A `wait` for send_in_window that always waits: at least a second, so that a window
    reported open already is not asked about again in the same instant."""
    await workflow.sleep(max((when - workflow.now()).total_seconds(), 1.0))
    return True


async def sleep_until(when: datetime) -> None:
    """A timer until `when`; none when it has passed already."""
    delay = (when - workflow.now()).total_seconds()
    if delay > 0:
        await workflow.sleep(delay)


class Steps:
    """The shared steps, bound to one journey's state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` alongside the stages (a touch waiting for its window holds nothing up);
        the journey cancels what is left when it ends."""
        task = asyncio.ensure_future(work)
        self.state.background.append(task)
        return task

    async def enter(self, stage: str, cause: str) -> None:
        state = self.state
        previous, state.stage = state.stage, stage
        state.changes += 1
        change = StageChange(
            key=f"{journey_id()}:{state.changes}",
            prospect_id=state.inp.contact.prospect_id,
            from_stage=previous,
            to_stage=stage,
            cause=cause,
            at=workflow.now().isoformat(),
        )
        record = call(Act.RECORD_STAGE, change, state.inp.queues.prospecting)
        # from prospecting no task exists yet: nothing to close, no card to update
        if previous == Stage.PROSPECTING or not versions.patched(Patch.TASKS_FOLLOW_STAGE):
            await record
            return
        entered = StageEntered(
            journey_id(),
            state.inp.contact.prospect_id,
            stage,
            f"{stage}: {cause}",
            list(LASTING_TASK_KINDS),
        )
        # both at once: independent, and one workflow task instead of two round trips
        await asyncio.gather(record, call(Act.FOLLOW_STAGE, entered, state.inp.queues.outreach))

    async def touch(
        self,
        key: str,
        kind: str,
        variables: dict[str, str],
        steps: list[CadenceStep] | None = None,
        contact: Contact | None = None,
    ) -> TouchResult:
        """One touch: the cadence's `steps`, or else outreach's template `kind` by email + SMS;
        to the prospect unless `contact` is someone else (their referrer)."""
        state = self.state
        request = TouchRequest(
            journey_id=journey_id(),
            touch_key=key,
            kind=kind,
            contact=contact or state.inp.contact,
            cadence_id=state.cadence.cadence_id,
            steps=steps or [],
            channels=[] if steps else ["email", "sms"],
            variables=variables,
            send_window=state.cadence.send_window,
        )
        return await call(Act.SEND_TOUCH, request, state.inp.queues.outreach, TouchResult)

    async def system_touch(
        self, key: str, kind: str, variables: dict[str, str], not_after: datetime | None = None
    ) -> None:
        """A touch outside the cadence; a channel told to wait (send window, caps) is sent
        when it may be, unless that is too late (`not_after`, e.g. the meeting's start)."""

        async def send() -> TouchResult:
            return await self.touch(key, kind, variables)

        async def wait(when: datetime) -> bool:
            if not versions.patched(Patch.SYSTEM_TOUCH_DEFERRAL):
                return False
            if not_after is not None and when >= not_after:
                return False
            return await wait_for_window(when)

        await send_in_window(send, wait)

    async def task(
        self,
        key: str,
        title: str,
        body: str,
        *,
        due: datetime | None = None,
        context: dict[str, str] | None = None,
        rep_id: str | None = None,
    ) -> None:
        """A task for the prospect's rep (or `rep_id`, e.g. their manager); `key` is unique in
        the journey and starts with the task's kind."""
        state = self.state
        request = RepTaskRequest(
            key=f"{journey_id()}:{key}",
            rep_id=rep_id or state.inp.contact.rep_id,
            fixed_rep=rep_id is not None,
            prospect_id=state.inp.contact.prospect_id,
            journey_id=journey_id(),
            kind=key.split(":", 1)[0],
            title=title,
            body=body,
            context={"stage": state.stage, **(context or {})},
            due_at=(due or workflow.now()).isoformat(),
        )
        await call(Act.CREATE_REP_TASK, request, state.inp.queues.outreach)
