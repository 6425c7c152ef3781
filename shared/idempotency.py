"""`Idempotency-Key` on the public API's creating requests (IETF draft "The Idempotency-Key HTTP
Header Field", as Stripe-like APIs do it): a client that retries a POST after a lost answer
(a timeout, a reset connection, a proxy's 502) gets the first answer again instead of a second
thing created.

A route offers it by naming one of the dependencies below (they also put the header in the
OpenAPI); the middleware does the rest, before and after the route:

- no header: nothing changes. A key is 1-255 printable ASCII characters, else 400
  `invalid_idempotency_key`. A key is the caller's own (the API key's id), for one method and
  path: what another key holder sent with the same value is another key.
- first request: claimed (a row of the service's `idempotency_keys` table, committed at once so
  that a concurrent repeat sees it: 409 `idempotency_key_in_flight` with Retry-After), then run;
  the claim's lease is renewed while the route runs, however long, and frees the key LEASE after
  a process that died holding it.
  The route's first commit marks the row as done in that same transaction: a crash between the
  two cannot leave a change without its record. Its answer (below 500) is then stored with it.
- repeat, same body (sha256 of the JSON, whatever its key order): the stored answer, with
  `Idempotent-Replayed: true`; the route does not run (no row, signal, event or audit entry).
  Same key, another body: 422 `idempotency_key_reused`.
- a 5xx is not an answer kept: before the commit the key is free again (nothing happened);
  after it (the change is stored, a follow-up such as a journey signal failed) the route is run
  again as it declared: `IdempotentResume` (it finds what the first attempt created through
  `resumed()` and only finishes the follow-up), `IdempotentRepeat` (a repeat of the same body
  already creates nothing: the route's own rule), else 409 `idempotency_outcome_lost`.
- `IdempotentSealed`: a route whose answer holds a secret shown once (a new API key, a
  subscription's signing secret), as `Idempotent` but its answer is stored sealed with a key
  derived from the client's `Idempotency-Key`, which is never stored (shared/sealed_answers.py):
  the retry that presents it gets the same secret again; the database alone does not.
- records expire after settings.idempotency_ttl_seconds; each new key deletes a few expired
  ones, which keeps the table bounded. An erasure deletes at once every record whose answer
  names the person (`forget_answers`): a prospect's creation answered their name and email.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    String,
    Text,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import authenticate, presented_key
from shared.codec import MasterKey
from shared.db import UTCDateTime, new_id, utcnow
from shared.errors import RETRY_AFTER, AppError, error_body
from shared.sealed_answers import open_answer, seal_answer
from shared.served_routes import served_routes

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
# how long a claim holds its key past its last renewal: renewed while its request runs (an
# import of any size keeps its key), so this only bounds how long a process that died holding
# the key keeps it. Not a setting: no request's length depends on it (app.state.idempotency_lease
# overrides it in tests)
LEASE = timedelta(minutes=5)
# expired records deleted per new key: more than arrive, so the table shrinks to what is live
PURGE_BATCH = 100
TABLE = "idempotency_keys"


class Unfinished(Enum):
    """What a retry does when the first attempt's change is stored but its answer was a 5xx."""

    RESUME = "resume"  # the route finishes the first attempt's follow-up (see `resumed`)
    REPEAT = "repeat"  # the route's own rule: the same body again creates nothing
    LOST = "lost"  # nothing follows the commit: answer 409 idempotency_outcome_lost


class IdempotencyColumns:
    """The columns of a service's idempotency records (a declarative mixin; the service's model
    adds its base and `__tablename__ = "idempotency_keys"`)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # sha256 of (caller's key id, method, path, key): the client's key is not kept as sent
    scope: Mapped[str] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request body
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # the route's change is stored (set in the transaction that stored it)
    committed: Mapped[bool] = mapped_column(Boolean, default=False)
    # what the route noted of its change (`remember`), for a retry that finishes it
    refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)  # set once answered
    body: Mapped[str | None] = mapped_column(Text, default=None)
    content_type: Mapped[str] = mapped_column(String(100), default="")


def create_idempotency_table(op: Any) -> None:
    """The `idempotency_keys` table as first released, for each service's migration."""
    import sqlalchemy as sa

    op.create_table(
        TABLE,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("committed", sa.Boolean(), nullable=False),
        sa.Column("refs", sa.JSON(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(100), nullable=False),
    )
    op.create_index(f"ix_{TABLE}_expires_at", TABLE, ["expires_at"])


# --- what routes declare ------------------------------------------------------------------------

_DESCRIPTION = (
    "Optional: 1-255 printable ASCII characters, unique per creating request. A retry with the "
    "same key and body gets the first answer again (header Idempotent-Replayed: true) and "
    "creates nothing; the same key with another body is refused (422 idempotency_key_reused). "
    "Kept for CLOSEFLOW_IDEMPOTENCY_TTL_SECONDS (24 h by default)."
)
_Key = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY,
        pattern=KEY_PATTERN,
        description=_DESCRIPTION,
    ),
]


