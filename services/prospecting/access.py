"""Whose is it: the rep each prospecting id belongs to, for rep keys (shared/access.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import select

from services.prospecting.api_keys import holder_of
from services.prospecting.models import Prospect
from shared.access import Resolver
from shared.auth import Principal
from shared.issued_keys import KeyLookup


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(Prospect.rep_id).where(Prospect.id == prospect_id)
        )
        return rep_id


RESOLVERS: dict[str, Resolver] = {"prospect_id": prospect_rep}


def key_lookup(app: FastAPI) -> KeyLookup:
    """Keys issued through the API, read from this service's own table (no cache: a revoked
    key stops here at once)."""

    async def lookup(key: str) -> Principal | None:
        async with app.state.sessions() as session:
            return await holder_of(session, key)

    return lookup
