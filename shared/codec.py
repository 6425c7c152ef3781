"""Workflow payloads encrypted per prospect, and shredded with them (issue 11).

Every payload the Temporal client or a worker writes (workflow inputs, activity inputs and
results, signals, queries, memos, failure details) is encrypted with AES-256-GCM before it
leaves the process. The key is a *data key* chosen from the payload's serialization context:
the workflow id `journey-<prospect id>` (the journey and every activity it runs) gets that
prospect's own data key, `referral-intake-<referral id>` that referral's (shredded with the
prospect it made); every other payload (context-free encodes) gets the system data key. Data keys are random, stored only wrapped (AES-256-GCM) by a master key from
CLOSEFLOW_PAYLOAD_MASTER_KEYS, in the keyring table (`payload_keys`, in prospecting's database,
created by prospecting's migrations; every process that encodes or decodes reads it with its
own small connection).

Erasure replaces the prospect's wrapped key with a tombstone (`shred`, in prospecting's erasure
transaction): every payload of theirs, in open or closed histories, in exports and backups of
the Temporal database, can never be decrypted again (crypto-shredding), whether or not the
history is ever deleted. Decoding one raises `PayloadKeyErased`; encoding for that prospect is
refused the same way. A process keeps a prospect's (or referral's) unwrapped key for at most
`ERASABLE_CACHE_SECONDS` (one second), so every worker and API stops decrypting an erased
prospect's payloads within a second, as a revoked API key stops working (shared/issued_keys.py);
the erasing process forgets the key at once. The system key, never erased, is kept for
`CACHE_SECONDS`. A journey touches its prospect's key in bursts (a workflow task, its
activities) hours apart, so the short time costs about one lookup per burst; concurrent misses
for one key share one lookup, on a small pool of connections.

Rotation: the first master key wraps new data keys; any listed key unwraps, and a data key
unwrapped with an older master key is wrapped again with the first one on the way (so an old
master key can be removed once no row names it: `payload_keys.master_key_id`).

Payloads that are not encrypted (histories recorded before the codec, the stored replay
histories of the tests) decode as they are.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from shared.ids import is_id
from shared.sqlite_driver import one_trip_dbapi

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"  # the master key that wrapped the data key when encoded
SCOPE = "encryption-scope"  # the prospect id (an opaque id, never PII), or SYSTEM_SCOPE
SYSTEM_SCOPE = ":system"  # a colon is never in a prospect id, so no prospect can own it
JOURNEY_PREFIX = "journey-"  # shared.contracts.journey.journey_id
INTAKE_PREFIX = "referral-intake-"  # shared.contracts.journey.referral_intake_id
# shared.contracts.meetings.meeting_invite_id: "meeting-invite-<prospect id>:<invitation>"
INVITE_PREFIX = "meeting-invite-"
CACHE_SECONDS = 60.0  # the system key's (never erased)
ERASABLE_CACHE_SECONDS = 1.0  # a prospect's or referral's: how late erasure reaches a process
CACHE_SIZE = 10_000
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
MIN_DISTINCT_BYTES = 16  # 32 random bytes have ~30 distinct values; a typed pattern has few

metadata = MetaData()
# Prospecting's migration 0009 creates it (prospecting owns erasure); tombstone: wrapped_key NULL.
payload_keys = Table(
    "payload_keys",
    metadata,
    Column("scope", String(80), primary_key=True),
    Column("master_key_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
)


class PayloadKeyErased(Exception):
    """The prospect's data key was erased: their payloads can never be decrypted again."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"payloads of prospect {scope} cannot be decoded or encoded: their data key was "
            "erased with the prospect (crypto-shredded)"
        )
        self.scope = scope


class PayloadKeyUnavailable(Exception):
    """A payload names a key this process cannot unwrap (no such row, unknown master key)."""


class PayloadKeyMissing(PayloadKeyUnavailable):
    """No data key was ever made for the scope (no such prospect or referral)."""


# --- master keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes


