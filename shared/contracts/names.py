"""Names of activities, signals and queries: the one place both sides take them from."""

from __future__ import annotations


class Act:
    RECORD_STAGE = "prospecting.record_stage"
    GET_REP_MANAGER = "prospecting.get_rep_manager"
    CREATE_REFERRED_PROSPECT = "prospecting.create_referred_prospect"
    SEND_TOUCH = "outreach.send_touch"
    SEND_MEETING_INVITE = "outreach.send_meeting_invite"
    CREATE_REP_TASK = "outreach.create_rep_task"
    CLOSE_REP_TASKS = "outreach.close_rep_tasks"
    FOLLOW_STAGE = "outreach.follow_stage"
    GET_CADENCE = "outreach.get_cadence"
    PAUSE_COLLEAGUES = "outreach.pause_colleagues"
    OPEN_DEAL = "deals.open_deal"
    EXPIRE_QUALIFICATION = "deals.expire_qualification"
    TIME_OUT_QUALIFICATION = "deals.time_out_qualification"
    NOTE_DEAL = "deals.note_deal"
    MEETING_BRIEF = "deals.meeting_brief"
    OPEN_OBJECTIONS = "deals.open_objections"
    RECORD_INVITE = "deals.record_invite"
    CREATE_REFERRAL_ASK = "referrals.create_referral_ask"
    LINK_REFERRAL = "referrals.link_referral"
    REFERRAL_ASK_STATUS = "referrals.referral_ask_status"
    RECORD_REFERRER_THANKS = "referrals.record_referrer_thanks"
    GET_CONTACT = "prospecting.get_contact"
    RECORD_RUN_END = "outreach.record_run_end"


class Sig:
    REPLY_RECEIVED = "reply_received"
    QUALIFICATION_RECORDED = "qualification_recorded"
    MEETING_SCHEDULED = "meeting_scheduled"
    MEETING_RESCHEDULED = "meeting_rescheduled"
    MEETING_CANCELLED = "meeting_cancelled"
    MEETING_HELD = "meeting_held"
    MEETING_NO_SHOW = "meeting_no_show"
    DECISION_DEADLINE = "decision_deadline"
    OBJECTION_LOGGED = "objection_logged"
    DEAL_CLOSED = "deal_closed"
    PAUSE = "pause"
    RESUME = "resume"
    STOP_CADENCE = "stop_cadence"
    MIGRATE_CADENCE = "migrate_cadence"
    REP_ASSIGNED = "rep_assigned"
    DEAL_STAGE_MOVED = "deal_stage_moved"
    DEAL_REOPENED = "deal_reopened"


class Query:
    STATE = "state"
