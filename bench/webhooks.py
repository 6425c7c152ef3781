"""Webhook throughput: signed Twilio status callbacks against outreach vs a bare FastAPI endpoint.

    make bench-webhooks      (BENCH_WEBHOOK_N=20000 requests per target by default)

Both servers run the same way: one uvicorn process with uvloop and httptools, access log off,
the start-up heap frozen out of garbage collection as `closeflow serve` does, on a free
loopback port, one after the other. The load is the same too: BENCH_WEBHOOK_N
distinct, signed status callbacks (queued, sent, delivered for each of N/3 messages in the
send ledger) over 50 keep-alive connections from a small raw-HTTP client in this process (so
the client is not what is measured). Outreach runs on SQLite, the default dev database, and
does its whole job per request: verify the signature, store the event, move the ledger row,
answer 204 once that is committed (callbacks arriving together share a transaction), through
the app as `create_app` builds it (the status callback is answered by its ASGI fast path before
routing: services/outreach/webhooks/twilio.py). Prints requests/s, p50 and p99 for both and,
last, `ratio=<outreach rps / bare rps>`.

With BENCH_POSTGRES_URL (or CLOSEFLOW_TEST_POSTGRES_URL) set to a postgresql+asyncpg:// URL of a
server where a database may be created, the same load also goes, in the same run, to outreach on
a fresh PostgreSQL database there (dropped afterwards), and the run prints
`ratio_postgres=<outreach on PostgreSQL rps / bare rps>` before the last line.
Loopback only; bounded in count and in time (BENCH_WEBHOOK_TIMEOUT seconds per target).
BENCH_WEBHOOK_PROFILE=<path> writes a cProfile of each server to <path>.bare / <path>.outreach.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from devstack.env import free_ports

CONCURRENCY = 50
PATH = "/webhooks/twilio/status"
TOKEN = "bench-twilio-auth-token"
ACCOUNT = "AC" + "0" * 32
WARMUP = 300


# --- the two servers (each in its own process) --------------------------------------------


def bare_app() -> object:
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post(PATH)
    async def status() -> Response:
        return Response(status_code=204)

    return app


async def outreach_app() -> object:
    from temporalio.client import Client

    from services.outreach.app import create_app

    # Status callbacks never reach Temporal; a lazy client to nowhere keeps the bench
    # independent of a Temporal server (the inbox relay finds nothing to deliver).
    client = await Client.connect(f"127.0.0.1:{free_ports(1)[0]}", lazy=True)
    return create_app(temporal_client=client)


def serve(kind: str, port: int) -> None:
    import uvicorn
    import uvloop

    async def run() -> None:
        app = bare_app() if kind == "bare" else await outreach_app()
        gc.freeze()  # as `closeflow serve` does, for both servers
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=port,
            loop="none",  # uvloop.run below: the same loop for both servers
            http="httptools",
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
        server = uvicorn.Server(config)
        # SIGUSR1: a clean stop that lets a profile be written (uvicorn re-raises SIGTERM)
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: setattr(server, "should_exit", True)
        )
        await server.serve()

    profile = os.environ.get("BENCH_WEBHOOK_PROFILE")
    if not profile:
        uvloop.run(run())
        return
    import cProfile

    with cProfile.Profile() as prof:
        uvloop.run(run())
    prof.dump_stats(f"{profile}.{kind}")


# --- load ---------------------------------------------------------------------------------------


def row_id(sid: str) -> str:
    """The ledger row of the text `sid` ("SM" + 32 hex digits): those digits."""
    return sid[2:]


def signed_requests(port: int, sids: Sequence[str]) -> list[bytes]:
    from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request

    out = []
    for status in ("queued", "sent", "delivered"):
        for sid in sids:
            # as outreach sets it on each text: the URL names the text's ledger row
            target = f"{PATH}?message={row_id(sid)}"
            url = f"http://127.0.0.1:{port}{target}"
            params = {
                "AccountSid": ACCOUNT,
                "ApiVersion": "2010-04-01",
                "From": "+15005550006",
                "To": "+14155550100",
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            body = urlencode(params).encode()
            head = (
                f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "User-Agent: TwilioProxy/1.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"{SIGNATURE_HEADER}: {sign_twilio_request(TOKEN, url, params)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            out.append(head.encode() + body)
    return out


@dataclass
class Result:
    n: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.n / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _one_connection(
    port: int, requests: list[bytes], cursor: list[int], lat: list[float], deadline: float
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while cursor[0] < len(requests) and time.monotonic() < deadline:
            request = requests[cursor[0]]
            cursor[0] += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 204"):
                errors += 1
    finally:
        writer.close()
    return errors


async def load(port: int, requests: list[bytes], limit_seconds: float) -> Result:
    cursor, lat = [0], list[float]()
    deadline = time.monotonic() + limit_seconds
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(_one_connection(port, requests, cursor, lat, deadline) for _ in range(CONCURRENCY))
    )
    return Result(len(lat), time.perf_counter() - started, lat, sum(errors))


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def seed_ledger(db: Path, sids: Sequence[str]) -> None:
    """Submitted SMS rows, as the send activity leaves them, for the callbacks to move on."""
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO messages (id, journey_id, touch_key, channel, kind, prospect_id, "
            "to_address, subject, body, status, provider_status, provider_id, error, attempts, "
            "created_at, updated_at) VALUES (?, ?, 'step-0', 'sms', 'cadence', ?, "
            "'+14155550100', '', 'Hi', 'submitted', 'accepted', ?, '', 1, ?, ?)",
            [(row_id(sid), f"journey-{sid}", uuid.uuid4().hex, sid, now, now) for sid in sids],
        )


async def seed_ledger_pg(url: str, sids: Sequence[str]) -> None:
    """seed_ledger on PostgreSQL, through the ORM's table."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.outreach import models

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(models.Message.__table__),
                [
                    {
                        "id": row_id(sid),
                        "journey_id": f"journey-{sid}",
                        "touch_key": "step-0",
                        "channel": "sms",
                        "kind": "cadence",
                        "prospect_id": uuid.uuid4().hex,
                        "to_address": "+14155550100",
                        "subject": "",
                        "body": "Hi",
                        "status": "submitted",
                        "provider_status": "accepted",
                        "provider_id": sid,
                    }
                    for sid in sids
                ],
            )
    finally:
        await engine.dispose()


