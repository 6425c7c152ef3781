"""Prospecting use cases. Each takes the caller's session and never commits."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.prospecting import (
    assignment,
    auto_enroll,
    erasure,
    funnel,
    funnel_queue,
    icp,
    outbox,
    schemas,
)
from services.prospecting.models import Erasure, OutboxMessage, Prospect, Rep, StageHistory
from shared.audit import actor_of
from shared.bounds import INT32_MAX
from shared.codec import MasterKey, create_data_keys
from shared.contracts.journey import (
    Contact,
    CreateReferredProspect,
    Stage,
    StageChange,
    system_actor,
)
from shared.db import new_id
from shared.errors import AppError, conflict, invalid, not_found
from shared.events import EVENTS_PATH, STAGE_CHANGED, event_body
from shared.people import check_timezone, normalize_email, normalize_phone
from shared.timezones import prospect_zone

CREATED_CAUSE = "created"
REP_MOVE = "rep_move"  # the open tasks (outreach's POST /prospects/{id}/tasks/reassign)
REP_MOVE_ENROLLMENT = "rep_enrollment"  # the enrollment's rep
REP_MOVE_DEALS = "rep_deals"  # the open deals' owner (deals' POST /internal/prospects/{id}/rep)
REP_MOVE_REFERRALS = "rep_referrals"  # the referral asks' owner (referrals', likewise)
REP_UNASSIGNED = "rep_unassigned"  # outreach's POST /internal/prospects/{id}/unassigned
# Each service that owns rows of the prospect's rep hears a move: (kind, target, path).
REP_MOVES = (
    (REP_MOVE, "outreach", "/prospects/{prospect_id}/tasks/reassign"),
    (REP_MOVE_ENROLLMENT, "outreach", "/internal/prospects/{prospect_id}/rep"),
    (REP_MOVE_DEALS, "deals", "/internal/prospects/{prospect_id}/rep"),
    (REP_MOVE_REFERRALS, "referrals", "/internal/prospects/{prospect_id}/rep"),
)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    """INSERT of the session's dialect, for ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


# --- reps ---------------------------------------------------------------------------------------


async def active_manager(session: AsyncSession, manager_id: str) -> Rep:
    """The rep named to be a manager: 422 when there is none or they were deactivated (an
    inactive manager hears of no escalation, so a rep's would go nowhere)."""
    manager = await session.get(Rep, manager_id)
    if manager is None:
        raise invalid("manager_id", f"no rep {manager_id} to be the manager")
    if not manager.active:
        raise invalid("manager_id", f"rep {manager_id} is inactive")
    return manager


async def create_rep(session: AsyncSession, data: schemas.RepCreate) -> Rep:
    if data.manager_id is not None:
        await active_manager(session, data.manager_id)
    rep = Rep(name=data.name, email=data.email, phone=data.phone, manager_id=data.manager_id)
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


async def active_rep(session: AsyncSession, rep_id: str, *, hold: bool = False) -> Rep:
    """The rep a request gives something to (a prospect, an API key): a 422 on `rep_id` when
    there is none or they are inactive. `hold` keeps their row (FOR SHARE on PostgreSQL) until
    the transaction ends, so a deactivation racing the request waits for it."""
    rep = await session.get(Rep, rep_id, with_for_update={"read": True} if hold else None)
    if rep is None:
        raise invalid("rep_id", f"no rep has the id {rep_id}")
    if not rep.active:
        raise invalid("rep_id", f"rep {rep_id} is inactive: activate them first")
    return rep


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


def stage_event(change: Mapping[str, Any]) -> dict[str, Any]:
    """The outbox row of the subscribers' `prospect.stage_changed` for a recorded change (a
    stage_history row's values), relayed to outreach, which delivers it (shared.events). Its id
    comes from the change's key: a change recorded again is never a second event."""
    from_stage = change["from_stage"]
    body = event_body(
        STAGE_CHANGED,
        change["key"],
        {
            "prospect_id": change["prospect_id"],
            "from_stage": str(from_stage) if from_stage is not None else None,
            "to_stage": str(change["to_stage"]),
            "cause": change["cause"][:200],
            "rep_id": change["rep_id"] or None,
            "actor": change["actor"],
        },
        change["at"],
    )
    return {
        "kind": outbox.EVENT,
        "target": "outreach",
        "path": EVENTS_PATH,
        "payload": body,
        "subject_id": change["prospect_id"],
    }


