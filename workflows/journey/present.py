"""Stages 4 and 5, presenting and objections: the deal's events in the order they came (meetings,
objections, the decision deadline) until the deal is closed."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CloseRepTasks,
        DealClosed,
        DealRef,
        DealReopened,
        DealStageMoved,
        DecisionDeadline,
        MeetingScheduled,
        ObjectionLogged,
        OpenObjections,
        Stage,
    )
    from shared.contracts.names import Act

from workflows.journey import versions
from workflows.journey.meetings import Meetings
from workflows.journey.state import MeetingEvent, State
from workflows.journey.steps import Steps, call, journey_id, sleep_until
from workflows.journey.versions import Patch

# where POST /deals/{id}/stage may move an open deal past the qualification gate
DEAL_MOVES = (Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING)


class Presenting:
    def __init__(self, state: State, steps: Steps, meetings: Meetings) -> None:
        self.state = state
        self.steps = steps
        self.meetings = meetings
        self.deadline = DecisionDeadlineWatch(state, steps)

    async def until_closed(self) -> DealClosed:
        state = self.state
        while True:
            await workflow.wait_condition(lambda: bool(state.deal_events))
            event = state.deal_events.pop(0)
            if isinstance(event, DealClosed):
                return event
            if isinstance(event, MeetingScheduled | MeetingEvent):
                await self.meetings.handle(event)
            elif isinstance(event, DecisionDeadline):
                self.deadline.set(event)
            elif isinstance(event, DealStageMoved):
                await self._moved(event)
            else:
                await self._objection(event)

    async def reopened(self, reopened: DealReopened) -> DealClosed:
        """The closed deal was reopened: back to its stage before the close, until closed
        again. A close or a stage move heard before the reopening (the client's retry of the
        close, a stale move) tells of the deal before it: it never decides the reopened deal."""
        stale = self.state.stale_deal_events(reopened)
        # asked only when there is one: a reopening with nothing stale records no marker
        if stale and versions.patched(Patch.REOPENING_DROPS_STALE_DEAL_EVENTS):
            self.state.drop_deal_events(stale)
        stage = reopened.stage if reopened.stage in DEAL_MOVES else Stage.PRESENTING
        await self.steps.enter(stage, reopened.cause, reopened.actor)
        ahead = self.meetings.ahead()
        self._rearm()
        await self.meetings.unask_after_reopening()
        if ahead and versions.patched(Patch.REOPENED_DEAL_PREPARES_MEETINGS):
            await self.meetings.prepare_again(ahead)
        return await self.until_closed()

    def _rearm(self) -> None:
        """What the close stopped and the reopened deal still has ahead: its meetings'
        reminders and its decision deadline's last chance (asked only when there is one)."""
        deadline_ahead = self.deadline.ahead()
        if not (deadline_ahead or self.meetings.ahead()):
            return
        if not versions.patched(Patch.REOPENED_DEAL_REARMS):
            return
        self.meetings.rearm()
        if deadline_ahead:
            self.deadline.rearm()

    async def _moved(self, moved: DealStageMoved) -> None:
        """The rep moved the deal (presenting, objections, closing): the deal's stage is the
        prospect's stage."""
        if moved.stage == self.state.stage or moved.stage not in DEAL_MOVES:
            return  # a repeat (a client retry) or a stage the journey reaches otherwise
        if versions.patched(Patch.DEAL_STAGE_TRUTH):
            await self.steps.enter(moved.stage, f"deal {moved.deal_id}: {moved.cause}", moved.actor)

    async def _objection(self, objection: ObjectionLogged) -> None:
        if self.state.stage == Stage.PRESENTING:
            await self.steps.enter(
                Stage.OBJECTIONS, f"objection: {objection.category}", objection.actor
            )
        answers = "\n".join(f"- {a}" for a in objection.answers) or "- (no prepared answer yet)"
        await self.steps.task(
            f"objection:{objection.objection_id}",
            f"Answer {self.state.prospect_name()}'s {objection.category} objection",
            f'They said: "{objection.text}"\nPrepared answers:\n{answers}',
            context={"category": objection.category, "deal_id": objection.deal_id},
        )


