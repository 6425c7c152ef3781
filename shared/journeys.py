"""How APIs reach a prospect's journey: signals through the Temporal client, never timers."""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from shared.contracts.journey import journey_id
from shared.errors import AppError

log = logging.getLogger(__name__)


async def signal_journey(client: Client, prospect_id: str, signal: str, payload: object) -> None:
    """Signal the prospect's journey. Call it after the commit that recorded the fact."""
    handle = client.get_workflow_handle(journey_id(prospect_id))
    try:
        await handle.signal(signal, payload)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise AppError(
                409,
                "journey_not_running",
                f"prospect {prospect_id} has no running journey: enroll them first",
            ) from err
        log.error("signal %s to %s failed: %s", signal, handle.id, err.message)
        raise AppError(
            503, "journey_unreachable", "stored, but the journey could not be told; retry"
        ) from err
