"""Consent: one record per person across channels, the per-address suppressions kept in step with
it, the global do-not-contact list, and the check every send makes.

Two tables say "do not send", on purpose:
- `suppressions` (channel, address): this address must not get this channel, whoever it belongs
  to (a hard bounce, a complaint, an unsubscribe, an SMS STOP from that number).
- `consent_records`: the person's choice per channel (opted_in / opted_out, reason, when), keyed
  by prospect when known. An unsubscribe from one address keeps every address of that person out
  of email; a STOP keeps them out of texts.
Every opt-out writes both in one transaction (`opt_out`), START / UNSTOP clears both (`opt_in`).
A hard bounce is about the address, not the person: it suppresses the address only.

A do-not-contact entry also ends the journeys of the enrolled prospects it covers (by the
addresses their enrollment recorded or the ledger sent to): it stores a stop_cadence signal per
journey in the inbox in the entry's own transaction, as an unsubscribe does, so the relay
delivers it even if Temporal is away when the entry is made. The send activity stores the same
signal (same event id) when a touch meets an entry, for a journey the entry's lookup missed.
Rep tasks (call_task, social_task) are not created for a prospect an entry covers, nor for one
opted out of every channel we can reach them on (`task_refusal`).

A send is refused when the address, its domain or the number is on the do-not-contact list, the
address is suppressed, or the person opted out of the channel (`blocked`). The send activity asks
twice: before it takes a slot, and again under `send_guard` right before the provider call.

The race between that last check and the provider call: on PostgreSQL `send_guard` holds shared
advisory locks keyed by the address, its domain and every parent domain (a listed domain covers
its subdomains) and the person until the provider has answered, and every opt-out and
do-not-contact entry takes the same keys exclusively before it writes. So
an opt-out either commits before the check (which then sees it) or waits until the provider call
is over (the message went out before the opt-out existed). The price: a send holds one pooled
connection during its provider call, and an opt-out of that address waits for it (the SMTP or
Twilio timeout at worst). On SQLite there are no such locks
(one writer at a time, readers never wait): what remains is an opt-out committed while the
provider call is in flight, between the re-check and the provider's answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, literal, or_, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.consent import suppressions
from services.outreach.events import service as events
from services.outreach.inbox import JourneySignal, Stored, store_event
from shared.contracts.journey import StopCadence
from shared.contracts.names import Sig
from shared.db import database_away, insert_or_winner
from shared.paging import DEFAULT_LIMIT, Page, page
from shared.people import ascii_domain, normalize_email, normalize_phone

EMAIL, SMS = "email", "sms"
CHANNELS = (EMAIL, SMS)
OPTED_IN, OPTED_OUT = "opted_in", "opted_out"
DNC_KINDS = ("email", "phone", "domain")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# --- locks ------------------------------------------------------------------------------------


def _lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for a key (collisions only make two keys share a lock)."""
    return int.from_bytes(
        hashlib.sha256(f"closeflow-consent\0{key}".encode()).digest()[:8], "big", signed=True
    )


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def domain_forms(domain: str) -> list[str]:
    """The names a do-not-contact entry may hold for `domain`: entries keep a domain in its
    ASCII form (normalize_domain: IDNA 2003, Python's codec), addresses keep an internationalized
    one in Unicode (shared.people.normalize_email), and IDNA 2008 writes a few (`ß`) otherwise."""
    if domain.isascii() and "xn--" not in domain:
        return [domain]
    forms = {domain, ascii_domain(domain) or domain}
    with contextlib.suppress(UnicodeError):  # IDNA 2003, as normalize_domain keeps entries
        forms.add(domain.encode("idna").decode("ascii"))
    with contextlib.suppress(UnicodeError):  # an ASCII form's Unicode one
        forms.add(domain.encode("ascii").decode("idna"))
    return sorted(forms)


def covering_domains(address: str) -> list[str]:
    """Every domain whose entry covers the address (a listed domain covers its subdomains), in
    each form an entry may hold."""
    return sorted({d for form in domain_forms(domain_of(address)) for d in _parent_domains(form)})


