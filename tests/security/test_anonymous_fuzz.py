"""Issue 11: a bounded anonymous fuzz of every route of every service. Each route the app serves
gets malformed JSON, a body over the cap, odd encodings and path tricks (dot segments, NUL, a very
long id), without a key: never a 5xx, never a 2xx unless the route is public, and a provider
webhook without a valid signature is refused. Requests go straight to the ASGI app, so the paths
arrive as sent (an HTTP client would normalise the dot segments away)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from starlette.types import Message

from shared.access import AccessTable, api_routes
from tests.support.apps import ServiceApp

SERVICES = ("prospecting", "outreach", "deals", "referrals")
LIMIT = 4096  # the services' body cap here: the huge body is a little over it
# 400: a body the signature cannot even be read from; 404: a provider not configured here;
# 422: a NUL in the query string, refused before any route
WEBHOOK_REFUSALS = {400, 401, 403, 404, 413, 422}
QUERIES = [b"limit=-1&offset=99999999999999999999999", b"cursor=%00&limit=%00"]

# "abc.%C3%A9": a signed token (the booking link's old form) whose signature is not ASCII
IDS = ["..", "..%2F..%2Finternal%2Ferasures", "a%00b", "x" * 4000, "%C3%A9%FF", "*", "abc.%C3%A9"]


@dataclass(frozen=True)
class Probe:
    name: str
    body: bytes
    content_type: bytes


PROBES = [
    Probe("malformed json", b'{"a": [1, 2', b"application/json"),
    Probe("huge body", b'{"a": "' + b"x" * (2 * LIMIT) + b'"}', b"application/json"),
    Probe("utf-16 json", '{"name": "é"}'.encode("utf-16"), b"application/json; charset=utf-16"),
    Probe("invalid utf-8", b'{"name": "\xff\xfe"}', b"application/json"),
    Probe("json array", b"[[[[[[[[[[]]]]]]]]]]", b"application/json"),
    # past the parser's recursion limit (RecursionError), under the body cap
    Probe("deep json", b"[" * 1500 + b"]" * 1500, b"application/json"),
    Probe("form junk", b"a=%ZZ&&=&b", b"application/x-www-form-urlencoded"),
    Probe("bad multipart", b"--x\r\nnonsense", b"multipart/form-data; boundary=x"),
    Probe("text", b"\x00\x01\x02", b"text/plain"),
]


def _paths(template: str) -> Iterator[tuple[str, bytes]]:
    """(decoded path, raw path) for each trick in every path parameter of `template`."""
    if "{" not in template:
        yield template, template.encode()
        return
    for raw_id in IDS:
        raw = re.sub(r"\{[^}]+\}", raw_id, template)
        decoded = re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), raw)
        yield decoded, raw.encode()


async def _call(
    app: FastAPI, method: str, path: str, raw: bytes, probe: Probe, query: bytes
) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("test", 80),
        "client": ("192.0.2.1", 1234),
        "root_path": "",
        "path": path,
        "raw_path": raw,
        "query_string": query,
        "headers": [
            (b"host", b"test"),
            (b"content-type", probe.content_type),
            (b"content-length", str(len(probe.body)).encode()),
        ],
    }
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": probe.body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize("service", SERVICES)
async def test_anonymous_requests_never_get_a_5xx_or_a_2xx(
    service_app: ServiceApp, service: str
) -> None:
    app = await service_app(service, max_body_bytes=LIMIT)
    table: AccessTable = app.state.access
    problems: list[str] = []
    calls = 0
    for method, template in sorted(set(api_routes(app))):
        rule = table.policies.get((method, template))
        public = rule is not None and rule.public
        for path, raw in _paths(template):
            probes = PROBES if method in ("POST", "PUT", "PATCH") else PROBES[:1]
            for probe, query in [(p, QUERIES[0]) for p in probes] + [(PROBES[0], QUERIES[1])]:
                status = await _call(app, method, path, raw, probe, query)
                calls += 1
                where = f"{method} {raw.decode()[:80]}?{query.decode()} ({probe.name}): {status}"
                if status >= 500:
                    problems.append(where)
                elif template.startswith("/webhooks/") and status not in WEBHOOK_REFUSALS:
                    problems.append(where + " from an unsigned webhook")
                elif not public and 200 <= status < 300:
                    problems.append(where + " without a key")
    assert calls > 50
    assert problems == [], "\n".join(problems)
