"""The audit log (issue 14): who changed what through the API, when, and the changed fields.

One implementation for the four services. Each keeps its entries in its own database (a model
with `AuditColumns`, table `audit_log`), written in the same transaction as the change, so an
entry exists exactly when the change does. An admin reads them with GET /audit on each service.

How an entry is made: the request's session (shared.db.request_session) carries an
`AuditContext` for every POST/PUT/PATCH/DELETE by a key holder (role admin, ops or rep; the
services' own calls to each other and the providers' webhooks are not key holders' changes and
are not audited). Before each flush, every ORM row the request creates, changes or deletes
becomes (or extends) one entry per row: resource (the table), its id, the action, and the
changed fields. A request that changed rows only through bulk statements, which the ORM does not
see, still gets one entry naming its route and the ids in its path.

What an entry keeps, and what it does not:
  * the actor: the key's id (an issued key's id, or a fingerprint of a configured key: never
    the key), its role and, for a rep key, the rep;
  * changed fields, before and after, for fields that are not personal data or secrets. For
    those (names, emails, phones, free text, secrets: `SENSITIVE`; and the columns a model names
    in `__audit_private__`, whose name alone does not say so, e.g. a do-not-contact entry's
    `value`) it records only that the field changed: an audit log outlives the data it audits
    and must not become a second copy of the contact details;
  * `subject_id`, the prospect the row is about, so that erasing a prospect redacts their
    entries' values too (`redact`), keeping who did what and when.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, FromClause, Index, String, event, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Mapper, Session, mapped_column

from shared.db import Session as RequestSession
from shared.db import UTCDateTime, new_id, utcnow
from shared.errors import invalid
from shared.logging import request_id
from shared.requests import OffsetDatetime, with_offset

AUDIT = "closeflow.audit"
ACTOR = "closeflow.actor"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_ROLES = frozenset({"admin", "ops", "rep"})
# personal data and secrets: an entry says that they changed, never what they were or became
SENSITIVE = re.compile(
    r"(^|_)(email|emails|phone|phones|name|first_name|last_name|title|company|address|"
    r"linkedin\w*|body|text|notes|note|excerpt|reply|card|prospect_card|payload|person|"
    r"contact|secret|secrets|\w*_secrets?|key_hash|token|\w*_token|answers|details|context|reason|"
    r"cause|description|summary|message|subject|why|comment|comments|"
    # a qualification answer is the rep's words about the prospect's people; a prospect's free
    # fields hold whatever an import carried (mobile numbers, home towns)
    r"answer|custom)$"
)
# a model's columns that are personal data under a name that says nothing (a model attribute)
PRIVATE_ATTR = "__audit_private__"
MAX_VALUE = 300  # longer values are recorded as changed, without them


class AuditColumns:
    """The columns of a service's audit log (a declarative mixin; the service's model adds its
    base and `__tablename__ = "audit_log"`)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_key_id: Mapped[str] = mapped_column(String(40), default="", index=True)
    actor_role: Mapped[str] = mapped_column(String(10), default="")
    actor_rep_id: Mapped[str | None] = mapped_column(String(64), default=None)
    route: Mapped[str] = mapped_column(String(300), default="")  # "PATCH /deals/{deal_id}"
    resource: Mapped[str] = mapped_column(String(60))
    resource_id: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(10))  # create | update | delete | request
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    subject_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    request_id: Mapped[str] = mapped_column(String(64), default="")

    @classmethod
    def indexes(cls, table: str) -> tuple[Index, ...]:
        return (Index(f"ix_{table}_resource", "resource", "resource_id", "at"),)


