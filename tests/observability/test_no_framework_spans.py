"""FastAPI (0.13x on) starts OpenTelemetry spans of its own for every request whenever a global
tracer provider is set: an agent such as `opentelemetry-instrument` sets one, whatever
closeflow's settings say. Those spans carry the raw path and query, so a booking link's token
and an address in a query would reach the trace backend in clear. closeflow's spans come from
shared/tracing.py alone (redacted, and only when its tracing is configured)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# run in a process of its own: a global tracer provider can be set once per process
SCRIPT = """
import asyncio, json, sys
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # as an agent would, before the app is built

from shared.settings import Settings
from services.{service}.app import create_app

app = create_app(Settings(_env_file=None))

async def main() -> None:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        # answered without a database (no route, or no key): the span is the framework's
        answer = await client.get("/{route}/TOKEN-abc123?email=ada%40example.com")
        print(json.dumps({{"status": answer.status_code}}))

asyncio.run(main())
spans = [[s.name, {{k: str(v) for k, v in (s.attributes or {{}}).items()}}]
         for s in exporter.get_finished_spans()]
print(json.dumps(spans))
"""


@pytest.mark.parametrize(
    ("service", "route"),
    [("outreach", "no-such-page"), ("prospecting", "prospects"), ("deals", "no-such-page"),
     ("referrals", "no-such-page")],
)  # fmt: skip
def test_a_global_tracer_provider_gets_no_span_of_a_request(
    tmp_path: Path, service: str, route: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(service=service, route=route)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status, spans = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert status["status"] < 500  # the request reached the app and was answered
    assert spans == []
