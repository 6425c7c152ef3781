"""A journey on the in-process stack, watched: the business gauges and counters of /metrics move
by what the journey did, and the enrolment request, the workflow, its activities and the SMTP
send are one trace (in-memory exporter)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from tests.observability.scrape import Samples, parse, total
from tests.support.apps import Api
from tests.support.eventually import eventually
from tests.support.scenarios import fast_cadence
from tests.support.stack import StackDriver

SQLITE = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


async def scrape(d: StackDriver, base: str) -> Samples:
    return parse((await d.http.get(f"{base}/metrics")).text)


@SQLITE
async def test_counters_move_by_what_the_journey_did(stack: StackDriver) -> None:
    d, u = stack, stack.u
    await d.setup()
    # qualifying lasts until the STOP below: its task stays open long enough for the gauges,
    # which are read at most every GAUGE_TTL seconds, to see it (the fast cadence's 4 s did not)
    slow = fast_cadence(qualification_reminder_seconds=600, qualification_timeout_seconds=1200)
    cadence = await d.ok("POST", f"{u.outreach}/cadences", json=slow)
    ada = await d.new_prospect("Ada")
    before = {
        "outreach": await scrape(d, u.outreach),
        "prospecting": await scrape(d, u.prospecting),
    }

    await d.enroll(ada["id"], cadence["id"])
    await d.reply_to_first_mail(ada, "Sounds good, tell me more")
    await d.wait_stage(ada["id"], "qualifying")

    async def task_opened() -> Samples | None:
        # read before the STOP below: the journey then ends and closes its tasks
        now = await scrape(d, u.outreach)
        opened = total(now, "closeflow_tasks_open") - total(
            before["outreach"], "closeflow_tasks_open"
        )
        return now if opened >= 1 else None

    await eventually(task_opened, "the rep's qualification task counted open")
    await eventually(lambda: d.sms_to(ada["phone"]), "the first SMS")
    await d.text_from(ada, "STOP")
    # a forged Mailgun call: refused for its signature, counted as such
    forged = await d.http.post(
        f"{u.outreach}/webhooks/mailgun/inbound",
        data={"timestamp": "1", "token": "t", "signature": "forged", "sender": ada["email"]},
    )
    assert forged.status_code == 403

    async def opted_out() -> Samples | None:
        now = await scrape(d, u.outreach)
        return now if total(now, "closeflow_opt_outs", channel="sms") else None

    after = await eventually(opted_out, "the STOP counted as an SMS opt-out")
    was = before["outreach"]

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(was, name, **labels)

    assert moved("closeflow_messages", channel="email") == 1  # the first touch: one email...
    assert moved("closeflow_messages", channel="sms") == 1  # ...and one text
    assert moved("closeflow_messages", status="failed") == 0
    assert moved("closeflow_replies", channel="email") == 1
    assert moved("closeflow_opt_outs", channel="sms") == 1
    assert moved("closeflow_webhooks_total", provider="mailgun", result="accepted") == 1
    assert moved("closeflow_webhooks_total", provider="mailgun", result="invalid_signature") == 1
    assert moved("closeflow_webhooks_total", provider="twilio", result="accepted") >= 1  # STOP
    enrolments = moved("closeflow_http_requests_total", route="/enrollments", method="POST")
    assert enrolments == 1

    async def qualifying() -> Samples | None:
        # the gauges are read at most every few seconds: the first scrapes may be older
        now = await scrape(d, u.prospecting)
        return now if total(now, "closeflow_journeys", stage="qualifying") else None

    prospecting = await eventually(qualifying, "Ada counted at qualifying")
    stages = {
        stage: total(prospecting, "closeflow_journeys", stage=stage)
        - total(before["prospecting"], "closeflow_journeys", stage=stage)
        for stage in ("prospecting", "qualifying")
    }
    assert stages == {"prospecting": -1, "qualifying": 1}
    assert {
        dict(labels)["relay"] for name, labels in prospecting if name == "closeflow_relay_backlog"
    }


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


@SQLITE
async def test_one_trace_from_the_enrolment_to_the_smtp_send(
    spans: InMemorySpanExporter, stack: StackDriver
) -> None:
    d = stack
    _, cadence = await d.setup()
    ada = await d.new_prospect("Ada")
    spans.clear()
    await d.enroll(ada["id"], cadence["id"])
    await d.wait_mails(ada["email"], 1)

    async def sent() -> tuple[ReadableSpan, ...] | None:
        found = spans.get_finished_spans()
        return (
            found
            if _named(found, "smtp.send") and _named(found, "twilio.messages.create")
            else None
        )

    finished = await eventually(sent, "the SMTP and Twilio spans")
    (request,) = [
        s for s in finished
        if s.kind.name == "SERVER" and s.attributes and s.attributes.get("http.route") == "/enrollments"
    ]  # fmt: skip
    trace_id = request.context.trace_id
    (smtp,) = _named(finished, "smtp.send")
    assert smtp.context.trace_id == trace_id
    assert _named(finished, "twilio.messages.create")[0].context.trace_id == trace_id
    in_trace = {s.name for s in finished if s.context.trace_id == trace_id}
    assert any(name.startswith("RunWorkflow:") for name in in_trace), in_trace
    assert any(name.startswith("RunActivity:") for name in in_trace), in_trace
    # the activities' SQL statements too (SQLAlchemy instrumentation)
    assert any(name.startswith(("INSERT ", "UPDATE ")) for name in in_trace), in_trace


TOKEN = "bearer-token-of-a-public-link-0123456789"


@pytest.mark.parametrize(
    ("service", "route"), [("referrals", "r"), ("outreach", "unsubscribe"), ("deals", "book")]
)
async def test_no_link_token_or_query_string_in_a_span(
    spans: InMemorySpanExporter, api: Api, service: str, route: str
) -> None:
    """The public links' paths are bearer tokens: the access log masks them, the spans too."""
    client = await api(service, key=False)
    answer = await client.get(f"/{route}/{TOKEN}?email=ada%40example.com")
    assert answer.status_code < 500
    (server,) = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    attributes = dict(server.attributes or {})
    assert attributes["http.target"] == f"/{route}/***"
    assert attributes["http.url"] == f"http://test/{route}/***"
    leaked = [
        (s.name, k, v)
        for s in spans.get_finished_spans()
        for k, v in (s.attributes or {}).items()
        # the address, as sent or decoded: "ada" alone matched a pooled database's random
        # hex name (cf_...ada...) in a PostgreSQL span's db.name
        if TOKEN in str(v) or "ada%40example.com" in str(v) or "ada@example.com" in str(v)
    ]
    assert leaked == []


def test_the_stable_conventions_url_attributes_are_redacted_too() -> None:
    """With OTEL_SEMCONV_STABILITY_OPT_IN=http the instrumentation sets url.* instead."""
    given = {
        "url.path": f"/book/{TOKEN}",
        "url.query": "email=ada@example.com",
        "url.full": f"https://deals.example.com/book/{TOKEN}?email=ada@example.com",
        "url.scheme": "https",
    }
    with TracerProvider().get_tracer("test").start_as_current_span("GET", attributes=given) as s:
        tracing.redact_server_span(s, {"path": f"/book/{TOKEN}"})
        attributes = dict(s.attributes or {})  # type: ignore[attr-defined]
    assert attributes == {
        "url.path": "/book/***",
        "url.query": "***",
        "url.full": "https://deals.example.com/book/***",
        "url.scheme": "https",
    }