def _resume(_: _Key = None) -> None:
    """The route finishes a first attempt's follow-up (it reads `resumed`)."""


def _repeat(_: _Key = None) -> None:
    """The route's repeat of the same body creates nothing of itself."""


def _lost(_: _Key = None) -> None:
    """Nothing follows the route's commit."""


def _sealed(_: _Key = None) -> None:
    """The answer holds a secret shown once: kept sealed for the retry; nothing follows the
    route's commit."""


@dataclass(frozen=True)
class Policy:
    """What a route declared: what a retry does after a 5xx, and whether its answer is kept
    sealed (it holds a secret)."""

    unfinished: Unfinished
    sealed: bool = False


_POLICIES: dict[Callable[..., None], Policy] = {
    _resume: Policy(Unfinished.RESUME),
    _repeat: Policy(Unfinished.REPEAT),
    _lost: Policy(Unfinished.LOST),
    _sealed: Policy(Unfinished.LOST, sealed=True),
}
IdempotentResume = Depends(_resume)
IdempotentRepeat = Depends(_repeat)
Idempotent = Depends(_lost)
IdempotentSealed = Depends(_sealed)


@dataclass
class Claim:
    """This request's key, on request.state while the route runs."""

    record_id: str
    model: type[IdempotencyColumns]
    refs: dict[str, Any] = field(default_factory=dict)
    resumed: dict[str, Any] | None = None  # the first attempt's refs when finishing it
    committed: bool = False
    seal: Callable[[bytes], str] | None = None  # how its answer is stored, when sealed


def remember(request: Request, **refs: Any) -> None:
    """Note what the route created (ids), before its commit: a retry of a first attempt whose
    follow-up failed reads them from `resumed`."""
    claim: Claim | None = getattr(request.state, "idempotency", None)
    if claim is not None:
        claim.refs.update(refs)


def resumed(request: Request) -> dict[str, Any] | None:
    """What the first attempt with this request's key noted (`remember`) when its change is
    stored and only its follow-up is to be finished; None otherwise (run as new)."""
    claim: Claim | None = getattr(request.state, "idempotency", None)
    return claim.resumed if claim is not None else None


def mark_committed(session: AsyncSession, request: Request) -> None:
    """A request session hook: the first commit of the request's session marks its key's
    record done, in the same transaction."""
    claim: Claim | None = getattr(request.state, "idempotency", None)
    if claim is None or claim.committed:
        return
    table = claim.model.__table__  # type: ignore[attr-defined]

    def before_commit(sync: Session) -> None:
        if not claim.committed:
            sync.execute(
                update(table)
                .where(table.c.id == claim.record_id)
                .values(committed=True, refs=claim.refs)
            )

    def after_commit(_: Session) -> None:
        claim.committed = True  # a commit that fails leaves it unmarked, as it left the change

    event.listen(session.sync_session, "before_commit", before_commit)
    event.listen(session.sync_session, "after_commit", after_commit)


def install(app: FastAPI, model: type[IdempotencyColumns]) -> None:
    app.state.idempotency_model = model
    app.state.session_hooks = [*getattr(app.state, "session_hooks", []), mark_committed]


# --- the middleware -----------------------------------------------------------------------------


def _error(status: int, code: str, message: str, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER} if retry else None
    return JSONResponse(error_body(code, message, []), status_code=status, headers=headers)


def fingerprint(query: bytes, body: bytes) -> str:
    """The request's sha256: its query string (e.g. an import's format) and its body, JSON as
    parsed (key order and spacing aside), any other body as sent."""
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        pass  # not JSON (a CSV import), or nested too deep to parse: its bytes
    return hashlib.sha256(query + b"?" + body).hexdigest()


def _scope_of(key_id: str, method: str, path: str, key: str) -> str:
    return hashlib.sha256("\n".join((key_id, method, path, key)).encode()).hexdigest()


Policies = list[tuple[frozenset[str], re.Pattern[str], Policy]]


