"""OpenTelemetry traces: from the HTTP request through the workflow and its activities to the
SMTP and Twilio calls, as one trace.

Off unless CLOSEFLOW_OTLP_ENDPOINT is set: then nothing is instrumented and no interceptor is
added, so tracing costs nothing when off (`span()` is a null context). On, a process exports its
spans by OTLP/HTTP, batched, as service `closeflow-<name>`; the pieces are:
- FastAPI (server spans per request, named by route template), httpx (every call between
  services and to Twilio), SQLAlchemy (each statement, on the engines opened through
  `instrument_engines`);
- Temporal's TracingInterceptor on the clients (starting and signalling workflows carries the
  context in the Temporal headers) and on the workers (workflow and activity spans);
- `span("smtp.send")`, `span("twilio.messages.create")`: the provider calls themselves.

A server span carries what the access log carries (shared/logging.py): the path with its token
segments masked, no query string (the public links' paths are bearer tokens; a query string may
hold an address or a name). A client span (httpx) carries where the call went, scheme, host and
port, never its path or query: a user's URL may be its own credential (a Slack incoming
webhook's path, a subscriber's ?token=), and the server span of a call between services names
its route anyway.

Tests install an in-memory exporter with `enable(provider)`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace

from shared.logging import MASK, redacted_path

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client, Interceptor

log = logging.getLogger(__name__)

TRACER = "closeflow"
_state: dict[str, Any] = {"provider": None}


def enabled() -> bool:
    return _state["provider"] is not None


def configure_tracing(endpoint: str, service: str) -> None:
    """Once per process, at start: export to `endpoint` (OTLP/HTTP) when it is set."""
    if not endpoint or enabled():
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"closeflow-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
    )
    enable(provider)
    log.info("tracing: exporting spans to %s", endpoint)


def enable(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (the global provider too); instruments httpx."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    trace.set_tracer_provider(provider)  # a no-op (warned) when one was set: tests reuse it
    _state["provider"] = provider
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(
            tracer_provider=provider,
            request_hook=redact_client_span,
            async_request_hook=redact_client_span_async,
        )


def flush() -> None:
    """Export the spans still buffered (a process about to end without running atexit hooks)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


def disable() -> None:
    """Stop tracing (tests that enabled it); spans already made stay with their provider."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    _state["provider"] = None
    for instrumentor in (HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def tracer() -> trace.Tracer:
    provider = _state["provider"]
    return trace.get_tracer(TRACER, tracer_provider=provider)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
    """A span around a call the libraries do not trace (SMTP, the Twilio SDK); nothing when
    tracing is off. Attributes never hold personal data (no addresses, no bodies)."""
    if not enabled():
        yield
        return
    kind = trace.SpanKind.CLIENT
    with tracer().start_as_current_span(name, kind=kind, attributes=dict(attributes or {})):
        yield


def temporal_interceptors() -> list[Interceptor]:
    """For a Worker's `interceptors`: the tracing interceptor when tracing is on."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


def traced_client(client: Client) -> Client:
    """`client`, or a client on the same connection that carries the trace into Temporal."""
    interceptors = temporal_interceptors()
    if not interceptors:
        return client
    config = client.config()
    config["interceptors"] = [*config["interceptors"], *interceptors]
    from temporalio.client import Client as TemporalClient

    return TemporalClient(**config)


def instrument_app(app: FastAPI) -> None:
    if enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # /healthz, /readyz and /metrics are polled every few seconds: no trace for them
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=_state["provider"],
            excluded_urls="healthz,readyz,metrics",
            server_request_hook=redact_server_span,
        )


# The request attributes of the ASGI instrumentation: the old semantic conventions (its default)
# and the stable ones (OTEL_SEMCONV_STABILITY_OPT_IN=http or http/dup).
_PATH_ATTRIBUTES = ("http.target", "url.path")
_URL_ATTRIBUTES = ("http.url", "url.full")
_QUERY_ATTRIBUTES = ("url.query",)


def redact_server_span(span: trace.Span, scope: Mapping[str, Any]) -> None:
    """The instrumentation's server_request_hook: it runs after the request attributes are set
    and overwrites those holding the path or the query string. Only the attributes it set are
    rewritten (the SDK's span exposes them), so the conventions in use stay as they are."""
    attributes = getattr(span, "attributes", None)
    if not attributes or not span.is_recording():
        return
    path = redacted_path(str(scope.get("path") or "/"))
    for key in _PATH_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, path)
    for key in _URL_ATTRIBUTES:
        if key in attributes:
            scheme, netloc, _, _, _ = urlsplit(str(attributes[key]))
            span.set_attribute(key, urlunsplit((scheme, netloc, path, "", "")))
    for key in _QUERY_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, MASK)


def _origin(url: str) -> str:
    """scheme://host[:port]/ of `url`, without user info, path, query or fragment."""
    scheme, netloc, _, _, _ = urlsplit(url)
    return urlunsplit((scheme, netloc.rpartition("@")[2], "/", "", ""))


def redact_client_span(span: trace.Span, request: object) -> None:
    """The httpx instrumentation's request hook: it runs after the request attributes are set
    and leaves of the URL its origin alone (the module docstring says why)."""
    attributes = getattr(span, "attributes", None)
    if not attributes or not span.is_recording():
        return
    for key in _URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, _origin(str(attributes[key])))
    for key in (*_PATH_ATTRIBUTES, *_QUERY_ATTRIBUTES):
        if key in attributes:
            span.set_attribute(key, MASK)


async def redact_client_span_async(span: trace.Span, request: object) -> None:
    redact_client_span(span, request)


def instrument_engines(engines: Sequence[AsyncEngine]) -> None:
    """Spans for each SQL statement on these engines: all of a process's engines in one call
    (the instrumentor instruments once per process; a second call would be ignored)."""
    if enabled() and engines:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(
                engines=[e.sync_engine for e in engines],
                tracer_provider=_state["provider"],
                # it declares sqlalchemy < 2.1 and would silently do nothing on our 2.1; the
                # engine events it listens to are unchanged (the trace test sees the spans)
                skip_dep_check=True,
            )


def current_trace_id() -> str:
    """The current span's trace id (32 hex digits), "" outside a trace or with tracing off."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
