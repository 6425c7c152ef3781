"""Prospecting use cases. Each takes the caller's session and never commits."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.prospecting import icp, schemas
from services.prospecting.models import AssignmentCursor, Prospect, Rep, StageHistory
from shared.contracts.journey import Contact, CreateReferredProspect, Stage, StageChange
from shared.errors import AppError, conflict, invalid, not_found
from shared.people import check_timezone, normalize_email, normalize_phone

ROUND_ROBIN = "round_robin"
CREATED_CAUSE = "created"


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    """INSERT of the session's dialect, for ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


# --- reps ---------------------------------------------------------------------------------------


async def create_rep(session: AsyncSession, data: schemas.RepCreate) -> Rep:
    rep = Rep(name=data.name, email=data.email, phone=data.phone)
    session.add(rep)
    await session.flush()
    return rep


async def list_reps(session: AsyncSession) -> Sequence[Rep]:
    return (await session.scalars(select(Rep).order_by(Rep.created_at, Rep.id))).all()


async def get_rep(session: AsyncSession, rep_id: str) -> Rep:
    rep = await session.get(Rep, rep_id)
    if rep is None:
        raise not_found("rep", rep_id)
    return rep


async def next_rep(session: AsyncSession) -> Rep | None:
    """The rep after the last one assigned, in creation order; None when there are no reps.

    The cursor row is locked (SELECT ... FOR UPDATE) until the transaction ends, so concurrent
    creations on PostgreSQL take turns; SQLite has a single writer anyway.
    """
    await session.execute(
        _insert(session, AssignmentCursor)
        .values(name=ROUND_ROBIN, assigned=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    cursor = (
        await session.execute(
            select(AssignmentCursor)
            .where(AssignmentCursor.name == ROUND_ROBIN)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    in_order = select(Rep).order_by(Rep.created_at, Rep.id).limit(1)
    rep: Rep | None = None
    if cursor.last_rep_id is not None and cursor.last_rep_created_at is not None:
        after = or_(
            Rep.created_at > cursor.last_rep_created_at,
            and_(Rep.created_at == cursor.last_rep_created_at, Rep.id > cursor.last_rep_id),
        )
        rep = await session.scalar(in_order.where(after))
    if rep is None:
        rep = await session.scalar(in_order)  # wrap around (or the very first assignment)
    if rep is None:
        return None
    cursor.last_rep_id = rep.id
    cursor.last_rep_created_at = rep.created_at
    cursor.assigned += 1
    return rep


async def next_reps(session: AsyncSession, count: int) -> list[Rep | None]:
    """`count` assignments in the same round-robin order as `next_rep`, with one cursor update.

    Reps are few (people), so loading them all is cheap next to one query per imported row.
    """
    if count == 0:
        return []
    first = await next_rep(session)
    if first is None:
        return [None] * count
    reps = list(await list_reps(session))
    start = next(i for i, r in enumerate(reps) if r.id == first.id)
    chosen: list[Rep | None] = [reps[(start + i) % len(reps)] for i in range(count)]
    last = chosen[-1]
    assert last is not None
    cursor = await session.get(AssignmentCursor, ROUND_ROBIN)
    assert cursor is not None
    cursor.last_rep_id = last.id
    cursor.last_rep_created_at = last.created_at
    cursor.assigned += count - 1
    return chosen


# --- prospects ----------------------------------------------------------------------------------


async def find_duplicate(
    session: AsyncSession, email: str | None, phone: str | None
) -> tuple[Prospect, str] | None:
    """The existing prospect sharing the email (checked first) or the phone, with that field."""
    for field, value in (("email", email), ("phone", phone)):
        if value is None:
            continue
        column = Prospect.email if field == "email" else Prospect.phone
        found = await session.scalar(select(Prospect).where(column == value))
        if found is not None:
            return found, field
    return None


def _duplicate(existing: Prospect, field: str) -> AppError:
    return conflict(
        "duplicate_prospect",
        f"prospect {existing.id} already has this {field}",
        [{"field": field, "problem": "already taken", "existing_id": existing.id}],
    )


async def _add_prospect(session: AsyncSession, prospect: Prospect, cause: str) -> None:
    """Insert the prospect with its first history row (None -> prospecting)."""
    prospect.stage = Stage.PROSPECTING
    session.add(prospect)
    await session.flush()
    session.add(
        StageHistory(
            key=f"{CREATED_CAUSE}:{prospect.id}",
            prospect_id=prospect.id,
            from_stage=None,
            to_stage=Stage.PROSPECTING,
            cause=cause,
            at=prospect.created_at,
        )
    )
    await session.flush()


async def create_prospect(session: AsyncSession, data: schemas.ProspectCreate) -> Prospect:
    found = await find_duplicate(session, data.email, data.phone)
    if found is not None:
        raise _duplicate(*found)
    if data.referral_id is not None:
        by_referral = await session.scalar(
            select(Prospect).where(Prospect.referral_id == data.referral_id)
        )
        if by_referral is not None:
            raise _duplicate(by_referral, "referral_id")
    if data.referrer_prospect_id is not None:
        if await session.get(Prospect, data.referrer_prospect_id) is None:
            raise invalid("referrer_prospect_id", "no prospect has this id")
    rep = await next_rep(session)
    prospect = Prospect(**data.model_dump(), rep_id=rep.id if rep else None)
    icp.apply((await icp.load(session))[0], prospect)
    try:
        await _add_prospect(session, prospect, CREATED_CAUSE)
    except IntegrityError:
        # Lost a race with a concurrent insert of the same person: answer like the check above.
        await session.rollback()
        found = await find_duplicate(session, data.email, data.phone)
        if found is not None:
            raise _duplicate(*found) from None
        raise conflict("duplicate_prospect", "a prospect with these details exists") from None
    return await get_prospect(session, prospect.id)


async def get_prospect(session: AsyncSession, prospect_id: str) -> Prospect:
    prospect = await session.scalar(
        select(Prospect)
        .where(Prospect.id == prospect_id)
        .options(selectinload(Prospect.rep))
        .execution_options(populate_existing=True)
    )
    if prospect is None:
        raise not_found("prospect", prospect_id)
    return prospect


SORTS = ("created_at", "-created_at", "fit_score", "-fit_score")


def _sort_key(prospect: Prospect, sort: str) -> str:
    if sort.lstrip("-") == "fit_score":
        return f"fit:{prospect.fit_score}"
    return prospect.created_at.isoformat()


def encode_cursor(prospect: Prospect, sort: str = "created_at") -> str:
    raw = f"{_sort_key(prospect, sort)}|{prospect.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "created_at") -> tuple[datetime | int, str]:
    """The sort key and id of the last row of the previous page (of the same sort)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        key, prospect_id = raw.split("|", 1)
        if sort.lstrip("-") == "fit_score":
            if not key.startswith("fit:"):
                raise ValueError(key)
            return int(key.removeprefix("fit:")), prospect_id
        created_at = datetime.fromisoformat(key)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor", "not a cursor returned by this API for this sort") from None
    if created_at.tzinfo is None or not prospect_id:
        raise invalid("cursor", "not a cursor returned by this API for this sort")
    return created_at, prospect_id


async def list_prospects(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    stage: Stage | None,
    tier: str | None = None,
    rep_id: str | None = None,
    source: str | None = None,
    q: str | None = None,
    sort: str = "created_at",
) -> tuple[Sequence[Prospect], str | None]:
    """One page in (sort key, id) order; next_cursor is None on the last page.

    Keyset pagination: each page is an index range scan from the previous page's last row, so
    a late page costs what the first one does.
    """
    if sort not in SORTS:
        raise invalid("sort", f"one of {', '.join(SORTS)}")
    query = select(Prospect).options(selectinload(Prospect.rep))
    for column, value in (
        (Prospect.stage, stage),
        (Prospect.tier, tier),
        (Prospect.rep_id, rep_id),
        (Prospect.source, source),
    ):
        if value is not None:
            query = query.where(column == value)
    if q and q.strip():
        text = q.strip().lower()
        query = query.where(
            or_(
                *(
                    func.lower(c).contains(text, autoescape=True)
                    for c in (
                        Prospect.first_name,
                        Prospect.last_name,
                        Prospect.email,
                        Prospect.company,
                    )
                )
            )
        )
    descending = sort.startswith("-")
    key_column = Prospect.fit_score if sort.lstrip("-") == "fit_score" else Prospect.created_at
    if cursor is not None:
        key, prospect_id = decode_cursor(cursor, sort)
        if descending:
            after = or_(key_column < key, and_(key_column == key, Prospect.id < prospect_id))
        else:
            after = or_(key_column > key, and_(key_column == key, Prospect.id > prospect_id))
        query = query.where(after)
    order = (key_column.desc(), Prospect.id.desc()) if descending else (key_column, Prospect.id)
    rows = (await session.scalars(query.order_by(*order).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(rows[limit - 1], sort)


async def stage_history(session: AsyncSession, prospect_id: str) -> Sequence[StageHistory]:
    await get_prospect(session, prospect_id)
    query = (
        select(StageHistory)
        .where(StageHistory.prospect_id == prospect_id)
        .order_by(StageHistory.at, StageHistory.recorded_at, StageHistory.id)
    )
    return (await session.scalars(query)).all()


def _parse_at(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise invalid("at", f"not an ISO-8601 time: {value!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def record_stage(session: AsyncSession, change: StageChange) -> bool:
    """Record a transition once per key and move the prospect; False when the key was seen."""
    for field, value in (("to_stage", change.to_stage), ("from_stage", change.from_stage)):
        if value is not None and value not in {s.value for s in Stage}:
            raise invalid(field, f"unknown stage {value!r}")
    to_stage = Stage(change.to_stage)
    from_stage = Stage(change.from_stage) if change.from_stage is not None else None
    prospect = await get_prospect(session, change.prospect_id)
    result = await session.execute(
        _insert(session, StageHistory)
        .values(
            key=change.key,
            prospect_id=prospect.id,
            from_stage=from_stage,
            to_stage=to_stage,
            cause=change.cause,
            at=_parse_at(change.at),
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    if result.rowcount == 0:
        return False  # a retry, or a stale repeat that must not move the stage back
    prospect.stage = to_stage
    await session.flush()
    return True


async def create_referred_prospect(
    session: AsyncSession, request: CreateReferredProspect
) -> Prospect:
    """The referred person as a prospect: one per referral, never a copy of a known person."""
    existing = await session.scalar(
        select(Prospect).where(Prospect.referral_id == request.referral_id)
    )
    if existing is not None:
        return await get_prospect(session, existing.id)
    person = request.person
    try:
        email = normalize_email(person.email) if person.email else None
        phone = normalize_phone(person.phone) if person.phone else None
        timezone = check_timezone(person.timezone or "")
    except ValueError as err:
        raise invalid("person", str(err)) from None
    if email is None and phone is None:
        raise invalid("person", "give an email or a phone (or both)")
    if not person.first_name.strip():
        raise invalid("person.first_name", "must not be empty")
    found = await find_duplicate(session, email, phone)
    if found is not None:
        known = found[0]
        # Attribute a known person to the referral without touching their own journey data
        # (and never to themselves, when a client names their own address).
        if known.id != request.referrer_prospect_id:
            if known.referrer_prospect_id is None:
                known.referrer_prospect_id = request.referrer_prospect_id
            if known.referral_id is None:
                known.referral_id = request.referral_id
            await session.flush()
        return await get_prospect(session, known.id)
    rep = await session.get(Rep, request.rep_id) if request.rep_id else None
    if rep is None:
        rep = await next_rep(session)  # the referrer had no (known) rep: assign as usual
    prospect = Prospect(
        first_name=person.first_name.strip(),
        last_name=person.last_name.strip(),
        email=email,
        phone=phone,
        company=person.company.strip(),
        title=person.title.strip(),
        timezone=timezone,
        source="referral",
        referrer_prospect_id=request.referrer_prospect_id,
        referral_id=request.referral_id,
        rep_id=rep.id if rep else None,
    )
    icp.apply((await icp.load(session))[0], prospect)
    await _add_prospect(session, prospect, CREATED_CAUSE)
    return await get_prospect(session, prospect.id)


def contact_from_prospect(p: Prospect, rep: Rep | None) -> Contact:
    """The journey's snapshot of a prospect and their rep."""
    return Contact(
        prospect_id=p.id,
        first_name=p.first_name,
        last_name=p.last_name,
        email=p.email,
        phone=p.phone,
        company=p.company,
        title=p.title,
        timezone=p.timezone,
        source=p.source,
        rep_id=rep.id if rep else None,
        rep_name=rep.name if rep else "",
        rep_email=rep.email if rep else "",
        rep_phone=rep.phone if rep else None,
    )
