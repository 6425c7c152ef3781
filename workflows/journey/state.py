"""The journey's memory: what the signals recorded and where the stages are, in one place.

Signals only write facts here; the stages read them and act. Everything a replay rebuilds lives
here, so a reader sees at once what a running journey remembers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        ActivePause,
        CadenceSnapshot,
        ContactChanged,
        DealClosed,
        DealReopened,
        DealStageMoved,
        DecisionDeadline,
        FailedStep,
        JourneyInput,
        JourneyState,
        MeetingChanged,
        MeetingScheduled,
        ObjectionLogged,
        PauseJourney,
        QualificationRecorded,
        RepAssigned,
        ReplyReceived,
        Stage,
        StopCadence,
    )

MeetingChangeKind = Literal["rescheduled", "cancelled", "held", "no_show"]


@dataclass
class MeetingEvent:
    """A meeting change as the journey sees it: the signal's name says what happened."""

    kind: MeetingChangeKind
    change: MeetingChanged


MeetingNews = MeetingScheduled | MeetingEvent  # a meeting booked, or a change to one

DealEvent = (
    MeetingScheduled
    | ObjectionLogged
    | DealClosed
    | MeetingEvent
    | DecisionDeadline
    | DealStageMoved
)


@dataclass
class State:
    inp: JourneyInput
    cadence: CadenceSnapshot  # the version running now: a migration replaces it
    stage: str = Stage.PROSPECTING  # where prospecting puts every new prospect
    changes: int = 0  # stage changes so far: each one's idempotency key
    next_step: int = 0
    # how much later than planned the cadence runs: the sum of its touches' lateness (pauses,
    # outages, slow providers; not send windows), added to every later due time
    cadence_delay: timedelta = timedelta(0)
    next_touch_due: datetime | None = None  # shown by the state query; None: no touch left
    deal_id: str | None = None
    finished: bool = False
    # recorded by signals
    reply: ReplyReceived | None = None
    # the replies the journey does not act on (after the first, or once past contacting): each
    # email or text is told to the rep once
    later_replies: list[ReplyReceived] = field(default_factory=list)
    qualification: QualificationRecorded | None = None
    deal_events: list[DealEvent] = field(default_factory=list)  # presenting handles them in order
    # the active pauses by kind (PauseKind): they stack, a resume lifts its own kind only
    pauses: dict[str, PauseJourney] = field(default_factory=dict)
    pause_changes: int = 0  # grows at every pause and every resume that lifted one
    stop: StopCadence | None = None
    migration: CadenceSnapshot | None = None  # a newer cadence version, applied at the next touch
    # meetings and the decision deadline
    meeting_revisions: dict[str, int] = field(default_factory=dict)
    meeting_reminders: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    meetings_over: set[str] = field(default_factory=set)  # cancelled, held or missed
    # what the deal's signals said the moment they came, before presenting reaches them in order
    # (it may be waiting on an earlier event's activity): a reminder or a last chance whose
    # timer fires meanwhile must not act on a meeting time or a deadline that is gone
    meeting_revisions_heard: dict[str, int] = field(default_factory=dict)
    meetings_heard_over: set[str] = field(default_factory=set)
    deadline_heard: DecisionDeadline | None = None
    meeting_starts: dict[str, datetime] = field(default_factory=dict)  # as last planned
    meeting_plans: dict[str, MeetingChanged] = field(default_factory=dict)  # as last planned
    rebooking: dict[str, asyncio.Task[Any]] = field(default_factory=dict)  # a missed meeting's
    decided_meetings_asked: bool = False  # the rep was asked to keep or cancel them
    deadline: str | None = None
    deadline_watch: asyncio.Task[Any] | None = None
    # a won deal reopened while the journey runs (issue 10 point 4): each one is handled once
    reopenings: list[DealReopened] = field(default_factory=list)
    reopenings_handled: int = 0
    # for each reopening, the closes and stage moves queued when it came (a close the client
    # repeated, a retried move): they tell of the deal before it, never of the reopened deal
    decided_before_reopening: list[list[DealEvent]] = field(default_factory=list)
    closes_heard: int = 0
    # for each reopening, the closes heard when it came: one with no close heard since the
    # reopening before it reopened a close the journey never heard (its signal was lost)
    closes_at_reopening: list[int] = field(default_factory=list)
    referral_asked: bool = False  # the request went out (a later win does not ask again)
    # referrals: event ("meeting", "won") -> the thanks is done
    referrer_thanks: dict[str, bool] = field(default_factory=dict)
    failed_steps: list[FailedStep] = field(default_factory=list)  # templates that cannot render
    # work that holds nothing up (touches waiting for a window, timers); cancelled at the end
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    def start(cls, inp: JourneyInput) -> State:
        return cls(inp=inp, cadence=inp.cadence)

    def take_meeting_news(self) -> MeetingNews | None:
        """The first meeting event waiting among the deal's events (the others keep their
        order for presenting)."""
        for i, event in enumerate(self.deal_events):
            if isinstance(event, MeetingScheduled | MeetingEvent):
                del self.deal_events[i]
                return event
        return None

    def hear_meeting(self, meeting_id: str, revision: int, over: bool = False) -> None:
        heard = self.meeting_revisions_heard
        heard[meeting_id] = max(revision, heard.get(meeting_id, revision))
        if over:
            self.meetings_heard_over.add(meeting_id)

    def meeting_moved_on(self, meeting_id: str, revision: int) -> bool:
        """The deal has told of a later time of the meeting than `revision`, or of its end."""
        if meeting_id in self.meetings_heard_over:
            return True
        return self.meeting_revisions_heard.get(meeting_id, revision) > revision

    def deadline_moved_on(self, deadline: DecisionDeadline) -> bool:
        """The deal has told of another decision deadline (moved or cleared) since `deadline`."""
        heard = self.deadline_heard
        return heard is not None and heard.deadline != deadline.deadline

    def meeting_news_waiting(self) -> bool:
        return any(isinstance(e, MeetingScheduled | MeetingEvent) for e in self.deal_events)

    def interrupted(self) -> bool:
        """A reply or a stop ends the cadence."""
        return self.reply is not None or self.stop is not None

    def hear_reopening(self, reopened: DealReopened) -> None:
        self.reopenings.append(reopened)
        self.closes_at_reopening.append(self.closes_heard)
        self.decided_before_reopening.append(
            [e for e in self.deal_events if isinstance(e, DealClosed | DealStageMoved)]
        )

    def reopens_no_close_heard(self, reopened: DealReopened) -> bool:
        """`reopened` came with no close heard since the reopening before it (or ever): it
        tells of a close this journey never followed, not of the one it follows now."""
        index = next(i for i, r in enumerate(self.reopenings) if r is reopened)
        before = self.closes_at_reopening[index - 1] if index else 0
        return self.closes_at_reopening[index] == before

    def stale_deal_events(self, reopened: DealReopened) -> list[DealEvent]:
        """The closes and stage moves heard before `reopened` and still queued."""
        index = next(i for i, r in enumerate(self.reopenings) if r is reopened)
        before = self.decided_before_reopening[index]
        return [e for e in self.deal_events if any(e is b for b in before)]

    def drop_deal_events(self, events: list[DealEvent]) -> None:
        self.deal_events[:] = [e for e in self.deal_events if not any(e is d for d in events)]

    def next_reopening(self) -> DealReopened | None:
        if len(self.reopenings) > self.reopenings_handled:
            return self.reopenings[self.reopenings_handled]
        return None

    def take_reopening(self) -> DealReopened | None:
        """The next reopening, handled from now on (each one is followed once)."""
        reopened = self.next_reopening()
        if reopened is not None:
            self.reopenings_handled += 1
        return reopened

    def paused(self) -> bool:
        return bool(self.pauses)

    def next_pause_end(self) -> datetime | None:
        """The first moment an active pause lifts by itself (None: none has an end)."""
        ends = [datetime.fromisoformat(p.until) for p in self.pauses.values() if p.until]
        return min(ends) if ends else None

    def lift_pauses_ending_by(self, end: datetime) -> None:
        for kind, pause in list(self.pauses.items()):
            if pause.until is not None and datetime.fromisoformat(pause.until) <= end:
                del self.pauses[kind]  # the stated return date has come

    def zone(self) -> str:
        """The prospect's calendar zone, as resolved when the journey's input was made."""
        return self.inp.contact.calendar_zone()

    def prospect_name(self) -> str:
        contact = self.inp.contact
        return f"{contact.first_name} {contact.last_name}".strip()

    def update_contact(self, change: RepAssigned | ContactChanged) -> None:
        """Messages from now on are signed by the new rep, or go to the prospect as they are
        reached now, in their zone (the next touches' windows and days follow it, and the
        step being waited for: contact.py re-plans it). State only: no command is issued. Each
        signal's fields are the Contact's fields it changes."""
        self.inp.contact = dataclasses.replace(self.inp.contact, **dataclasses.asdict(change))

    def snapshot(self, now: datetime) -> JourneyState:
        # a pause whose end has passed is lifted when the journey next looks: not shown
        pauses = [
            ActivePause(kind, p.reason, p.until)
            for kind, p in sorted(self.pauses.items())
            if p.until is None or datetime.fromisoformat(p.until) > now
        ]
        return JourneyState(
            stage=self.stage,
            next_step=self.next_step,
            deal_id=self.deal_id,
            finished=self.finished,
            cadence_version=(self.migration or self.cadence).version,
            paused=bool(pauses),
            stopped=self.stop is not None,
            timezone=self.zone() or "UTC",
            rep_id=self.inp.contact.rep_id,
            pauses=pauses,
            failed_steps=list(self.failed_steps),
            cadence_delay_seconds=self.cadence_delay.total_seconds(),
            next_touch_due=self.next_touch_due.isoformat() if self.next_touch_due else None,
            reopenings_heard=len(self.reopenings),
            reopenings_handled=self.reopenings_handled,
        )