async def queue_stage_events(session: AsyncSession, changes: Sequence[Mapping[str, Any]]) -> None:
    """The events of `changes`, in their transaction (one INSERT: imports queue 500 at once)."""
    if changes:
        await session.execute(insert(OutboxMessage), [stage_event(c) for c in changes])


async def _add_prospect(
    session: AsyncSession,
    prospect: Prospect,
    cause: str,
    actor: str,
    master_keys: Sequence[MasterKey],
) -> None:
    """Insert the prospect with its first history row (None -> prospecting), its event and its
    payload data key (shared.codec)."""
    prospect.stage = Stage.PROSPECTING
    session.add(prospect)
    await session.flush()
    await create_data_keys(session, master_keys, [prospect.id])
    history_id = new_id()
    first = {
        "id": history_id,
        "key": f"{CREATED_CAUSE}:{prospect.id}",
        "prospect_id": prospect.id,
        "from_stage": None,
        "to_stage": Stage.PROSPECTING,
        "cause": cause,
        "actor": actor,
        "at": prospect.created_at,
        "cadence_id": "",
        "rep_id": prospect.rep_id or "",
        "source": prospect.source,
        "seconds_in_stage": None,
    }
    session.add(StageHistory(**first))
    await session.flush()
    await funnel_queue.queue(session, [history_id])  # for the funnel's counters
    await queue_stage_events(session, [first])


async def create_prospect(
    session: AsyncSession,
    data: schemas.ProspectCreate,
    pepper: str,
    master_keys: Sequence[MasterKey],
) -> Prospect:
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
    await erasure.refuse_erased(session, pepper, data.email, data.phone)
    rules = (await icp.load(session))[0]
    rep_id, note = await assignment.assign_new(session, data.country)
    prospect = Prospect(**data.model_dump(), rep_id=rep_id, assignment_note=note)
    icp.apply(rules, prospect)
    try:
        await _add_prospect(session, prospect, CREATED_CAUSE, actor_of(session), master_keys)
        if auto_enroll.moved_up(None, prospect.tier, prospect.source):
            auto_enroll.queue(session, [(prospect.id, prospect.tier)], prospect.id)
    except IntegrityError:
        # Lost a race with a concurrent insert of the same person: answer like the check above.
        await session.rollback()
        found = await find_duplicate(session, data.email, data.phone)
        if found is not None:
            raise _duplicate(*found) from None
        raise conflict("duplicate_prospect", "a prospect with these details exists") from None
    return await get_prospect(session, prospect.id)


