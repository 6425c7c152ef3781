"""Names of activities, signals and queries: the one place both sides take them from."""

from __future__ import annotations


class Act:
    RECORD_STAGE = "prospecting.record_stage"
    CREATE_REFERRED_PROSPECT = "prospecting.create_referred_prospect"
    SEND_TOUCH = "outreach.send_touch"
    CREATE_REP_TASK = "outreach.create_rep_task"
    GET_CADENCE = "outreach.get_cadence"
    PAUSE_COLLEAGUES = "outreach.pause_colleagues"
    OPEN_DEAL = "deals.open_deal"
    EXPIRE_QUALIFICATION = "deals.expire_qualification"
    CREATE_REFERRAL_ASK = "referrals.create_referral_ask"
    LINK_REFERRAL = "referrals.link_referral"


class Sig:
    REPLY_RECEIVED = "reply_received"
    QUALIFICATION_RECORDED = "qualification_recorded"
    MEETING_SCHEDULED = "meeting_scheduled"
    OBJECTION_LOGGED = "objection_logged"
    DEAL_CLOSED = "deal_closed"
    PAUSE = "pause"
    RESUME = "resume"
    STOP_CADENCE = "stop_cadence"
    MIGRATE_CADENCE = "migrate_cadence"


class Query:
    STATE = "state"
