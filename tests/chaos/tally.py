"""After a chaos run: what each journey left behind, against what it had to, and the table.

Counted from the outside, as in make test-cluster: the provider sandboxes (what really went out,
when each message was accepted), the send ledger, the stage history, the stored provider events
and consent, all read through the APIs, and each journey's workflow on Temporal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.chaos.plan import KINDS, Timeline
from tests.chaos.traffic import ALL_SENDS, FIRST_TOUCH, Journey
from tests.support.cluster import Sent

SENT_STATES = ("submitted", "delivered")
UNFINISHED = ("pending", "sending")
# the bad columns of the table, in order: each should be 0
BAD = (
    "not at the expected stage",
    "steps lost",
    "duplicate emails",
    "duplicate texts",
    "sends after an opt-out",
    "webhook events lost",
    "duplicate rep notifications",
)


@dataclass
class Anomaly:
    column: str
    journey: Journey | None  # None: the rep's, not one journey's (their notifications)
    at: datetime | None
    detail: str


@dataclass
class Observed:
    """One journey's traces, as read after the run."""

    journey: Journey
    status: str  # the workflow's: COMPLETED, RUNNING, ...
    stages: list[dict[str, Any]]
    sent: Sent
    events: list[dict[str, Any]]  # outreach's stored provider events for the prospect
    consent: dict[str, Any]
    closed_at: datetime | None = None  # when the workflow closed, as Temporal says


@dataclass
class Report:
    started: int = 0
    completed: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    webhooks_acknowledged: int = 0
    after_close: int = 0  # of those, stored once their journey had closed (nothing to tell)
    kinds: dict[str, int] = field(default_factory=dict)  # journeys started, by kind
    notifications: int = 0  # the rep's notification emails received, each counted once

    def count(self, column: str) -> int:
        return sum(1 for a in self.anomalies if a.column == column)

    @property
    def clean(self) -> bool:
        return not self.anomalies

    def add(self, column: str, j: Journey | None, at: datetime | None, detail: str) -> None:
        self.anomalies.append(Anomaly(column, j, at, detail))


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def accepted_at(item: dict[str, Any]) -> datetime | None:
    """When a sandbox accepted a message (the mailbox: received_at; Twilio: accepted_at)."""
    return parse_time(item.get("received_at") or item.get("accepted_at"))


def judge(report: Report, o: Observed) -> None:
    j = o.journey
    if not j.journey_id:
        return  # never enrolled: not started, and said so under "started"
    report.started += 1
    report.kinds[j.kind] = report.kinds.get(j.kind, 0) + 1
    late = _late_reply(o)
    # a reply stored once the cadence had run out cannot move the journey: the journey ends in
    # nurture and the reply becomes the rep's urgent task (docs/guides/replies.md#late-replies)
    expected = "nurture" if late is not None else KINDS[j.kind]
    path = [s["to_stage"] for s in o.stages]
    if o.status == "COMPLETED" and path and path[-1] == expected and not j.error:
        report.completed += 1
    else:
        last = o.stages[-1] if o.stages else {}
        report.add(
            "not at the expected stage",
            j,
            parse_time(last.get("at")) or j.enrolled_at,
            f"{j.kind}: workflow {o.status}, stages {path}, expected {expected}"
            + _when(o)
            + (f"; driver: {j.error}" if j.error else ""),
        )
    _steps(report, o)
    for extra in o.sent.extra_emails():
        report.add("duplicate emails", j, accepted_at(extra),
                   f"email {extra['message_id']} ({extra['subject']!r})")  # fmt: skip
    for extra in o.sent.extra_texts():
        report.add("duplicate texts", j, accepted_at(extra),
                   f"text {extra['sid']} ({extra['body']!r})")  # fmt: skip
    _after_opt_out(report, o)
    _webhooks(report, o)


def judge_notifications(report: Report, mails: list[dict[str, Any]]) -> None:
    """The rep's notification emails (urgent tasks: the replies): the notifier sends each with
    one Message-ID on every attempt, so a second copy of one is a duplicate. Its outreach API
    replica killed between the SMTP server's acceptance and its record is the window."""
    seen: set[str] = set()
    for mail in sorted(mails, key=lambda m: str(m["received_at"])):
        if mail["message_id"] in seen:
            report.add("duplicate rep notifications", None, accepted_at(mail),
                       f"email {mail['message_id']} ({mail['subject']!r})")  # fmt: skip
        seen.add(mail["message_id"])
    report.notifications = len(seen)


