"""What survives a right-to-erasure request: keyed digests of the person's email and phone.

The digest is HMAC-SHA256 keyed by a secret pepper (CLOSEFLOW_ERASURE_PEPPER) over the
normalised value, tagged with its kind. A plain SHA-256 of an email can be reversed by hashing
a list of likely addresses; without the pepper nobody holding the database can do that, while
every service holding the pepper can still ask "was this person erased?". Rotating the pepper
forgets every suppression, so it is set once per deployment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence, Set
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Integer,
    String,
    Table,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped, declared_attr, mapped_column
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from shared.codec import referral_scope
from shared.db import UTCDateTime, hold_lock, utcnow
from shared.ids import ResourceId
from shared.people import normalize_email, normalize_phone
from shared.requests import InternalModel
from shared.temporal import client_keyring

Kind = Literal["email", "phone"]


def digest(pepper: str, kind: Kind, value: str) -> str:
    """The hex digest of an already normalised email or E.164 phone."""
    message = f"{kind}:{value}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def has_digest(
    pepper: str, digests: Set[tuple[str, str]], email: str | None, phone: str | None
) -> bool:
    """Whether a stored (normalised) email or phone has one of these (kind, digest) pairs."""
    return bool(
        (email and ("email", digest(pepper, "email", email)) in digests)
        or (phone and ("phone", digest(pepper, "phone", phone)) in digests)
    )


def digest_raw(pepper: str, kind: Kind, value: str) -> str | None:
    """Normalise, then digest; None for a value that is not an email / phone at all."""
    try:
        normal = normalize_email(value) if kind == "email" else normalize_phone(value)
    except ValueError:
        return None
    return digest(pepper, kind, normal)


# referred people named per erasure order: ~175 KB of ids, well inside a service's body cap
# (CLOSEFLOW_MAX_BODY_BYTES) and its statements' bind parameters. A service takes up to
# MAX_REFERRED_PER_ORDER: orders already queued by releases that sent up to 10,000 still go.
REFERRED_PER_ORDER = 5_000
MAX_REFERRED_PER_ORDER = 10_000


class ErasureOrder(InternalModel):
    """What prospecting sends each service's POST /internal/erasures (idempotent: the same
    order twice erases nothing more and answers the same)."""

    erasure_id: str = Field(max_length=32)
    prospect_id: str = Field(max_length=64)
    # the plain values let a service find rows keyed by address; they are never stored
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    email_digest: str | None = Field(None, max_length=128)
    phone_digest: str | None = Field(None, max_length=128)
    # their name and the people they referred: a referred person's records that quote the
    # referrer (an introduction's text) lose the name (issue 11); never stored either
    # a prospect's or a referral's first and last names (200 characters each) and a space
    name: str | None = Field(None, max_length=401)
    # a part of them (order_parts): an order is a bounded request, each id a bind parameter
    referred_prospect_ids: list[ResourceId] = Field(
        default_factory=list, max_length=MAX_REFERRED_PER_ORDER
    )


def order_parts(order: ErasureOrder, referred: Sequence[str]) -> list[ErasureOrder]:
    """The order for each REFERRED_PER_ORDER of the people the person referred (one order when
    they referred nobody). Each part is a whole order: a service erases the person on whichever
    comes first (the others find nothing left) and unnames the referrer for that part's people,
    so the parts may arrive in any order, each retried alone."""
    chunks = [
        list(referred[start : start + REFERRED_PER_ORDER])
        for start in range(0, len(referred), REFERRED_PER_ORDER)
    ]
    return [order.model_copy(update={"referred_prospect_ids": chunk}) for chunk in chunks or [[]]]


# what an order carries in clear (above) so that a service can find what it must erase
ORDER_PLAIN_FIELDS = ("email", "phone", "name")


def scrubbed_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """An order as kept once it is finished (confirmed or refused: never sent again): its ids
    and keyed digests, no plain email, phone or name."""
    return {k: v for k, v in order.items() if k not in ORDER_PLAIN_FIELDS}


# the cause of a referred person's first stage: journeys before issue 11 wrote the referrer's
# name after it, later ones "client <their id>" (workflows/journey/contact.py)
REFERRED_BY = "referred by "


def unnamed_referral_cause(referrer_id: str) -> str:
    """A referred person's cause once their referrer is erased: the id, as journeys write it."""
    return f"{REFERRED_BY}client {referrer_id}"


def event_without_referrer(body: Mapping[str, Any], referrer_id: str) -> dict[str, Any] | None:
    """A stage-change event body (shared.events.event_body) whose cause names the erased
    referrer, with the cause their id instead; None when it has nothing to change."""
    data = body.get("data")
    cause = data.get("cause") if isinstance(data, Mapping) else None
    unnamed = unnamed_referral_cause(referrer_id)
    if not isinstance(cause, str) or not cause.startswith(REFERRED_BY) or cause == unnamed:
        return None
    return {**body, "data": {**cast(Mapping[str, Any], data), "cause": unnamed}}


class ErasureResult(BaseModel):
    service: str
    erasure_id: str
    deleted: dict[str, int] = Field(default_factory=dict, description="rows deleted per table")


