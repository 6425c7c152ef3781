"""The workflows' patches: every change to the command sequence of journeys (and referral
intakes) already running.

A journey started before a change must replay on the new code, so each such change is guarded by
`versions.patched` with a `Patch` member (never a bare string) and registered here with the stored
history that takes its new path (tests/workflows/histories, replayed by test_replay.py;
test_versions.py fails when an id has no covering history or a call site bypasses the registry).

A patch's life (docs: Temporal's "patching"):
1. `patched`: new journeys take the new path, older ones replay the old one.
2. Once `retire_when` holds (no journey that started before the change is still running: check
   with `temporal workflow list --query 'WorkflowType="ProspectJourney" AND
   ExecutionStatus="Running" AND StartTime < "<date>"'`), switch the call to
   `workflow.deprecate_patch` (through this module) and delete the old path.
3. Once no journey that started before step 2's release is running, delete the call and the
   entry. Stored histories recorded before step 2 carry a marker that is not deprecated and
   stop replaying then: re-record their paths (tests/workflows/record_histories.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from temporalio import workflow


class Patch(StrEnum):
    SYSTEM_TOUCH_DEFERRAL = "system-touch-deferral"
    QUALIFICATION_ESCALATION = "qualification-escalation"
    MEETING_LIFECYCLE = "meeting-lifecycle"
    REFERRAL_REMINDERS = "referral-reminders"
    REFERRER_THANKS = "referrer-thanks"
    MEETING_TASK_CLEANUP = "meeting-task-cleanup"
    QUALIFY_TASK_CLEANUP = "qualify-task-cleanup"
    # --- issue 10, points 5 and 6 (pauses stack; meeting reminders go or say why) ---
    PAUSE_HOLDS_EVERY_MESSAGE = "pause-holds-every-message"
    MEETING_REMINDER_TASK = "meeting-reminder-task"
    # issue 10, point 8 (templates) ---------------------------------------------------------
    TEMPLATE_FAILURE_TASK = "template-failure-task"
    # issue 10, point 12 (colleagues by email domain) ---------------------------------------
    COLLEAGUES_BY_DOMAIN = "colleagues-by-domain"
    # --- come back (issue 10) ---
    RUN_END_REPORTED = "run-end-reported"
    # --- issue 10, points 3 and 4 (tasks follow the journey; one stage truth) ---
    TASKS_FOLLOW_STAGE = "tasks-follow-stage"
    DEAL_STAGE_TRUTH = "deal-stage-truth"
    # --- issue 10, point 4 (a won deal reopened while its journey runs) ---
    DEAL_REOPENED_RUNNING = "deal-reopened-running"
    # --- issue 13 (a late touch keeps the cadence's gaps) ---
    CADENCE_KEEPS_GAPS = "cadence-keeps-gaps"
    # --- found in review (2026-12-06): meetings while qualifying, moves, later runs, replies ---
    MEETINGS_WHILE_QUALIFYING = "meetings-while-qualifying"
    MOVED_MEETING_STOPS_REMINDERS = "moved-meeting-stops-reminders"
    LATER_RUN_FIRST_STAGE = "later-run-first-stage"
    LATER_REPLY_TASK = "later-reply-task"
    WINDOW_WAIT_FLOOR = "window-wait-floor"
    # --- found in review (2026-12-06): lifecycle races ---
    LOST_DEAL_REOPENED = "lost-deal-reopened"
    REFERRAL_STEP_CANCELLED = "referral-step-cancelled"
    # --- found by CI (2026-12-06): a deal's change heard while presenting is busy ---
    HEARD_CHANGES_STOP_TIMERS = "heard-changes-stop-timers"
    # --- found by CI (2026-12-06): a reminder sent a second after the invitation ---
    PASSED_REMINDER_SKIPPED = "passed-reminder-skipped"
    # --- found in review (2026-12-06): a known prospect referred after their journey ended ---
    REFERRAL_RUN_BY_OUTREACH = "referral-run-by-outreach"
    # --- found in review (2026-12-06, second): repeated deal events, replies while the run ends ---
    REOPENING_DROPS_STALE_DEAL_EVENTS = "reopening-drops-stale-deal-events"
    REPLIES_TOLD_AFTER_RUN_END = "replies-told-after-run-end"
    VERDICT_FROM_DEAL_STAGE = "verdict-from-deal-stage"
    # --- found in review (2026-12-06, third): a zone an import fills in while a step waits ---
    ZONE_CHANGE_REPLANS_STEP = "zone-change-replans-step"
    # --- found in review (2026-12-06, fourth): a referral reminder with a used link ---
    REMINDERS_STOP_AT_USED_LINK = "reminders-stop-at-used-link"
    # --- found in review (2026-12-07): a reply heard with a stop ---
    REPLY_WITH_STOP_TOLD = "reply-with-stop-told"
    # --- found in review (2026-12-07, second): deal and meeting lifecycles ---
    REOPENED_DEAL_REARMS = "reopened-deal-rearms"
    REPEATED_MEETING_IGNORED = "repeated-meeting-ignored"
    VERDICT_STOPS_ESCALATION = "verdict-stops-escalation"
    STALE_REOPENING_IGNORED = "stale-reopening-ignored"
    THANKS_OUTLIVE_RUN = "thanks-outlive-run"
    REBOOKING_STOPS = "rebooking-stops"
    # --- found in review (2026-12-07, third): a deal decided while its verdict was lost ---
    VERDICT_FROM_DEAL_EVENTS = "verdict-from-deal-events"
    DECIDED_DEAL_MEETINGS_ASKED = "decided-deal-meetings-asked"
    MIGRATION_KEPT_AT_REPLY = "migration-kept-at-reply"
    REFERRAL_ASKED_BY_EARLIER_RUN = "referral-asked-by-earlier-run"
    # --- found in review (2026-12-07, fourth): a last-chance task whose deadline moved on ---
    DEADLINE_CHANGE_CLOSES_LAST_CHANCE = "deadline-change-closes-last-chance"
    REOPENED_DEAL_PREPARES_MEETINGS = "reopened-deal-prepares-meetings"
    REOPENED_DEAL_SKIPS_MOVED_MEETINGS = "reopened-deal-skips-moved-meetings"


@dataclass(frozen=True)
class PatchRecord:
    guards: str  # what the new path does that the old one did not
    histories: tuple[str, ...]  # stored histories (file stems) whose journeys took the new path
    retire_when: str  # when the old path may go (deprecate_patch, then deletion)


def _before(change: str, day: str) -> str:
    """The retirement condition of a change (the commit or issue point that brought it)."""
    return f"no running ProspectJourney started before the deploy of {change} ({day})"


REGISTRY: dict[Patch, PatchRecord] = {
    Patch.SYSTEM_TOUCH_DEFERRAL: PatchRecord(
        "a touch outside the cadence (intro, meeting reminder, referral ask) that outreach told "
        "to wait for a send window is sent again when it may be, unless that is too late",
        ("journey_won_held_deferred_referrals_v4", "journey_referred_deferred_thanks_v4"),
        _before("bb0f26a", "2026-11-27"),
    ),
    Patch.QUALIFICATION_ESCALATION: PatchRecord(
        "at the qualification reminder: a note on the deal and a task for the rep's manager; at "
        "the timeout: the cadence's outcome (disqualified or nurture), noted on the deal, instead "
        "of expiring the deal to disqualified",
        (
            "journey_escalation_nurture_v2",
            "journey_timeout_escalation_nurture_v4",
            "journey_timeout_no_manager_disqualified_v4",
            "journey_verdict_races_timeout_lost_v4",
        ),
        _before("a277cb7", "2026-11-27"),
    ),
    Patch.MEETING_LIFECYCLE: PatchRecord(
        "a meeting brief in the preparation task, reminders at several offsets, reschedules, "
        "cancellations, held and no-show meetings, the decision deadline's last-chance task",
        ("journey_meetings_deadline_lost_v2", "journey_meetings_deadline_lost_v4"),
        _before("a277cb7", "2026-11-27"),
    ),
    Patch.REFERRAL_REMINDERS: PatchRecord(
        "reminders of the referral request until the client refers someone",
        ("journey_won_reminders_rep_change_v3", "journey_won_held_deferred_referrals_v4"),
        _before("a277cb7", "2026-11-27"),
    ),
    Patch.REFERRER_THANKS: PatchRecord(
        "a referred prospect's first meeting and win thank their referrer",
        ("journey_referred_thanks_v3", "journey_referred_deferred_thanks_v4"),
        _before("a277cb7", "2026-11-27"),
    ),
    Patch.MEETING_TASK_CLEANUP: PatchRecord(
        "a moved, cancelled, held or missed meeting closes its old preparation task",
        ("journey_won_reminders_rep_change_v3", "journey_meetings_deadline_lost_v4"),
        _before("b8758d9", "2026-11-27"),
    ),
    Patch.QUALIFY_TASK_CLEANUP: PatchRecord(
        "a recorded verdict closes the rep's qualify task and its reminder",
        (
            "journey_won_reminders_rep_change_v3",
            "journey_reply_pauses_company_disqualified_v4",
            "journey_verdict_races_timeout_lost_v4",
        ),
        _before("b8758d9", "2026-11-27"),
    ),
    # --- issue 10, points 5 and 6 ---
    Patch.PAUSE_HOLDS_EVERY_MESSAGE: PatchRecord(
        "a paused journey holds its messages outside the cadence too (warm introduction, "
        "rebooking offer, referral ask and reminders) until every pause is lifted",
        ("journey_paused_intro_v5",),
        _before("issue 10 points 5-7", "2026-12-03"),
    ),
    Patch.MEETING_REMINDER_TASK: PatchRecord(
        "a meeting reminder that cannot go (quiet hours until the meeting, no channel allowed) "
        "becomes a task for the rep saying why",
        ("journey_meeting_reminder_task_v5",),
        _before("issue 10 points 5-7", "2026-12-03"),
    ),
    # issue 10, point 8 (templates) ---------------------------------------------------------
    Patch.TEMPLATE_FAILURE_TASK: PatchRecord(
        "a cadence touch whose template cannot render (TemplateError, not retried) is marked "
        "failed in the journey's state, the rep gets a task to fix it and the cadence goes on, "
        "instead of the failure ending the journey",
        ("journey_template_failure_v5",),
        _before("issue 10 point 8", "2026-12-03"),
    ),
    # issue 10, point 12 (colleagues by email domain) ---------------------------------------
    Patch.COLLEAGUES_BY_DOMAIN: PatchRecord(
        "a reply from a prospect without a company name pauses colleagues too (found by the "
        "work domain of their address) when the cadence pauses the company on a reply",
        ("journey_reply_pauses_domain_colleagues_v5",),
        _before("issue 10 point 12", "2026-12-03"),
    ),
    # --- come back (issue 10) ---
    Patch.RUN_END_REPORTED: PatchRecord(
        "a run that ends tells outreach its outcome (the run's record; a nurtured prospect's "
        "follow-up cadence)",
        (
            "journey_nurture_run_end_v5",
            "journey_late_reply_run2_disqualified_v5",
            "journey_reopened_run3_lost_v5",
        ),
        _before("issue 10 points 1, 2, 11", "2026-12-03"),
    ),
    # --- issue 10, points 3 and 4 (tasks follow the journey; one stage truth) ---
    Patch.TASKS_FOLLOW_STAGE: PatchRecord(
        "every stage entered tells outreach (follow_stage): the open tasks of the stage group "
        "the journey left close with the reason, and the prospect's task cards show the stage",
        (
            "journey_timeout_disqualified_tasks_v5",
            "journey_stopped_tasks_v5",
            "journey_deal_moves_closing_won_v5",
        ),
        _before("issue 10 points 3, 4", "2026-12-03"),
    ),
    Patch.DEAL_STAGE_TRUTH: PatchRecord(
        "the deal's stage moves (deal_stage_moved) are recorded while presenting, and a deal "
        "closed from presenting or objections passes through closing before won or lost",
        ("journey_deal_moves_closing_won_v5", "journey_closed_from_presenting_lost_v5"),
        _before("issue 10 points 3, 4", "2026-12-03"),
    ),
    # --- issue 10, point 4 (a won deal reopened while its journey runs) ---
    Patch.DEAL_REOPENED_RUNNING: PatchRecord(
        "the referrals stage runs as a task that a reopened won deal (deal_reopened) cancels "
        "(referral ask and reminders stop); the journey goes back to the deal's stage and on "
        "to closing; a later win asks for referrals only if no request went out yet",
        ("journey_won_reopened_won_again_v5",),
        _before("issue 10 point 4, reopen", "2026-12-03"),
    ),
    # --- issue 13 ---
    Patch.CADENCE_KEEPS_GAPS: PatchRecord(
        "a cadence touch that goes out later than due (a pause, an outage, a slow provider; "
        "not a send window) delays the later touches and the nurture deadline by as much, "
        "instead of the overdue touches going out at once with no time left for a reply",
        ("journey_late_touch_keeps_gaps_v6", "journey_paused_keeps_gaps_v6"),
        _before("bfb8c16", "2026-12-05"),
    ),
    # --- found in review (2026-12-06) ---
    Patch.MEETINGS_WHILE_QUALIFYING: PatchRecord(
        "a meeting booked while the deal is still qualifying (the booking link, answers short of "
        "the gate) gets its preparation task and reminders at once instead of after the "
        "verdict, and a meeting not yet over holds the qualification timeout until a day after "
        "its start",
        ("journey_booked_while_qualifying_v7",),
        _before("the meetings-while-qualifying change", "2026-12-06"),
    ),
    Patch.MOVED_MEETING_STOPS_REMINDERS: PatchRecord(
        "a moved meeting's old reminders stop before the new brief and task are made (deals "
        "or outreach away no longer lets the old time's reminder go out)",
        ("journey_booked_while_qualifying_v7",),
        _before("the meetings-while-qualifying change", "2026-12-06"),
    ),
    Patch.LATER_RUN_FIRST_STAGE: PatchRecord(
        "a later run's first stage (re-enrolment, a late reply's restart, a reopened deal) "
        "tells outreach (follow_stage), so the prospect's task cards show it",
        ("journey_late_reply_run2_later_reply_v7",),
        _before("the meetings-while-qualifying change", "2026-12-06"),
    ),
    Patch.LATER_REPLY_TASK: PatchRecord(
        "an email or text from the prospect after their first reply, while the journey runs, "
        "becomes a task for the rep with its text (kind `reply`, or `client_reply` once won)",
        ("journey_late_reply_run2_later_reply_v7", "journey_booked_while_qualifying_v7"),
        _before("the meetings-while-qualifying change", "2026-12-06"),
    ),
    Patch.WINDOW_WAIT_FLOOR: PatchRecord(
        "a cadence touch told to wait for a send window that opened already (outreach's clock "
        "behind the server's) waits a second before it is sent again, as a touch outside the "
        "cadence does, instead of being sent again at once until the clocks agree",
        ("journey_lagging_window_v7",),
        _before("the meetings-while-qualifying change", "2026-12-06"),
    ),
    # --- found in review (2026-12-06): lifecycle races ---
    Patch.LOST_DEAL_REOPENED: PatchRecord(
        "a deal reopened while its run records the loss (closing, lost: deals saw the run "
        "still going and told it) takes the run back to the deal's stage, as a won deal's "
        "reopening does, instead of the run ending lost with the reopening unheard",
        ("journey_reopened_while_losing_v7",),
        _before("the lost-deal-reopened change", "2026-12-06"),
    ),
    Patch.REFERRAL_STEP_CANCELLED: PatchRecord(
        "a won deal reopened while the referrals stage waits on an activity (the stage record, "
        "the ask, its message) goes back to the deal's stage; the activity's cancellation, "
        "which it reports as its failure, no longer fails the journey",
        ("journey_reopened_during_referral_record_v7",),
        _before("the lost-deal-reopened change", "2026-12-06"),
    ),
    # --- found by CI (2026-12-06): a deal's change heard while presenting is busy ---
    Patch.HEARD_CHANGES_STOP_TIMERS: PatchRecord(
        "a meeting reminder or a last-chance task whose timer fires after the deal told of a "
        "move, a cancellation or another deadline, while presenting still waited on an earlier "
        "event's activity (deals or outreach slow or away), is dropped instead of acting on "
        "the time that is gone",
        ("journey_moved_while_busy_v7",),
        _before("the heard-changes change", "2026-12-06"),
    ),
    # --- found by CI (2026-12-06): a reminder sent a second after the invitation ---
    Patch.PASSED_REMINDER_SKIPPED: PatchRecord(
        "a meeting set after one of its reminders' times (booked 2 h ahead with reminders a "
        "day and an hour before) skips that reminder when a later one is still ahead, instead "
        "of sending it at once, seconds after the invitation",
        ("journey_booked_within_the_day_v7",),
        _before("the passed-reminder change", "2026-12-06"),
    ),
    # --- found in review (2026-12-06, second): repeated deal events, replies while the run ends ---
    Patch.REOPENING_DROPS_STALE_DEAL_EVENTS: PatchRecord(
        "a reopened deal drops the closes and stage moves queued when the reopening came (a "
        "close the client repeated after a failed signal, a retried move): before, the "
        "repeated close closed the reopened deal again at once and the run ended while the "
        "deal was open",
        ("journey_repeated_close_reopened_v7",),
        _before("the stale-deal-events change", "2026-12-06"),
    ),
    Patch.REPLIES_TOLD_AFTER_RUN_END: PatchRecord(
        "a reply the run accepts while it ends (its last stage record, its end report) becomes "
        "the rep's task, and a reply's task being made when the run ends is finished, not "
        "cancelled: the run ends once every reply it accepted is told; before, the end "
        "cancelled the teller and the reply was neither a task nor a late reply",
        ("journey_reply_while_run_ends_v7", "journey_reply_task_at_run_end_v7"),
        _before("the replies-after-the-end change", "2026-12-06"),
    ),
    Patch.VERDICT_FROM_DEAL_STAGE: PatchRecord(
        "at the qualification timeout, a deal deals reports past the gate (or disqualified) "
        "whose verdict never reached the journey is that verdict, after an hour for its signal: "
        "before, the journey waited in qualifying for ever",
        ("journey_verdict_from_deal_stage_v7",),
        _before("the verdict-from-deal-stage change", "2026-12-06"),
    ),
    # --- found in review (2026-12-06, third): a zone an import fills in while a step waits ---
    Patch.ZONE_CHANGE_REPLANS_STEP: PatchRecord(
        "a cadence step the journey waits for is planned again when the prospect's zone changes "
        "(contact_changed) so that its due time moves: it goes on the new zone's business day, "
        "at once when that has passed; before, it kept the old zone's due time (a prospect moved "
        "from Los Angeles to Tokyo got it on their Saturday)",
        ("journey_zone_change_replans_step_v7",),
        _before("the zone-change re-plan", "2026-12-06"),
    ),
    # --- found in review (2026-12-06, fourth) ---
    Patch.REMINDERS_STOP_AT_USED_LINK: PatchRecord(
        "the referral reminders also stop once the client's link is used (the form sent naming "
        "nobody stored: themselves, people erased; the ask closed by their erasure), and a "
        "reminder's channel waiting for its window is dropped when the link was used or someone "
        "referred meanwhile; before, reminders went on asking them to use a link that opens "
        "nothing",
        ("journey_won_link_used_during_reminder_v7",),
        _before("the used-link reminders change", "2026-12-06"),
    ),
    # --- found in review (2026-12-07) ---
    Patch.REPLY_WITH_STOP_TOLD: PatchRecord(
        "a reply heard with a stop (both while a touch or the contacting stage's record was in "
        "flight: a STOP, the unsubscribe link, a bounce, a rep's not-interested) becomes the "
        "rep's reply task; before, the stop ended the cadence and the reply was neither "
        "qualified nor told",
        ("journey_reply_with_stop_v8",),
        _before("the reply-with-stop change", "2026-12-07"),
    ),
    # --- found in review (2026-12-07, second) ---
    Patch.REOPENED_DEAL_REARMS: PatchRecord(
        "a closed deal reopened (won or lost) re-arms what the close stopped: the reminders of "
        "its meetings still ahead and the last chance of its decision deadline still ahead; "
        "before, they never went, and the same deadline sent again was taken for a repeat",
        ("journey_reopened_deal_rearms_v9",),
        _before("the reopened-deal re-arm", "2026-12-07"),
    ),
    Patch.REPEATED_MEETING_IGNORED: PatchRecord(
        "a booking heard again (the booking page reloaded, a retried request) or late (an older "
        "revision than one planned, a meeting already over) plans nothing; before, it planned "
        "the meeting again: a reminder waiting for its hour was dropped, and a stale one put "
        "back the old time with no reminder at all",
        ("journey_repeated_meeting_ignored_v9",),
        _before("the repeated-booking change", "2026-12-07"),
    ),
    Patch.VERDICT_STOPS_ESCALATION: PatchRecord(
        "a verdict heard while the qualification reminder is being made stops the manager's "
        "escalation; before, the manager was asked about a deal already qualified",
        ("journey_verdict_stops_escalation_v9",),
        _before("the verdict-stops-escalation change", "2026-12-07"),
    ),
    Patch.STALE_REOPENING_IGNORED: PatchRecord(
        "a reopening heard while the journey had heard no close since the last one (deals "
        "reopened a deal whose close never reached the journey) is not followed at the next "
        "close; before, the next close sent the journey back to presenting at once, where it "
        "waited for ever with its deal closed",
        ("journey_stale_reopening_ignored_v9",),
        _before("the stale-reopening change", "2026-12-07"),
    ),
    Patch.THANKS_OUTLIVE_RUN: PatchRecord(
        "a referrer's thanks still waiting when the referred prospect's run ends (for the "
        "referrer's send window, mostly: the deal lost that evening) goes on in a ThankReferrer "
        "workflow the run starts and abandons; before, the run's end cancelled it and the "
        "referrer was never thanked",
        ("journey_thanks_outlive_run_v9",),
        _before("the thanks-outlive-run change", "2026-12-07"),
    ),
    Patch.REBOOKING_STOPS: PatchRecord(
        "a missed meeting's re-booking message still waiting for its send window is dropped "
        "once the deal is decided or another meeting is booked; before, a client who had just "
        "signed, or a prospect who had just booked again, was asked to pick a new time",
        ("journey_rebooking_stops_v9",),
        _before("the rebooking-stops change", "2026-12-07"),
    ),
    Patch.VERDICT_FROM_DEAL_EVENTS: PatchRecord(
        "a deal's move on or close heard while qualifying, its verdict never heard (the gate's "
        "signal lost), is the verdict: qualified, and the journey goes on at once; before, it "
        "waited for the timeout, reminding the rep and telling the manager the prospect had not "
        "qualified about a deal already moved on, won or lost",
        ("journey_verdict_from_deal_events_v10",),
        _before("the verdict-from-deal-events change", "2026-12-07"),
    ),
    Patch.DECIDED_DEAL_MEETINGS_ASKED: PatchRecord(
        "a deal decided (won, lost, disqualified, timed out) with meetings still ahead gives "
        "the rep a task per meeting to keep or cancel it; before, the meeting stood on both "
        "calendars with no reminder and no preparation task, and nobody was asked",
        ("journey_decided_deal_meetings_asked_v10",),
        _before("the decided-deal-meetings change", "2026-12-07"),
    ),
    Patch.MIGRATION_KEPT_AT_REPLY: PatchRecord(
        "a cadence migration accepted while the journey waited for its next touch, and not yet "
        "applied when a reply (or a stop) ended contacting, is applied then: the rest of the "
        "journey runs on the version its enrollment and its state say; before, it ran on the "
        "old version's qualification, meeting and referral rules",
        ("journey_migration_kept_at_reply_v10",),
        _before("the migration-kept-at-reply change", "2026-12-07"),
    ),
    Patch.REFERRAL_ASKED_BY_EARLIER_RUN: PatchRecord(
        "a reopened deal's new run whose earlier run ended won (its referral request sent) "
        "does not ask the client again at its own win; before, the client got a second "
        "request, its reminders and a second thanks task",
        ("journey_referral_asked_by_earlier_run_v10",),
        _before("the referral-asked-by-earlier-run change", "2026-12-07"),
    ),
    Patch.DEADLINE_CHANGE_CLOSES_LAST_CHANCE: PatchRecord(
        "a decision deadline moved or cleared after it passed closes the last-chance task it "
        "gave the rep; before, the task stayed open (and escalated) beside the new deadline's",
        ("journey_deadline_change_closes_last_chance_v10",),
        _before("the last-chance change", "2026-12-07"),
    ),
    Patch.REOPENED_DEAL_PREPARES_MEETINGS: PatchRecord(
        "a deal reopened while its run runs makes its meetings still ahead a preparation task "
        "again; before, the close had closed their tasks and the rep went to the meeting with "
        "no task and no brief",
        ("journey_reopened_deal_prepares_meetings_v10",),
        _before("the reopened-deal preparation change", "2026-12-07"),
    ),
    Patch.REOPENED_DEAL_SKIPS_MOVED_MEETINGS: PatchRecord(
        "a reopened deal's meeting cancelled or moved while the deal was closed (the rep's "
        "answer to the keep or cancel question) gets no preparation task from the reopening; "
        "before, it got one (a task.created, maybe a notice) that the cancellation closed again "
        "at once",
        ("journey_reopened_deal_skips_cancelled_meeting_v10",),
        _before("the reopened-deal skip change", "2026-12-07"),
    ),
    # ReferralIntake's, not the journey's: one registry for every workflow's patches
    Patch.REFERRAL_RUN_BY_OUTREACH: PatchRecord(
        "a referral intake has outreach start the referred prospect's journey as their next run "
        "(run 1, or the run after their ended ones, with its enrollment row) instead of starting "
        "it as its child at run 1, whose keys a known prospect's first run had taken",
        ("referral_intake_v7",),
        "no running ReferralIntake started before the deploy of the referred-run change "
        "(2026-12-06); an intake runs for seconds",
    ),
}


def patched(patch: Patch) -> bool:
    """True on journeys that take `patch`'s new path (all new ones)."""
    return workflow.patched(patch.value)