def _keys(channel: str, address: str, prospect_id: str | None, *, domain: bool) -> list[str]:
    keys = [f"{channel}:{address}"]
    if domain and channel == EMAIL:
        keys += [f"domain:{name}" for name in covering_domains(address)]
    if prospect_id:
        keys.append(f"person:{prospect_id}")
    return sorted(keys)  # one order for everyone: no two lockers wait on each other in a cycle


async def _lock(session: AsyncSession, keys: Iterable[str], *, shared: bool) -> None:
    """PostgreSQL: transaction-scoped advisory locks (released at commit or rollback). SQLite has
    one writer at a time already and nothing finer to take."""
    if session.get_bind().dialect.name != "postgresql":
        return
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    for key in sorted(keys):
        await session.execute(text(f"SELECT {fn}(CAST(:k AS BIGINT))"), {"k": _lock_id(key)})


# --- the person's record ----------------------------------------------------------------------


async def record_of(session: AsyncSession, prospect_id: str) -> models.ConsentRecord | None:
    return await session.scalar(
        select(models.ConsentRecord).where(models.ConsentRecord.prospect_id == prospect_id)
    )


async def _record_for_change(
    session: AsyncSession, prospect_id: str | None, channel: str, address: str
) -> models.ConsentRecord:
    """The person's record, made when missing. Without a prospect the address stands for the
    person; a record made that way is adopted once the prospect is known."""
    rec = await record_of(session, prospect_id) if prospect_id else None
    if rec is None:
        column = models.ConsentRecord.email if channel == EMAIL else models.ConsentRecord.phone
        rec = await session.scalar(
            select(models.ConsentRecord)
            .where(column == address, models.ConsentRecord.prospect_id.is_(None))
            .limit(1)
        )
        if rec is not None and prospect_id:
            rec.prospect_id = prospect_id
    if rec is None:
        # a concurrent opt-out of the same prospect may make it first
        async def winner() -> models.ConsentRecord | None:
            return await record_of(session, prospect_id) if prospect_id else None

        made = models.ConsentRecord(prospect_id=prospect_id)
        rec = (await insert_or_winner(session, made, winner))[0]
    if channel == EMAIL:
        rec.email = address
    else:
        rec.phone = address
    return rec


def _set(rec: models.ConsentRecord, channel: str, status: str, reason: str) -> bool:
    if getattr(rec, f"{channel}_status") == status and getattr(rec, f"{channel}_reason") == reason:
        return False
    now = datetime.now(UTC)
    setattr(rec, f"{channel}_status", status)
    setattr(rec, f"{channel}_reason", reason[:200])
    setattr(rec, f"{channel}_changed_at", now)
    rec.updated_at = now
    return True


async def opt_out(
    session: AsyncSession,
    channel: str,
    address: str,
    reason: str,
    *,
    prospect_id: str | None = None,
    person: bool = True,
) -> bool:
    """Suppress the address on the channel and, with `person`, opt the person out of it.
    True when this changed anything. The caller commits."""
    address = suppressions.normalise_address(channel, address)
    await _lock(
        session,
        _keys(channel, address, prospect_id if person else None, domain=False),
        shared=False,
    )
    # the suppression row first: on SQLite that write takes the database's write lock, so the
    # record lookup below cannot race another opt-out of the same address
    changed = await suppressions.suppress(session, channel, address, reason)
    if person and channel in CHANNELS:
        rec = await _record_for_change(session, prospect_id, channel, address)
        # subscribers hear of the turn to opted out, once: a second way of saying it (QUIT
        # after STOP, a complaint after the unsubscribe link) only updates the reason
        turned = getattr(rec, f"{channel}_status") != OPTED_OUT
        if _set(rec, channel, OPTED_OUT, reason):
            changed = True
            await session.flush()
            if turned:
                await events.opted_out(session, rec, channel)
    await session.flush()
    return changed


