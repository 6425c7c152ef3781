"""What the outside world tells a journey (signals) and asks it (the state query).

Handlers only record facts in the state and issue no command, so a signal that arrives at any
point (even before the run starts) is safe; the stages act on the facts.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CadenceSnapshot,
        ContactChanged,
        DealClosed,
        DealReopened,
        DealStageMoved,
        DecisionDeadline,
        JourneyState,
        MeetingChanged,
        MeetingScheduled,
        ObjectionLogged,
        PauseJourney,
        PauseKind,
        QualificationRecorded,
        RepAssigned,
        ReplyReceived,
        ResumeJourney,
        Stage,
        StopCadence,
    )
    from shared.contracts.names import Query, Sig

from workflows.journey.state import MeetingEvent, State


class JourneyInbox:
    """The journey workflow's signal and query handlers (ProspectJourney inherits them)."""

    state: State

    @workflow.signal(name=Sig.REPLY_RECEIVED)
    def reply_received(self, reply: ReplyReceived) -> None:
        state = self.state
        seen = {r.event_id for r in [state.reply, *state.later_replies] if r is not None}
        if reply.event_id in seen:
            return  # a repeat (the relay's retry)
        # the journey acts on a reply only while its cadence runs (it ends it); the rep is told
        # of any other (workflows/journey/replies.py)
        acted_on = state.reply is None and state.stage in (Stage.PROSPECTING, Stage.CONTACTING)
        if state.reply is None:
            state.reply = reply
        if not acted_on:
            state.later_replies.append(reply)

    @workflow.signal(name=Sig.QUALIFICATION_RECORDED)
    def qualification_recorded(self, verdict: QualificationRecorded) -> None:
        self.state.qualification = verdict

    @workflow.signal(name=Sig.MEETING_SCHEDULED)
    def meeting_scheduled(self, meeting: MeetingScheduled) -> None:
        self.state.hear_meeting(meeting.meeting_id, meeting.revision)
        self.state.deal_events.append(meeting)

    @workflow.signal(name=Sig.MEETING_RESCHEDULED)
    def meeting_rescheduled(self, change: MeetingChanged) -> None:
        self._meeting_event(MeetingEvent("rescheduled", change))

    @workflow.signal(name=Sig.MEETING_CANCELLED)
    def meeting_cancelled(self, change: MeetingChanged) -> None:
        self._meeting_event(MeetingEvent("cancelled", change))

    @workflow.signal(name=Sig.MEETING_HELD)
    def meeting_held(self, change: MeetingChanged) -> None:
        self._meeting_event(MeetingEvent("held", change))

    @workflow.signal(name=Sig.MEETING_NO_SHOW)
    def meeting_no_show(self, change: MeetingChanged) -> None:
        self._meeting_event(MeetingEvent("no_show", change))

    def _meeting_event(self, event: MeetingEvent) -> None:
        change = event.change
        self.state.hear_meeting(change.meeting_id, change.revision, event.kind != "rescheduled")
        self.state.deal_events.append(event)

    @workflow.signal(name=Sig.DECISION_DEADLINE)
    def decision_deadline(self, deadline: DecisionDeadline) -> None:
        self.state.deadline_heard = deadline
        self.state.deal_events.append(deadline)

    @workflow.signal(name=Sig.OBJECTION_LOGGED)
    def objection_logged(self, objection: ObjectionLogged) -> None:
        self.state.deal_events.append(objection)

    @workflow.signal(name=Sig.DEAL_CLOSED)
    def deal_closed(self, closed: DealClosed) -> None:
        self.state.closes_heard += 1
        self.state.deal_events.append(closed)

    @workflow.signal(name=Sig.DEAL_STAGE_MOVED)
    def deal_stage_moved(self, moved: DealStageMoved) -> None:
        self.state.deal_events.append(moved)

    @workflow.signal(name=Sig.DEAL_REOPENED)
    def deal_reopened(self, reopened: DealReopened) -> None:
        self.state.hear_reopening(reopened)

    @workflow.signal(name=Sig.PAUSE)
    def pause(self, pause: PauseJourney) -> None:
        # one pause per kind (a repeat replaces it, with its new end); the kinds stack
        self.state.pauses[pause.pause_kind()] = pause
        self.state.pause_changes += 1

    @workflow.signal(name=Sig.RESUME)
    def resume(self, resume: ResumeJourney | None = None) -> None:
        # a resume without a payload (older senders) lifts the manual pause, the only kind then
        kind = resume.kind if resume is not None else PauseKind.MANUAL
        if self.state.pauses.pop(kind, None) is not None:
            self.state.pause_changes += 1

    @workflow.signal(name=Sig.STOP_CADENCE)
    def stop_cadence(self, stop: StopCadence) -> None:
        if self.state.stop is None:
            self.state.stop = stop

    @workflow.signal(name=Sig.MIGRATE_CADENCE)
    def migrate_cadence(self, cadence: CadenceSnapshot) -> None:
        """Move to another version of the cadence: from the next touch on, its steps apply.

        Outreach asks every running journey of the cadence without reading each first, so the
        journey decides: one whose cadence is over (a reply, a stop, a later stage, a run that
        never contacts) stays on its version and says so (`cadence_version`), which is what its
        enrollment follows. State only: such a journey never applied a migration (contact.py
        alone does), so histories from before this rule replay with the same commands."""
        state = self.state
        running = state.cadence
        if cadence.cadence_id != running.cadence_id or cadence.version <= running.version:
            return
        contacting = state.stage in (Stage.PROSPECTING, Stage.CONTACTING)
        if contacting and state.inp.start_stage == Stage.CONTACTING and not state.interrupted():
            state.migration = cadence

    @workflow.signal(name=Sig.REP_ASSIGNED)
    def rep_assigned(self, rep: RepAssigned) -> None:
        # Only state changes: no command, so histories from before this signal replay as they
        # were.
        self.state.update_contact(rep)

    @workflow.signal(name=Sig.CONTACT_CHANGED)
    def contact_changed(self, change: ContactChanged) -> None:
        # State only, as rep_assigned: histories from before this signal replay as they were.
        # A zone that moves the due time of the step the journey waits for wakes that wait
        # (contact.py, _Plan, Patch.ZONE_CHANGE_REPLANS_STEP)
        self.state.update_contact(change)

    @workflow.query(name=Query.STATE)
    def current_state(self) -> JourneyState:
        return self.state.snapshot(workflow.now())