class DecisionDeadlineWatch:
    """When the deal's decision deadline passes undecided: a last-chance task for the rep."""

    def __init__(self, state: State, steps: Steps) -> None:
        self.state = state
        self.steps = steps

    def set(self, deadline: DecisionDeadline) -> None:
        """Set, moved (the timer starts again) or cleared (None)."""
        state = self.state
        if not versions.patched(Patch.MEETING_LIFECYCLE):
            return  # a history from before this signal was handled: it was dropped
        if deadline.deadline == state.deadline:
            return  # the same deadline again: the timer keeps running
        passed = self._passed()
        state.deadline = deadline.deadline
        self.stop()
        state.deadline_watch = None
        if passed and versions.patched(Patch.DEADLINE_CHANGE_CLOSES_LAST_CHANCE):
            # the deadline that passed may have its last-chance task open: it no longer stands
            self.steps.in_background(self._close_last_chance(deadline))
        if deadline.deadline is not None:
            state.deadline_watch = self.steps.in_background(self._last_chance(deadline))

    def ahead(self) -> bool:
        deadline = self.state.deadline
        return deadline is not None and datetime.fromisoformat(deadline) > workflow.now()

    def _passed(self) -> bool:
        deadline = self.state.deadline
        return deadline is not None and datetime.fromisoformat(deadline) <= workflow.now()

    def rearm(self) -> None:
        """The deadline set before the close, watched again (a reopened deal)."""
        state = self.state
        assert state.deadline is not None and state.deal_id is not None
        self.stop()
        deadline = DecisionDeadline(state.deal_id, state.deadline)
        state.deadline_watch = self.steps.in_background(self._last_chance(deadline))

    def stop(self) -> None:
        watch = self.state.deadline_watch
        if watch is not None and not watch.done():
            watch.cancel()

    async def _close_last_chance(self, new: DecisionDeadline) -> None:
        """Close the deal's last-chance tasks but the new deadline's (set in the past, its own
        task may come first)."""
        wid = journey_id()
        reason = (
            f"the decision deadline moved to {new.deadline}"
            if new.deadline is not None
            else "the decision deadline was cleared"
        )
        keep = f"{wid}:{_last_chance_key(new)}" if new.deadline is not None else None
        await call(
            Act.CLOSE_REP_TASKS,
            CloseRepTasks(f"{wid}:last_chance:{new.deal_id}:", reason, keep),
            self.state.inp.queues.outreach,
        )

    async def _last_chance(self, deadline: DecisionDeadline) -> None:
        assert deadline.deadline is not None
        due = datetime.fromisoformat(deadline.deadline)
        await sleep_until(due)
        if self.state.deadline_moved_on(deadline):
            if versions.patched(Patch.HEARD_CHANGES_STOP_TIMERS):
                return  # moved or cleared: presenting sets the new one when it gets there
        try:
            found = await call(
                Act.OPEN_OBJECTIONS,
                DealRef(deadline.deal_id),
                self.state.inp.queues.deals,
                OpenObjections,
            )
        except ActivityError:
            return  # the deal is gone (erased): nothing to decide
        if found.decided:
            return
        lines = [
            f'- {o.category}: "{o.text}"'
            + (f" -> try: {o.best_response}" if o.best_response else "")
            for o in found.objections
        ] or ["- none: ask for the decision"]
        await self.steps.task(
            _last_chance_key(deadline),
            f"Last chance: {self.state.prospect_name()} has not decided",
            f"The decision deadline {deadline.deadline} passed without a decision on deal "
            f"{deadline.deal_id} ({found.stage}). Open objections:\n" + "\n".join(lines),
            context={
                "deal_id": deadline.deal_id,
                "deadline": deadline.deadline,
                "open_objections": str(len(found.objections)),
            },
        )


def _last_chance_key(deadline: DecisionDeadline) -> str:
    assert deadline.deadline is not None
    due = datetime.fromisoformat(deadline.deadline)
    return f"last_chance:{deadline.deal_id}:{due.strftime('%Y%m%dT%H%M%S')}"