REPLY_KINDS = ("reply_email", "reply_sms")
LATE_OUTCOMES = ("late_reply_task", "restarted")


def _action_event(o: Observed, event_id: str) -> dict[str, Any] | None:
    """The stored event of an action the prospect took (a Mailgun reply has no id of ours)."""
    if event_id == "mailgun-reply":
        found = [e for e in o.events if e["provider"] == "mailgun" and e["signal"]]
        return found[0] if found else None
    return next((e for e in o.events if e["event_id"] == event_id), None)


def _late_reply(o: Observed) -> dict[str, Any] | None:
    """The reply's stored event when it was stored after the journey closed."""
    if o.journey.kind not in REPLY_KINDS:
        return None
    for event_id in o.journey.acted:
        event = _action_event(o, event_id)
        if event is not None and _closed_before(o, event):
            return event
    return None


def _when(o: Observed) -> str:
    """The moments that explain an unexpected end: first touch seen, action acknowledged, close."""
    j = o.journey
    moments = [("first touch seen", j.first_touch_at), ("action acknowledged", j.acted_at),
               ("closed", o.closed_at)]  # fmt: skip
    told = [f"{name} {at.isoformat(timespec='milliseconds')}" for name, at in moments if at]
    return f" ({', '.join(told)})" if told else ""


def _steps(report: Report, o: Observed) -> None:
    """Every send the journey owed went out (in the ledger with a provider id, and received by
    the sandbox), and no ledger row was left half-way."""
    j, sent = o.journey, o.sent
    received = set(sent.email_ids()) | set(sent.text_ids())
    rows = {(m["touch_key"], m["channel"]): m for m in sent.ledger}
    owed = ALL_SENDS if j.kind == "silent" else FIRST_TOUCH
    for touch, channel in owed:
        row = rows.get((touch, channel))
        if row is None:
            report.add("steps lost", j, j.enrolled_at, f"{touch} {channel}: no ledger row")
        elif row["status"] not in SENT_STATES or row["provider_id"] not in received:
            report.add("steps lost", j, parse_time(row["created_at"]),
                       f"{touch} {channel}: ledger {row['status']} {row['error'][:120]!r}, "
                       f"received={row['provider_id'] in received}")  # fmt: skip
    for key, row in rows.items():
        if key not in owed and row["status"] in UNFINISHED:
            report.add("steps lost", j, parse_time(row["created_at"]),
                       f"{key[0]} {key[1]}: left {row['status']}")  # fmt: skip


def _after_opt_out(report: Report, o: Observed) -> None:
    """Nothing on the opted-out channel accepted by the provider after the opt-out was
    acknowledged (which is after its commit: the webhook answers once it committed)."""
    j = o.journey
    if j.acted_at is None or j.kind not in ("stop", "unsubscribe"):
        return
    items = o.sent.texts if j.kind == "stop" else o.sent.emails
    for item in items:
        when = accepted_at(item)
        if when is not None and when > j.acted_at:
            report.add("sends after an opt-out", j, when,
                       f"{j.kind} acknowledged at {j.acted_at.isoformat()}, "
                       f"then {item.get('sid') or item.get('message_id')} accepted")  # fmt: skip


