"""Streamed import of prospects from CSV or JSON lines.

The body is read chunk by chunk and written 500 rows per transaction, so a file of any size
needs the memory of one batch. Rows are matched to existing prospects (and to earlier rows of
the same file) by email, then phone: a match is merged by filling the fields it lacks, never
doubled, and an identical row changes nothing, so re-running a file only counts "unchanged".
Like an activity, an import opens its own sessions: each batch commits on its own.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import (
    assignment,
    auto_enroll,
    erasure,
    fit,
    funnel_queue,
    icp,
    schemas,
    service,
)
from services.prospecting.models import Import, ImportRefusal, Prospect, StageHistory
from shared.codec import MasterKey, create_data_keys
from shared.contracts.journey import Stage
from shared.db import Sessions, new_id, utcnow
from shared.errors import invalid, not_found
from shared.requests import InvalidJson, parse_json

Format = Literal["csv", "ndjson"]
BATCH = 500
MAX_LINE = 1 << 20  # a "line" longer than this is not a prospect: stop instead of buffering it
IMPORTED_CAUSE = "imported"
KNOWN = frozenset(schemas.ProspectFields.model_fields)
TEXT_FIELDS = ("last_name", "company", "title", "timezone", "industry", "country")


class ImportFailed(Exception):
    pass


@dataclass(frozen=True)
class ImportSecrets:
    """The deployment's secrets an import uses: the erasure pepper (people who asked to be
    erased are refused) and the payload master keys (each new prospect's data key)."""

    pepper: str
    master_keys: Sequence[MasterKey]


@dataclass
class Counts:
    rows: int = 0
    created: int = 0
    merged: int = 0
    unchanged: int = 0
    refused: int = 0
    refusals: list[tuple[int, str]] = field(default_factory=list)


# --- parsing ------------------------------------------------------------------------------------


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, str]]:
    """(line number from 1, text without the line break) from a byte stream."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    number = 0
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for text in complete:
            number += 1
            yield number, text.removesuffix("\r")
        if len(pending) > MAX_LINE:
            raise ImportFailed(f"line {number + 1} is longer than {MAX_LINE} characters")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield number + 1, pending.removesuffix("\r")


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _from_flat(values: dict[str, Any]) -> dict[str, Any] | str:
    """Known fields as they are; every other non-empty column goes into `custom`. A reason
    instead when the row cannot be one prospect (the row is refused, the import goes on)."""
    row: dict[str, Any] = {}
    given = values.pop("custom", None)
    if given in ("", None):
        given = {}
    if not isinstance(given, dict):
        # a CSV column of text, or a JSON number or list: nothing to merge the other columns into
        return "custom: must be an object"
    custom: dict[str, Any] = dict(given)
    for key, value in values.items():
        if key in KNOWN:
            row[key] = value
        elif value not in ("", None):
            custom[key] = value
    if row.get("company_size") == "":
        row["company_size"] = None
    for key in ("first_name", *TEXT_FIELDS):
        if row.get(key) is None:
            row.pop(key, None)  # JSON null: the field's default ("")
    row["custom"] = custom
    return row


# Read after a line: whether the reader took it too (its line_num) shows whether the record
# went on past that line; the text itself never matters.
_PROBE = "\ue000probe\n"


def _ends_inside_quotes(text: str, inside: bool) -> bool:
    """Whether the record is still inside a quoted field after this line; `inside`: it was at
    the line's start. The csv module decides, not a count of quotes: a `"` inside an unquoted
    cell (Jo"hn, O"Neil) is a plain character to it. A record goes on past a line break only
    inside a quoted field, and a `"` at the start of a record puts the reader in exactly that
    state, so each line is read once, never the record again from its start."""
    reader = csv.reader([('"' if inside else "") + text + "\n", _PROBE])
    try:
        next(reader, None)
    except csv.Error:
        return False  # the record ends here: reading it whole reports the problem by its line
    return reader.line_num > 1


async def records(
    numbered: AsyncIterator[tuple[int, str]], fmt: Format
) -> AsyncIterator[tuple[int, dict[str, Any] | str]]:
    """(line, fields) per row, or (line, reason) for a row that cannot be read."""
    if fmt == "ndjson":
        async for number, text in numbered:
            if not text.strip():
                continue
            try:
                value = parse_json(text)
            except InvalidJson as err:
                yield number, f"not JSON: {err}"
                continue
            if not isinstance(value, dict):
                yield number, "not a JSON object"
                continue
            yield number, _from_flat({_column(k): v for k, v in value.items()})
        return
    header: list[str] | None = None
    parts: list[str] = []
    size = 0
    start = 0
    async for number, text in numbered:
        if not parts:
            start, size = number, 0
        parts.append(text + "\n")
        size += len(text) + 1
        if _ends_inside_quotes(text, inside=len(parts) > 1):
            if size > MAX_LINE:  # a quoted cell that never closes must not buffer the file
                raise ImportFailed(
                    f"the record at line {start} is longer than {MAX_LINE} characters"
                )
            continue
        try:
            cells = next(csv.reader(parts), [])
        except csv.Error as err:
            cells, problem = [], f"bad CSV: {err}"
        else:
            problem = ""
        parts = []
        if header is None:
            header = [_column(c) for c in cells]
            if "first_name" not in header or not ({"email", "phone"} & set(header)):
                raise ImportFailed("the header must name first_name and email and/or phone")
            continue
        if problem:
            yield start, problem
        elif not any(c.strip() for c in cells):
            continue
        elif len(cells) != len(header):
            yield start, f"{len(cells)} columns where the header has {len(header)}"
        else:
            yield start, _from_flat(dict(zip(header, cells, strict=True)))
    if parts:
        yield start, "unterminated quoted field at the end of the file"


def _reason(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in err.errors()
    )[:500]


# --- writing ------------------------------------------------------------------------------------


def _merge(
    prospect: Prospect | SimpleNamespace,
    row: schemas.ProspectFields,
    by_email: dict[str, Any],
    by_phone: dict[str, Any],
    reached: set[str],
) -> bool:
    """Fill the prospect's empty fields from the row; True when anything changed. A stored
    prospect whose email, phone or time zone it filled in is added to `reached`."""
    reach = (prospect.email, prospect.phone, prospect.timezone)
    changed = _fill(prospect, row, by_email, by_phone)
    if (
        isinstance(prospect, Prospect)
        and (prospect.email, prospect.phone, prospect.timezone) != reach
    ):
        reached.add(prospect.id)
    return changed


def _fill(
    prospect: Prospect | SimpleNamespace,
    row: schemas.ProspectFields,
    by_email: dict[str, Any],
    by_phone: dict[str, Any],
) -> bool:
    changed = False
    if prospect.email is None and row.email is not None and row.email not in by_email:
        prospect.email = row.email
        by_email[row.email] = prospect
        changed = True
    if prospect.phone is None and row.phone is not None and row.phone not in by_phone:
        prospect.phone = row.phone
        by_phone[row.phone] = prospect
        changed = True
    for name in TEXT_FIELDS:
        value = getattr(row, name)
        if value and not getattr(prospect, name):
            setattr(prospect, name, value)
            changed = True
    if prospect.company_size is None and row.company_size is not None:
        prospect.company_size = row.company_size
        changed = True
    missing = {k: v for k, v in row.custom.items() if k not in (prospect.custom or {})}
    if missing:
        prospect.custom = {**(prospect.custom or {}), **missing}  # a new dict: JSON is not mutable
        changed = True
    return changed


async def _refuse_erased(
    session: AsyncSession,
    pepper: str,
    numbered: Sequence[tuple[int, schemas.ProspectFields]],
    counts: Counts,
) -> list[schemas.ProspectFields]:
    """The rows, without those of people who asked to be erased (refused with the reason)."""
    keyed = [(line, row, *erasure.digests(pepper, row.email, row.phone)) for line, row in numbered]
    erased = await erasure.erased_digests(
        session, (k[2] for k in keyed if k[2]), (k[3] for k in keyed if k[3])
    )
    kept = []
    for line, row, email_digest, phone_digest in keyed:
        if email_digest in erased or phone_digest in erased:
            counts.refusals.append((line, erasure.REFUSAL))
        else:
            kept.append(row)
    return kept


async def _write_batch(
    session: AsyncSession,
    rules: fit.IcpRules,
    numbered: Sequence[tuple[int, schemas.ProspectFields]],
    counts: Counts,
    secrets: ImportSecrets,
    actor: str,
) -> None:
    rows = await _refuse_erased(session, secrets.pepper, numbered, counts)
    emails = {r.email for r in rows if r.email}
    phones = {r.phone for r in rows if r.phone}
    known = (
        await session.scalars(
            select(Prospect).where(or_(Prospect.email.in_(emails), Prospect.phone.in_(phones)))
        )
    ).all()
    by_email: dict[str, Any] = {p.email: p for p in known if p.email}
    by_phone: dict[str, Any] = {p.phone: p for p in known if p.phone}
    # New rows stay plain namespaces until one bulk INSERT: building ORM objects and flushing
    # them through the unit of work took half of the import's time.
    new: list[SimpleNamespace] = []
    upgraded: list[tuple[str, str]] = []  # merged prospects whose tier went up
    reached: set[str] = set()  # known prospects whose email, phone or zone the import filled in
    for row in rows:
        match = (by_email.get(row.email) if row.email else None) or (
            by_phone.get(row.phone) if row.phone else None
        )
        if match is None:
            now = utcnow()
            prospect = SimpleNamespace(
                id=new_id(),
                **row.model_dump(),
                source="import",
                stage=Stage.PROSPECTING.value,
                created_at=now,
                updated_at=now,
            )
            new.append(prospect)
            for index, value in ((by_email, row.email), (by_phone, row.phone)):
                if value is not None:
                    index[value] = prospect
            counts.created += 1
        elif _merge(match, row, by_email, by_phone, reached):
            before = getattr(match, "tier", None)  # None: a new row of this same batch
            icp.apply(rules, match)
            if isinstance(match, Prospect) and auto_enroll.moved_up(
                before, match.tier, match.source
            ):
                upgraded.append((match.id, match.tier))
            counts.merged += 1
        else:
            counts.unchanged += 1
    for prospect_id in reached:  # a journey under way sends there, in that zone, from now on
        service.queue_contact_change(session, prospect_id)
    assigner = await assignment.Assigner.load(session) if new else None
    for prospect in new:
        assert assigner is not None
        rep, prospect.assignment_note = assigner.assign(prospect.country)
        prospect.rep_id = rep.id if rep else None
        icp.apply(rules, prospect)
    await session.flush()  # the merged prospects
    auto_enroll.queue(session, [*upgraded, *((p.id, p.tier) for p in new)], new_id())
    if not new:
        return
    await session.execute(insert(Prospect), [vars(p) for p in new])
    await create_data_keys(session, secrets.master_keys, [p.id for p in new])
    first_changes = [
        {
            "id": new_id(),
            "key": f"{service.CREATED_CAUSE}:{p.id}",
            "prospect_id": p.id,
            "from_stage": None,
            "to_stage": Stage.PROSPECTING.value,
            "cause": IMPORTED_CAUSE,
            "actor": actor,
            "at": p.created_at,
            "recorded_at": p.created_at,
            "cadence_id": "",
            "rep_id": p.rep_id or "",
            "source": p.source,
            "seconds_in_stage": None,
        }
        for p in new
    ]
    await session.execute(insert(StageHistory), first_changes)
    await funnel_queue.queue(session, [c["id"] for c in first_changes])
    # the subscribers hear of imported prospects as of those made one by one (issue 14)
    await service.queue_stage_events(session, first_changes)


async def run_import(
    sessions: Sessions,
    chunks: AsyncIterator[bytes],
    fmt: Format,
    secrets: ImportSecrets,
    actor: str = "",
) -> str:
    """Import the stream; returns the import's id (its report says how it went). `actor`: who
    imports (the key holder), named in the imported prospects' first stage change."""
    import_id = new_id()
    async with sessions() as session:
        session.add(Import(id=import_id, format=fmt, status="running"))
        await session.commit()
    counts = Counts()
    error = ""
    try:
        async with sessions() as session:
            rules = (await icp.load(session))[0]
        batch: list[tuple[int, schemas.ProspectFields]] = []
        async for number, parsed in records(lines(chunks), fmt):
            counts.rows += 1
            if isinstance(parsed, str):
                counts.refusals.append((number, parsed))
                continue
            try:
                batch.append((number, schemas.ProspectFields.model_validate(parsed)))
            except ValidationError as err:
                counts.refusals.append((number, _reason(err)))
            if len(batch) + len(counts.refusals) >= BATCH:
                await _commit(sessions, import_id, rules, batch, counts, secrets, actor)
                batch = []
        await _commit(sessions, import_id, rules, batch, counts, secrets, actor)
    except ImportFailed as err:
        error = str(err)
    except BaseException:
        # The batches committed so far stay (re-running the file is safe); the report must not
        # claim the import is still running.
        await _finish(sessions, import_id, "stopped by an internal error or a dropped upload")
        raise
    await _finish(sessions, import_id, error)
    return import_id