def parse_master_keys(entries: Sequence[str]) -> list[MasterKey]:
    """`<key id>:<base64 of 32 random bytes>` entries; ValueError names the bad entry (never
    its value)."""
    keys: list[MasterKey] = []
    for position, entry in enumerate((e.strip() for e in entries if e.strip()), start=1):
        where = f"CLOSEFLOW_PAYLOAD_MASTER_KEYS entry {position}"
        key_id, sep, encoded = entry.partition(":")
        if not sep or not is_id(key_id):
            raise ValueError(f"{where} must be <key id>:<base64 key> (key id: [A-Za-z0-9_-])")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as err:
            raise ValueError(f"{where} is not base64") from err
        if len(raw) != KEY_BYTES:
            raise ValueError(f"{where} must decode to {KEY_BYTES} bytes (AES-256)")
        if any(k.key_id == key_id for k in keys):
            raise ValueError(f"{where} repeats key id {key_id!r}")
        keys.append(MasterKey(key_id, raw))
    return keys


def check_master_keys_for_production(entries: Sequence[str]) -> None:
    keys = parse_master_keys(entries)
    if not keys:
        raise ValueError(
            "CLOSEFLOW_PAYLOAD_MASTER_KEYS must be set in production "
            "(workflow payloads carry personal data): `closeflow payload-key`"
        )
    for position, key in enumerate(keys, start=1):
        if len(set(key.key)) < MIN_DISTINCT_BYTES:
            raise ValueError(
                f"CLOSEFLOW_PAYLOAD_MASTER_KEYS entry {position} is not random: generate one"
            )


def new_master_key(key_id: str) -> str:
    """A fresh entry for CLOSEFLOW_PAYLOAD_MASTER_KEYS."""
    if not is_id(key_id):
        raise ValueError(f"key id {key_id!r}: letters, digits, - and _ only")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def _wrap_aad(scope: str) -> bytes:
    return b"closeflow-data-key\0" + scope.encode()


def _payload_aad(scope: str) -> bytes:
    # binds a ciphertext to its scope: moving it under another prospect's metadata fails
    return b"closeflow-payload\0" + scope.encode()


def referral_scope(referral_id: str) -> str:
    """The data key of one referral's intake (the referred person's details, before they are a
    prospect): shredded with the prospect the referral made."""
    return f"referral:{referral_id}"


def scope_of(workflow_id: str | None) -> str:
    """The data key a payload of this workflow uses: its prospect's, its referral's, or the
    system one."""
    for prefix, scope in (
        (JOURNEY_PREFIX, str),
        (INTAKE_PREFIX, referral_scope),
        (INVITE_PREFIX, str),
    ):
        if workflow_id and workflow_id.startswith(prefix):
            ident = workflow_id[len(prefix) :]
            if prefix == INVITE_PREFIX:
                ident = ident.partition(":")[
                    0
                ]  # a meeting invitation carries its prospect's contact
            if is_id(ident):
                return scope(ident)
    return SYSTEM_SCOPE


# --- the keyring ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _insert(dialect: str) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(payload_keys)


def _insert_keys(dialect: str, master: MasterKey, scopes: Sequence[str]) -> Any:
    """A fresh data key for each scope, wrapped by `master`; a scope that has one keeps it."""
    rows = [
        {
            "scope": scope,
            "master_key_id": master.key_id,
            "wrapped_key": _seal(master.key, os.urandom(KEY_BYTES), _wrap_aad(scope)),
            "created_at": _now(),
        }
        for scope in scopes
    ]
    return _insert(dialect).values(rows).on_conflict_do_nothing(index_elements=["scope"])


async def create_data_keys(
    session: AsyncSession, master_keys: Sequence[MasterKey], scopes: Sequence[str]
) -> None:
    """Data keys made ahead, in the caller's transaction on prospecting's database (none when
    payloads are not encrypted). Prospecting makes each prospect's with the prospect, so that
    starting their journey only reads it: on SQLite a write there from another service waited
    for prospecting's writer (docs/benchmarks.md)."""
    if master_keys and scopes:
        dialect = session.get_bind().dialect.name
        await session.execute(_insert_keys(dialect, master_keys[0], scopes))