async def get_prospect(session: AsyncSession, prospect_id: str, *, lock: bool = False) -> Prospect:
    stmt = (
        select(Prospect)
        .where(Prospect.id == prospect_id)
        .options(selectinload(Prospect.rep))
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update(of=Prospect)
    prospect = await session.scalar(stmt)
    if prospect is None:
        raise not_found("prospect", prospect_id)
    return prospect


def search_text() -> ColumnElement[str]:
    """Name, email and company in one lower-cased string: free text matches anywhere in it.

    On PostgreSQL a trigram GIN index is built on exactly this expression (migration 0003), so
    `LIKE '%text%'` on it is an index scan. The separators are SQL literals, not parameters, so
    the expression is the indexed one even in a generic (parameter-blind) plan. SQLite reads
    every row (no such index).
    """
    space: ColumnElement[str] = literal_column("' '")
    return func.lower(
        Prospect.first_name
        + space
        + Prospect.last_name
        + space
        + func.coalesce(Prospect.email, literal_column("''"))
        + space
        + Prospect.company
    )


SORTS = ("created_at", "-created_at", "fit_score", "-fit_score")


def _sort_key(prospect: Prospect, sort: str) -> str:
    if sort.lstrip("-") == "fit_score":
        return f"fit:{prospect.fit_score}"
    return prospect.created_at.isoformat()


def encode_cursor(prospect: Prospect, sort: str = "created_at") -> str:
    raw = f"{_sort_key(prospect, sort)}|{prospect.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "created_at") -> tuple[datetime | int, str]:
    """The sort key and id of the last row of the previous page (of the same sort).

    A cursor is the client's text: a key no row can have (a score beyond the column's integers,
    a time outside the years a database stores once in UTC) is refused like any other forgery,
    not handed to the database driver, whose overflow was a 500."""
    refused = invalid("cursor", "not a cursor returned by this API for this sort")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        key, prospect_id = raw.split("|", 1)
        if sort.lstrip("-") == "fit_score":
            if not key.startswith("fit:"):
                raise ValueError(key)
            score = int(key.removeprefix("fit:"))
            if not -INT32_MAX - 1 <= score <= INT32_MAX:
                raise ValueError(key)
            return score, prospect_id
        created_at = datetime.fromisoformat(key)
        if created_at.tzinfo is None or not prospect_id:
            raise ValueError(key)
        created_at = created_at.astimezone(UTC)  # year 1 at +14:00 overflows here
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise refused from None
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
        query = query.where(search_text().contains(q.strip().lower(), autoescape=True))
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
    # one change at a time per prospect: each sees the others' rows (the stage goes forward only)
    prospect = await get_prospect(session, change.prospect_id, lock=True)
    at = _parse_at(change.at)
    late = await _later_change_recorded(session, prospect.id, at)
    if (
        from_stage == Stage.PROSPECTING
        and prospect.stage not in (Stage.PROSPECTING, to_stage)
        and not late
    ):
        # a later run's first change: every run starts at prospecting, which the person left
        # long ago; they leave where the last run put them (nurture, lost, won...), and the
        # funnel counts that stay, not a second stay in prospecting lasting months
        from_stage = Stage(prospect.stage)
    values = {
        "id": new_id(),
        "key": change.key,
        "prospect_id": prospect.id,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "cause": change.cause,
        "at": at,
        "actor": change.actor or actor_of(session),
        # the funnel counts the change by these, as they are now (funnel.denormalise)
        **await funnel.denormalise(
            session,
            prospect.id,
            prospect.rep_id,
            prospect.source,
            at,
            getattr(change, "cadence_id", ""),
        ),
    }
    # an INSERT's result is a CursorResult (it has the row count); execute() is typed for SELECTs
    result = cast(
        CursorResult[Any],
        await session.execute(
            _insert(session, StageHistory)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
        ),
    )
    if result.rowcount == 0:
        return False  # a retry, or a stale repeat that must not move the stage back
    await funnel_queue.queue(session, [values["id"]])
    await queue_stage_events(session, [values])
    if late:
        # it happened, and stays in the history, but the prospect is past it: e.g. the referrals
        # stage's record, cancelled by a reopening, that finished after the reopened stage's
        await session.flush()
        return True
    freed = prospect.rep_id is not None and (
        prospect.stage in assignment.OPEN_STAGES and to_stage not in assignment.OPEN_STAGES
    )
    prospect.stage = to_stage
    await session.flush()
    if freed:
        await assign_waiting(session, seats=1)
    return True


async def _later_change_recorded(session: AsyncSession, prospect_id: str, at: datetime) -> bool:
    """A journey's change of the prospect later than `at` is recorded already. Only the
    journeys' changes are compared, all timed by Temporal's clock: the creation row (from no
    stage) is timed by this service's."""
    later = (
        select(StageHistory.id)
        .where(
            StageHistory.prospect_id == prospect_id,
            StageHistory.from_stage.is_not(None),
            StageHistory.at > at,
        )
        .limit(1)
    )
    return await session.scalar(later) is not None


async def create_referred_prospect(
    session: AsyncSession,
    request: CreateReferredProspect,
    pepper: str,
    master_keys: Sequence[MasterKey],
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
    await erasure.refuse_erased(session, pepper, email, phone)
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
    # The referrer's rep keeps the relationship while they have capacity; otherwise (or when
    # the referrer had no known rep) the usual rules decide.
    rep, note = (await assignment.Assigner.load(session)).assign("", preferred=request.rep_id)
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
        assignment_note=note,
    )
    icp.apply((await icp.load(session))[0], prospect)
    await _add_prospect(session, prospect, CREATED_CAUSE, system_actor("referral"), master_keys)
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
        industry=p.industry,
        company_size=p.company_size,
        country=p.country,
        zone=prospect_zone(p.timezone, p.phone).name,
    )


async def reassign(session: AsyncSession, prospect_id: str, rep_id: str) -> Prospect:
    """Give the prospect to another active rep (ops may go over the rep's capacity on purpose)
    and queue the move of what other services own for them: open tasks and the enrollment
    (outreach, which tells the journey), open deals, referral asks; durably
    (services.prospecting.outbox)."""
    prospect = await get_prospect(session, prospect_id)
    await active_rep(session, rep_id)
    if prospect.rep_id == rep_id:
        return prospect
    prospect.rep_id = rep_id
    prospect.assignment_note = "reassigned"
    await queue_rep_move(session, prospect_id, rep_id)
    await session.flush()
    return await get_prospect(session, prospect_id)


