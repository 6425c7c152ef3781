"""Stage 2, contacting: the cadence's touches until the prospect replies, the cadence is stopped
or it runs out; a referred prospect gets a warm introduction instead."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.errors import TEMPLATE_ERROR
    from shared.contracts.journey import (
        CadenceStep,
        FailedStep,
        PauseColleagues,
        Referrer,
        ReplyReceived,
        Stage,
        TouchResult,
        system_actor,
    )
    from shared.contracts.names import Act
    from shared.contracts.plan import personalise, step_due, touch_groups

from workflows.journey import versions
from workflows.journey.state import State
from workflows.journey.steps import MIN_WINDOW_WAIT, Steps, call, send_in_window
from workflows.journey.versions import Patch


class Contacting:
    def __init__(self, state: State, steps: Steps) -> None:
        self.state = state
        self.steps = steps

    async def introduce(self, referrer: Referrer) -> None:
        """A referred prospect skips the cadence: an introduction, then qualifying."""
        # ids, never the referrer's name (issue 11): it would outlive their erasure in this
        # person's stage history and journey; outreach looks the name up when it sends
        cause = f"referred by client {referrer.prospect_id}"
        intro = self.steps.system_touch(
            "warm-intro",
            "warm_intro",
            {"referrer_name": referrer.name, "referrer_prospect_id": referrer.prospect_id},
        )
        self.steps.in_background(intro)
        await self.steps.enter(Stage.QUALIFYING, cause, system_actor("referral"))

    async def until_reply(self) -> str | None:
        """None when the prospect replied (the journey is in qualifying); else the outcome."""
        state, steps = self.state, self.steps
        reply = await self._make_contact()
        if state.stop is not None:
            # a reply heard with the stop (both came while a touch or the stage's record was in
            # flight): the stop ends the cadence, and the rep answers the reply (the teller)
            if (
                reply is not None
                and reply not in state.later_replies
                and versions.patched(Patch.REPLY_WITH_STOP_TOLD)
            ):
                state.later_replies.append(reply)
            await steps.enter(
                Stage.NURTURE,
                f"cadence stopped: {state.stop.reason}",
                state.stop.actor or system_actor("stop"),
            )
            return Stage.NURTURE
        if reply is None:
            await steps.enter(
                Stage.NURTURE,
                "no response after the last cadence step",
                system_actor("cadence ended"),
            )
            return Stage.NURTURE
        contact = state.inp.contact
        if state.cadence.pause_company_on_reply and (
            contact.company
            # without a company name, colleagues are found by the work domain of the address
            or (contact.email and versions.patched(Patch.COLLEAGUES_BY_DOMAIN))
        ):
            where = contact.company or (contact.email or "").rpartition("@")[2]
            await call(
                Act.PAUSE_COLLEAGUES,
                PauseColleagues(
                    contact.prospect_id,
                    state.cadence.cadence_id,
                    contact.company,
                    f"{state.prospect_name()} at {where} replied",
                    contact.email or "",
                ),
                state.inp.queues.outreach,
            )
        await steps.enter(
            Stage.QUALIFYING, f"replied by {reply.channel}", reply.actor or system_actor("reply")
        )
        return None

    async def _make_contact(self) -> ReplyReceived | None:
        state = self.state
        started = workflow.now()
        entered = asyncio.ensure_future(
            self.steps.enter(
                Stage.CONTACTING,
                f"enrolled in cadence {state.cadence.name} v{state.cadence.version}",
                system_actor("enrollment"),
            )
        )
        index = 0
        done = started  # when the previous touch was over
        while not state.interrupted():
            groups = touch_groups(state.cadence.steps)  # a migration may have replaced them
            state.next_step = index
            state.next_touch_due = None
            if index >= len(groups):
                last_due = self._due(started, groups[-1][0]) if groups else started
                await self._reply_before(
                    last_due + timedelta(seconds=state.cadence.nurture_after_seconds),
                    wake_on_migration=True,
                )
                if self._migrated():
                    continue  # a new version may have more steps
                break
            steps = groups[index]
            due = state.next_touch_due = self._due(started, steps[0])
            plan = _Plan(due, functools.partial(self._due, started, steps[0]))
            if await self._reply_before(due, wake_on_migration=True, plan=plan):
                break
            if self._migrated():
                continue  # the new version's step at this index is what goes out
            if plan.woke_moved:
                # the prospect's zone moved the step (its days are the new zone's): wait for its
                # new due time, or send now when that has passed, late by as much as a pause
                # would make it (_keep_gaps), so the touches after it keep their gaps
                continue
            steps = personalise(state.inp.contact.prospect_id, index, steps)
            # a touch never starts before the previous one is over (the simulator's rule too)
            await self._send_cadence_touch(index, steps, max(due, done))
            done = workflow.now()
            index += 1
        state.next_touch_due = None
        if state.migration is not None and versions.patched(Patch.MIGRATION_KEPT_AT_REPLY):
            # accepted before the reply that ended contacting (the journey said so, and its
            # enrollment moved to it): the rest of the journey runs on that version (its
            # qualification, meeting and referral rules), not on the one it was leaving
            self._migrated()
        await entered
        return state.reply

    def _due(self, started: datetime, step: CadenceStep) -> datetime:
        # the zone resolved with the journey's input (shared.timezones.prospect_zone), so the
        # business days are the prospect's, as the simulator counts them
        state = self.state
        holidays = state.cadence.send_window.holidays
        return step_due(started, step, state.zone(), holidays, state.cadence_delay)

    def _migrated(self) -> bool:
        """Switch to the newer cadence version a signal brought, if any."""
        state = self.state
        if state.migration is None:
            return False
        state.cadence, state.migration = state.migration, None
        return True

    async def _send_cadence_touch(
        self, index: int, steps: list[CadenceStep], begins: datetime
    ) -> None:
        """Send touch `index`, due to start at `begins`; the time it took beyond its send
        windows delays the rest of the cadence (`_keep_gaps`)."""
        windows = timedelta(0)  # waited for send windows: the cadence's plan, not lateness

        async def send() -> TouchResult:
            return await self.steps.touch(f"step-{index}", "cadence", {}, steps=steps)

        async def until_window(when: datetime) -> bool:
            nonlocal windows
            if when <= workflow.now() and versions.patched(Patch.WINDOW_WAIT_FLOOR):
                # outreach's clock behind the server's names an opening already past here: asking
                # again at once would repeat the send until the clocks agree
                when = workflow.now() + MIN_WINDOW_WAIT
            windows += max(when - workflow.now(), timedelta(0))
            # a reply (or a stop) while waiting for the window: no repeat
            return not await self._reply_before(when)

        try:
            await send_in_window(send, until_window)
        except ActivityError as err:
            reason = template_failure(err)
            if reason is None or not versions.patched(Patch.TEMPLATE_FAILURE_TASK):
                raise
            await self._template_failed(index, reason)
        self._keep_gaps(workflow.now() - begins - windows)

    def _keep_gaps(self, late: timedelta) -> None:
        """A touch that went out `late` (a pause, an outage, a provider that answered slowly)
        delays the touches after it and the wait for a reply after the last one as much: the
        gaps the cadence sets stay whole instead of overdue touches going out at once."""
        if late > timedelta(0) and versions.patched(Patch.CADENCE_KEEPS_GAPS):
            self.state.cadence_delay += late

    async def _template_failed(self, index: int, reason: str) -> None:
        """The touch's template cannot render for this prospect (not retried: it never will):
        the step is recorded failed, the rep gets a task to fix the template, the cadence goes
        on with the next touch."""
        state = self.state
        state.failed_steps.append(FailedStep(index, reason, workflow.now().isoformat()))
        cadence = state.cadence
        await self.steps.task(
            f"template:step-{index}",
            f"Fix template of step {index}: {reason}"[:300],
            f"Touch step-{index} of cadence {cadence.name} v{cadence.version} was not sent to "
            f"{state.prospect_name()}: {reason}\nFix the template (a new cadence version); "
            "the journey went on with the next step.",
            context={"cadence_id": cadence.cadence_id, "step": str(index)},
        )

    async def _reply_before(
        self, when: datetime, wake_on_migration: bool = False, plan: _Plan | None = None
    ) -> bool:
        """Sleep until `when` unless a reply (or a stop) comes first; True when it did.
        While the journey is paused, a touch that falls due waits for the resume. A `plan`
        whose due time moves before `when` (the prospect's zone changed) wakes it too."""
        state = self.state
        delay = (when - workflow.now()).total_seconds()
        if state.interrupted():
            return True

        def woken() -> bool:
            return (
                state.interrupted()
                or (wake_on_migration and state.migration is not None)
                or (plan is not None and plan.moved())
            )

        if delay > 0:
            try:
                await workflow.wait_condition(woken, timeout=delay)
            except TimeoutError:
                pass
            else:
                if not state.interrupted():
                    return False  # a new cadence version arrived: the caller re-plans
                return True
        while state.paused() and not state.interrupted():
            await self.steps.wait_out_pause(also=state.interrupted)
        return state.interrupted()


@dataclass
class _Plan:
    """A cadence step's due time as planned, and how to plan it again: on the prospect's zone
    as it is now (a contact_changed signal may change it while the journey waits)."""

    due: datetime
    replan: Callable[[], datetime]
    woke_moved: bool = False  # the wait ended because the due time moved

    def moved(self) -> bool:
        """The due time is another now, on journeys that re-plan (the patch's marker is asked
        for only then: a change that moves nothing, a new phone or the zone of a business-day
        count it does not change, issues no command)."""
        if self.replan() == self.due or not versions.patched(Patch.ZONE_CHANGE_REPLANS_STEP):
            return False
        self.woke_moved = True
        return True


def template_failure(err: ActivityError) -> str | None:
    """The reason when `err` is a send that failed on its template, else None."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == TEMPLATE_ERROR:
        return cause.message
    return None
