"""make chaos's own logic, without a stack: the seeded plan, the timeline that names the fault
active at a moment, and the counting of each bad column from a journey's traces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.chaos.plan import FAULT_KINDS, KINDS, Fault, Plan, Timeline
from tests.chaos.tally import BAD, Observed, Report, judge, judge_notifications, table
from tests.chaos.traffic import ALL_SENDS, Journey
from tests.support.cluster import Sent

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WORKERS = ["worker-journeys-1", "worker-outreach-2"]
APIS = ["outreach-1", "deals-2"]


def plan(seed: int, journeys: int = 40, faults: int = 12, history: bool = True) -> Plan:
    return Plan.make(
        seed,
        journeys,
        faults,
        enrol_seconds=30,
        fault_seconds=60,
        workers=WORKERS,
        apis=APIS,
        history=history,
    )


def test_a_seed_draws_the_same_run_and_every_kind_at_least_once() -> None:
    assert plan(7) == plan(7)
    assert plan(7) != plan(8)
    drawn = plan(7)
    assert set(drawn.kinds) == set(KINDS) and len(drawn.kinds) == 40
    assert {f.kind for f in drawn.faults} == set(FAULT_KINDS)
    assert [f.at for f in drawn.faults] == sorted(f.at for f in drawn.faults)
    assert all(0 <= f.at < 60 for f in drawn.faults)
    assert {f.target for f in drawn.faults if f.kind == "kill-worker"} <= set(WORKERS)
    assert all(3 <= f.seconds <= 10 for f in drawn.faults if "-" in f.kind and f.seconds)
    assert "kill-history" not in {f.kind for f in plan(7, history=False).faults}


def test_the_timeline_names_the_fault_active_or_just_over() -> None:
    timeline = Timeline()
    kill = timeline.add(Fault(1.0, "kill-worker", "worker-outreach-2"), T0)
    kill.ended = T0 + timedelta(seconds=4)
    assert "during #1 kill-worker worker-outreach-2" in timeline.explain(T0 + timedelta(seconds=2))
    later = timeline.explain(T0 + timedelta(seconds=34))
    assert later.startswith("after #1") and "ended 30s before" in later
    assert timeline.explain(T0 + timedelta(minutes=5)) == "no fault active or recent"
    assert timeline.explain(None) == "time unknown"


def journey(kind: str, acted_at: datetime | None = None, acted: list[str] | None = None) -> Journey:
    j = Journey(0, kind, {"id": "p1", "email": "p1@c1.example.com", "phone": "+14155550001"})
    j.journey_id, j.enrolled_at, j.acted_at = "journey-p1", T0, acted_at
    j.acted = acted or []
    return j


def row(touch: str, channel: str, provider_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "touch_key": touch,
        "channel": channel,
        "provider_id": provider_id,
        "status": "submitted",
        "provider_status": "delivered" if channel == "sms" else "",
        "error": "",
        "created_at": T0.isoformat(),
        **extra,
    }


def email(message_id: str, at: datetime) -> dict[str, Any]:
    return {"message_id": message_id, "received_at": at.isoformat(), "subject": "s"}


def text(sid: str, at: datetime, callback: int | None = 200) -> dict[str, Any]:
    callbacks = [{"event": "delivered", "response_status": callback, "at": at.isoformat()}]
    return {"sid": sid, "accepted_at": at.isoformat(), "body": "b", "callbacks": callbacks}


def silent_traces() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    ledger, emails, texts = [], [], []
    for n, (touch, channel) in enumerate(ALL_SENDS):
        at = T0 + timedelta(seconds=8 * n)
        if channel == "email":
            ledger.append(row(touch, channel, f"<m{n}@x>"))
            emails.append(email(f"<m{n}@x>", at))
        else:
            ledger.append(row(touch, channel, f"SM{n}"))
            texts.append(text(f"SM{n}", at))
    return ledger, emails, texts


def stages(*names: str) -> list[dict[str, Any]]:
    return [{"to_stage": s, "at": T0.isoformat()} for s in names]


def test_a_clean_journey_counts_nothing_bad() -> None:
    report = Report()
    ledger, emails, texts = silent_traces()
    judge(
        report,
        Observed(
            journey("silent"),
            "COMPLETED",
            stages("contacting", "nurture"),
            Sent(ledger, emails, texts),
            [],
            {},
        ),
    )
    assert report.clean and report.started == report.completed == 1
    assert report.webhooks_acknowledged == 2  # each text's delivered callback


def test_each_bad_column_counts_what_it_says() -> None:
    report = Report()
    ledger, emails, texts = silent_traces()
    ledger[2]["status"] = "sending"  # step-1's email never went out
    emails.pop(1)
    texts.append(dict(texts[0]))  # the first text twice
    ledger[3]["provider_status"] = "sent"  # its delivered callback was acknowledged, then lost
    judge(
        report,
        Observed(
            journey("silent"), "RUNNING", stages("contacting"), Sent(ledger, emails, texts), [], {}
        ),
    )
    assert {c: report.count(c) for c in BAD} == {
        "not at the expected stage": 1,
        "steps lost": 1,
        "duplicate emails": 0,
        "duplicate texts": 1,
        "sends after an opt-out": 0,
        "webhook events lost": 1,
        "duplicate rep notifications": 0,
    }


def test_a_text_accepted_after_the_stop_was_acknowledged_is_a_send_after_an_opt_out() -> None:
    report = Report()
    stopped = T0 + timedelta(seconds=3)
    ledger = [row("step-0", "email", "<m0@x>"), row("step-0", "sms", "SM0"),
              row("step-2", "sms", "SM2")]  # fmt: skip
    texts = [text("SM0", T0), text("SM2", stopped + timedelta(milliseconds=5))]
    events = [{"event_id": "SMstop", "provider": "twilio", "delivery": "delivered", "signal": "x"}]
    judge(
        report,
        Observed(
            journey("stop", stopped, ["SMstop"]),
            "COMPLETED",
            stages("contacting", "nurture"),
            Sent(ledger, [email("<m0@x>", T0)], texts),
            events,
            {"sms": {"status": "opted_out"}},
        ),
    )
    assert report.count("sends after an opt-out") == 1
    assert report.count("webhook events lost") == 0
    timeline = Timeline()
    timeline.add(Fault(0, "twilio-hang", "twilio-sandbox", 5), T0).ended = T0 + timedelta(5)
    printed = table(report, timeline, seed=7)
    assert "CHAOS_SEED=7" in printed and "during #1 twilio-hang twilio-sandbox" in printed


def test_a_second_copy_of_a_rep_notification_is_a_duplicate() -> None:
    report = Report()
    first, second = "<notification-a@x>", "<notification-b@x>"
    mails = [email(first, T0), email(second, T0 + timedelta(seconds=1)),
             email(first, T0 + timedelta(seconds=70))]  # fmt: skip
    judge_notifications(report, mails)
    assert report.count("duplicate rep notifications") == 1
    assert report.notifications == 2
    [wrong] = report.anomalies
    assert wrong.journey is None and wrong.at == T0 + timedelta(seconds=70)
    timeline = Timeline()
    timeline.add(Fault(60, "kill-api", "outreach-1"), T0 + timedelta(seconds=69))
    printed = table(report, timeline, seed=3)
    assert "duplicate rep notifications: the rep at " in printed
    assert "#1 kill-api outreach-1" in printed
    assert "| rep notification emails (checked)" in printed


def test_an_acknowledged_stop_that_never_reached_the_journey_is_lost() -> None:
    report = Report()
    ledger = [row("step-0", "email", "<m0@x>"), row("step-0", "sms", "SM0")]
    events = [{"event_id": "SMstop", "provider": "twilio", "delivery": "pending", "signal": "x"}]
    judge(
        report,
        Observed(
            journey("stop", T0, ["SMstop"]),
            "COMPLETED",
            stages("contacting", "nurture"),
            Sent(ledger, [email("<m0@x>", T0)], [text("SM0", T0)]),
            events,
            {"sms": {"status": "opted_in"}},
        ),
    )
    assert report.count("webhook events lost") == 2  # not delivered, and consent not changed


def test_an_opt_out_after_the_journey_closed_is_not_lost_but_one_before_is() -> None:
    """A late unsubscribe (the cadence ran out first): outreach stores it, records the opt-out
    and has no running journey to tell. Lost only when Temporal says the journey was still
    running when the event was stored."""
    ledger = [row("step-0", "email", "<m0@x>"), row("step-0", "sms", "SM0")]
    stored = T0 + timedelta(seconds=2)
    event = {
        "event_id": "unsubscribe:t",
        "provider": "closeflow",
        "delivery": "no_journey",
        "signal": "stop_cadence",
        "created_at": stored.isoformat(),
    }
    counts = []
    for closed_at in (stored - timedelta(milliseconds=400), stored + timedelta(seconds=1)):
        report = Report()
        judge(
            report,
            Observed(
                journey("unsubscribe", stored, ["unsubscribe:t"]),
                "COMPLETED",
                stages("contacting", "nurture"),
                Sent(ledger, [email("<m0@x>", T0)], [text("SM0", T0)]),
                [event],
                {"email": {"status": "opted_out"}},
                closed_at,
            ),
        )
        counts.append((report.count("webhook events lost"), report.after_close))
    assert counts == [(0, 1), (1, 0)]


def test_a_reply_after_the_journey_closed_must_become_the_reps_task() -> None:
    """A reply the cadence outran (faults delayed the first touch): the journey rightly ends in
    nurture, and the reply must have become a late-reply task. The same reply stored while the
    journey ran must have moved it (nurture is then the wrong end)."""
    ledger = [row("step-0", "email", "<m0@x>"), row("step-0", "sms", "SM0")]
    stored = T0 + timedelta(seconds=2)

    def run(closed_at: datetime, outcome: str, delivery: str = "no_journey") -> tuple[int, int]:
        event = {
            "event_id": "ev-1",
            "provider": "mailgun",
            "delivery": delivery,
            "signal": "reply_received",
            "outcome": outcome,
            "created_at": stored.isoformat(),
        }
        report = Report()
        judge(
            report,
            Observed(
                journey("reply_email", stored, ["mailgun-reply"]),
                "COMPLETED",
                stages("contacting", "nurture"),
                Sent(ledger, [email("<m0@x>", T0)], [text("SM0", T0)]),
                [event],
                {},
                closed_at,
            ),
        )
        return report.count("not at the expected stage"), report.count("webhook events lost")

    before, after = stored - timedelta(milliseconds=400), stored + timedelta(seconds=1)
    assert run(before, "late_reply_task") == (0, 0)
    assert run(before, "journey_ended") == (0, 1)  # the reply reached nobody
    assert run(after, "delivered", delivery="delivered") == (1, 0)  # delivered, yet nurture
    assert run(after, "late_reply_task") == (1, 1)  # the journey was running: lost