async def _finish(sessions: Sessions, import_id: str, error: str) -> None:
    async with sessions() as session:
        row = await session.get(Import, import_id)
        assert row is not None
        row.status = "failed" if error else "done"
        row.error = error[:500]
        row.finished_at = utcnow()
        await session.commit()


async def _commit(
    sessions: Sessions,
    import_id: str,
    rules: fit.IcpRules,
    batch: Sequence[tuple[int, schemas.ProspectFields]],
    counts: Counts,
    secrets: ImportSecrets,
    actor: str,
) -> None:
    """One transaction: the batch's prospects, its refusals and the running counts."""
    async with sessions() as session:
        await _write_batch(session, rules, batch, counts, secrets, actor)
        counts.refused += len(counts.refusals)
        session.add_all(
            ImportRefusal(import_id=import_id, line=line, reason=reason[:500])
            for line, reason in counts.refusals
        )
        counts.refusals = []
        row = await session.get(Import, import_id)
        assert row is not None
        for name in ("rows", "created", "merged", "unchanged", "refused"):
            setattr(row, name, getattr(counts, name))
        await session.commit()


async def get_report(session: AsyncSession, import_id: str) -> schemas.ImportReport:
    row = await session.get(Import, import_id)
    if row is None:
        raise not_found("import", import_id)
    refusals = (
        await session.scalars(
            select(ImportRefusal)
            .where(ImportRefusal.import_id == import_id)
            .order_by(ImportRefusal.line)
        )
    ).all()
    report = schemas.ImportReport.model_validate(row)
    report.refusals = [schemas.ImportRefusal.model_validate(r) for r in refusals]
    return report


def format_of(content_type: str, explicit: str | None) -> Format:
    kind = (explicit or content_type.split(";", 1)[0]).strip().lower()
    if kind in ("csv", "text/csv"):
        return "csv"
    if kind in ("ndjson", "jsonl", "application/x-ndjson", "application/jsonl"):
        return "ndjson"
    raise invalid("content-type", "send text/csv or application/x-ndjson (or ?format=csv|ndjson)")
