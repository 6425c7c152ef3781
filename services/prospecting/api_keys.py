"""API keys issued by admins through the API; the other services check them here.

POST /api-keys shows the new key once; only its SHA-256 is stored. Revoking is immediate in
prospecting and reaches the other services within shared.issued_keys.CACHE_SECONDS (a second).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import service
from services.prospecting.models import IssuedKey, Rep
from shared.auth import ISSUED_PREFIX, Principal, looks_issued
from shared.db import Session, utcnow
from shared.errors import AppError
from shared.idempotency import IdempotentSealed
from shared.issued_keys import key_hash, new_key
from shared.requests import InternalModel, WriteModel

router = APIRouter(tags=["api keys"])


class KeyCreate(WriteModel):
    name: str = Field(min_length=1, max_length=200, description="who or what holds it")
    role: Literal["admin", "ops", "rep"]
    rep_id: str | None = Field(None, max_length=32, description="required for a rep key")

    @model_validator(mode="after")
    def _rep_needs_rep_id(self) -> KeyCreate:
        if (self.role == "rep") != bool(self.rep_id):
            raise ValueError("rep_id is required for a rep key, and only for one")
        return self


class Key(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: str
    rep_id: str | None
    hint: str
    created_at: datetime
    revoked_at: datetime | None
    works: bool = Field(
        True,
        description="false while the key answers 401: revoked, or its rep deactivated (the "
        "rep's re-activation brings an unrevoked key back)",
    )


class NewKey(Key):
    key: str = Field(description="shown this once: only its hash is kept")


class Introspect(InternalModel):
    key: str = Field(max_length=200)


class Holder(BaseModel):
    role: str
    rep_id: str | None
    key_id: str = ""  # the issued key's id (the audit log names it)


# the answer holds the key, shown once: a retry with the first request's Idempotency-Key gets it
# again (its answer kept sealed), instead of a second live key nobody knows of
@router.post("/api-keys", status_code=201, response_model=NewKey, dependencies=[IdempotentSealed])
async def issue_key(body: KeyCreate, session: Session) -> NewKey:
    if body.rep_id is not None:
        # a rep key works only while its rep is active (holder_of): one issued to a rep who
        # left would answer 401 on every call; a deactivation racing this waits, then stops it
        await service.active_rep(session, body.rep_id, hold=True)
    key = new_key()
    row = IssuedKey(
        name=body.name,
        role=body.role,
        rep_id=body.rep_id,
        key_hash=key_hash(key),
        hint=key[: len(ISSUED_PREFIX) + 6],
    )
    session.add(row)
    await session.flush()
    return NewKey(key=key, **Key.model_validate(row).model_dump())


@router.get("/api-keys", response_model=list[Key])
async def list_keys(session: Session) -> list[Key]:
    rows = await session.execute(
        select(IssuedKey, Rep.active)
        .outerjoin(Rep, Rep.id == IssuedKey.rep_id)
        .order_by(IssuedKey.created_at)
    )
    return [
        Key.model_validate(key).model_copy(
            # as holder_of decides: a rep key works while its rep is there and active
            update={"works": key.revoked_at is None and (key.rep_id is None or rep_active is True)}
        )
        for key, rep_active in rows.all()
    ]


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, session: Session) -> Response:
    """Revoking twice is harmless."""
    row = await session.get(IssuedKey, key_id)
    if row is None:
        raise AppError(404, "api_key_not_found", f"api key {key_id} does not exist")
    row.revoked_at = row.revoked_at or utcnow()
    return Response(status_code=204)


@router.post("/internal/api-keys/introspect", response_model=Holder)
async def introspect(body: Introspect, session: Session) -> Holder:
    """For the other services: who holds this key (404: nobody, or revoked)."""
    principal = await holder_of(session, body.key)
    if principal is None:
        raise AppError(404, "api_key_not_found", "no live key like that")
    return Holder(role=principal.role, rep_id=principal.rep_id, key_id=principal.key_id)


class Standing(BaseModel):
    deactivated: bool


@router.get("/internal/reps/{rep_id}/standing", response_model=Standing)
async def standing(rep_id: Annotated[str, Path(max_length=64)], session: Session) -> Standing:
    """For the other services, about a rep key of CLOSEFLOW_API_KEYS: has its rep left?"""
    return Standing(deactivated=await rep_deactivated(session, rep_id))


async def rep_deactivated(session: AsyncSession, rep_id: str) -> bool:
    """An unknown rep was not deactivated: a configured key may name a rep added later."""
    return await session.scalar(select(Rep.active).where(Rep.id == rep_id)) is False


async def holder_of(session: AsyncSession, key: str) -> Principal | None:
    """The live key's holder. A rep key works while its rep is active: a rep who left keeps no
    access (re-activated, their keys work again; revoke them to end that too)."""
    if not looks_issued(key):
        return None
    row = await session.scalar(
        select(IssuedKey)
        .outerjoin(Rep, Rep.id == IssuedKey.rep_id)
        .where(
            IssuedKey.key_hash == key_hash(key),
            IssuedKey.revoked_at.is_(None),
            or_(IssuedKey.rep_id.is_(None), Rep.active.is_(True)),
        )
    )
    if row is None:
        return None
    return Principal(row.role, row.rep_id, key_id=row.id)  # type: ignore[arg-type]
