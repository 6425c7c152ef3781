"""Outreach's part of a right-to-erasure request, and the suppression that outlives it.

POST /internal/erasures (called by prospecting's outbox relay, retried until it answers 2xx)
stops and deletes the prospect's journey in Temporal, deletes their messages, tasks (and the
tasks' notifications), enrollment, consent records, provider events (theirs, and the unmatched
ones and rejected items whose raw body holds their address), the plain-text opt-out
and do-not-contact entries of their addresses and the subscribers' events about them (with the
deliveries still queued), and stores the keyed digests of the email and
phone instead (models.ErasedPerson), and the prospect id (models.ErasedProspect: an event about
them relayed after this is dropped). The people they referred keep their records without the
name (introductions, tasks, stage-change causes). Idempotent: a repeat finds nothing left to
delete.

From then on an enrollment whose contact has an erased email or phone is refused (409), and
`erased_reason` tells a send check that the address belongs to an erased person, and
`from_erased_person` tells the webhooks to keep nothing of a text, email or bounce from or about
such an address (it would put the address back in clear); an inbound text or email from anyone
else that names it keeps it only as ERASED_ADDRESS (`strings_without_erased_addresses`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from fastapi import APIRouter, Depends, Request
from sqlalchemy import ColumnElement, Text, and_, cast, delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from services.outreach import models
from shared.audit import redact
from shared.auth import require_api_key
from shared.contracts.journey import Contact, journey_id
from shared.db import Session, hold_lock, insert_or_winner
from shared.erasure import (
    ErasureOrder,
    ErasureResult,
    Kind,
    about_prospect,
    delete_tree,
    digest,
    digest_raw,
    erased_digests,
    event_without_referrer,
    forget_cached_key,
    forget_workflow,
    is_erased_address,
    is_erased_digest,
    keep_digests,
    named_prospect,
    one_order_at_a_time,
)
from shared.errors import AppError
from shared.events import STAGE_CHANGED
from shared.idempotency import forget_answers

router = APIRouter(dependencies=[Depends(require_api_key)])
ERASED = "erased_person"
# in place of a referrer's name that is gone (erased) or unknown: here and at send time
UNNAMED_REFERRER = "A client of ours"


def address_spellings(addresses: list[str]) -> list[str]:
    """How an address appears in a provider's raw body: as is, form- or URL-encoded, and a
    phone without its +, all lower case (compared with the lower-cased text)."""
    found: set[str] = set()
    for address in addresses:
        for value in (address, quote_plus(address), quote(address, safe="")):
            found.add(value.lower())
        if address.startswith("+"):
            found.add(address[1:])
    return sorted(found)


def mentions(column: Any, spellings: list[str]) -> ColumnElement[bool]:
    """The column's text holds one of the spellings (a scan: erasures are rare)."""
    text = func.lower(cast(column, Text))
    return or_(false(), *(text.contains(s, autoescape=True) for s in spellings))


def _erasure_locks(prospect_id: str, addresses: list[str]) -> list[str]:
    """The locks an erasure of the prospect (and of their addresses, under any prospect) takes,
    in the order every holder takes them."""
    return [f"closeflow outreach erasure of {prospect_id}"] + [
        f"closeflow outreach erasure of address {a}" for a in sorted(set(addresses))
    ]


async def hold_against_erasure(session: AsyncSession, prospect_id: str, address: str) -> None:
    """Held until the transaction ends, before it looks for an erasure of the prospect or of
    the address (normalised; "" for none) and writes a row of theirs: such an erasure committed
    before (the look finds it) or deletes after the caller's commit (and so deletes what it
    wrote). A send of a workflow other than their journey (a meeting's invitation), or to the
    address under another prospect, holds no run that the erasure waits for. PostgreSQL: the
    shared side of the erasure's locks (writers do not wait on each other); SQLite: its one
    write lock, taken by a write that changes nothing."""
    if session.get_bind().dialect.name == "sqlite":
        e = models.ErasedProspect
        await session.execute(
            update(e)
            .where(e.prospect_id == prospect_id)
            .values(erasure_id=e.erasure_id)
            .execution_options(synchronize_session=False)
        )
        return
    for name in _erasure_locks(prospect_id, [address] if address else []):
        await hold_lock(session, name, shared=True)