async def forget_workflow(client: Client, workflow_id: str) -> None:
    """Stop the workflow and delete its history, which holds the person's data (a journey's
    input is their contact): DeleteWorkflowExecution terminates a running workflow and deletes
    it at once. (Measured on the dev server: terminating first and then deleting left the closed
    history in place for over 20 s; a workflow that had already finished is deleted by the
    server's own background task.) A second call finds nothing: a no-op."""
    try:
        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise  # Temporal unreachable: the caller answers 5xx and the order is retried


def forget_cached_key(client: Client, prospect_id: str) -> None:
    """This process stops decrypting the prospect's payloads at once (every other process within
    a second: shared/codec.py's ERASABLE_CACHE_SECONDS): their key was shredded
    (services.prospecting.erasure)."""
    ring = client_keyring(client)
    if ring is not None:
        ring.forget(prospect_id)


async def shred_intake_keys(client: Client, referral_ids: Sequence[str]) -> None:
    """Crypto-shred the data keys of these referrals' intakes (shared.codec.referral_scope), in
    the keyring's database: their histories, wherever a copy is (backups too), can no longer be
    read. Nothing to do when payloads are not encrypted (no keyring)."""
    ring = client_keyring(client)
    if ring is not None:
        await ring.shred([referral_scope(referral_id) for referral_id in referral_ids])


async def one_order_at_a_time(session: AsyncSession) -> None:
    """Take before a service's first write of an erasure order, held to its commit: the orders
    a service takes at once (the relay posts a batch together: the parts of one order, a
    referrer's beside those of the people they referred) run one after the other. A referrer's
    order rewrites the introductions and tasks of the people they referred while those people's
    own orders delete the same rows, each in its own order: at once, PostgreSQL could abort one
    as a deadlock's victim. Erasures are rare and short: waiting for one costs nothing."""
    await hold_lock(session, "closeflow erasure orders")


async def delete_tree(
    session: AsyncSession, table: Table, where: ColumnElement[bool]
) -> dict[str, int]:
    """Delete the rows of `table` matching `where` and, first, every row of any table of the
    same metadata that points at them through a foreign key (found from the metadata, so a
    table added later is erased too). The rows deleted per table."""
    deleted: dict[str, int] = {}
    for child in table.metadata.sorted_tables:
        for fk in child.foreign_keys:
            if fk.column.table is table and child is not table:
                parents = select(fk.column).where(where)
                for name, count in (
                    await delete_tree(session, child, fk.parent.in_(parents))
                ).items():
                    deleted[name] = deleted.get(name, 0) + count
    # a DELETE's result is a CursorResult (it has the row count); execute() is typed for SELECTs
    result = cast(CursorResult[Any], await session.execute(delete(table).where(where)))
    deleted[table.name] = deleted.get(table.name, 0) + int(result.rowcount or 0)
    return deleted


def named_prospect(body: ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[str]:
    """The prospect an event body (shared.events.event_body, a JSON column) names."""
    named: ColumnElement[str] = body[("data", "prospect_id")].as_string()
    return named


def about_prospect(body: ColumnElement[Any], prospect_id: str) -> ColumnElement[bool]:
    """An event body that names the prospect."""
    return named_prospect(body) == prospect_id


class ErasedPersonColumns:
    """What stays of an erased person in a service that must keep them out: the keyed digests of
    their email and phone, one row each (a declarative mixin: the service's model adds its table
    name and base). Filled from the erasure order (`keep_digests`)."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("kind", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))  # email | phone
    digest: Mapped[str] = mapped_column(String(64))
    erasure_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def create_erased_people_table(op: Any) -> None:
    """The `erased_people` table (ErasedPersonColumns) as first released, for each service's
    migration (one definition, frozen here: later changes get migrations of their own)."""
    import sqlalchemy as sa

    op.create_table(
        "erased_people",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "digest"),
    )
    op.create_index("ix_erased_people_erasure_id", "erased_people", ["erasure_id"])


def drop_erased_people_table(op: Any) -> None:
    op.drop_index("ix_erased_people_erasure_id", table_name="erased_people")
    op.drop_table("erased_people")


async def keep_digests(
    session: AsyncSession, model: type[ErasedPersonColumns], order: ErasureOrder
) -> None:
    """The order's digests into the service's table; a repeated order adds nothing."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for kind, value in (("email", order.email_digest), ("phone", order.phone_digest)):
        if value:
            await session.execute(
                insert(model)
                .values(kind=kind, digest=value, erasure_id=order.erasure_id)
                .on_conflict_do_nothing(index_elements=["kind", "digest"])
            )


async def is_erased_digest(
    session: AsyncSession, model: type[ErasedPersonColumns], kind: Kind, value: str
) -> bool:
    found = await session.scalar(select(model.id).where(model.kind == kind, model.digest == value))
    return found is not None


async def erased_digests(
    session: AsyncSession, model: type[ErasedPersonColumns], values: Sequence[str]
) -> set[str]:
    """Which of these digests belong to erased people (a digest names its kind: one query)."""
    if not values:
        return set()
    found = await session.scalars(select(model.digest).where(model.digest.in_(values)))
    return set(found)


async def is_erased_address(
    session: AsyncSession, model: type[ErasedPersonColumns], pepper: str, kind: Kind, raw: str
) -> bool:
    """Whether an address as someone wrote it (a webhook's sender, a referred person's email)
    belonged to a person erased on request."""
    value = digest_raw(pepper, kind, raw) if raw else None
    return value is not None and await is_erased_digest(session, model, kind, value)