def route_policies(app: FastAPI) -> Policies:
    """Each route that names a policy: its methods, its full path's pattern, that policy."""
    found: Policies = []
    for served in served_routes(app):
        for dep in served.route.dependencies:
            if dep.dependency in _POLICIES:
                pattern = compile_path(served.path)[0]
                found.append((served.methods, pattern, _POLICIES[dep.dependency]))
    return found


@dataclass
class _Outcome:
    """What the claim found: a response to give at once, or a claim to run the route with."""

    response: Response | None = None
    replay: IdempotencyColumns | None = None
    claim: Claim | None = None


class IdempotencyKeys:
    """The middleware (see the module docstring). Inside the body cap, so the body it reads to
    fingerprint is capped as the route's is."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app = app
        self.fastapi = fastapi
        self.policies: Policies | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        key = Headers(scope=scope).get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if self.policies is None:  # every route is in place by the first request
            self.policies = route_policies(self.fastapi)
        method, path = scope["method"], str(scope["path"])
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):  # a path under a proxy's prefix: the app's own path
            path = path[len(root) :]
        offered = [p for ms, rx, p in self.policies if method in ms and rx.match(path)]
        if not offered:  # a route that creates nothing: the header means nothing to it
            await self.app(scope, receive, send)
            return
        matched = offered[0]
        if not _KEY.match(key):
            await _error(
                400,
                "invalid_idempotency_key",
                f"{HEADER} must be 1 to {MAX_KEY} printable ASCII characters",
            )(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            principal = await authenticate(request, presented_key(request))
        except AppError:  # the route answers 401 as it would without the header
            await self.app(scope, receive, send)
            return
        body = await request.body()
        replay_receive = _replaying(body, receive)
        scope_id = _scope_of(principal.key_id or str(principal), method, path, key)
        outcome = await self._claim(
            scope_id, fingerprint(scope.get("query_string", b""), body), matched.unfinished
        )
        if outcome.response is not None:
            await outcome.response(scope, replay_receive, send)
            return
        if outcome.replay is not None:
            stored = outcome.replay.body or ""
            if matched.sealed:
                opened = open_answer(stored, key, scope_id, self._master_keys)
                if opened is None:
                    await _unreadable()(scope, replay_receive, send)
                    return
                stored = opened.decode("utf-8", "replace")
            await _replayed(outcome.replay, stored)(scope, replay_receive, send)
            return
        assert outcome.claim is not None
        if matched.sealed:
            keys = self._master_keys
            outcome.claim.seal = lambda answer: seal_answer(answer, key, scope_id, keys)
        scope.setdefault("state", {})["idempotency"] = outcome.claim
        await self._run(outcome.claim, scope, replay_receive, send)

    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self.fastapi.state.sessions
        return sessions

    @property
    def _lease(self) -> timedelta:
        lease: timedelta = getattr(self.fastapi.state, "idempotency_lease", LEASE)
        return lease

    @property
    def _master_keys(self) -> list[MasterKey]:
        """Read only for a sealed route's key: parsed from the settings at each use."""
        keys: list[MasterKey] = self.fastapi.state.settings.master_keys
        return keys

    @property
    def _model(self) -> type[IdempotencyColumns]:
        model: type[IdempotencyColumns] = self.fastapi.state.idempotency_model
        return model

    async def _claim(self, scope_id: str, fp: str, unfinished: Unfinished) -> _Outcome:
        model = self._model
        table = model.__table__  # type: ignore[attr-defined]
        now = utcnow()
        ttl = timedelta(seconds=self.fastapi.state.settings.idempotency_ttl_seconds)
        async with self._sessions()() as session:
            row = await session.scalar(
                select(model).where(table.c.scope == scope_id).with_for_update()
            )
            if row is not None and row.expires_at <= now:
                await session.delete(row)
                await session.flush()
                row = None
            if row is None:
                await _purge(session, table, now)
                row = model()
                row.id = new_id()
                row.scope, row.fingerprint = scope_id, fp
                row.created_at, row.expires_at, row.locked_until = now, now + ttl, now + self._lease
                row.committed, row.refs, row.content_type = False, {}, ""
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:  # a concurrent first request claimed it just now
                    return _Outcome(response=_in_flight())
                return _Outcome(claim=Claim(row.id, model))
            if row.fingerprint != fp:
                return _Outcome(
                    response=_error(
                        422,
                        "idempotency_key_reused",
                        f"this {HEADER} was used for a request with another body: send a new "
                        "key for a new request",
                    )
                )
            if row.status_code is not None:
                return _Outcome(replay=row)
            if row.locked_until is not None and row.locked_until > now:
                return _Outcome(response=_in_flight())
            if row.committed and unfinished is Unfinished.LOST:
                return _Outcome(
                    response=_error(
                        409,
                        "idempotency_outcome_lost",
                        f"the first request with this {HEADER} made its change, but the "
                        "service stopped before answering it: look the result up instead of "
                        "retrying",
                    )
                )
            # a first attempt that failed after its commit (or whose process died): take it on
            row.locked_until = now + self._lease
            claim = Claim(row.id, model, refs=dict(row.refs), committed=row.committed)
            if row.committed and unfinished is Unfinished.RESUME:
                claim.resumed = dict(row.refs)
            await session.commit()
            return _Outcome(claim=claim)

    async def _run(self, claim: Claim, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        renewing = asyncio.create_task(self._renew(claim))

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    assert start is not None
                    await _stopped(renewing)
                    await self._settle(claim, start, b"".join(chunks))
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks)})

        try:
            await self.app(scope, receive, keep)
        except BaseException:
            await _stopped(renewing)
            await self._release(claim)
            raise
        finally:
            await _stopped(renewing)

    async def _renew(self, claim: Claim) -> None:
        """Hold the key while the request runs: the lease pushed on at a third of its length."""
        table = self._model.__table__  # type: ignore[attr-defined]
        lease = self._lease
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                async with self._sessions()() as session:
                    await session.execute(
                        update(table)
                        .where(table.c.id == claim.record_id, table.c.status_code.is_(None))
                        .values(locked_until=utcnow() + lease)
                    )
                    await session.commit()
            except Exception:  # the database away a moment: the next renewal tries again
                log.warning("renewing an idempotency key's lease failed", exc_info=True)

    async def _settle(self, claim: Claim, start: Message, body: bytes) -> None:
        status = int(start["status"])
        if status >= 500:
            await self._release(claim)
            return
        table = self._model.__table__  # type: ignore[attr-defined]
        content_type = Headers(raw=start.get("headers", [])).get("content-type", "")
        async with self._sessions()() as session:
            await session.execute(
                update(table)
                .where(table.c.id == claim.record_id)
                .values(
                    status_code=status,
                    body=claim.seal(body) if claim.seal else body.decode("utf-8", "replace"),
                    content_type=content_type[:100],
                    locked_until=None,
                )
            )
            await session.commit()

    async def _release(self, claim: Claim) -> None:
        """A 5xx or an error: before any commit the key is free again; after one, the record
        stays for the retry that finishes it."""
        table = self._model.__table__  # type: ignore[attr-defined]
        async with self._sessions()() as session:
            where = table.c.id == claim.record_id
            if claim.committed:
                await session.execute(update(table).where(where).values(locked_until=None))
            else:
                await session.execute(delete(table).where(where))
            await session.commit()


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _in_flight() -> JSONResponse:
    return _error(
        409,
        "idempotency_key_in_flight",
        f"a request with this {HEADER} is still being processed: retry after a moment",
        retry=True,
    )


