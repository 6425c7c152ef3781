"""Exactly-once sends under faults, counted on real parts.

The outreach send activity is failed, or its worker PROCESS is killed, at the three moments
that matter for a send (SendFaults in services/outreach/activities.py):

  before_provider_call     ledger row `sending`, provider not called yet
  after_provider_accepted  SMTP / Twilio accepted, `submitted` not committed yet
  after_ledger_commit      `submitted` committed, activity not returned to Temporal yet

"raise": the activity fails and Temporal retries it 100 ms later on the same worker.
"kill": fault_worker.py, a real worker process, SIGKILLs itself there; a second copy of the same
command is started (it does not die again: marker file) and Temporal hands it the activity once
the 3 s start_to_close_timeout has expired.

Each test runs two journeys side by side, one with the fault on its email, one on its text, and
then counts what reached the SMTP server (the mailbox sandbox), the Twilio sandbox and the ledger.

What is asserted, per journey:
- no lost step: both ledger rows `submitted`, at least one email and one text out;
- SMS: exactly one text at every point (at after_provider_accepted the retry finds the first one
  through Twilio's message list and adopts its sid);
- email: exactly one copy, except at after_provider_accepted, where SMTP gives no way to ask
  whether a message got through: there the SMTP server receives exactly two copies and both carry
  the ledger's Message-ID, so the receiving side can drop the second;
- which path the retry took: one Temporal retry, and the ledger's attempt count.

test_sms_twice_when_twilio_lists_the_message_late shows the window that is left for SMS.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from temporalio.testing import WorkflowEnvironment

from tests.support.exactly_once import Counted, exactly_once_rig
from tests.support.faults import POINTS
from tests.support.fixtures import Ground
from tests.support.ports import free_port
from tests.support.serve import serve


def check(point: str, got: Counted) -> None:
    faulted = got.channel
    other = "sms" if faulted == "email" else "email"
    why = got.summary()
    assert got.marker.get("point") == point and got.marker.get("channel") == faulted, why
    # which ledger state the fault left behind: the window each point stands for
    left = "submitted" if point == "after_ledger_commit" else "sending"
    assert got.marker["status"] == left, why
    # the killed attempt and at least one retry (a slow machine may time out one more: what
    # matters is what was sent, checked below)
    assert got.temporal_attempts >= 2, why

    # no lost step
    assert set(got.rows) == {"email", "sms"}, why
    assert all(r.status == "submitted" for r in got.rows.values()), why
    assert got.emails and got.texts, why

    # SMS: one text, and it is the one the ledger points at
    assert len(got.texts) == 1, why
    assert got.rows["sms"].provider_id == got.texts[0]["sid"], why

    # email: every copy the SMTP server got carries the ledger's Message-ID
    assert {m.message_id for m in got.emails} == {got.rows["email"].provider_id}, why
    resent = point == "after_provider_accepted" and faulted == "email"
    assert len(got.emails) == (2 if resent else 1), why

    # the retry's path: a row left `sending` is attempted again, a `submitted` one never
    assert got.rows[faulted].attempts == (1 if point == "after_ledger_commit" else 2), why
    assert got.rows[other].attempts == 1, why
    outcomes = got.outcomes()
    assert outcomes[faulted] == ("already_sent" if point == "after_ledger_commit" else "sent"), why
    # the email goes first: a fault on the text finds it already sent, one on the email
    # leaves the text to the retry
    assert outcomes[other] == ("already_sent" if other == "email" else "sent"), why


@pytest.mark.parametrize("point", POINTS)
async def test_activity_fails_at_the_worst_moments(point: str, ground: Ground) -> None:
    async with exactly_once_rig(ground) as r:
        results = await asyncio.gather(r.run_raise(point, "email"), r.run_raise(point, "sms"))
    for got in results:
        check(point, got)


@pytest.mark.parametrize("point", POINTS)
async def test_worker_process_killed_at_the_worst_moments(point: str, ground: Ground) -> None:
    async with exactly_once_rig(ground) as r:
        results = await asyncio.gather(r.run_kill(point, "email"), r.run_kill(point, "sms"))
    for got in results:
        check(point, got)


# --- the window that is left ------------------------------------------------------------------


def lagging_twilio(upstream: str, lag: timedelta, first_send_after: float = 0.0) -> FastAPI:
    """Twilio's API as a client sees it when the message list lags behind accepted messages:
    everything passes through, except that list pages leave out messages created in the last
    `lag`. Nothing in Twilio's documentation promises that a message is listed as soon as the
    create call returns; this is the case the reconciliation cannot cover. The first message
    created is held `first_send_after` seconds first (a slow answer)."""
    app = FastAPI()
    held: list[str] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        if request.method == "POST" and path.endswith("/Messages.json") and not held:
            held.append(path)
            await asyncio.sleep(first_send_after)
        headers = {
            k: v for k, v in request.headers.items() if k in ("authorization", "content-type")
        }
        async with httpx.AsyncClient(base_url=upstream) as http:
            up = await http.request(
                request.method,
                f"/{path}",
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        if request.method == "GET" and path.endswith("/Messages.json") and up.is_success:
            page = up.json()
            cutoff = datetime.now(UTC) - lag
            page["messages"] = [
                m for m in page["messages"] if parsedate_to_datetime(m["date_created"]) < cutoff
            ]
            return JSONResponse(page)
        return Response(
            up.content, status_code=up.status_code, media_type=up.headers.get("content-type")
        )

    return app


async def test_sms_twice_when_twilio_lists_the_message_late(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    urls = {"outreach": f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}"}
    async with exactly_once_rig(Ground(tmp_path, urls, temporal_local, queue_prefix)) as r:
        port = free_port()
        proxy = lagging_twilio(r.sb.twilio_url, timedelta(seconds=60))
        async with serve(proxy, port) as proxy_url:
            settings = r.sb.settings.model_copy(update={"twilio_api_base_url": proxy_url})
            got = await r.run_raise("after_provider_accepted", "sms", settings)
    why = got.summary()
    # the step is not lost, but the retry could not see the first text and sent a second one
    assert got.outcomes() == {"email": "already_sent", "sms": "sent"}, why
    assert len(got.texts) == 2, why
    assert {t["body"] for t in got.texts} == {got.rows["sms"].body}, why
    # the ledger keeps the second sid; the first is the duplicate nobody points at
    assert got.rows["sms"].provider_id in {t["sid"] for t in got.texts}, why
    assert got.rows["sms"].provider_id != got.marker["provider_id"], why
    assert len(got.emails) == 1, why


async def test_a_retry_never_sends_while_a_timed_out_attempt_may_still_be_sending(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    """Twilio answers the first text after 4 s: its attempt times out at 3 s and Temporal starts
    another while the first is still waiting for Twilio. The list lags, so the second attempt
    could not find the first text there: only the send lease keeps it from sending a second."""
    urls = {"outreach": f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}"}
    async with exactly_once_rig(Ground(tmp_path, urls, temporal_local, queue_prefix)) as r:
        proxy = lagging_twilio(r.sb.twilio_url, timedelta(seconds=60), first_send_after=4.0)
        async with serve(proxy, free_port()) as proxy_url:
            settings = r.sb.settings.model_copy(update={"twilio_api_base_url": proxy_url})
            got = await r.run_in_process("sms", settings)
    why = got.summary()
    assert got.temporal_attempts >= 2, why  # the first attempt did time out
    assert len(got.texts) == 1, why
    assert got.rows["sms"].status == "submitted", why
    assert got.rows["sms"].provider_id == got.texts[0]["sid"], why
    assert got.rows["sms"].attempts == 1, why  # no attempt but the first claimed the row
    assert got.rows["sms"].sending_until is None, why
    assert len(got.emails) == 1, why
