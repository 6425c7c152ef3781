"""The inbox's ordering rule and the webhook signature, as pure functions."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

from services.outreach import models
from services.outreach.notifications.notifier import sign, slack_payload, verify
from services.outreach.tasks.service import Policy, escalation_deadline, rank, urgent_signals

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POLICY = Policy(escalate_after_seconds=3600, hot_reply_seconds=86400, meeting_soon_seconds=7200)


def task(**kw: object) -> models.RepTask:
    values: dict[str, object] = {
        "id": "t",
        "kind": "call_task",
        "due_at": NOW + timedelta(days=2),
        "created_at": NOW - timedelta(days=1),
        "context": {"stage": "contacting"},
        "prospect_card": {},
        "snoozed_until": None,
        "escalated_at": None,
    }
    values.update(kw)
    return models.RepTask(**values)


def codes(t: models.RepTask, reply: datetime | None = None) -> list[str]:
    return [r.code for r in rank(t, reply, NOW, POLICY).reasons]


def test_due_time_overdue_then_escalated_after_the_ops_delay() -> None:
    assert codes(task(due_at=NOW + timedelta(minutes=30))) == ["due_soon", "stage"]
    assert codes(task(due_at=NOW - timedelta(minutes=59))) == ["overdue", "stage"]
    assert codes(task(due_at=NOW - timedelta(minutes=60))) == ["escalated", "stage"]
    assert (
        rank(task(due_at=NOW - timedelta(hours=2)), None, NOW, POLICY).priority
        > rank(task(due_at=NOW - timedelta(minutes=5)), None, NOW, POLICY).priority
    )


def test_a_snooze_moves_the_escalation_clock() -> None:
    snoozed = task(due_at=NOW - timedelta(hours=3), snoozed_until=NOW - timedelta(minutes=10))
    assert escalation_deadline(snoozed, POLICY) == NOW + timedelta(minutes=50)
    assert codes(snoozed) == ["overdue", "stage"]


def test_hot_signals_fresh_reply_and_meeting_soon() -> None:
    assert codes(task(), NOW - timedelta(hours=23)) == ["fresh_reply", "stage"]
    assert codes(task(), NOW - timedelta(hours=25)) == ["stage"]
    # the journey makes meeting prep due two hours before the start
    prep = task(kind="prepare_meeting", due_at=NOW - timedelta(minutes=30))
    assert codes(prep) == ["overdue", "meeting_soon", "stage"]
    started = task(kind="prepare_meeting", due_at=NOW - timedelta(hours=3))
    assert "meeting_soon" not in codes(started)
    explicit = task(context={"stage": "presenting", "meeting_starts_at": NOW.isoformat()})
    assert "meeting_soon" in codes(explicit)


def test_a_managers_escalation_notice_is_urgent() -> None:
    # urgent: the notifier sends it to the manager by their channel and webhook
    notice = task(kind="escalation", rep_id="manager-1")
    assert urgent_signals(notice, None, NOW, POLICY)[0].code == "escalated_to_you"
    assert urgent_signals(task(), None, NOW, POLICY) == []


def test_stage_then_fit_break_ties() -> None:
    closing = rank(task(context={"stage": "closing"}), None, NOW, POLICY)
    qualifying_a = rank(
        task(context={"stage": "qualifying"}, prospect_card={"tier": "A", "fit_score": 91}),
        None,
        NOW,
        POLICY,
    )
    qualifying_c = rank(
        task(context={"stage": "qualifying"}, prospect_card={"tier": "C"}), None, NOW, POLICY
    )
    assert closing.priority == qualifying_a.priority == 120
    assert qualifying_a.priority > qualifying_c.priority
    assert qualifying_a.reasons[-1].text == "fit tier A (score 91)"
    # the card's stage serves when the task's context has none
    assert codes(task(context={}, prospect_card={"stage": "objections"})) == ["stage"]


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"text":"hi"}'
    ts = int(time.time())
    header = sign("secret-secret-16", ts, body)
    expected = hmac.new(b"secret-secret-16", f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={ts},v1={expected}"
    assert verify("secret-secret-16", header, body)
    assert not verify("another-secret-16", header, body)
    assert not verify("secret-secret-16", header, body + b" ")
    # a receiver verifies what anyone sent: a non-ASCII signature is refused, not a TypeError
    assert not verify("secret-secret-16", f"t={ts},v1=é", body)
    stale = sign("secret-secret-16", ts - 3600, body)
    assert not verify("secret-secret-16", stale, body)


def test_webhook_payload_is_slack_shaped() -> None:
    payload = slack_payload("Urgent: Call Ada", "Why now: replied 2 min ago.", "http://x/ui")
    assert set(payload) == {"text", "blocks"}
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][2]["elements"][0]["url"] == "http://x/ui"
