"""What every stage does the same way: call a service's activity, record a stage change, make a
task for the rep, send a touch and send it again once its send window opens, run work in the
background.

Deterministic: time comes from workflow.now(), every side effect is an activity on the owning
service's task queue, called by name, so no service code is imported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
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
        DealReopened,
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
# An attempt the server recorded as started but no worker received (the overloaded dev server
# loses some) is retried after this instead of ACTIVITY_TIMEOUT; the services' activities
# heartbeat while they run (shared/activity_boundary.py). Not a new command: no patch (replay
# compares an activity's type and id, not its timeouts; every stored history replays).
HEARTBEAT_TIMEOUT = timedelta(seconds=15)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    # what a later attempt cannot fix (the services' activity boundary raises these types)
    non_retryable_error_types=list(NON_RETRYABLE),
)

# the least a touch told to wait for its send window waits before it is sent again
MIN_WINDOW_WAIT = timedelta(seconds=1)
T = TypeVar("T")
WENT = frozenset({"sent", "already_sent"})


@dataclass(frozen=True)
class Delivery:
    """What became of a touch: `went` when some channel reached the person; else `why`."""

    went: bool
    why: str = ""
    # the moment the touch could have gone when that was too late (quiet hours, window)
    too_late_until: datetime | None = None

    @classmethod
    def of(cls, result: TouchResult, too_late: datetime | None) -> Delivery:
        if any(o.status in WENT for o in result.outcomes):
            return cls(True)
        reasons = [
            f"{o.channel}: {o.status.replace('_', ' ')}" + (f" ({o.detail})" if o.detail else "")
            for o in result.outcomes
        ]
        return cls(False, "; ".join(reasons) or "no channel to send on", too_late)


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
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RETRY,
        result_type=result_type,
    )
    return result


def journey_id() -> str:
    """This run's key (shared.contracts.journey.run_key): the workflow id for a first run, so
    its rows keep their keys; `<workflow id>.r<run>` for a later run of the same prospect, whose
    messages, tasks, stage changes and deal must not be taken for the earlier run's."""
    instance = workflow.instance()
    state = getattr(instance, "state", None)
    run = state.inp.run if isinstance(state, State) else 1
    base = workflow.info().workflow_id
    return base if run <= 1 else f"{base}.r{run}"


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
    await workflow.sleep(max(when - workflow.now(), MIN_WINDOW_WAIT))
    return True


async def sleep_until(when: datetime) -> None:
    """A timer until `when`; none when it has passed already."""
    delay = (when - workflow.now()).total_seconds()
    if delay > 0:
        await workflow.sleep(delay)


def reopening_to_follow(state: State) -> DealReopened | None:
    """Take the next reopening the deal's close is followed by; None when there is none, or
    when the one taken reopened a close this journey never heard (its signal was lost, and the
    client reopened the deal instead of repeating the close): that one is dropped, since the
    journey already stands where the reopened deal does."""
    while (reopened := state.take_reopening()) is not None:
        stale = state.reopens_no_close_heard(reopened)
        if not stale or not versions.patched(Patch.STALE_REOPENING_IGNORED):
            return reopened
    return None


class Steps:
    """The shared steps, bound to one journey's state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def in_background(self, work: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
        """Run `work` alongside the stages (a touch waiting for its window holds nothing up);
        the journey cancels what is left when it ends."""
        task = asyncio.ensure_future(work)
        self.state.background.append(task)
        return task

    async def enter(self, stage: str, cause: str, actor: str) -> None:
        """Record the stage (and tell outreach); `actor` caused it: the key holder a signal
        named, or shared.contracts.journey.system_actor for a timer or an automation."""
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
            # issue 14: stage actor. An activity input only: replay compares no inputs, so the
            # command sequence, and every stored history, is unchanged (no patch)
            actor=actor,
            # the funnel counts changes by cadence: without it every change was counted under
            # none (an activity input too: no patch)
            cadence_id=state.cadence.cadence_id,
        )
        record = call(Act.RECORD_STAGE, change, state.inp.queues.prospecting)
        # from prospecting a first run has no task yet: nothing to close, no card to update; a
        # later run's prospect has the earlier runs' tasks, whose cards must show the new stage
        first_run_starts = previous == Stage.PROSPECTING and (
            state.inp.run <= 1 or not versions.patched(Patch.LATER_RUN_FIRST_STAGE)
        )
        if first_run_starts or not versions.patched(Patch.TASKS_FOLLOW_STAGE):
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

    async def wait_out_pause(self, also: Callable[[], bool] = lambda: False) -> None:
        """Wait until the active pauses change (a pause, a resume, or the first stated end
        comes, which lifts that pause) or `also` holds. Callers loop while paused."""
        state = self.state
        seen = state.pause_changes

        def changed() -> bool:
            return state.pause_changes != seen or also()

        end = state.next_pause_end()
        if end is None:
            await workflow.wait_condition(changed)
            return
        remaining = (end - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(changed, timeout=max(remaining, 0.001))
        except TimeoutError:
            state.lift_pauses_ending_by(end)

    async def hold_while_paused(self) -> None:
        """A message outside the cadence waits while the journey is paused (for any reason)."""
        if not self.state.paused() or not versions.patched(Patch.PAUSE_HOLDS_EVERY_MESSAGE):
            return
        while self.state.paused():
            await self.wait_out_pause()

    async def system_touch(
        self,
        key: str,
        kind: str,
        variables: dict[str, str],
        not_after: datetime | None = None,
        *,
        held_by_pause: bool = True,
        still_wanted: Callable[[], Awaitable[bool]] | None = None,
    ) -> Delivery:
        """A touch outside the cadence; a channel told to wait (send window, caps) is sent
        when it may be, unless that is too late (`not_after`, e.g. the meeting's start) or no
        longer wanted then (`still_wanted`, asked after the wait). A sales message waits while
        the journey is paused (`held_by_pause`); a booked meeting's reminder is not one. Says
        whether some channel went, and why not."""
        last: list[TouchResult] = []
        too_late: list[datetime] = []

        async def send() -> TouchResult:
            if held_by_pause:
                await self.hold_while_paused()
            last.append(await self.touch(key, kind, variables))
            return last[-1]

        async def wait(when: datetime) -> bool:
            if not versions.patched(Patch.SYSTEM_TOUCH_DEFERRAL):
                return False
            if not_after is not None and when >= not_after:
                too_late.append(when)
                return False
            await wait_for_window(when)
            return still_wanted is None or await still_wanted()

        await send_in_window(send, wait)
        return Delivery.of(last[-1], too_late[0] if too_late else None)

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