@dataclass
class AuditContext:
    model: type[AuditColumns]
    key_id: str
    role: str
    rep_id: str | None
    route: str
    path_ids: dict[str, str]
    request_id: str
    skip: frozenset[str]
    entries: dict[tuple[str, str], Any] = field(default_factory=dict)
    pending: list[tuple[Any, str, str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class AuditConfig:
    """What a service gives create_service_app: its model, and its bookkeeping tables (outboxes,
    counters) whose rows are consequences, not changes anyone made."""

    model: type[AuditColumns]
    skip: frozenset[str] = frozenset()


def begin(session: AsyncSession, request: Request) -> None:
    """Called by the request's session: audit this request's changes when it is a key holder's
    POST/PUT/PATCH/DELETE."""
    config: AuditConfig | None = getattr(request.app.state, "audit", None)
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return
    key_id = getattr(principal, "key_id", "") or ""
    session.info[ACTOR] = actor_name(principal)
    if config is None or request.method not in MUTATING or principal.role not in AUDITED_ROLES:
        return
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    session.info[AUDIT] = AuditContext(
        model=config.model,
        key_id=key_id,
        role=principal.role,
        rep_id=principal.rep_id,
        route=f"{request.method} {template}",
        path_ids={k: str(v) for k, v in request.path_params.items()},
        request_id=request_id.get(),
        skip=config.skip,
    )


def actor_name(principal: object) -> str:
    """How histories and events name a key holder: role (and rep) with the key's id, never the
    key, e.g. "admin (cfg_1a2b...)", "rep r-1 (key_...)"."""
    key_id = getattr(principal, "key_id", "") or ""
    return f"{principal} ({key_id})" if key_id else str(principal)


def request_actor(request: Request, default: str = "") -> str:
    """The key holder making `request` (for the signals it sends), else `default`."""
    principal = getattr(request.state, "principal", None)
    return actor_name(principal) if principal is not None else default


def actor_of(session: AsyncSession | Session, default: str = "journey") -> str:
    """Who is making this session's changes: the key holder of the request, else `default`
    (an activity of the journey, a relay)."""
    return str(session.info.get(ACTOR) or default)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _value(name: str, value: Any, private: frozenset[str]) -> tuple[bool, Any]:
    """(kept, value): sensitive or long values are not kept."""
    if name in private or SENSITIVE.search(name):
        return False, None
    plain = _plain(value)
    try:
        text = json.dumps(plain, default=str)
    except (TypeError, ValueError):
        return False, None
    if len(text) > MAX_VALUE:
        return False, None
    return True, json.loads(text)


def _changes(obj: Any, action: str) -> dict[str, Any]:
    state = inspect(obj)
    private: frozenset[str] = frozenset(getattr(type(obj), PRIVATE_ATTR, ()))
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        name = attr.key
        history = state.attrs[name].history
        if action == "update":
            if not history.has_changes():
                continue
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
            if _plain(before) == _plain(after):
                continue
            kept_b, before_v = _value(name, before, private)
            kept_a, after_v = _value(name, after, private)
            out[name] = (
                {"before": before_v, "after": after_v} if kept_b and kept_a else {"changed": True}
            )
        elif action == "create":
            value = getattr(obj, name, None)
            if value is None:
                continue
            kept, plain = _value(name, value, private)
            out[name] = {"after": plain} if kept else {"changed": True}
    return out


# how many foreign keys a row's prospect may be away (an objection's outcome: objection, deal)
SUBJECT_HOPS = 3


def _subject(session: Session, obj: Any, table: str, hops: int = SUBJECT_HOPS) -> str | None:
    """The prospect the row is about: its own (`prospect_id`, or a prospect's id) or, for a row
    that hangs off another through a foreign key (a deal's meeting, answer, objection, and that
    objection's outcome), the prospect of the row it points at: its entry is redacted with that
    prospect's, as the erasure deletes the row with theirs. Called after the flush: the keys are
    set, the parent is in the session's identity map (or read by its primary key)."""
    if table == "prospects":
        return str(getattr(obj, "id", "") or "") or None
    prospect = getattr(obj, "prospect_id", None)
    if prospect:
        return str(prospect)
    if hops == 0:
        return None
    mapper = inspect(obj).mapper
    for fk in mapper.local_table.foreign_keys:
        parent = _mapped_class(mapper, fk.column.table)
        if parent is None or list(fk.column.table.primary_key) != [fk.column]:
            continue  # not one of this service's rows, or not by its key
        value = getattr(obj, mapper.get_property_by_column(fk.parent).key, None)
        if value is None:
            continue
        row = session.get(parent, value)
        found = row and _subject(session, row, getattr(row, "__tablename__", ""), hops - 1)
        if found:
            return found
    return None


def _mapped_class(mapper: Mapper[Any], table: FromClause) -> type | None:
    """The model of `table` in the same registry (the service's own models)."""
    return next((m.class_ for m in mapper.registry.mappers if m.local_table is table), None)


def _identity(obj: Any) -> str:
    state = inspect(obj)
    key = state.identity or tuple(
        getattr(obj, c.key, None) for c in state.mapper.primary_key if c.key
    )
    return ",".join(str(k) for k in key if k is not None)


def _entry(
    ctx: AuditContext,
    resource: str,
    resource_id: str,
    action: str,
    changes: dict[str, Any],
    subject_id: str | None,
) -> Any:
    return ctx.model(  # type: ignore[call-arg]
        id=new_id(),
        at=utcnow(),
        actor_key_id=ctx.key_id,
        actor_role=ctx.role,
        actor_rep_id=ctx.rep_id,
        route=ctx.route[:300],
        resource=resource[:60],
        resource_id=resource_id[:100],
        action=action,
        changes=changes,
        subject_id=subject_id,
        request_id=ctx.request_id[:64],
    )


def _record(ctx: AuditContext, obj: Any, action: str) -> None:
    """Before the flush: what changed (the values are about to be written)."""
    table = getattr(obj, "__tablename__", "")
    if isinstance(obj, ctx.model) or table in ctx.skip:
        return
    changes = _changes(obj, action)
    if action == "update" and not changes:
        return
    ctx.pending.append((obj, table, action, changes))


def _enter(session: Session, ctx: AuditContext) -> None:
    """After the flush: the rows have their ids; one entry per row and request (a row made,
    then changed, in one request: its fields merged into the one entry)."""
    pending, ctx.pending = ctx.pending, []
    for obj, table, action, changes in pending:
        rid = _identity(obj)
        entry = ctx.entries.get((table, rid))
        if entry is None:
            entry = _entry(ctx, table, rid, action, changes, _subject(session, obj, table))
            session.add(entry)
            ctx.entries[(table, rid or entry.id)] = entry
            continue
        merged = dict(entry.changes)
        for name, change in changes.items():
            earlier = merged.get(name)
            if isinstance(earlier, dict) and "before" in earlier and "after" in change:
                change = {"before": earlier["before"], "after": change["after"]}
            merged[name] = change
        entry.changes = merged
        if action == "delete":
            entry.action = "delete"


@event.listens_for(Session, "before_flush")
def _capture(session: Session, _flush_context: Any, _instances: Any) -> None:
    ctx: AuditContext | None = session.info.get(AUDIT)
    if ctx is None:
        return
    for obj in list(session.new):
        _record(ctx, obj, "create")
    for obj in list(session.dirty):
        if session.is_modified(obj, include_collections=False):
            _record(ctx, obj, "update")
    for obj in list(session.deleted):
        _record(ctx, obj, "delete")


@event.listens_for(Session, "after_flush_postexec")
def _written(session: Session, _flush_context: Any) -> None:
    ctx: AuditContext | None = session.info.get(AUDIT)
    if ctx is not None and ctx.pending:
        _enter(session, ctx)  # flushed by the next flush (commit flushes until clean)


@event.listens_for(Session, "before_commit")
def _request_entry(session: Session) -> None:
    """A request whose changes the ORM did not see (bulk statements) still names its route."""
    ctx: AuditContext | None = session.info.get(AUDIT)
    if ctx is None or ctx.entries:
        return
    session.flush()  # rows the ORM does see come first (and fill ctx.entries)
    if ctx.entries:
        return
    parts = [p for p in ctx.route.split(" ", 1)[-1].split("/") if p and not p.startswith("{")]
    rid = ",".join(ctx.path_ids.values())
    resource = parts[0] if parts else ""
    entry = _entry(ctx, resource, rid, "request", {}, ctx.path_ids.get("prospect_id"))
    session.add(entry)
    ctx.entries[("", rid or entry.id)] = entry


async def redact(session: AsyncSession, model: type[AuditColumns], prospect_id: str) -> int:
    """An erased prospect: their entries keep who, what and when, not the values."""
    result = await session.execute(
        update(model)
        .where(model.subject_id == prospect_id)
        .values(changes={"redacted": "the prospect was erased"})
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- GET /audit -----------------------------------------------------------------------------


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    at: datetime
    actor_key_id: str
    actor_role: str
    actor_rep_id: str | None
    route: str
    resource: str
    resource_id: str
    action: str
    changes: dict[str, Any]
    request_id: str


class AuditPage(BaseModel):
    service: str
    entries: list[AuditEntry]
    next_cursor: str | None


def _cursor(entry: AuditColumns) -> str:
    return base64.urlsafe_b64encode(f"{entry.at.isoformat()}|{entry.id}".encode()).decode()


def _uncursor(value: str) -> tuple[datetime, str]:
    """The time and id a cursor names; a cursor this endpoint could not have given (a time
    without its offset, or none in UTC) is a 422, not a database driver's error (a 500)."""
    try:
        at, _, ident = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return with_offset(datetime.fromisoformat(at)).astimezone(UTC), ident
    except (ValueError, UnicodeDecodeError):
        raise invalid("cursor", "not a cursor this endpoint gave") from None


async def search(
    session: AsyncSession,
    model: type[AuditColumns],
    *,
    actor: str | None,
    role: str | None,
    resource: str | None,
    resource_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[AuditColumns], str | None]:
    """Newest first, `limit` per page; `cursor` (the last page's next_cursor) pages on."""
    query = select(model)
    if actor:
        query = query.where((model.actor_key_id == actor) | (model.actor_rep_id == actor))
    if role:
        query = query.where(model.actor_role == role)
    if resource:
        query = query.where(model.resource == resource)
    if resource_id:
        query = query.where(model.resource_id == resource_id)
    if since:
        query = query.where(model.at >= since)
    if until:
        query = query.where(model.at < until)
    if cursor:
        at, ident = _uncursor(cursor)
        query = query.where((model.at < at) | ((model.at == at) & (model.id < ident)))
    rows = (
        await session.scalars(query.order_by(model.at.desc(), model.id.desc()).limit(limit + 1))
    ).all()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _cursor(rows[limit - 1])


def audit_router(service: str, config: AuditConfig) -> APIRouter:
    """GET /audit for admins (the policy is added by create_service_app)."""
    router = APIRouter(tags=["audit"])

    @router.get("/audit", response_model=AuditPage)
    async def read_audit(
        session: RequestSession,
        actor: str | None = Query(None, max_length=64, description="a key id (or a rep id)"),
        role: str | None = Query(None, max_length=10, description="admin, ops or rep"),
        resource: str | None = Query(
            None, max_length=60, description="a table, e.g. deals, prospects"
        ),
        resource_id: str | None = Query(None, max_length=100),
        since: OffsetDatetime | None = Query(None, description="inclusive, with a UTC offset"),
        until: OffsetDatetime | None = Query(None, description="exclusive, with a UTC offset"),
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None, max_length=200),
    ) -> AuditPage:
        """Who changed what in this service, newest first (each service keeps its own log)."""
        if since is not None and until is not None and since >= until:
            raise invalid("since", "must be before until")
        rows, next_cursor = await search(
            session,
            config.model,
            actor=actor,
            role=role,
            resource=resource,
            resource_id=resource_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return AuditPage(
            service=service,
            entries=[AuditEntry.model_validate(r) for r in rows],
            next_cursor=next_cursor,
        )

    return router


def install(app: FastAPI, config: AuditConfig) -> None:
    """Audit the app's requests (its request sessions call `begin`)."""
    app.state.audit = config
    app.state.session_hooks = [*getattr(app.state, "session_hooks", []), begin]


def create_audit_table(op: Any) -> None:
    """The `audit_log` table as first released, for each service's migration (one definition,
    frozen here: later changes get migrations of their own)."""
    import sqlalchemy as sa

    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_key_id", sa.String(40), nullable=False),
        sa.Column("actor_role", sa.String(10), nullable=False),
        sa.Column("actor_rep_id", sa.String(64), nullable=True),
        sa.Column("route", sa.String(300), nullable=False),
        sa.Column("resource", sa.String(60), nullable=False),
        sa.Column("resource_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_key_id", "audit_log", ["actor_key_id"])
    op.create_index("ix_audit_log_subject_id", "audit_log", ["subject_id"])
    op.create_index("ix_audit_log_resource", "audit_log", ["resource", "resource_id", "at"])


def forget_audited_values(op: Any, resource: str, column: str) -> None:
    """For a migration: the entries of `resource` made before its `column` was sensitive
    (SENSITIVE, or a model's __audit_private__) say it changed, as entries made from then on do, not what it was."""
    import sqlalchemy as sa

    audit = sa.table(
        "audit_log", sa.column("id", sa.String()), sa.column("resource", sa.String()),
        sa.column("changes", sa.JSON()),
    )  # fmt: skip
    connection = op.get_bind()
    entries = connection.execute(
        sa.select(audit.c.id, audit.c.changes).where(audit.c.resource == resource)
    ).all()
    changed = {"changed": True}
    for entry_id, changes in entries:
        if isinstance(changes, dict) and changes.get(column, changed) != changed:
            kept = {**changes, column: changed}
            connection.execute(audit.update().where(audit.c.id == entry_id).values(changes=kept))