async def erase(session: AsyncSession, order: ErasureOrder) -> dict[str, int]:
    """Delete the person's rows and keep their digests; the rows deleted per table."""
    await one_order_at_a_time(session)
    pid = order.prospect_id
    addresses = [a for a in (order.email, order.phone) if a]
    # a writer of their rows that looked before this (hold_against_erasure) commits first
    for name in _erasure_locks(pid, addresses):
        await hold_lock(session, name)
    spellings = address_spellings(addresses)
    m = models
    task_ids = select(m.RepTask.id).where(m.RepTask.prospect_id == pid)
    statements = {
        # first: an activity of their journey holds its run's row while it writes a task or a
        # claim (runs.calling_run_ended), so this waits for that commit and the deletes below
        # see what it wrote; one that reads after this sees the run gone and the person erased
        "enrollments": delete(m.Enrollment).where(m.Enrollment.prospect_id == pid),
        "task_notifications": delete(m.TaskNotification).where(
            m.TaskNotification.task_id.in_(task_ids)
        ),
        "rep_tasks": delete(m.RepTask).where(m.RepTask.prospect_id == pid),
        "messages": delete(m.Message).where(
            or_(m.Message.prospect_id == pid, m.Message.to_address.in_(addresses))
        ),
        "follow_ups": delete(m.FollowUp).where(m.FollowUp.prospect_id == pid),
        "consent_records": delete(m.ConsentRecord).where(
            or_(
                m.ConsentRecord.prospect_id == pid,
                m.ConsentRecord.email == order.email if order.email else false(),
                m.ConsentRecord.phone == order.phone if order.phone else false(),
            )
        ),
        # an event nobody matched to a prospect (an unknown sender, a bounce before the row)
        # still holds the address in its payload: found by the address in any spelling
        "inbox_events": delete(m.InboxEvent).where(
            or_(
                m.InboxEvent.prospect_id == pid,
                and_(
                    m.InboxEvent.prospect_id.is_(None),
                    or_(
                        mentions(m.InboxEvent.payload, spellings),
                        mentions(m.InboxEvent.signal_payload, spellings),
                    ),
                ),
            )
        ),
        "rejected_items": delete(m.RejectedItem).where(mentions(m.RejectedItem.raw, spellings)),
        # replaced by the digests below: a plain address must not outlive the erasure
        "suppressions": delete(m.Suppression).where(m.Suppression.address.in_(addresses)),
        "do_not_contact": delete(m.DoNotContact).where(
            m.DoNotContact.kind.in_(("email", "phone")), m.DoNotContact.value.in_(addresses)
        ),
    }
    deleted = {}
    for table, statement in statements.items():
        result = await session.execute(statement.execution_options(synchronize_session=False))
        deleted[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    # their events (a reply, an opt-out, a task, a stage change) and the deliveries still queued:
    # sent after the erasure, they would tell subscribers about a person who is gone
    events = m.WebhookEvent.__table__
    deleted |= await delete_tree(session, events, about_prospect(events.c.payload, pid))
    deleted["messages, tasks (referrer's name removed)"] = await _unquote_referrer(session, order)
    deleted["webhook_events (referrer's name removed)"] = await _unname_in_events(session, order)
    deleted["audit_log (values redacted)"] = await redact(session, m.AuditEntry, pid)
    deleted["idempotency_keys"] = await forget_answers(session, m.IdempotencyKey, [pid, *addresses])
    await keep_digests(session, models.ErasedPerson, order)
    # their id (random, no personal data): an event about them relayed late is dropped. The
    # parts of one erasure (shared.erasure.order_parts) may run at once: one of them adds it
    if await session.get(m.ErasedProspect, pid) is None:
        await insert_or_winner(
            session,
            m.ErasedProspect(prospect_id=pid, erasure_id=order.erasure_id),
            lambda: session.get(m.ErasedProspect, pid),
        )
    return deleted


async def _unquote_referrer(session: AsyncSession, order: ErasureOrder) -> int:
    """The introductions sent to the people the erased person referred quote their name, and
    so may the tasks (and their notifications) about those people: the rows stay (the ledger
    keeps a send from repeating), the name goes. The rows changed."""
    name = order.name
    if not name or not order.referred_prospect_ids:
        return 0
    m = models
    referred = order.referred_prospect_ids
    tasks = select(m.RepTask.id).where(m.RepTask.prospect_id.in_(referred))
    texts: list[tuple[Any, ColumnElement[bool], tuple[Any, Any]]] = [
        (m.Message, m.Message.prospect_id.in_(referred), (m.Message.subject, m.Message.body)),
        (m.RepTask, m.RepTask.prospect_id.in_(referred), (m.RepTask.title, m.RepTask.body)),
        (
            m.TaskNotification,
            m.TaskNotification.task_id.in_(tasks),
            (m.TaskNotification.subject, m.TaskNotification.text),
        ),
    ]
    changed = 0
    for model, about, columns in texts:
        result = await session.execute(
            update(model)
            .where(about, or_(*(c.contains(name, autoescape=True) for c in columns)))
            .values({c: func.replace(c, name, UNNAMED_REFERRER) for c in columns})
            .execution_options(synchronize_session=False)
        )
        changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return changed


async def _unname_in_events(session: AsyncSession, order: ErasureOrder) -> int:
    """The stage changes of the people they referred, kept for the subscribers: journeys before
    issue 11 wrote "referred by <their name>" as a cause; it becomes their id, as in
    prospecting's stage history."""
    if not order.referred_prospect_ids:
        return 0
    events = models.WebhookEvent
    named = named_prospect(events.payload)
    rows = await session.scalars(
        select(events).where(events.type == STAGE_CHANGED, named.in_(order.referred_prospect_ids))
    )
    changed = 0
    for row in rows:
        unnamed = event_without_referrer(row.payload, order.prospect_id)
        if unnamed is not None:
            row.payload, changed = unnamed, changed + 1
    return changed


ERASED_PROSPECT = "erased: this person asked for their data to be erased"


async def erased_reason(
    session: AsyncSession, pepper: str, channel: str, address: str
) -> str | None:
    """Why nothing may be sent to this (normalised) address: it belonged to an erased person."""
    kind: Kind = "email" if channel == "email" else "phone"
    found = await is_erased_digest(
        session, models.ErasedPerson, kind, digest(pepper, kind, address)
    )
    return ERASED_PROSPECT if found else None


async def from_erased_person(session: AsyncSession, pepper: str, kind: Kind, raw: str) -> bool:
    """Whether an address as a provider wrote it (the sender of a text or an email, the
    recipient of a bounce) belonged to an erased person. What arrives from or about it later is
    not stored: its payload would put the address and the person's words back in clear, and an
    opt-out would re-create them as a suppression and a consent record (the digests keep them
    from being contacted already)."""
    return await is_erased_address(session, models.ErasedPerson, pepper, kind, raw)


# what may be an address in a raw body, once percent-decoded (a guess: each candidate
# is normalised and digested, and only an erased person's is acted on). An email's local part
# starts where the text's run of such characters starts (the lookbehind): without that anchor a
# long run with no @ is scanned again from each of its characters, quadratic in its length.
_EMAIL_CHAR = r"[^\s\"'<>(),;:\[\]=&\\@]"
_ADDRESS_LIKE: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("email", re.compile(rf"(?<!{_EMAIL_CHAR}){_EMAIL_CHAR}++@[^\s\"'<>(),;:\[\]=&\\]+")),
    ("phone", re.compile(r"\+?\d{7,15}")),
)
ERASED_ADDRESS = "[erased]"
# digests asked of the database at once
_DIGESTS_PER_QUERY = 500
# spellings digested on the event loop; more go to a thread
_INLINE_SPELLINGS = 50