def _unreadable() -> JSONResponse:
    return _error(
        409,
        "idempotency_outcome_lost",
        f"the first request with this {HEADER} made its change, but its answer, kept sealed, "
        "can no longer be opened (the payload master key it was sealed with is no longer "
        "configured): look the result up instead of retrying",
    )


def _replayed(row: IdempotencyColumns, body: str) -> Response:
    return Response(
        body,
        status_code=int(row.status_code or 200),
        media_type=row.content_type or None,
        headers={REPLAYED: "true"},
    )


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the route the body the middleware read already, then waits on the
    client's (for its disconnect) as the original would."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _purge(session: AsyncSession, table: Any, now: datetime) -> None:
    expired = select(table.c.id).where(table.c.expires_at <= now).limit(PURGE_BATCH)
    await session.execute(delete(table).where(table.c.id.in_(expired)))


async def forget_answers(
    session: AsyncSession, model: type[IdempotencyColumns], mentioning: Iterable[str | None]
) -> int:
    """Delete the records whose stored answer mentions one of these (an erased person's id,
    email and phone, the ids of their deals): an answer kept for a retry must not outlive
    their erasure. A scan of a day's records, in any case: erasures are rare. How many."""
    needles = sorted({n.lower() for n in mentioning if n})
    if not needles:
        return 0
    table = model.__table__  # type: ignore[attr-defined]
    body = func.lower(table.c.body)
    named = or_(*(body.contains(n, autoescape=True) for n in needles))
    result = await session.execute(delete(table).where(named))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