async def queue_rep_move(session: AsyncSession, prospect_id: str, rep_id: str) -> None:
    """Tell every service that owns rows of the prospect's rep, through the outbox."""
    await _supersede_rep_moves(session, prospect_id)
    for kind, target, path in REP_MOVES:
        outbox.add(
            session,
            kind=kind,
            target=target,
            path=path.format(prospect_id=prospect_id),
            payload={"rep_id": rep_id},
            subject_id=prospect_id,
        )


async def queue_unassigned(session: AsyncSession, prospect_id: str, why: str) -> None:
    """Tell outreach the prospect has no rep now (theirs was deactivated and nobody had
    room), through the outbox: their journey waits for one instead of going on in the name of
    a rep who left."""
    await _supersede_rep_moves(session, prospect_id)
    outbox.add(
        session,
        kind=REP_UNASSIGNED,
        target="outreach",
        path=f"/internal/prospects/{prospect_id}/unassigned",
        payload={"reason": why},
        subject_id=prospect_id,
    )


async def _supersede_rep_moves(session: AsyncSession, prospect_id: str) -> None:
    """An older move (or loss) of the prospect's rep still waiting must not land after the
    one being queued and undo it."""
    kinds = [kind for kind, _, _ in REP_MOVES] + [REP_UNASSIGNED]
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.kind.in_(kinds),
            OutboxMessage.subject_id == prospect_id,
            OutboxMessage.status == outbox.PENDING,
        )
        .values(status=outbox.SUPERSEDED, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )


CONTACT_CHANGE = "contact_change"  # outreach's POST /internal/prospects/{id}/contact


def queue_contact_change(session: AsyncSession, prospect_id: str) -> None:
    """Tell outreach that the prospect is reached otherwise now (it reads how from here: no
    address waits in the outbox), so that a journey under way follows, through the outbox."""
    outbox.add(
        session,
        kind=CONTACT_CHANGE,
        target="outreach",
        path=f"/internal/prospects/{prospect_id}/contact",
        payload={},
        subject_id=prospect_id,
    )


WAITING_BATCH = 200  # waiting prospects read per call: the rest wait for the next freed place


async def assign_waiting(
    session: AsyncSession, limit: int = WAITING_BATCH, seats: int | None = None
) -> int:
    """Give the prospects left unassigned (every rep of their pool was full) a rep now that one
    may have room: a journey ended, a rep was added, the rules changed. Oldest first; the move
    reaches outreach through the outbox, as a reassignment does. Returns how many got one.

    `limit` bounds how many waiting prospects are read; `seats` stops once that many got a
    rep (one freed seat: 1). A seat fits only the prospects of its rep's pools, so the oldest
    waiting prospect may not be the one it goes to: the next ones are tried, up to `limit`."""
    waiting = (
        await session.scalars(
            select(Prospect)
            .where(Prospect.rep_id.is_(None), Prospect.stage.in_(assignment.NEEDS_A_REP))
            .order_by(Prospect.created_at, Prospect.id)
            .limit(limit)
        )
    ).all()
    if not waiting:
        return 0
    assigner = await assignment.Assigner.load(session)
    given = taken = 0
    for prospect in waiting:
        if seats is not None and taken >= seats:
            break
        # a client waits only while their pool has no rep at all: they take no seat
        seat = assignment.takes_seat(prospect.stage)
        rep, note = assigner.assign(prospect.country, seat=seat)
        if rep is None:
            prospect.assignment_note = note
            continue
        await reassign(session, prospect.id, rep.id)
        prospect.assignment_note = f"{note} (a place came free)" if seat else note
        given, taken = given + 1, taken + seat
    await session.flush()
    return given


async def request_erasure(
    session: AsyncSession, prospect_id: str, pepper: str
) -> tuple[Erasure, bool]:
    """erasure.request_erasure, and the seat an open prospect held goes to one who waits (as
    when a journey ends), in the same transaction."""
    prospect = await session.get(Prospect, prospect_id)
    held_seat = (
        prospect is not None
        and prospect.rep_id is not None
        and prospect.stage in assignment.OPEN_STAGES
    )
    found, created = await erasure.request_erasure(session, prospect_id, pepper)
    if created and held_seat:
        await assign_waiting(session, seats=1)
    return found, created
