"""A booking through a link whose journey run is no longer running is a late reply.

A link names the run it was sent in. While that run runs (or has its deal), a booking goes on
that run's deal as it always did. Once it has ended (the cadence ran out without a reply, the
journey was stopped), a deal opened by the booking was carried by no journey: no reminders, no
tasks, no stage truth. So, before booking anything, deals asks outreach, which handles late
replies (POST /internal/prospects/{id}/late-bookings): it names the run the booking goes to (a
newer run running now, or the run the cadence's `late_reply: restart_at_qualifying` starts, which
opens the booked deal by its key), or none, and then only the rep's late reply task is made (the
time asked for in it) and deals books nothing. The links of the ended run follow the run named.
Before it offers times, the page asks outreach the same question without booking anything
(`would_book`: GET of the same path), so that a page whose times would only be passed on to the
rep says so instead of offering them as bookable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from temporalio.client import Client

from services.deals.core.runs import is_running, latest_run
from shared.booking import BookingClaim
from shared.contracts.journey import run_key
from shared.errors import AppError
from shared.ids import id_path, is_id
from shared.journeys import run_number
from shared.peers import peer_client
from shared.settings import Settings

PATH = "/internal/prospects/{id}/late-bookings"
TIMEOUT = 20.0  # a restart starts a journey run before outreach answers


@dataclass(frozen=True)
class LateAnswer:
    run_key: str | None  # the run the booking goes to; None: the rep's task only
    detail: str


async def link_runs(client: Client, claim: BookingClaim) -> bool:
    """Whether the link's run is the prospect's running run. A running run started without its
    number (by an earlier release) is taken for the link's, as bookings always took it."""
    run = await latest_run(client, claim.prospect_id)
    if run is None or not is_running(run):
        return False
    number = await run_number(run)
    return number is None or run_key(claim.prospect_id, number) == claim.journey_key


async def ask_outreach(
    settings: Settings, claim: BookingClaim, picked: datetime, asked: str
) -> LateAnswer:
    """Outreach's answer for a booking at `picked` (`asked`: the time in the prospect's words);
    503 while it cannot answer (nothing is booked then: the prospect tries again)."""
    if not is_id(claim.prospect_id):
        return LateAnswer(None, "not a prospect outreach knows")
    body = {
        "journey_key": claim.journey_key,
        "asked": asked,
        # one task per link and time, however often the prospect posts it
        "key": f"{claim.journey_key}@{picked:%Y%m%dT%H%M%SZ}",
    }
    answer = await _outreach(settings, "POST", claim, body)
    return LateAnswer(answer.get("run_key"), str(answer.get("detail", "")))


async def would_book(settings: Settings, claim: BookingClaim) -> bool:
    """Whether `ask_outreach` would name a run now (a booking would be booked), asked without
    making anything; 503 while outreach cannot answer."""
    if not is_id(claim.prospect_id):
        return False
    return bool((await _outreach(settings, "GET", claim)).get("books"))


async def _outreach(
    settings: Settings, method: str, claim: BookingClaim, body: dict[str, str] | None = None
) -> dict[str, Any]:
    try:
        async with peer_client(
            settings.internal_api_key, base_url=settings.outreach_url, timeout=TIMEOUT
        ) as http:
            path = id_path(PATH, id=claim.prospect_id)
            response = await http.request(method, path, json=body)
    except httpx.HTTPError as err:
        raise AppError(503, "outreach_unreachable", f"late booking: {err}") from err
    if response.status_code != 200:
        raise AppError(503, "outreach_unreachable", f"late booking: {response.status_code}")
    answer: dict[str, Any] = response.json()
    return answer