def _webhooks(report: Report, o: Observed) -> None:
    """Every provider event outreach acknowledged was stored and had its effect: the prospect's
    action reached the journey (and consent), each delivered-status callback reached the ledger."""
    j = o.journey
    for event_id in j.acted:
        report.webhooks_acknowledged += 1
        event = _action_event(o, event_id)
        if event is not None and _closed_before(o, event):
            report.after_close += 1
            # no journey left to tell: a reply must have become the rep's task (an opt-out's
            # consent is checked below)
            if j.kind in REPLY_KINDS and event.get("outcome") not in LATE_OUTCOMES:
                report.add("webhook events lost", j, j.acted_at,
                           f"{j.kind} {event_id}: stored after the journey closed, "
                           f"outcome {event.get('outcome')!r}, not a late-reply task")  # fmt: skip
            continue
        if event is None or event["delivery"] != "delivered":
            state = "not stored" if event is None else f"delivery {event['delivery']}"
            report.add("webhook events lost", j, j.acted_at, f"{j.kind} {event_id}: {state}")
    channel = {"stop": "sms", "unsubscribe": "email"}.get(j.kind)
    if channel and j.acted and o.consent.get(channel, {}).get("status") != "opted_out":
        report.add("webhook events lost", j, j.acted_at,
                   f"{j.kind}: consent on {channel} is {o.consent.get(channel)}")  # fmt: skip
    ledger = {m["provider_id"]: m for m in o.sent.sent if m["channel"] == "sms"}
    for text in o.sent.texts:
        delivered = [
            c for c in text.get("callbacks", [])
            if c["event"] == "delivered" and 200 <= int(c["response_status"] or 0) < 300
        ]  # fmt: skip
        if not delivered:
            continue
        report.webhooks_acknowledged += 1
        row = ledger.get(text["sid"])
        if row is None or row["provider_status"] != "delivered":
            state = "no ledger row" if row is None else f"ledger says {row['provider_status']!r}"
            report.add("webhook events lost", j, parse_time(delivered[0]["at"]),
                       f"status callback delivered for {text['sid']}: {state}")  # fmt: skip


def _closed_before(o: Observed, event: dict[str, Any]) -> bool:
    """An event outreach stored after the journey's workflow had closed (a late action after
    the cadence ran out): `no_journey` is then its right delivery, judged by Temporal's close
    time, not by what outreach concluded."""
    stored = parse_time(event.get("created_at"))
    return (
        event["delivery"] == "no_journey"
        and o.closed_at is not None
        and stored is not None
        and o.closed_at <= stored
    )


def table(report: Report, timeline: Timeline, seed: int) -> str:
    rows = [("journeys started", report.started),
            ("completed at the expected stage", report.completed)]  # fmt: skip
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items()))
    rows += [(f"{name} (bad)", report.count(name)) for name in BAD]
    rows.append(("webhook events acknowledged (checked)", report.webhooks_acknowledged))
    rows.append(("  of those, after their journey closed", report.after_close))
    rows.append(("rep notification emails (checked)", report.notifications))
    width = max(len(r[0]) for r in rows)
    lines = [f"chaos run, seed {seed} (CHAOS_SEED={seed} replays it); journeys: {kinds}", ""]
    lines += [f"| {'':<{width}} | {'count':>6} |", f"|{'-' * (width + 2)}|{'-' * 8}|"]
    lines += [f"| {name:<{width}} | {value:>6} |" for name, value in rows]
    lines += ["", "faults (seconds from the first enrolment; recovered: ready again / over):"]
    start = timeline.started or (timeline.events[0].began if timeline.events else None)
    for n, h in enumerate(timeline.events, 1):
        began = (h.began - start).total_seconds() if start else 0.0
        took = f"{(h.ended - h.began).total_seconds():.1f}s" if h.ended else "never"
        note = f"  {h.note}" if h.note else ""
        lines.append(f"  #{n:<3} +{began:6.1f}s  {h.fault.describe():<40} recovered {took}{note}")
    if report.anomalies:
        lines += ["", "what went wrong, and which fault was active then:"]
        for a in sorted(
            report.anomalies, key=lambda a: (a.column, a.at.timestamp() if a.at else 0)
        ):
            when = a.at.isoformat(timespec="milliseconds") if a.at else "?"
            whose = f"journey {a.journey.index} ({a.journey.pid})" if a.journey else "the rep"
            lines.append(f"  {a.column}: {whose} at {when}: {a.detail} [{timeline.explain(a.at)}]")
    return "\n".join(lines)


def started_before(report: Report, journeys: list[Journey]) -> None:
    """Journeys the driver could not enrol (the stack never acknowledged the enrolment)."""
    for j in journeys:
        if not j.journey_id:
            report.add("not at the expected stage", j, None, f"never enrolled: {j.error}")
