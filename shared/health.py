"""Liveness and readiness, for the APIs and the workers.

- `/healthz` (liveness): the process answers. Nothing else is checked: a database or Temporal
  outage must not get every replica restarted, only taken out of the load balancer.
- `/readyz` (readiness): what the process needs to do its work answers now. An API checks its
  database (SELECT 1, on a connection of the check's own: shared.db.probe_engine) and Temporal (GetSystemInfo, the cheapest frontend call); a worker checks
  Temporal and that every one of its workers is still polling. 200 when all pass, else 503 with
  the failed checks named: `{"status": "unavailable", "checks": {"database": "ok",
  "temporal": "down: RPCError"}}`. The answer gives a stable reason (the error's type, a
  timeout, or a check's own `Down` reason), never the error's message: probes carry no key, and
  driver messages name hosts, ports, databases and users. The message goes to the log, through
  the formatters of shared/logging.py.

Workers have no HTTP framework: `serve_worker_health` answers the two paths on its own port with
a few lines of asyncio (CLOSEFLOW_WORKER_HEALTH_PORT; 0 serves nothing).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds; a probe's own timeout is larger (the manifests give 5)
OK = "ok"

Check = Callable[[], Awaitable[None]]  # raises when what it checks is down


async def database_up(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def temporal_up(client: Client) -> None:
    await client.workflow_service.get_system_info(
        GetSystemInfoRequest(), timeout=timedelta(seconds=CHECK_TIMEOUT)
    )


class Down(Exception):
    """Raised by a check whose reason is fit for the answer as it is (no address, no secret)."""


async def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    """Every check at once, each bounded by CHECK_TIMEOUT: (all passed, name -> ok | down: ...)."""

    async def one(name: str, check: Check) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            return f"down: no answer within {CHECK_TIMEOUT:g} s"
        except Down as exc:
            return f"down: {exc}"
        except Exception as exc:  # any failure is "down"; the probe must answer, not raise
            log.warning("readiness: %s is down: %s: %s", name, type(exc).__name__, exc)
            return f"down: {type(exc).__name__}"
        return OK

    results = await asyncio.gather(*(one(name, check) for name, check in checks.items()))
    report = dict(zip(checks, results, strict=True))
    return all(r == OK for r in results), report


def readiness_body(ready: bool, checks: Mapping[str, str]) -> dict[str, object]:
    return {"status": "ready" if ready else "unavailable", "checks": dict(checks)}


# --- the workers' health port ----------------------------------------------------------------


Readiness = Callable[[], Awaitable[tuple[bool, dict[str, str]]]]


def _response(status: int, body: Mapping[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, readiness: Readiness
) -> None:
    try:
        request_line = await asyncio.wait_for(reader.readline(), CHECK_TIMEOUT)
        parts = request_line.decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
        if path == "/healthz":
            writer.write(_response(200, {"status": "ok"}))
        elif path == "/readyz":
            ready, checks = await readiness()
            writer.write(_response(200 if ready else 503, readiness_body(ready, checks)))
        else:
            writer.write(_response(404, {"error": "try /healthz or /readyz"}))
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass  # a probe that hung up or never spoke: nothing to answer
    finally:
        writer.close()


def serve_worker_health(
    host: str, port: int, readiness: Readiness
) -> AbstractAsyncContextManager[int | None]:
    """GET /healthz and GET /readyz on host:port while the context is open; yields the bound
    port (None when port is 0: not served)."""

    @asynccontextmanager
    async def serving() -> AsyncIterator[int | None]:
        if not port:
            yield None
            return
        server = await asyncio.start_server(
            lambda r, w: _answer(r, w, readiness), host=host, port=port
        )
        bound = int(server.sockets[0].getsockname()[1])
        log.info("worker health on %s:%d (/healthz, /readyz)", host, bound)
        try:
            yield bound
        finally:
            server.close()
            await server.wait_closed()

    return serving()
