"""Tracing off (no CLOSEFLOW_OTLP_ENDPOINT, the default): nothing is instrumented, no interceptor
is added, so it costs nothing."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.instrumentation.fastapi import OpenTelemetryMiddleware
from temporalio.client import Client

from closeflow.worker import worker_options
from shared import tracing
from tests.support.settings import make_settings
from tests.support.stack import build_app


async def test_nothing_is_instrumented_without_an_endpoint(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert not settings.otlp_endpoint and not tracing.enabled()
    client = await Client.connect("127.0.0.1:1", lazy=True)
    app = build_app("deals", settings, client)
    assert not any(m.cls is OpenTelemetryMiddleware for m in app.user_middleware)
    assert worker_options(settings)["interceptors"] == []
    assert tracing.traced_client(client) is client
    with tracing.span("smtp.send"):
        assert tracing.current_trace_id() == ""
