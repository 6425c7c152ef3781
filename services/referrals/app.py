"""The referrals API process: asks, intake, and the public referral page."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.referrals import api, public
from shared.app import create_service_app
from shared.settings import Settings


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    return create_service_app(
        "referrals",
        settings or Settings(),
        [api.router, public.router],
        description="Referral asks to won clients, their referral page, and referral intake.",
        temporal_client=temporal_client,
    )