class KeyRing:
    """Data keys by scope: created on first use, unwrapped with the master keys, cached briefly."""

    def __init__(
        self,
        master_keys: Sequence[MasterKey],
        database_url: str,
        cache_seconds: float = CACHE_SECONDS,
        erasable_cache_seconds: float = ERASABLE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not master_keys:
            raise ValueError("a keyring needs at least one master key")
        self.master_keys = list(master_keys)
        self._by_id = {k.key_id: k for k in self.master_keys}
        self._url = database_url
        self._engine: AsyncEngine | None = None
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._erasable_seconds = erasable_cache_seconds
        self._clock = clock
        # one lookup per (scope, create) at a time: concurrent misses wait for it
        self._fetching: dict[tuple[str, bool], asyncio.Task[bytes]] = {}
        self.fetches = 0  # lookups that went to the database (cache misses, coalesced)

    @property
    def primary(self) -> MasterKey:
        return self.master_keys[0]

    def _db(self) -> AsyncEngine:
        if self._engine is None:
            # a small pool: a miss costs a query, not a new connection (a process has one
            # keyring per Temporal client: one or two). On SQLite a new connection was a new
            # thread, a file opened and the schema read: most of a lookup's CPU in the journeys
            # worker (docs/benchmarks.md).
            if self._url.startswith("sqlite"):
                # waits for prospecting's writer instead of failing; no overflow: a connection
                # opened for a burst of misses and closed after one lookup cost more than the
                # wait for a pooled one (43 opened for 200 journeys in the journeys worker)
                extra: dict[str, Any] = {
                    "connect_args": {"timeout": 30},
                    "module": one_trip_dbapi(),
                    "pool_size": 4,
                    "max_overflow": 0,
                }
            else:
                extra = {
                    "pool_pre_ping": True,
                    "pool_recycle": 600,
                    "pool_size": 2,
                    "max_overflow": 2,
                }
            from shared.db import new_engine  # not at import: settings import this module

            self._engine = new_engine(self._url, **extra)
        return self._engine

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    def forget(self, scope: str) -> None:
        self._cache.pop(scope, None)

    async def shred(self, scopes: Sequence[str]) -> None:
        """`shred` these data keys through this keyring's own connection, committed, for a
        service whose database is not the keyring's (referrals' intakes: `referral_scope`)."""
        if not scopes:
            return
        async with self._db().begin() as conn:
            for scope in scopes:
                await conn.execute(_tombstone(conn.dialect.name, scope))
        for scope in scopes:
            self.forget(scope)

    def _cached(self, scope: str) -> bytes | None:
        hit = self._cache.get(scope)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._cache[scope]
            return None
        self._cache.move_to_end(scope)
        return hit[1]

    def _remember(self, scope: str, key: bytes) -> None:
        now = self._clock()
        ttl = self._cache_seconds if scope == SYSTEM_SCOPE else self._erasable_seconds
        self._cache[scope] = (now + ttl, key)
        self._cache.move_to_end(scope)
        # Expired keys leave memory now, not when CACHE_SIZE pushes them out: an erased person's
        # key is not kept, and a worker with 10,000 journeys holds about a second's lookups.
        while self._cache:
            oldest, (until, _) = next(iter(self._cache.items()))
            if until > now and len(self._cache) <= CACHE_SIZE:
                break
            del self._cache[oldest]

    @property
    def held(self) -> int:
        """Unwrapped data keys in this process's memory."""
        return len(self._cache)

    async def data_key(self, scope: str, *, create: bool) -> bytes:
        """The scope's data key (made and stored when `create` and there is none yet)."""
        cached = self._cached(scope)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        pending = self._fetching.get((scope, create))
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(self._fetch(scope, create))
            self._fetching[(scope, create)] = pending
            pending.add_done_callback(lambda done: self._fetched((scope, create), done))
        # shielded: a waiter cancelled (its request gone) does not cancel the others' lookup
        return await asyncio.shield(pending)

    def _fetched(self, which: tuple[str, bool], done: asyncio.Task[bytes]) -> None:
        if self._fetching.get(which) is done:
            del self._fetching[which]
        if not done.cancelled():
            done.exception()  # retrieved: a lookup whose every waiter left logs no warning

    async def _fetch(self, scope: str, create: bool) -> bytes:
        self.fetches += 1
        async with self._db().begin() as conn:
            row = await self._row(conn, scope)
            if row is None:
                if not create:
                    raise PayloadKeyMissing(f"no data key for {scope}: cannot decode")
                await self._create(conn, scope)
                row = await self._row(conn, scope)
                assert row is not None  # inserted, or a concurrent writer's row
            master_id, wrapped = row
            if wrapped is None:
                raise PayloadKeyErased(scope)
            key = self._unwrap(scope, master_id, wrapped)
            if master_id != self.primary.key_id:
                await self._rewrap(conn, scope, master_id, key)
        self._remember(scope, key)
        return key

    async def _row(self, conn: AsyncConnection, scope: str) -> tuple[str, bytes | None] | None:
        row = (
            await conn.execute(
                select(payload_keys.c.master_key_id, payload_keys.c.wrapped_key).where(
                    payload_keys.c.scope == scope
                )
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def _create(self, conn: AsyncConnection, scope: str) -> None:
        await conn.execute(_insert_keys(conn.dialect.name, self.primary, [scope]))

    def _unwrap(self, scope: str, master_id: str, wrapped: bytes) -> bytes:
        master = self._by_id.get(master_id)
        if master is None:
            raise PayloadKeyUnavailable(
                f"the data key of {scope} is wrapped by master key {master_id!r}, which is not "
                "in CLOSEFLOW_PAYLOAD_MASTER_KEYS: add it back (after the new one)"
            )
        try:
            return _open(master.key, wrapped, _wrap_aad(scope))
        except InvalidTag as err:
            raise PayloadKeyUnavailable(
                f"master key {master_id!r} does not unwrap the data key of {scope}: "
                "a different key was given that id"
            ) from err

    async def _rewrap(self, conn: AsyncConnection, scope: str, old_id: str, key: bytes) -> None:
        await conn.execute(
            update(payload_keys)
            .where(payload_keys.c.scope == scope, payload_keys.c.master_key_id == old_id)
            .where(payload_keys.c.wrapped_key.is_not(None))
            .values(
                master_key_id=self.primary.key_id,
                wrapped_key=_seal(self.primary.key, key, _wrap_aad(scope)),
            )
        )


async def shred(session: AsyncSession, scope: str) -> None:
    """Erase a data key (a prospect id, a referral_scope) for good, in the caller's transaction
    on the keyring's database: a tombstone stays so that no process makes a new one for the
    scope by encoding late."""
    await session.execute(_tombstone(session.get_bind().dialect.name, scope))


def _tombstone(dialect: str, scope: str) -> Any:
    now = _now()
    return (
        _insert(dialect)
        .values(
            scope=scope,
            master_key_id="",
            wrapped_key=None,
            created_at=now,
            shredded_at=now,
        )
        .on_conflict_do_update(
            index_elements=["scope"],
            set_={"wrapped_key": None, "master_key_id": "", "shredded_at": now},
        )
    )


# --- the codec -----------------------------------------------------------------------------------


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM per scope; the SDK gives each operation its context through with_context."""

    def __init__(self, keyring: KeyRing, scope: str = SYSTEM_SCOPE) -> None:
        self.keyring = keyring
        self.scope = scope

    def with_context(self, context: SerializationContext) -> Self:
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        return type(self)(self.keyring, scope_of(workflow_id))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads:
            return []
        key = await self.keyring.data_key(self.scope, create=True)
        master_id = self.keyring.primary.key_id.encode()
        return [
            Payload(
                metadata={
                    "encoding": ENCODING,
                    KEY_ID: master_id,
                    SCOPE: self.scope.encode(),
                },
                data=_seal(key, p.SerializeToString(), _payload_aad(self.scope)),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)  # never encrypted: older histories pass through
                continue
            try:
                scope = payload.metadata.get(SCOPE, b"").decode()
            except UnicodeDecodeError as err:
                raise PayloadKeyUnavailable("a payload's scope is not text: not ours") from err
            key = await self.keyring.data_key(scope, create=False)
            try:
                # ValueError: data shorter than a nonce (cut short, or not ours at all)
                plain = _open(key, payload.data, _payload_aad(scope))
            except (InvalidTag, ValueError) as err:
                raise PayloadKeyUnavailable(f"a payload of {scope} fails its check") from err
            decoded = Payload()
            decoded.ParseFromString(plain)
            out.append(decoded)
        return out


def encrypting_converter(keyring: KeyRing) -> DataConverter:
    # failure messages and stack traces go into an encrypted payload too: an exception's text
    # may quote an address or a reply
    return DataConverter(
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