async def opt_in(
    session: AsyncSession,
    channel: str,
    address: str,
    reason: str,
    *,
    prospect_id: str | None = None,
) -> bool:
    """The person asked to hear from us again on this channel (SMS START / UNSTOP)."""
    address = suppressions.normalise_address(channel, address)
    changed = await suppressions.unsuppress(session, channel, address)
    rec = await _record_for_change(session, prospect_id, channel, address)
    changed = _set(rec, channel, OPTED_IN, reason) or changed
    await session.flush()
    return changed


# --- the check at send time ---------------------------------------------------------------------


async def blocked(
    session: AsyncSession, channel: str, address: str, prospect_id: str | None
) -> str | None:
    """Why nothing may be sent on `channel` to `address` now; None when it may.

    One statement for the three reasons, most specific first (an entry on the do-not-contact
    list, a suppressed address, the person's opt-out): every send asks twice, and three round
    trips each were a sixth of the send activity's statements (docs/benchmarks.md)."""
    if channel not in CHANNELS or not address:
        return None
    address = suppressions.normalise_address(channel, address)
    d, s, c = models.DoNotContact, models.Suppression, models.ConsentRecord
    parts = [
        select(literal(1).label("rank"), d.kind.label("a"), d.value.label("b")).where(
            _dnc_condition(channel, address)
        ),
        select(literal(2), s.reason, literal("")).where(s.channel == channel, s.address == address),
    ]
    if prospect_id:
        status, reason = getattr(c, f"{channel}_status"), getattr(c, f"{channel}_reason")
        parts.append(
            select(literal(3), reason, literal("")).where(
                c.prospect_id == prospect_id, status == OPTED_OUT
            )
        )
    found = (await session.execute(union_all(*parts).order_by("rank").limit(1))).first()
    if found is None:
        return None
    rank, a, b = found
    if rank == 1:
        return f"do not contact: {a} {b}"[:200]
    return f"{'suppressed' if rank == 2 else 'opted out'}: {a}"[:200]


async def _end_guard(session: AsyncSession) -> None:
    """End the guard's read-only transaction, which releases its locks. A database that went
    away during the provider call took the locks with it: nothing is left to release, and the
    send that happened meanwhile must still be recorded (make chaos: a PostgreSQL restart during
    the SMTP call failed the attempt, and its retry sent the email again)."""
    try:
        await session.commit()
    except Exception as err:
        if not database_away(err):
            raise
        # not rollback(), which would expire what the caller holds (the send's ledger row, read
        # again on next use from a database that is away): close() lets go of them as they are
        with contextlib.suppress(Exception):
            await session.close()


@contextlib.asynccontextmanager
async def send_guard(
    session: AsyncSession, channel: str, address: str, prospect_id: str | None
) -> AsyncIterator[str | None]:
    """Yields why the send must not happen (None: go ahead), checked as late as possible.

    Send to the provider inside the block. On PostgreSQL the block holds shared locks that every
    opt-out of this address, domain or person waits for, so none commits while the provider call
    is in flight. On SQLite the one pooled connection is given back before the provider call.
    """
    address = suppressions.normalise_address(channel, address)
    if session.get_bind().dialect.name == "postgresql":
        await _lock(session, _keys(channel, address, prospect_id, domain=True), shared=True)
        try:
            yield await blocked(session, channel, address, prospect_id)
        finally:
            await _end_guard(session)
        return
    reason = await blocked(session, channel, address, prospect_id)
    await session.commit()
    yield reason


# --- the do-not-contact list ----------------------------------------------------------------------


def parse_dnc(value: str) -> tuple[str, str]:
    """(kind, normalised value) of a do-not-contact entry; ValueError says what is wrong."""
    raw = value.strip()
    if not raw:
        raise ValueError("give an email address, a phone number in E.164 or a domain")
    if raw.startswith("@"):
        raw = raw[1:]
    elif "@" in raw:
        return "email", normalize_email(raw)
    if raw.startswith("+") or re.fullmatch(r"[\d\s().-]+", raw):
        return "phone", normalize_phone(raw)
    return "domain", normalize_domain(raw)


