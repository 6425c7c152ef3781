"""Watching the reply mailbox over IMAP: IDLE when the server offers it, polling otherwise.

Every new message goes through the inbound webhooks' own path (receive_email: matched to a
prospect by In-Reply-To / References, the reply token or the sender; an out-of-office pauses,
STOP opts out, a bounce (a delivery status notification) is the email event it reports,
anything else is a reply) and is stored once in the inbox (unique on
`imap` + its Message-ID, or the hash of its bytes when it has none).

Never lost, never twice, across restarts. The mailbox's row (`imap_mailboxes`) keeps its
UIDVALIDITY and the last UID whose message is stored; each message is stored and the row moved
to its UID in ONE transaction, so a crash leaves either both or neither, and the next start
fetches from the UID after the row's. A server whose UIDVALIDITY changed (the folder was
recreated, the server migrated) has renumbered its messages: the whole folder is read again and
the Message-IDs keep what was stored from being stored twice. Messages are fetched with
BODY.PEEK[]: nothing is marked read, so people reading the same mailbox still see them as new.
Only a message's first FETCH_BYTES are fetched (the text comes before the attachments).

One replica at a time. Every outreach replica runs a watcher; the row is also a lease
(`lease_owner`, `lease_until`): the one that holds it watches, the others wait and take over
when it lapses (a replica that died) or is handed back (a replica that stopped). Each message's
transaction moves the row only while this replica still owns it, so a replica that lost its
lease (paused past it) stores nothing more.

IDLE, with polling as the fallback: when the server offers IDLE (and CLOSEFLOW_IMAP_IDLE is on)
the watcher waits in IDLE and fetches when the server pushes; each IDLE lasts at most
CLOSEFLOW_IMAP_POLL_SECONDS, so a connection that went quiet (a NAT that dropped it) is still
read that often. Without IDLE it polls every CLOSEFLOW_IMAP_POLL_SECONDS. A lost connection or
a refused command reconnects with backoff; the password is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import aioimaplib
from fastapi import FastAPI
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.outreach import models
from services.outreach.inbox import Outbound, Stored, _insert, reject
from services.outreach.mailbox.message import PROVIDER, inbound_email
from services.outreach.webhooks.common import receive_email
from shared.app import run_during_lifespan
from shared.settings import Settings

log = logging.getLogger(__name__)
# aioimaplib logs every byte it receives at DEBUG: the messages, personal data. Never that.
logging.getLogger("aioimaplib").setLevel(logging.INFO)
T = TypeVar("T")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
_FETCHED_UID = re.compile(rb"\bUID (\d+)\b", re.I)
_FETCHED_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)\b", re.I)
# a folder name sent as is; any other ("[Gmail]/Sent Mail") goes as a quoted string
_ATOM = re.compile(r"[A-Za-z0-9._/&+-]+")
COMMAND_TIMEOUT = 30.0  # one IMAP command (a large message's fetch included)
# what is fetched of a message: the text a person wrote comes before any attachment. Fetched
# whole, 25 MB of attachments are held and parsed in memory, and over a slow link the fetch can
# outlast the lease (another replica then takes the mailbox over and starts it again)
FETCH_BYTES = 1024 * 1024
MAX_BACKOFF = 60.0
# a message whose handling failed this many times in a row, the database answering, is set
# aside (rejected_items) and the cursor moved past it: one message must not stop the mailbox
MESSAGE_ATTEMPTS = 3


class MailboxError(Exception):
    """The server refused something (login, the folder, STARTTLS): said without the password."""


class LeaseLost(Exception):
    """Another replica watches the mailbox now."""


class MessageNotStored(Exception):
    """Handling one message failed; tried again after the backoff (said without its content)."""


def described(err: BaseException) -> str:
    """An error as the log and GET /mailbox show it: SQLAlchemy's own text carries the
    statement's parameters (addresses, a message's text), so of a database error only its
    types and the driver's first line."""
    if isinstance(err, DBAPIError):
        first = str(err.orig).splitlines()[0] if str(err.orig) else ""
        return f"{type(err).__name__} ({type(err.orig).__name__}: {first})"[:500]
    if isinstance(err, SQLAlchemyError):
        return type(err).__name__
    return f"{type(err).__name__}: {err}"[:500]


