"""Meetings while presenting: the rep's preparation task with a brief, the prospect's reminders,
and what a reschedule, a cancellation, a held or a missed meeting changes."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        DECIDED_MEETING_KIND,
        CloseRepTasks,
        MeetingBrief,
        MeetingBriefRequest,
        MeetingChanged,
        MeetingScheduled,
    )
    from shared.contracts.names import Act
    from shared.contracts.plan import local_text

from workflows.journey import versions
from workflows.journey.referrals import Referrals
from workflows.journey.state import MeetingEvent, MeetingNews, State
from workflows.journey.steps import Delivery, Steps, call, journey_id, sleep_until
from workflows.journey.versions import Patch

MEETING_PREP_LEAD = timedelta(hours=2)
# how long after a meeting's start the rep has to record the verdict of a deal still qualifying
# before the qualification timeout applies (Patch.MEETINGS_WHILE_QUALIFYING)
VERDICT_AFTER_MEETING = timedelta(days=1)


class Meetings:
    def __init__(self, state: State, steps: Steps, referrals: Referrals) -> None:
        self.state = state
        self.steps = steps
        self.referrals = referrals

    async def handle(self, news: MeetingNews) -> None:
        """A meeting booked, or a change to one, in the order the deal's events came."""
        if isinstance(news, MeetingScheduled):
            await self.scheduled(news)
        else:
            await self.changed(news)

    def pending_until(self) -> datetime | None:
        """Until when the meetings not over yet hold a verdict back: the latest one's start plus
        VERDICT_AFTER_MEETING; None when no meeting is pending."""
        state = self.state
        starts = [
            start
            for meeting_id, start in state.meeting_starts.items()
            if meeting_id not in state.meetings_over
        ]
        return max(starts) + VERDICT_AFTER_MEETING if starts else None

    async def scheduled(self, meeting: MeetingScheduled) -> None:
        if not versions.patched(Patch.MEETING_LIFECYCLE):
            await self._scheduled_before_lifecycle(meeting)
            return
        change = MeetingChanged(
            meeting.meeting_id, meeting.deal_id, meeting.starts_at, meeting.title, meeting.revision
        )
        if self._heard_before(change) and versions.patched(Patch.REPEATED_MEETING_IGNORED):
            return
        if change.meeting_id not in self.state.meeting_plans:
            self.stop_rebooking()  # booked again: a missed meeting's "pick a new time" is moot
        await self._plan(change)
        self.steps.in_background(self.referrals.thank_referrer("meeting"))

    def _heard_before(self, meeting: MeetingChanged) -> bool:
        """A booking already planned as it is (the booking page reloaded, a retried request),
        or older than what was planned (a revision moved since, a meeting over)."""
        state = self.state
        if meeting.meeting_id in state.meetings_over:
            return True
        planned = state.meeting_plans.get(meeting.meeting_id)
        if planned is None:
            return False
        if meeting.revision != planned.revision:
            return meeting.revision < planned.revision
        return state.meeting_starts[meeting.meeting_id] == datetime.fromisoformat(meeting.starts_at)

    def rearm(self) -> None:
        """A reopened deal: the reminders of its meetings still ahead, which the close stopped
        (those whose time has passed are skipped, as for a meeting just booked)."""
        now = workflow.now()
        for meeting in self.ahead():
            self._stop_reminders(meeting.meeting_id)
            starts = self.state.meeting_starts[meeting.meeting_id]
            reminders = self.steps.in_background(self._send_reminders(meeting, starts, now))
            self.state.meeting_reminders[meeting.meeting_id] = reminders

    def ahead(self) -> list[MeetingChanged]:
        """The meetings as planned that are not over and still to start."""
        state, now = self.state, workflow.now()
        return [
            meeting
            for meeting_id, meeting in state.meeting_plans.items()
            if meeting_id not in state.meetings_over and state.meeting_starts[meeting_id] > now
        ]

    async def changed(self, event: MeetingEvent) -> None:
        state = self.state
        if not versions.patched(Patch.MEETING_LIFECYCLE):
            return  # a history from before these signals were handled: they were dropped
        change = event.change
        known = state.meeting_revisions.get(change.meeting_id)
        if change.meeting_id in state.meetings_over:
            return  # a repeated signal (a client retry) or a late one
        if event.kind == "rescheduled":
            if known is not None and change.revision <= known:
                return
            await self._plan(change)
            return
        state.meetings_over.add(change.meeting_id)
        self._stop_reminders(change.meeting_id)
        if versions.patched(Patch.MEETING_TASK_CLEANUP):
            await self._close_prepare_tasks(
                change.meeting_id, f"the meeting was {event.kind.replace('_', '-')}"
            )
        if event.kind == "no_show":
            await self._no_show(change)

    def stop_rebooking(self) -> None:
        """Drop the re-booking messages of missed meetings still waiting for their window
        (asked only when one waits: no marker otherwise)."""
        waiting = [task for task in self.state.rebooking.values() if not task.done()]
        if waiting and versions.patched(Patch.REBOOKING_STOPS):
            for task in waiting:
                task.cancel()
            self.state.rebooking.clear()

    async def ask_rep_about_meetings_ahead(self, outcome: str) -> None:
        """The deal is decided with meetings still ahead. A decision cancels no meeting (both
        calendars keep it), but it stops the prospect's reminders, and the rep's preparation
        task closes with the stage: without a word the meeting stood forgotten until the hour
        came. The rep is asked to keep or cancel each (asked only when one is ahead: no marker
        otherwise)."""
        ahead = self.ahead()
        if not ahead or not versions.patched(Patch.DECIDED_DEAL_MEETINGS_ASKED):
            return
        name = self.state.prospect_name()
        self.state.decided_meetings_asked = True
        for meeting in ahead:
            await self.steps.task(
                # one per decision: a reopened deal decided again asks again
                f"{DECIDED_MEETING_KIND}:{meeting.meeting_id}:{self.state.closes_heard}",
                f"Keep or cancel the meeting with {name}",
                f"Deal {meeting.deal_id} is {outcome}, and '{meeting.title}' at "
                f"{meeting.starts_at} is still on both calendars. {name} gets no more reminders "
                f"of it. Cancel it (POST /deals/{meeting.deal_id}/meetings/{meeting.meeting_id}"
                f"/cancel: {name} is told, and the slot is free again), or keep it and prepare "
                "it yourself.",
                context={
                    "deal_id": meeting.deal_id,
                    "meeting_id": meeting.meeting_id,
                    "meeting_starts_at": meeting.starts_at,
                    "outcome": outcome,
                },
            )

    async def unask_after_reopening(self) -> None:
        """A reopened deal's meetings are the deal's again (their reminders re-armed): the
        question of keeping them is moot. Only journeys that asked it have anything to close."""
        if not self.state.decided_meetings_asked:
            return
        self.state.decided_meetings_asked = False
        await call(
            Act.CLOSE_REP_TASKS,
            CloseRepTasks(
                f"{journey_id()}:{DECIDED_MEETING_KIND}:",
                "the deal was reopened: its meetings' reminders go out again",
            ),
            self.state.inp.queues.outreach,
        )

    def stop_all_reminders(self) -> None:
        """A decided deal needs no more reminders (none on journeys that predate
        Patch.MEETING_LIFECYCLE, so their command sequence is unchanged)."""
        for meeting_id in list(self.state.meeting_reminders):
            self._stop_reminders(meeting_id)

    async def _plan(self, meeting: MeetingChanged) -> None:
        """The rep's preparation task with the brief, and the prospect's reminders."""
        state, steps = self.state, self.steps
        starts = datetime.fromisoformat(meeting.starts_at)
        heard_at = workflow.now()  # before the brief: deals away must not make reminders late
        state.meeting_revisions[meeting.meeting_id] = meeting.revision
        state.meeting_starts[meeting.meeting_id] = starts
        state.meeting_plans[meeting.meeting_id] = meeting
        if meeting.revision and versions.patched(Patch.MOVED_MEETING_STOPS_REMINDERS):
            # before the brief and the task: while deals or outreach is away the old time's
            # reminder must not go out for a meeting that has moved
            self._stop_reminders(meeting.meeting_id)
        moved = f":r{meeting.revision}" if meeting.revision else ""
        prepare_key = f"prepare_meeting:{meeting.meeting_id}{moved}"
        await self._prepare(meeting, prepare_key)
        if meeting.revision and versions.patched(Patch.MEETING_TASK_CLEANUP):
            await self._close_prepare_tasks(
                meeting.meeting_id, f"the meeting moved to {meeting.starts_at}", keep=prepare_key
            )
        self._stop_reminders(meeting.meeting_id)
        reminders = steps.in_background(self._send_reminders(meeting, starts, heard_at))
        state.meeting_reminders[meeting.meeting_id] = reminders

    async def _prepare(self, meeting: MeetingChanged, key: str) -> None:
        """The rep's preparation task of the meeting, with its brief (built now)."""
        state, inp = self.state, self.state.inp
        try:
            brief = await call(
                Act.MEETING_BRIEF,
                MeetingBriefRequest(meeting.deal_id, meeting.meeting_id, inp.contact),
                inp.queues.deals,
                MeetingBrief,
            )
        except ActivityError:
            brief = MeetingBrief("(the brief could not be built: see the deal)")
        await self.steps.task(
            key,
            f"Prepare the meeting with {state.prospect_name()}",
            f"Meeting '{meeting.title}' at {meeting.starts_at} (deal {meeting.deal_id}). Frame "
            f"the pitch around the problem they described when qualifying.\n\n{brief.body}",
            due=datetime.fromisoformat(meeting.starts_at) - MEETING_PREP_LEAD,
            context={
                **brief.context,
                "deal_id": meeting.deal_id,
                "meeting_id": meeting.meeting_id,
                "meeting_starts_at": meeting.starts_at,
            },
        )

    async def prepare_again(self, meetings: list[MeetingChanged]) -> None:
        """A reopened deal's meetings still ahead: their preparation tasks, which the close
        closed (the journey left the deal's stages), made again under a key of this reopening
        (a task's key is made once). The meeting's later move or end closes it, as any."""
        reopening = self.state.reopenings_handled
        for meeting in meetings:
            if self.state.meeting_moved_on(meeting.meeting_id, meeting.revision):
                # cancelled or moved while the deal was closed (the rep's answer to the keep or
                # cancel question): the news waits in the deal's events, which plan it
                if versions.patched(Patch.REOPENED_DEAL_SKIPS_MOVED_MEETINGS):
                    continue
            moved = f":r{meeting.revision}" if meeting.revision else ""
            key = f"prepare_meeting:{meeting.meeting_id}{moved}:reopened{reopening}"
            await self._prepare(meeting, key)

    async def _send_reminders(
        self, meeting: MeetingChanged, starts: datetime, heard_at: datetime
    ) -> None:
        """One reminder per configured offset, email + SMS (consent, quiet hours and caps are
        outreach's: a booked meeting's reminder follows the quiet hours, not the cadence's
        window, and no pause holds it). A reminder whose successor (or the meeting) is already
        due is skipped, so a meeting booked for the next hour gets one reminder, not all of them
        at once; so is one whose time had passed when the journey heard of the meeting (or of its
        move) while a later one is still ahead: the prospect has just been told (the booking
        page, the invitation), and the later one reminds them. Keys carry the revision: after a
        reschedule the ledger does not take the new ones for repeats. A reminder that cannot go
        gives the rep a task saying why."""
        offsets = self.state.cadence.meeting_reminder_offsets()
        variables = {"meeting_starts_at": meeting.starts_at, "meeting_title": meeting.title}
        for i, offset in enumerate(offsets):
            remind_at = starts - timedelta(seconds=offset)
            last = i + 1 == len(offsets)
            superseded_at = starts if last else starts - timedelta(seconds=offsets[i + 1])
            if workflow.now() >= superseded_at:
                continue
            if (
                not last
                and remind_at <= heard_at
                and versions.patched(Patch.PASSED_REMINDER_SKIPPED)
            ):
                continue
            await sleep_until(remind_at)
            if self.state.meeting_moved_on(meeting.meeting_id, meeting.revision):
                if versions.patched(Patch.HEARD_CHANGES_STOP_TIMERS):
                    return  # moved or over: presenting replans it when it gets there
            delivery = await self.steps.system_touch(
                f"meeting-{meeting.meeting_id}-r{meeting.revision}-{offset}",
                "meeting_reminder",
                variables,
                not_after=superseded_at,
                held_by_pause=False,
            )
            # a reminder that only has to wait past the next one is replaced by it
            if delivery.went or (delivery.too_late_until is not None and not last):
                continue
            if versions.patched(Patch.MEETING_REMINDER_TASK):
                await self._reminder_task(meeting, delivery)

    async def _reminder_task(self, meeting: MeetingChanged, delivery: Delivery) -> None:
        """The reminder could not go: the rep reminds the prospect (one task per meeting time)."""
        state = self.state
        name = state.prospect_name()
        local = local_text(datetime.fromisoformat(meeting.starts_at), state.zone())
        if delivery.too_late_until is not None:
            opens = local_text(delivery.too_late_until, state.zone())
            why = f"no reminder may reach them before {opens}, after the meeting has started"
        else:
            why = f"no channel may carry it ({delivery.why})"
        await self.steps.task(
            f"remind_meeting:{meeting.meeting_id}:r{meeting.revision}",
            f"Remind {name} of the meeting yourself",
            f"The automatic reminder of '{meeting.title}' on {local} could not go: {why}. "
            "Remind them in person (a call, or a message they agreed to).",
            context={
                "deal_id": meeting.deal_id,
                "meeting_id": meeting.meeting_id,
                "meeting_starts_at": meeting.starts_at,
                "why": delivery.why,
            },
        )

    async def _no_show(self, change: MeetingChanged) -> None:
        name = self.state.prospect_name()
        await self.steps.task(
            f"no_show:{change.meeting_id}",
            f"Follow up: {name} missed the meeting",
            f"{name} did not come to '{change.title}' at {change.starts_at} (deal "
            f"{change.deal_id}). A message offering a new time went out to them; call to "
            "re-book.",
            context={"deal_id": change.deal_id, "meeting_id": change.meeting_id},
        )
        # in the background: a message waiting for its send window holds nothing up
        rebook = self.steps.system_touch(
            f"rebook-{change.meeting_id}-r{change.revision}",
            "meeting_rebook",
            {"meeting_starts_at": change.starts_at, "meeting_title": change.title},
        )
        self.state.rebooking[change.meeting_id] = self.steps.in_background(rebook)

    async def _close_prepare_tasks(
        self, meeting_id: str, reason: str, keep: str | None = None
    ) -> None:
        wid = journey_id()
        await call(
            Act.CLOSE_REP_TASKS,
            CloseRepTasks(
                f"{wid}:prepare_meeting:{meeting_id}", reason, f"{wid}:{keep}" if keep else None
            ),
            self.state.inp.queues.outreach,
        )

    def _stop_reminders(self, meeting_id: str) -> None:
        task = self.state.meeting_reminders.pop(meeting_id, None)
        if task is not None and not task.done():
            task.cancel()

    # --- journeys from before Patch.MEETING_LIFECYCLE: goes with that patch -----------------------

    async def _scheduled_before_lifecycle(self, meeting: MeetingScheduled) -> None:
        starts = datetime.fromisoformat(meeting.starts_at)
        await self.steps.task(
            f"prepare_meeting:{meeting.meeting_id}",
            f"Prepare the meeting with {self.state.prospect_name()}",
            f"Meeting '{meeting.title}' at {meeting.starts_at}. Frame the pitch around the "
            f"problem they described when qualifying (deal {meeting.deal_id}).",
            due=starts - MEETING_PREP_LEAD,
        )
        self.steps.in_background(self.referrals.thank_referrer("meeting"))
        self.steps.in_background(self._single_reminder(meeting, starts))

    async def _single_reminder(self, meeting: MeetingScheduled, starts: datetime) -> None:
        await sleep_until(starts - timedelta(seconds=self.state.cadence.meeting_reminder_seconds))
        await self.steps.system_touch(
            f"meeting-{meeting.meeting_id}",
            "meeting_reminder",
            {"meeting_starts_at": meeting.starts_at, "meeting_title": meeting.title},
            not_after=starts,
            held_by_pause=False,
        )
