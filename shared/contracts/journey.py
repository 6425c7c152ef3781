"""Types that cross service boundaries: workflow inputs, signals, activity inputs and outputs.

Versioned with care: add fields with defaults, never repurpose one. Plain dataclasses with
stdlib types only, so workflow code can import this module inside the sandbox.
Times are ISO-8601 strings in UTC (offset included), durations are seconds.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from shared.contracts.queues import TaskQueues


class Stage(StrEnum):
    PROSPECTING = "prospecting"
    CONTACTING = "contacting"
    QUALIFYING = "qualifying"
    PRESENTING = "presenting"
    OBJECTIONS = "objections"
    CLOSING = "closing"
    WON = "won"
    REFERRALS = "referrals"
    # outcomes that end a journey early
    LOST = "lost"
    DISQUALIFIED = "disqualified"
    NURTURE = "nurture"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    CALL_TASK = "call_task"
    SOCIAL_TASK = "social_task"


MESSAGE_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS})

# The stages a rep task can belong to, grouped by the work they share: a task made in one stage
# still makes sense in another of its group (a meeting's preparation task while objections are
# heard), and is done once the journey leaves the group. Outcomes that end a journey are a group
# of their own, so entering one leaves every other group.
TASK_STAGE_GROUPS: dict[str, str] = {
    Stage.PROSPECTING: "contact",
    Stage.CONTACTING: "contact",
    Stage.QUALIFYING: "qualify",
    Stage.PRESENTING: "deal",
    Stage.OBJECTIONS: "deal",
    Stage.CLOSING: "deal",
    Stage.WON: "client",
    Stage.REFERRALS: "client",
}
# The rep's question about a meeting still ahead of a decided deal: keep it or cancel it.
DECIDED_MEETING_KIND = "meeting_after_decision"
# a person's message for the rep to answer, made by the journey's reply teller, which outlives
# the run's stages and its end report: never late work of a run that is over
REPLY_TASK_KINDS = ("reply", "client_reply")
# A new client's thanks: moot once their deal is reopened (outreach closes it then).
THANK_CLIENT_KIND = "thank_client"
# Tasks that ask the rep to reach the person (remind them of a meeting, call to re-book, thank
# them): none is opened for a person who said no to us (consent.task_refusal), as no cadence
# call is.
REACH_OUT_TASK_KINDS = ("remind_meeting", "no_show", THANK_CLIENT_KIND)
# Tasks that outlive the stage they were made in: a new client is thanked, a reply the journey
# does not act on (workflows/journey/replies.py) is answered, and a meeting still ahead of a
# decided deal is kept or cancelled, whatever comes next.
LASTING_TASK_KINDS = (THANK_CLIENT_KIND, *REPLY_TASK_KINDS, DECIDED_MEETING_KIND)


# A meeting's tasks (its preparation, a reminder the rep gives in person, a no-show's follow-up)
# are the deal's work whatever stage the meeting was booked in: a prospect may book through a
# cadence's link while still being contacted or qualified, and the meeting is still ahead when
# the deal reaches presenting.
MEETING_TASK_KINDS = ("prepare_meeting", "remind_meeting", "no_show")


def task_stage_group(stage: str) -> str:
    return TASK_STAGE_GROUPS.get(stage, stage)


def task_group(kind: str, made_in: str) -> str:
    """The stage group a task of `kind` made in stage `made_in` belongs to: it is done once the
    journey leaves that group."""
    return (
        TASK_STAGE_GROUPS[Stage.PRESENTING]
        if kind in MEETING_TASK_KINDS
        else task_stage_group(made_in)
    )


def journey_id(prospect_id: str) -> str:
    """The one workflow id per prospect: a repeated enrollment can never start a second journey."""
    return f"journey-{prospect_id}"


def prospect_of_journey(workflow_id: str) -> str | None:
    """The prospect whose journey has this workflow id (journey_id's inverse); None for any
    other workflow."""
    prospect_id = workflow_id.removeprefix("journey-")
    return prospect_id if prospect_id and journey_id(prospect_id) == workflow_id else None


def run_key(prospect_id: str, run: int) -> str:
    """What a journey run's rows are keyed by (messages, tasks, stage changes, its deal): the
    workflow id for the first run, so rows made before runs existed keep their keys, and
    `journey-<prospect id>.r<run>` for a later run of the same workflow id (a come back)."""
    return journey_id(prospect_id) if run <= 1 else f"{journey_id(prospect_id)}.r{run}"


def run_of_key(key: str) -> int:
    """The run a row keyed by run_key (and maybe ":<suffix>") belongs to; 1 for any other key."""
    head, _, number = key.split(":", 1)[0].rpartition(".r")
    return int(number) if head.startswith("journey-") and number.isdigit() else 1


def referral_intake_id(referral_id: str) -> str:
    return f"referral-intake-{referral_id}"


# --- people -------------------------------------------------------------------------------------


@dataclass
class Contact:
    """What a journey needs to know of a prospect and their rep (a snapshot from prospecting)."""

    prospect_id: str
    first_name: str
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    company: str = ""
    title: str = ""
    timezone: str = ""  # "" = unknown: inferred from the phone number when sending
    source: str = "cold"
    rep_id: str | None = None
    rep_name: str = ""
    rep_email: str = ""
    rep_phone: str | None = None
    # company facts for the rep's meeting brief (empty when prospecting does not know them)
    industry: str = ""
    company_size: int | None = None
    country: str = ""
    # the prospect's calendar zone as shared.timezones.prospect_zone resolved it when this
    # snapshot was made (explicit, else the phone's, else the default); "" in snapshots from
    # before it existed: their journeys count days on `timezone` (UTC when empty), as they did
    zone: str = ""

    def calendar_zone(self) -> str:
        return self.zone or self.timezone


@dataclass
class Referrer:
    prospect_id: str
    name: str
    referral_id: str


# --- cadence ------------------------------------------------------------------------------------


@dataclass
class StepVariant:
    """An A/B variant of a step's message; prospects split by weight, the same way every time."""

    name: str
    body: str
    subject: str = ""
    weight: int = 1
    html: str = ""


@dataclass
class StoredStep:
    """Where a step's templates are kept: step `position` (in the order of the snapshot's
    steps) of the stored cadence version, which never changes once saved."""

    cadence_id: str
    version: int
    position: int


@dataclass
class CadenceStep:
    """Due `business_days` (Mon-Fri, not a holiday, in the prospect's time zone) after
    enrollment, plus `offset_seconds`.

    With `stored` set, the step carries no templates (subject, body, html empty, variants by
    name and weight only): outreach renders the stored version's (issue 13), so a journey's
    history and its worker's memory do not hold a copy of every template."""

    channel: str
    offset_seconds: int
    body: str
    subject: str = ""
    business_days: int = 0
    condition: str = ""  # "" | "previous_email_delivered" | "previous_email_not_delivered"
    variants: list[StepVariant] = field(default_factory=list)
    variant: str = ""  # the variant chosen for this prospect (set by the journey)
    html: str = ""  # an email's HTML part (template); empty: made from the text
    stored: StoredStep | None = None


@dataclass
class SendWindow:
    """Days (0=Monday) and local hours [start_hour, end_hour) in the prospect's time zone;
    `holidays` are ISO dates (YYYY-MM-DD) of the prospect's local calendar with no sends."""

    days: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    start_hour: int = 0
    end_hour: int = 24
    holidays: list[str] = field(default_factory=list)


@dataclass
class CadenceSnapshot:
    """A cadence version as a journey runs it: pinned at enrollment, recorded in history."""

    cadence_id: str
    version: int
    name: str
    steps: list[CadenceStep]
    send_window: SendWindow = field(default_factory=SendWindow)
    nurture_after_seconds: int = 7 * 86400
    qualification_reminder_seconds: int = 2 * 86400
    qualification_timeout_seconds: int = 5 * 86400
    meeting_reminder_seconds: int = 86400
    referral_delay_seconds: int = 7 * 86400
    pause_company_on_reply: bool = False
    # "disqualified" | "nurture": where a deal goes when nobody qualified it in time
    qualification_timeout_outcome: str = "disqualified"
    # seconds before a meeting, one reminder each; empty (older snapshots): meeting_reminder_seconds
    meeting_reminders_seconds: list[int] = field(default_factory=list)
    referral_reminders: int = 2  # after the referral request, until the client refers someone
    referral_reminder_interval_seconds: int = 3 * 86400

    def meeting_reminder_offsets(self) -> list[int]:
        """Reminder offsets, earliest reminder first, without duplicates."""
        offsets = self.meeting_reminders_seconds or [self.meeting_reminder_seconds]
        return sorted({o for o in offsets if o > 0}, reverse=True)


# --- workflow inputs ----------------------------------------------------------------------------


@dataclass
class JourneyInput:
    contact: Contact
    cadence: CadenceSnapshot
    queues: TaskQueues = field(default_factory=TaskQueues)
    start_stage: str = Stage.CONTACTING
    referrer: Referrer | None = None
    # --- come back (issue 10) ---
    # which run of `journey-<prospect id>` this is (1: the first); keys the run's rows (run_key)
    run: int = 1
    # why a later run starts past contacting (a late reply, a reopened deal): the first stage
    # change's cause
    start_cause: str = ""
    deal_id: str | None = None  # a run started at presenting carries on with this deal
    # a reopened deal's new run whose earlier run ended won: that win's referral request went
    # out, and a second win does not ask the client again
    referral_asked_before: bool = False


@dataclass
class ReferredPerson:
    first_name: str
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    company: str = ""
    title: str = ""
    timezone: str = ""


@dataclass
class ReferralIntakeInput:
    referral_id: str
    person: ReferredPerson
    referrer_prospect_id: str
    referrer_name: str
    rep_id: str | None
    cadence_id: str
    queues: TaskQueues = field(default_factory=TaskQueues)


# --- signals (APIs -> journey) ------------------------------------------------------------------


@dataclass
class ReplyReceived:
    channel: str
    event_id: str
    excerpt: str = ""
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class QualificationRecorded:
    deal_id: str
    qualified: bool
    reasons: list[str] = field(default_factory=list)
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class MeetingScheduled:
    meeting_id: str
    deal_id: str
    starts_at: str
    title: str = ""
    revision: int = 0
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class MeetingChanged:
    """A meeting rescheduled, cancelled, held or missed (the signal's name says which).
    `revision` grows with every reschedule: reminders of an older revision are void."""

    meeting_id: str
    deal_id: str
    starts_at: str
    title: str = ""
    revision: int = 0
    reason: str = ""


@dataclass
class DecisionDeadline:
    """The deal's decision deadline was set, moved (re-arms the timer) or cleared (None)."""

    deal_id: str
    deadline: str | None = None


@dataclass
class ObjectionLogged:
    objection_id: str
    deal_id: str
    category: str
    text: str
    answers: list[str] = field(default_factory=list)
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class DealClosed:
    deal_id: str
    won: bool
    reason: str = ""
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class ActivePause:
    """One reason the journey is paused, and when it lifts by itself (None: at a resume)."""

    kind: str
    reason: str = ""
    until: str | None = None


@dataclass
class FailedStep:
    """A cadence touch that failed for good (its template cannot render for this prospect): the
    journey went on with the next one and gave the rep a task to fix the template."""

    step: int  # the touch's index, as in its ledger key step-<n>
    reason: str
    at: str = ""  # ISO time the journey gave up on it


@dataclass
class DealStageMoved:
    """The rep moved the deal between presenting, objections and closing (POST /deals/{id}/stage):
    the journey records the move in the prospect's stage history."""

    deal_id: str
    stage: str
    cause: str = "moved by the rep"
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class DealReopened:
    """A closed deal was reopened (POST /deals/{id}/reopen) while its journey runs (a won deal's
    referrals stage): the journey goes back to `stage`, the deal's stage before the close."""

    deal_id: str
    stage: str
    cause: str = "deal reopened"
    actor: str = ""  # issue 14: who caused it (StageChange.actor); "" from older senders


@dataclass
class JourneyState:
    stage: str
    next_step: int
    deal_id: str | None
    finished: bool
    cadence_version: int = 0
    paused: bool = False
    stopped: bool = False
    timezone: str = "UTC"
    rep_id: str | None = None  # who signs the journey's messages now
    pauses: list[ActivePause] = field(default_factory=list)  # every reason paused now
    # cadence touches whose templates could not render for this prospect (issue 10)
    failed_steps: list[FailedStep] = field(default_factory=list)
    # how much later than planned the rest of the cadence runs: its late touches (issue 13)
    cadence_delay_seconds: float = 0.0
    # when the next cadence touch is due, delay included, before any send window (ISO, UTC);
    # None when no touch is left
    next_touch_due: str | None = None
    # the deal reopenings this run was told of and those it followed: once `finished`, one told
    # but not followed came too late (it ended first), and deals starts a new run for the deal
    reopenings_heard: int = 0
    reopenings_handled: int = 0


class PauseKind(StrEnum):
    """Why a journey is paused. Pauses of different kinds stack: a resume lifts its own kind
    only, and the journey sends again when none is left."""

    OUT_OF_OFFICE = "out_of_office"
    COLLEAGUE_REPLY = "colleague_reply"
    REP = "rep"
    CADENCE = "cadence"
    MANUAL = "manual"


@dataclass
class PauseJourney:
    reason: str = ""
    until: str | None = None  # resume by itself then (e.g. an out-of-office return date)
    kind: str = ""  # a PauseKind; "" (senders from before pauses stacked) is manual

    def pause_kind(self) -> str:
        return self.kind or PauseKind.MANUAL


@dataclass
class ResumeJourney:
    """Lift the pause of `kind` only; a resume signal without a payload (older senders) lifts
    the manual pause."""

    kind: str = PauseKind.MANUAL


@dataclass
class StopCadence:
    reason: str
    actor: str = ""  # issue 14: who stopped it (a key holder); "": system:stop


@dataclass
class PauseColleagues:
    prospect_id: str
    cadence_id: str
    company: str
    reason: str
    email: str = ""  # the replier's address: its work domain finds colleagues too (issue 10)


# --- activity inputs / outputs ------------------------------------------------------------------


@dataclass
class StageChange:
    key: str  # unique per journey transition: a retried activity records it once
    prospect_id: str
    from_stage: str | None
    to_stage: str
    cause: str
    at: str
    cadence_id: str = ""  # the journey's cadence: the funnel counts changes by it
    # who caused it: a key holder ("<role> (<key id>)") or "system:<reason>" (a timer, an
    # automation, a provider's webhook); empty: "journey" (activities from before issue 14)
    actor: str = ""


def system_actor(reason: str) -> str:
    """The actor of a change no key holder made: a timer, an automation, a provider's webhook."""
    return f"system:{reason}"


@dataclass
class TouchRequest:
    """Send one touch (one or more channels at once). Ledger key: (journey_id, touch_key, channel).

    kind "cadence" renders `steps`; other kinds (warm_intro, meeting_reminder, referral_ask) use
    outreach's built-in templates on `channels`.
    """

    journey_id: str
    touch_key: str
    kind: str
    contact: Contact
    cadence_id: str = ""
    steps: list[CadenceStep] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    send_window: SendWindow = field(default_factory=SendWindow)


@dataclass
class ChannelOutcome:
    channel: str
    status: str  # sent | already_sent | suppressed | missing_address | deferred | task_created
    detail: str = ""


@dataclass
class TouchResult:
    outcomes: list[ChannelOutcome]
    defer_until: str | None = None  # set when some channel must wait for its send window


@dataclass
class ContactChanged:
    """How to reach the prospect changed (an import filled in their zone or phone, say): the
    journey's sends, send windows and quiet hours follow it from now on."""

    email: str | None
    phone: str | None
    timezone: str
    zone: str  # shared.timezones.prospect_zone of the two above, resolved by outreach


@dataclass
class RepAssigned:
    """The prospect has a new rep: messages from now on are signed by them. None: nobody (their
    rep left while nobody had room): the journey's tasks wait unassigned for the next one."""

    rep_id: str | None
    rep_name: str = ""
    rep_email: str = ""
    rep_phone: str | None = None


@dataclass
class CloseRepTasks:
    """Close the open tasks whose key starts with key_prefix (but keep_key): e.g. the old
    preparation task of a meeting that moved or was called off."""

    key_prefix: str
    reason: str
    keep_key: str | None = None


@dataclass
class StageEntered:
    """The journey entered `stage` (issue 10, tasks follow the journey): outreach closes the
    journey's open tasks made for a stage group it left (with `reason`), except `keep_kinds`,
    and shows `stage` on the cards of the prospect's tasks. Idempotent."""

    journey_id: str
    prospect_id: str
    stage: str
    reason: str
    keep_kinds: list[str] = field(default_factory=list)


@dataclass
class RepTaskRequest:
    key: str  # idempotency key: the same key never makes a second task
    rep_id: str | None
    prospect_id: str
    journey_id: str
    kind: str
    title: str
    body: str = ""
    context: dict[str, str] = field(default_factory=dict)
    due_at: str | None = None
    # the task is for rep_id whoever the prospect's rep is now (e.g. the rep's manager)
    fixed_rep: bool = False

    def assignee(self, current_rep: str | None) -> str | None:
        """The prospect's rep now (a reassignment since the journey started wins), unless the
        task is for a fixed rep."""
        return self.rep_id if self.fixed_rep else current_rep or self.rep_id


@dataclass
class OpenDealRequest:
    prospect_id: str
    journey_id: str
    rep_id: str | None
    source: str
    cause: str


@dataclass
class DealStatus:
    deal_id: str
    stage: str


@dataclass
class QualificationTimeout:
    deal_id: str
    outcome: str  # "disqualified" | "nurture"
    cause: str


@dataclass
class DealNote:
    """A line in the deal's history that is not a stage change (a reminder, an escalation)."""

    key: str  # idempotency key
    deal_id: str
    cause: str
    at: str


@dataclass
class RepManager:
    rep_id: str
    manager_id: str | None = None
    manager_name: str = ""
    manager_email: str = ""


@dataclass
class MeetingBriefRequest:
    deal_id: str
    meeting_id: str
    contact: Contact


@dataclass
class MeetingBrief:
    body: str
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class OpenObjection:
    objection_id: str
    category: str
    text: str
    best_response: str = ""


@dataclass
class OpenObjections:
    deal_id: str
    stage: str
    decided: bool  # won, lost or otherwise closed: no last-chance task
    objections: list[OpenObjection] = field(default_factory=list)


@dataclass
class ReferralAskRequest:
    client_prospect_id: str
    journey_id: str
    client_name: str
    rep_id: str | None
    cadence_id: str


@dataclass
class ReferralAsk:
    ask_id: str
    link: str


@dataclass
class ReferralAskStatus:
    ask_id: str
    referrals: int  # people referred on this ask so far (form or API)
    # the link was used (the form sent, or the ask closed by the client's erasure): it opens
    # nothing more, so a reminder would ask for what cannot be done (False from a worker
    # of an earlier release, which did not say)
    link_used: bool = False


@dataclass
class ReferrerThanks:
    """The referrer of `referral_id` was thanked for `event` ("meeting" or "won")."""

    referral_id: str
    event: str
    at: str


@dataclass
class ThanksRequest:
    """A referrer's thanks for `event` ("meeting", "won") of the prospect they referred, sent
    on that prospect's run's key (`journey_id`: the ledger's key, so a send the run began is
    not made twice) by the ThankReferrer workflow, which outlives the run."""

    journey_id: str
    event: str
    referrer: Referrer
    cadence_id: str
    send_window: SendWindow = field(default_factory=SendWindow)
    queues: TaskQueues = field(default_factory=TaskQueues)


def thanks_workflow_id(referral_id: str, event: str) -> str:
    """One ThankReferrer per referral and event: a later run of the referred prospect (a
    reopened deal's) does not thank the referrer for the same thing twice."""
    return f"referrer-thanks-{referral_id}-{event}"


@dataclass
class CreateReferredProspect:
    referral_id: str
    person: ReferredPerson
    referrer_prospect_id: str
    rep_id: str | None


@dataclass
class LinkReferral:
    referral_id: str
    prospect_id: str


@dataclass
class StartReferredRun:
    """A referral intake's journey, started by outreach as the referred prospect's next run
    (run 1 for a new prospect) at qualifying; a prospect whose run is running keeps it."""

    contact: Contact
    cadence_id: str
    referrer: Referrer


@dataclass
class ReferredRun:
    """The prospect's current run (0: none): `referred` when it is the referral's (started now
    or by an earlier attempt), not when another was running already or the person may not be
    contacted (`refused` names the rule, never an address): the referral is attributed only."""

    run: int
    referred: bool
    refused: str = ""  # "do_not_contact", "opted_out", "self_referral" or "client"


@dataclass
class RunEnded:
    """A journey run ended with `outcome` (its last stage): outreach records it on the run and
    schedules the cadence's follow-up for a nurtured prospect."""

    prospect_id: str
    run: int
    outcome: str
    cadence_id: str
    at: str


# --- references: the one-field inputs of read and expire activities ------------------------------


@dataclass
class DealRef:
    deal_id: str


@dataclass
class CadenceRef:
    cadence_id: str


@dataclass
class ProspectRef:
    prospect_id: str


@dataclass
class RepRef:
    rep_id: str


@dataclass
class ReferralAskRef:
    ask_id: str