def tied_to_message(err: Exception) -> bool | None:
    """Whether a failure to store a message is the message's own doing. True: a value of it the
    database refuses (whatever was not checked where it entered): never better on another try.
    False: the database or the server (down, restarting, a missing migration, a lost lease):
    tried again for as long as it takes, never skipped. None: anything else (a unique key taken
    meanwhile, a parameter that could not be bound, an error of our code on what the message
    holds): tried again, set aside only after MESSAGE_ATTEMPTS failures in a row."""
    if isinstance(err, DataError):
        return True
    if isinstance(err, IntegrityError) or type(err) is StatementError:
        return None
    if isinstance(err, (SQLAlchemyError, OSError, TimeoutError, LeaseLost, MailboxError)):
        return False
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


def mailbox_key(settings: Settings) -> str:
    """What names the watched mailbox in `imap_mailboxes` (and in the inbox events)."""
    s = settings
    return f"{s.imap_username}@{s.imap_host}:{imap_port(s)}/{s.imap_mailbox}"[:400]


def imap_port(settings: Settings) -> int:
    return settings.imap_port or (993 if settings.imap_tls == "tls" else 143)


def lease_seconds(settings: Settings) -> float:
    """Long enough for a whole wait (IDLE or poll) and a batch after it; a replica that died
    is taken over after this long."""
    return max(30.0, 3 * settings.imap_poll_seconds)


# --- the row: cursor and lease ------------------------------------------------------------------


async def claim(session: AsyncSession, key: str, owner: str, lease: float) -> bool:
    """Take (or keep) the mailbox's lease; False while another replica holds it."""
    now = utcnow()
    row = models.ImapMailbox
    await session.execute(
        _insert(session, row)
        .values(mailbox=key, last_uid=0, processed=0, lease_owner="", updated_at=now)
        .on_conflict_do_nothing(index_elements=["mailbox"])
    )
    taken = await session.execute(
        update(row)
        .where(
            row.mailbox == key,
            or_(row.lease_owner == owner, row.lease_until.is_(None), row.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease), updated_at=now)
    )
    return int(cast(CursorResult[Any], taken).rowcount or 0) == 1


async def advance(
    session: AsyncSession,
    key: str,
    owner: str,
    lease: float,
    uidvalidity: int,
    uid: int,
    *,
    counted: bool = True,
) -> None:
    """Move the cursor to `uid` (in the transaction that stored its message) while this replica
    still holds the lease; LeaseLost otherwise (the caller rolls back)."""
    now = utcnow()
    row = models.ImapMailbox
    moved = await session.execute(
        update(row)
        .where(row.mailbox == key, row.lease_owner == owner)
        .values(
            uidvalidity=uidvalidity,
            last_uid=uid,
            processed=row.processed + (1 if counted else 0),
            lease_until=now + timedelta(seconds=lease),
            updated_at=now,
        )
    )
    if int(cast(CursorResult[Any], moved).rowcount or 0) != 1:
        raise LeaseLost(key)


async def release(session: AsyncSession, key: str, owner: str) -> None:
    """Hand the lease back (a replica stopping): another one may take it at once."""
    row = models.ImapMailbox
    await session.execute(
        update(row)
        .where(row.mailbox == key, row.lease_owner == owner)
        .values(lease_owner="", lease_until=None, updated_at=utcnow())
    )


# --- IMAP ---------------------------------------------------------------------------------------


def tls_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.imap_tls_ca or None)


