"""The prospecting API process."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.prospecting.api import router
from shared.app import create_service_app
from shared.settings import Settings


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    return create_service_app(
        "prospecting",
        settings or Settings(),
        [router],
        description="People, reps, round-robin assignment and stage history.",
        temporal_client=temporal_client,
    )
