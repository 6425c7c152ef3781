"""JSON log lines: one object per event, with the trace id and the request id, and the access
log's redactions kept (no token, no query string)."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from shared.logging import DropInfo, JsonLines, redact_access_log, request_id


def test_a_line_carries_the_trace_and_request_ids_and_no_token() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    access = logging.getLogger("uvicorn.access")
    redact_access_log()
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    token = request_id.set("req-42")
    try:
        with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
            # uvicorn's access line: client, method, target, http version, status
            access.info(
                '%s - "%s %s HTTP/%s" %d',
                "10.0.0.1:5000", "GET", "/r/s3cr3t-token?key=abc", "1.1", 200,
            )  # fmt: skip
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        request_id.reset(token)
        access.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["trace_id"] == trace_id
    assert record["request_id"] == "req-42"
    assert record["logger"] == "uvicorn.access" and record["level"] == "INFO"
    assert '"GET /r/*** HTTP/1.1" 200' in record["message"]
    assert "s3cr3t" not in line and "key=abc" not in line


def test_probe_and_scrape_access_lines_are_dropped() -> None:
    drop = DropInfo(health_probes=True)
    for path, kept in (
        ("/readyz", False),
        ("/metrics", False),
        ("/healthz", False),
        ("/deals", True),
    ):
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("10.0.0.1:5000", "GET", path, "1.1", 200), None,
        )  # fmt: skip
        assert drop.filter(record) is kept, path