async def without_erased_addresses(session: AsyncSession, pepper: str, raw: str) -> str:
    """The raw body with each address of an erased person in it (as the provider spelled it,
    form- or URL-encoded too) replaced by ERASED_ADDRESS: an item kept for a human must not put
    the address back in clear."""
    return _redacted(raw, await _erased_spellings(session, pepper, raw))


async def strings_without_erased_addresses(session: AsyncSession, pepper: str, value: Any) -> Any:
    """`value` (a parsed document: dicts, lists, strings...) with each erased person's address
    in its strings replaced by ERASED_ADDRESS, as without_erased_addresses does for a raw body;
    one scan and one lookup for the whole document. Only strings change: a JSON number that
    happens to spell a phone stays a number."""
    found: list[str] = []
    _strings(value, found.append)
    spellings = await _erased_spellings(session, pepper, "\n".join(found))
    if not spellings:
        return value
    return _strings(value, lambda text: _redacted(text, spellings))


def _strings(value: Any, each: Callable[[str], Any]) -> Any:
    """`value` with each string in it (a dict's values, a list's items) replaced by each(it)."""
    if isinstance(value, str):
        return each(value)
    if isinstance(value, dict):
        return {key: _strings(item, each) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strings(item, each) for item in value]
    return value


def _redacted(raw: str, spellings: list[str]) -> str:
    for spelling in spellings:
        raw = re.sub(re.escape(spelling), ERASED_ADDRESS, raw, flags=re.IGNORECASE)
    return raw


