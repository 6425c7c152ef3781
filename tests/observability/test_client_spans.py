"""The spans of closeflow's outgoing HTTP calls carry where they went, not what the URL holds.

A rep's notification webhook is often a Slack incoming webhook, whose path is its credential
(https://hooks.slack.com/services/T…/B…/<secret>); an event subscriber's URL may carry a token
in its query string. The httpx instrumentation records the whole URL of every call (it only
masks a user name, a password and four cloud-signature parameters), so with tracing on these
credentials were exported to the tracing backend with every delivery."""

from __future__ import annotations

from fastapi import FastAPI, Response
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.outbound import OutboundPolicy, pinned_client, post_checked
from tests.support.ports import free_port
from tests.support.serve import serve

SECRET = "xoxb-Incoming-Webhook-Secret-0123456789"


def _receiver() -> FastAPI:
    app = FastAPI()

    @app.post("/services/{team}/{hook}/{secret}")
    async def hook(team: str, hook: str, secret: str) -> Response:
        return Response(status_code=200)

    return app


async def test_a_delivery_span_holds_no_path_or_query_of_the_users_url(
    spans: InMemorySpanExporter,
) -> None:
    async with serve(_receiver(), free_port()) as base:
        url = f"{base}/services/T0001/B0001/{SECRET}?token={SECRET}"
        async with pinned_client(OutboundPolicy(production=False), timeout=10) as client:
            assert await post_checked(client, url, b"{}", {}) == 200
    (call,) = [s for s in spans.get_finished_spans() if s.kind.name == "CLIENT"]
    attributes = dict(call.attributes or {})
    leaked = {k: v for k, v in attributes.items() if SECRET in str(v)}
    assert leaked == {}
    # where the call went is still there: scheme, host and port, and the answer's status
    urls = [v for k, v in attributes.items() if k in ("http.url", "url.full")]
    assert urls == [f"{base}/"]
    assert 200 in (attributes.get("http.status_code"), attributes.get("http.response.status_code"))


def test_the_stable_conventions_client_url_is_cut_to_its_origin() -> None:
    """With OTEL_SEMCONV_STABILITY_OPT_IN=http the instrumentation sets url.full instead."""
    given = {
        "url.full": f"https://REDACTED:REDACTED@hooks.example.com:8443/services/{SECRET}?t={SECRET}",
        "server.address": "hooks.example.com",
    }
    with TracerProvider().get_tracer("test").start_as_current_span("POST", attributes=given) as s:
        tracing.redact_client_span(s, None)
        attributes = dict(s.attributes or {})  # type: ignore[attr-defined]
    assert attributes == {
        "url.full": "https://hooks.example.com:8443/",
        "server.address": "hooks.example.com",
    }