def normalize_domain(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise ValueError(f"{value!r} is not a domain name") from err
    labels = ascii_name.split(".")
    if (
        len(labels) < 2
        or len(ascii_name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or not re.fullmatch(r"[a-z]{2,63}|xn--[a-z0-9-]+", labels[-1])
    ):
        raise ValueError(f"{value!r} is not a domain name like example.com")
    return ascii_name


def _dnc_key(kind: str, value: str) -> str:
    return {"email": f"email:{value}", "phone": f"sms:{value}", "domain": f"domain:{value}"}[kind]


async def add_dnc(
    session: AsyncSession, kind: str, value: str, reason: str
) -> tuple[models.DoNotContact, bool]:
    """The entry, and whether this call added it (an existing one is returned as it is)."""
    await _lock(session, [_dnc_key(kind, value)], shared=False)
    existing = await _find_dnc(session, kind, value)
    if existing is not None:
        return existing, False
    entry = models.DoNotContact(kind=kind, value=value, reason=reason[:200])
    return await insert_or_winner(session, entry, lambda: _find_dnc(session, kind, value))


async def _find_dnc(session: AsyncSession, kind: str, value: str) -> models.DoNotContact | None:
    return await session.scalar(
        select(models.DoNotContact).where(
            models.DoNotContact.kind == kind, models.DoNotContact.value == value
        )
    )


async def list_dnc(
    session: AsyncSession,
    kind: str | None = None,
    *,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[models.DoNotContact]:
    """Oldest first, one page (shared.paging)."""
    d = models.DoNotContact
    query = select(d) if kind is None else select(d).where(d.kind == kind)
    order = [d.created_at, d.id]
    return await page(session, query, order, after=after, limit=limit, what="do-not-contact entry")


async def delete_dnc(session: AsyncSession, entry_id: str) -> bool:
    result = await session.execute(
        delete(models.DoNotContact).where(models.DoNotContact.id == entry_id)
    )
    return bool(getattr(result, "rowcount", 0))


def _parent_domains(domain: str) -> list[str]:
    """sales.example.com -> [sales.example.com, example.com]: a listed domain covers its
    subdomains."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] or [domain]


async def dnc_match(
    session: AsyncSession, channel: str, address: str
) -> models.DoNotContact | None:
    if channel not in CHANNELS:
        return None
    d = models.DoNotContact
    return await session.scalar(select(d).where(_dnc_condition(channel, address)).limit(1))


def _dnc_condition(channel: str, address: str) -> ColumnElement[bool]:
    """The do-not-contact entries that cover `address` on `channel` (email or sms)."""
    d = models.DoNotContact
    if channel == EMAIL:
        return or_(
            (d.kind == "email") & (d.value == address),
            (d.kind == "domain") & d.value.in_(covering_domains(address)),
        )
    return (d.kind == "phone") & (d.value == address)


async def dnc_matches(
    session: AsyncSession, emails: Iterable[str], phones: Iterable[str]
) -> list[models.DoNotContact]:
    out: dict[str, models.DoNotContact] = {}
    for channel, addresses in ((EMAIL, emails), (SMS, phones)):
        for address in addresses:
            entry = await dnc_match(session, channel, address)
            if entry is not None:
                out[entry.id] = entry
    return list(out.values())


# --- what an entry does to journeys and rep tasks ----------------------------------------------


def dnc_reason(entry: models.DoNotContact) -> str:
    return f"do not contact: {entry.kind} {entry.value}"[:200]


async def covered_prospects(session: AsyncSession, kind: str, value: str) -> list[str]:
    """The enrolled prospects an entry covers: by the addresses their enrollment recorded, and
    by those the ledger sent to (enrollments made before addresses were recorded)."""
    e, m = models.Enrollment, models.Message
    if kind == "email":
        by_enrollment = e.email == value
        by_ledger = (m.channel == EMAIL) & (m.to_address == value)
    elif kind == "phone":
        by_enrollment = e.phone == value
        by_ledger = (m.channel == SMS) & (m.to_address == value)
    else:  # the domain and its subdomains (a scan: listing a domain is a rare, manual act),
        # written as addresses keep it (an internationalized one in Unicode)
        by_enrollment = or_(
            *(e.email.like(f"%{at}{name}") for name in domain_forms(value) for at in "@.")
        )
        by_ledger = (m.channel == EMAIL) & or_(
            *(m.to_address.like(f"%{at}{name}") for name in domain_forms(value) for at in "@.")
        )
    enrolled = select(e.prospect_id).where(by_enrollment)
    sent = select(m.prospect_id).where(by_ledger, m.prospect_id.in_(select(e.prospect_id)))
    return sorted(set((await session.scalars(enrolled.union(sent))).all()))


async def stop_journey_for_dnc(
    session: AsyncSession, entry: models.DoNotContact, prospect_id: str, *, relay: bool = False
) -> Stored | None:
    """Store the stop_cadence signal for the prospect's journey (once per entry and prospect:
    a repeat is None). The caller commits, then delivers; with `relay` (a caller that cannot
    deliver, such as an activity) it is due for the outreach app's relay at once."""
    stored = await store_event(
        session,
        "closeflow",
        f"do-not-contact:{entry.id}:{prospect_id}",
        "do_not_contact",
        {"entry_id": entry.id, "kind": entry.kind, "value": entry.value},
        prospect_id=prospect_id,
        signal=JourneySignal(prospect_id, Sig.STOP_CADENCE, StopCadence(dnc_reason(entry))),
    )
    if relay and stored is not None:
        await session.execute(
            update(models.InboxEvent)
            .where(models.InboxEvent.id == stored.id)
            .values(next_attempt_at=datetime.now(UTC))
        )
    return stored


async def stop_covered_journeys(session: AsyncSession, entry: models.DoNotContact) -> list[Stored]:
    stored = []
    for prospect_id in await covered_prospects(session, entry.kind, entry.value):
        item = await stop_journey_for_dnc(session, entry, prospect_id)
        if item is not None:
            stored.append(item)
    return stored


async def dnc_for_contact(
    session: AsyncSession, email: str | None, phone: str | None
) -> models.DoNotContact | None:
    """The first entry that covers any of the person's addresses, the email's before the phone's.
    One statement for both (every cadence touch asks): an email entry's kind is email or domain,
    a phone's is phone, and at most a few rows can match."""
    covering = [
        _dnc_condition(channel, suppressions.normalise_address(channel, address))
        for channel, address in ((EMAIL, email), (SMS, phone))
        if address
    ]
    if not covering:
        return None
    found = await session.scalars(select(models.DoNotContact).where(or_(*covering)))
    return min(found, key=lambda entry: entry.kind == "phone", default=None)


async def task_refusal(
    session: AsyncSession, prospect_id: str | None, email: str | None, phone: str | None
) -> tuple[str, models.DoNotContact | None] | None:
    """Why no rep task (a call, a social-network touch) may be made for this person, with the
    entry when it is the do-not-contact list; None when one may.

    A person opted out of every channel we can reach them on (email when we have an address,
    SMS when we have a number) said no to us, not to a channel. A suppressed address alone (a
    hard bounce) says nothing about the person and does not count.
    """
    entry = await dnc_for_contact(session, email, phone)
    if entry is not None:
        return dnc_reason(entry), entry
    reachable = [channel for channel, address in ((EMAIL, email), (SMS, phone)) if address]
    rec = await record_of(session, prospect_id) if prospect_id else None
    if rec is not None and reachable:
        if all(getattr(rec, f"{channel}_status") == OPTED_OUT for channel in reachable):
            reasons = "; ".join(dict.fromkeys(getattr(rec, f"{c}_reason") for c in reachable))
            return f"opted out of every channel: {reasons}"[:200], None
    return None
