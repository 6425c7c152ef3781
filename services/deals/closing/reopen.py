"""A reopened deal reaches its journey (issue 10 point 4). A journey still running (a won deal's
referrals stage) is signalled deal_reopened and goes back to the deal's stage. A journey that
ended: outreach, which starts journeys, starts a new run of the prospect's journey at presenting
with the deal (POST /internal/prospects/{id}/journeys/reopen).

Called after the reopen is committed. When outreach cannot be reached the deal stays reopened
and the answer is 503 naming the call to repeat (ops may POST it to outreach themselves; it is
idempotent).
"""

from __future__ import annotations

import logging

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from shared.contracts.journey import DealReopened, journey_id
from shared.contracts.names import Sig
from shared.errors import AppError
from shared.ids import id_path, is_id
from shared.journeys import signal_journey
from shared.peers import peer_client
from shared.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 15.0  # a new run may wait for the previous one to close (outreach: FINISHING_WAIT)


async def reopen_journey(
    client: Client,
    settings: Settings,
    prospect_id: str,
    deal_id: str,
    stage: str,
    actor: str = "",
) -> None:
    """Tell the journey of the reopened deal (now at `stage`), running or ended."""
    try:
        described = await client.get_workflow_handle(journey_id(prospect_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return  # no journey ever (a deal made by hand): nothing to bring back
        raise AppError(503, "temporal_unreachable", f"journey not checked: {err.message}") from err
    if described.status == WorkflowExecutionStatus.RUNNING:
        try:
            await signal_journey(
                client, prospect_id, Sig.DEAL_REOPENED, DealReopened(deal_id, stage, actor=actor)
            )
            return
        except AppError as err:
            if err.code != "journey_not_running":
                raise
            # it ended between the look and the signal: start a new run as for any ended one
    if not is_id(prospect_id):
        return  # not an id outreach could have enrolled: no journey to bring back
    path = id_path("/internal/prospects/{id}/journeys/reopen", id=prospect_id)
    try:
        async with peer_client(
            settings.internal_api_key, base_url=settings.outreach_url, timeout=TIMEOUT + 5
        ) as http:
            response = await http.post(path, json={"deal_id": deal_id})
    except httpx.HTTPError as err:
        raise _not_restarted(path, f"{type(err).__name__}: {err}") from err
    if response.status_code == 404:
        return  # never enrolled (a deal made by hand): no journey to bring back
    if response.status_code >= 400:
        raise _not_restarted(path, f"{response.status_code} {response.text[:300]}")


def _not_restarted(path: str, why: str) -> AppError:
    log.error("reopened deal: journey not restarted (%s): %s", path, why)
    return AppError(
        503,
        "journey_not_restarted",
        f"the deal is reopened, but its journey was not restarted ({why}); "
        f"repeat POST {path} on outreach",
    )