async def _starttls(client: aioimaplib.IMAP4, context: ssl.SSLContext, host: str) -> None:
    """Upgrade the connection in place (RFC 2595): aioimaplib has no STARTTLS of its own."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise MailboxError(f"{host} offers no STARTTLS (CLOSEFLOW_IMAP_TLS=starttls)")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    answer = await asyncio.wait_for(protocol.execute(command), COMMAND_TIMEOUT)
    if answer.result != "OK":
        raise MailboxError(f"{host} refused STARTTLS: {said(answer)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=host
    )
    # what the server offered in clear text may have been tampered with: ask again
    await asyncio.wait_for(protocol.capability(), COMMAND_TIMEOUT)


def said(response: Any) -> str:
    lines = [bytes(line) for line in getattr(response, "lines", [])]
    return (lines[-1] if lines else b"").decode("utf-8", "replace")[:200]


def _uidvalidity(response: Any) -> int:
    for line in response.lines:
        if found := _UIDVALIDITY.search(bytes(line)):
            return int(found.group(1))
    raise MailboxError("the server's SELECT answer has no UIDVALIDITY")


def search_uids(response: Any, after: int) -> list[int]:
    """The UIDs of a UID SEARCH answer above `after` ("n:*" always matches the last message,
    even when its UID is below n)."""
    found: set[int] = set()
    for line in response.lines[:-1]:  # the last one is the tagged status's text
        # aioimaplib hands the untagged "* SEARCH 1 2" over as "1 2"
        found.update(int(word) for word in bytes(line).split() if word.isdigit())
    return sorted(uid for uid in found if uid > after)


def _body(response: Any, uid: int) -> tuple[bytes, int] | None:
    """The message (its first FETCH_BYTES) of a UID FETCH answer and its whole size, or None
    when it was expunged meanwhile."""
    lines = list(response.lines)
    for index, line in enumerate(lines[:-1]):
        found = _FETCHED_UID.search(bytes(line))
        literal = lines[index + 1]
        if found and int(found.group(1)) == uid and isinstance(literal, bytearray):
            size = _FETCHED_SIZE.search(bytes(line))
            return bytes(literal), int(size.group(1)) if size else len(literal)
    return None


async def open_folder(
    settings: Settings, folder: str, on_lost: Callable[[], object] | None = None
) -> tuple[aioimaplib.IMAP4, int]:
    """A logged-in connection to the settings' IMAP account with `folder` selected, and the
    folder's UIDVALIDITY. `on_lost`: called when the connection drops. (SELECT, not EXAMINE:
    aioimaplib allows searching only after SELECT; searching and BODY.PEEK change no flag.)"""
    s = settings
    host, port = s.imap_host, imap_port(s)
    if s.imap_tls == "tls":
        client = aioimaplib.IMAP4_SSL(
            host, port, timeout=COMMAND_TIMEOUT, ssl_context=tls_context(s)
        )
    else:
        client = aioimaplib.IMAP4(host, port, timeout=COMMAND_TIMEOUT)
    if on_lost is not None:
        client.protocol.conn_lost_cb = lambda _exc: on_lost()
    await client.wait_hello_from_server()
    if s.imap_tls == "starttls":
        await _starttls(client, tls_context(s), host)
    answer = await client.login(s.imap_username, s.imap_password.get_secret_value())
    if answer.result != "OK":
        raise MailboxError(f"{host} refused the login of {s.imap_username}: {said(answer)}")
    # after login the server may offer more (or less: IDLE) than before
    await asyncio.wait_for(client.protocol.capability(), COMMAND_TIMEOUT)
    name = folder if _ATOM.fullmatch(folder) else aioimaplib.quoted(folder)
    answer = await client.select(name)
    if answer.result != "OK":
        raise MailboxError(f"{host} has no folder {folder!r}: {said(answer)}")
    return client, _uidvalidity(answer)


class MailboxWatcher:
    """The reply mailbox's watcher, run in the outreach app's lifespan (app.state.mailbox).

    `mode` says what it does now (standby: another replica holds the lease; reading new
    messages; waiting in idle or between polls (poll); retrying: the server could not be
    reached or refused); the counters are what tests and operators read."""

    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        deliver: Callable[[Sequence[Outbound]], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._deliver = deliver
        self.key = mailbox_key(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]
        self.poll_seconds = settings.imap_poll_seconds
        self.lease = lease_seconds(settings)
        self.mode = "stopped"
        self.processed = self.idle_wakeups = self.polls = self.errors = self.set_aside = 0
        self.last_error = ""
        # the message whose handling is failing: (uidvalidity, uid, failed attempts in a row)
        self._failing: tuple[int, int, int] | None = None
        self._stopping = asyncio.Event()
        self._lost = asyncio.Event()  # the connection dropped: stop waiting on it
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"imap watcher {self.key}")

    async def stop(self) -> None:
        """The message in hand is finished and recorded; the lease is handed back."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), COMMAND_TIMEOUT)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with self._sessions()() as session:
                await release(session, self.key, self.owner)
                await session.commit()
        except Exception as err:  # the database is away: the lease lapses on its own
            log.warning("imap %s: lease not handed back (%s)", self.key, type(err).__name__)
        self.mode = "stopped"

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                async with self._sessions()() as session:
                    held = await claim(session, self.key, self.owner, self.lease)
                    await session.commit()
                if not held:
                    self.mode = "standby"
                    await self._pause(min(self.poll_seconds, self.lease / 3))
                    continue
                await self._watch()
                backoff = 1.0
            except LeaseLost:
                log.info("imap %s: another replica watches it now", self.key)
            except Exception as err:
                self.errors += 1
                self.mode = "retrying"
                # the type and the server's words, never the settings (the password is one) nor
                # a statement's parameters (a message's addresses)
                self.last_error = described(err)
                log.warning("imap %s: %s; again in %.0f s", self.key, self.last_error, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF, max(self.poll_seconds, 1.0))

    async def _pause(self, seconds: float) -> None:
        """Sleep, woken early by stop or a dropped connection."""
        await self._until_stopped(asyncio.sleep(seconds))

    async def _until_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`, abandoned (None) when the watcher stops or the connection drops first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stopping.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, stop, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, lost):
                waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    # --- one connection -----------------------------------------------------------------------

    async def _connect(self) -> tuple[aioimaplib.IMAP4, int]:
        # an event of this connection's own: a previous one closing late must not end this one
        lost = self._lost = asyncio.Event()
        return await open_folder(self._settings, self._settings.imap_mailbox, lost.set)

    async def _watch(self) -> None:
        client, uidvalidity = await self._connect()
        try:
            idle = self._settings.imap_idle and client.has_capability("IDLE")
            last = await self._cursor(uidvalidity)
            while not self._stopping.is_set():
                if self._lost.is_set():
                    raise MailboxError("the connection to the server was lost")
                self.mode = "reading"
                last = await self._take_new(client, uidvalidity, last)
                async with self._sessions()() as session:  # renewed each round
                    held = await claim(session, self.key, self.owner, self.lease)
                    await session.commit()
                if not held:
                    raise LeaseLost(self.key)
                if idle:
                    await self._idle(client)
                else:
                    self.mode = "poll"
                    await self._pause(self.poll_seconds)
                    self.polls += 1
        finally:
            if not self._lost.is_set():
                try:
                    await asyncio.wait_for(client.logout(), 5)
                except Exception:  # already gone: nothing to say goodbye to
                    pass

    async def _cursor(self, uidvalidity: int) -> int:
        """The last UID already stored, 0 when the folder's UIDs were renumbered."""
        async with self._sessions()() as session:
            row = await session.scalar(
                select(models.ImapMailbox).where(models.ImapMailbox.mailbox == self.key)
            )
            if row is None or row.lease_owner != self.owner:
                raise LeaseLost(self.key)
            if row.uidvalidity == uidvalidity:
                return int(row.last_uid)
            if row.uidvalidity is not None:
                log.warning(
                    "imap %s: UIDVALIDITY %s -> %s: reading the folder again (Message-IDs "
                    "keep what was stored from being stored twice)",
                    self.key,
                    row.uidvalidity,
                    uidvalidity,
                )
            await advance(session, self.key, self.owner, self.lease, uidvalidity, 0, counted=False)
            await session.commit()
            return 0

    async def _take_new(self, client: aioimaplib.IMAP4, uidvalidity: int, last: int) -> int:
        answer = await client.uid_search(f"UID {last + 1}:*", charset=None)
        if answer.result != "OK":
            raise MailboxError(f"UID SEARCH refused: {said(answer)}")
        for uid in search_uids(answer, last):
            if self._stopping.is_set():
                break
            await self._take(client, uidvalidity, uid)
            last = uid
        return last

    async def _take(self, client: aioimaplib.IMAP4, uidvalidity: int, uid: int) -> None:
        """Store one message and move the cursor past it, in one transaction; then tell the
        journey (the inbox relay retries what this attempt does not deliver). A message whose
        handling fails is tried again (the connection's backoff between tries) and, when the
        failure is its own (tied_to_message), set aside so the messages after it are read."""
        answer = await client.uid(
            "fetch", str(uid), f"(UID RFC822.SIZE BODY.PEEK[]<0.{FETCH_BYTES}>)"
        )
        if answer.result != "OK":
            raise MailboxError(f"UID FETCH {uid} refused: {said(answer)}")
        fetched = _body(answer, uid)
        try:
            stored = await self._store(uidvalidity, uid, fetched)
        except Exception as err:
            await self._failed(uidvalidity, uid, fetched, err)
            return
        self._failing = None
        self.processed += 1
        if stored is not None and stored.outbound is not None:
            await self._deliver([stored.outbound])

    async def _store(
        self, uidvalidity: int, uid: int, fetched: tuple[bytes, int] | None
    ) -> Stored | None:
        stored = None
        async with self._sessions()() as session:
            if fetched is not None:  # None: expunged since the search, nothing to store
                raw, size = fetched
                try:
                    mail = inbound_email(raw, mailbox=self.key, uid=uid, size=size)
                except Exception as err:  # a message nobody can read: kept aside, not retried
                    await self._set_aside(session, raw, f"uid {uid}: {err}")
                else:
                    stored = await receive_email(session, self._settings, mail)
            await advance(session, self.key, self.owner, self.lease, uidvalidity, uid)
            await session.commit()
        return stored

    async def _failed(
        self, uidvalidity: int, uid: int, fetched: tuple[bytes, int] | None, err: Exception
    ) -> None:
        """After a failed _store (rolled back): raise to try again after the backoff, or set
        the message aside once the failure is known to be its own."""
        tied = tied_to_message(err)
        if tied is False:
            raise err  # the database or the server: the same message again once it is back
        same = self._failing is not None and self._failing[:2] == (uidvalidity, uid)
        attempts = (self._failing[2] if same and self._failing else 0) + 1
        self._failing = (uidvalidity, uid, attempts)
        # for the log: of an error of our code only its type (its text may quote the message)
        said = described(err) if isinstance(err, SQLAlchemyError) else type(err).__name__
        if tied is None and attempts < MESSAGE_ATTEMPTS:
            raise MessageNotStored(f"uid {uid}, attempt {attempts}: {said}") from err
        log.warning(
            "imap %s: uid %s set aside after %d attempt(s) (%s)", self.key, uid, attempts, said
        )
        # the whole text is for the rejected item, kept beside the message's own
        reason = f"uid {uid}: not stored after {attempts} attempt(s): {described(err)}"
        # in a transaction of its own: when the database is what failed, this fails too and
        # the message is tried again (not skipped)
        async with self._sessions()() as session:
            await self._set_aside(session, fetched[0] if fetched is not None else b"", reason)
            await advance(session, self.key, self.owner, self.lease, uidvalidity, uid)
            await session.commit()
        self._failing = None
        self.processed += 1
        self.set_aside += 1

    async def _set_aside(self, session: AsyncSession, raw: bytes, reason: str) -> None:
        pepper = self._settings.erasure_pepper.get_secret_value()
        await reject(session, PROVIDER, raw.decode("utf-8", "replace"), reason, pepper)

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """Wait in IDLE for the server's push, at most poll_seconds."""
        idle = await client.idle_start(timeout=self.poll_seconds)
        self.mode = "idle"  # once the server has said it idles: what arrives now is pushed
        try:
            pushed = await self._until_stopped(
                client.wait_server_push(timeout=self.poll_seconds + COMMAND_TIMEOUT)
            )
            lines = [bytes(line) for line in pushed] if isinstance(pushed, list) else []
            if any(b"EXISTS" in line for line in lines):
                self.idle_wakeups += 1
            if any(line.startswith(b"BYE") for line in lines):
                # the server is closing (a restart, a kick): DONE would never be answered, and
                # the connection's loss may be reported only after this push
                self._lost.set()
        finally:
            if client.has_pending_idle() and not self._lost.is_set():
                client.idle_done()
                # a connection lost meanwhile ends the wait at once, not after COMMAND_TIMEOUT
                await self._until_stopped(asyncio.wait_for(idle, COMMAND_TIMEOUT))


def install_watcher(app: FastAPI, settings: Settings) -> MailboxWatcher | None:
    """app.state.mailbox, watching while the app's lifespan runs; None without CLOSEFLOW_IMAP_HOST.
    Each message's journey signal goes out through the inbox relay, as a webhook's does."""
    if not settings.imap_host:
        app.state.mailbox = None
        return None
    watcher = MailboxWatcher(
        settings, lambda: app.state.sessions, lambda items: app.state.inbox.deliver_now(items)
    )
    app.state.mailbox = watcher
    run_during_lifespan(app, watcher)
    return watcher