def seed(url: str, sids: Sequence[str]) -> None:
    if url.startswith("sqlite"):
        seed_ledger(Path(url.split("///", 1)[1]), sids)
    else:
        asyncio.run(seed_ledger_pg(url, sids))


def run_target(kind: str, env: dict[str, str], n: int, limit: float, label: str = "") -> Result:
    port = free_ports(1)[0]
    env = {**env, "CLOSEFLOW_OUTREACH_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    warm_sids = [f"SM{uuid.uuid4().hex}" for _ in range(WARMUP // 3)]
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(-(-n // 3))]
    if kind == "outreach":
        seed(env["CLOSEFLOW_OUTREACH_DATABASE_URL"], warm_sids + sids)
    warm, timed = signed_requests(port, warm_sids), signed_requests(port, sids)[:n]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.webhooks", "--serve", kind, "--port", str(port)], env=env
    )
    try:
        wait_listening(port, proc)
        asyncio.run(load(port, warm, limit))
        result = asyncio.run(load(port, timed, limit))
    finally:
        proc.send_signal(signal.SIGUSR1)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(
        f"{label or kind:9} {result.n} requests in {result.seconds:.2f}s = {result.rps:.0f} req/s, "
        f"p50 {result.pct(0.50):.1f} ms, p99 {result.pct(0.99):.1f} ms, "
        f"mean {statistics.fmean(result.latencies) * 1000:.1f} ms, non-204 {result.errors}",
        flush=True,
    )
    return result


def main() -> int:
    n = int(os.environ.get("BENCH_WEBHOOK_N", "20000"))
    limit = float(os.environ.get("BENCH_WEBHOOK_TIMEOUT", "120"))
    with tempfile.TemporaryDirectory(prefix="closeflow-bench-webhooks-") as tmp:
        db = Path(tmp) / "outreach.db"
        env = {
            **os.environ,
            "CLOSEFLOW_ENVIRONMENT": "development",
            "CLOSEFLOW_DATA_DIR": tmp,
            "CLOSEFLOW_LOG_LEVEL": "WARNING",
            "CLOSEFLOW_OUTREACH_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "CLOSEFLOW_TWILIO_AUTH_TOKEN": TOKEN,
        }
        from shared.migrations import upgrade
        from shared.settings import Settings

        upgrade(Settings(outreach_database_url=env["CLOSEFLOW_OUTREACH_DATABASE_URL"]), "outreach")
        print(f"{n} signed Twilio status callbacks per target, concurrency {CONCURRENCY}")
        bare = run_target("bare", env, n, limit)
        outreach = run_target("outreach", env, n, limit)
        with sqlite3.connect(db) as conn:
            moved = conn.execute("SELECT count(*) FROM inbox_events").fetchone()[0]
        print(f"outreach stored {moved} callbacks (warm-up included)")
        results = [bare, outreach]
        postgres = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get(
            "CLOSEFLOW_TEST_POSTGRES_URL"
        )
        if postgres:
            on_pg = asyncio.run(on_postgres(postgres, env, n, limit))
            results.append(on_pg)
            print(f"ratio_postgres={on_pg.rps / bare.rps:.3f}")
    if any(r.errors for r in results):
        print("some requests did not get 204: see above", file=sys.stderr)
    print(f"ratio={outreach.rps / bare.rps:.3f}")
    return 1 if any(r.errors for r in results) else 0


async def on_postgres(server_url: str, env: dict[str, str], n: int, limit: float) -> Result:
    """The outreach target again, on a fresh database of that PostgreSQL server."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from bench.funnel import pg_database
    from shared.migrations import upgrade
    from shared.settings import Settings

    url, drop = await pg_database(server_url)
    try:
        await asyncio.to_thread(upgrade, Settings(outreach_database_url=url), "outreach")
        env = {**env, "CLOSEFLOW_OUTREACH_DATABASE_URL": url}
        result = await asyncio.to_thread(run_target, "outreach", env, n, limit, "postgres")
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            moved = (await conn.execute(text("SELECT count(*) FROM inbox_events"))).scalar()
        await engine.dispose()
        print(f"postgres stored {moved} callbacks (warm-up included)")
        return result
    finally:
        await drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["bare", "outreach"])
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
    else:
        sys.exit(main())