async def _erased_spellings(session: AsyncSession, pepper: str, raw: str) -> list[str]:
    """How the addresses of erased people in `raw` may be spelled there (address_spellings)."""
    decoded = unquote(raw)  # not unquote_plus: a phone's literal + would become a space
    written = {
        (kind, m.group(0)) for kind, pattern in _ADDRESS_LIKE for m in pattern.finditer(decoded)
    }
    # each spelling parsed once; many (a stranger's body full of numbers: about 60 us each)
    # off the event loop, which every other request of this process waits on
    if len(written) > _INLINE_SPELLINGS:
        candidates = await asyncio.to_thread(_candidates, pepper, written)
    else:
        candidates = _candidates(pepper, written)
    erased: list[str] = []
    keys = list(candidates)
    for start in range(0, len(keys), _DIGESTS_PER_QUERY):
        chunk = keys[start : start + _DIGESTS_PER_QUERY]
        found = await erased_digests(session, models.ErasedPerson, [d for _, d in chunk])
        erased += [candidates[key] for key in chunk if key[1] in found]
    return address_spellings(erased)


def _candidates(pepper: str, written: set[tuple[Kind, str]]) -> dict[tuple[Kind, str], str]:
    """(kind, digest) -> the address as written, of each spelling that is an address."""
    candidates: dict[tuple[Kind, str], str] = {}
    for kind, text in sorted(written):
        value = digest_raw(pepper, kind, text)
        if value is not None:
            candidates.setdefault((kind, value), text)
    return candidates


async def refuse_erased_contact(session: AsyncSession, pepper: str, contact: Contact) -> None:
    """Enrollment check: 409 when the contact's email or phone belongs to an erased person."""
    for channel, address in (("email", contact.email), ("sms", contact.phone)):
        if address and await erased_reason(session, pepper, channel, address):
            raise AppError(
                409, ERASED, f"prospect {contact.prospect_id}: this person asked to be erased"
            )


@router.post("/internal/erasures", tags=["erasure"])
async def erasure_order(order: ErasureOrder, request: Request, session: Session) -> ErasureResult:
    """Erase one person from outreach (prospecting's outbox calls it until it answers 2xx)."""
    # The journey first: once it is gone nothing can send or create a task any more.
    try:
        await forget_workflow(request.app.state.temporal, journey_id(order.prospect_id))
    except RPCError as err:
        raise AppError(503, "temporal_unreachable", f"journey not stopped yet: {err}") from err
    forget_cached_key(request.app.state.temporal, order.prospect_id)  # shredded by prospecting
    deleted = await erase(session, order)
    await session.commit()
    return ErasureResult(service="outreach", erasure_id=order.erasure_id, deleted=deleted)
