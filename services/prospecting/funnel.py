"""The stage funnel: counters kept at write time, read back without touching stage_history.

Every recorded stage change (services/prospecting/service.py, imports.py) is queued in its
transaction and added by a roll-up (funnel_queue.py: no row that every change locks) through
`count` to two aggregate tables (models.FunnelCount, FunnelDuration) at three grains: day "d",
block "b" (days 1-8, 9-16, 17-24, 25-end of a month) and month "m"; each with every
combination of its cadence, rep and source or "*" (all), 24 rows per change. A query sums,
with one index range per piece, the whole months inside the window, then whole blocks, then
days at its edges (at most 7 days and 3 blocks per edge), and only the rows of its own
filters, so its cost depends on the window and the groups, not on the size of stage_history.
Counts are exact; time in stage comes from a histogram of log-sized buckets
(BUCKETS_PER_DOUBLING), so medians and p90s are exact to the bucket: the value reported is the
bucket's geometric middle, within 4.4% of the true nearest-rank percentile."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, literal_column, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting.models import (
    HISTOGRAM_BUCKETS,
    FunnelCount,
    FunnelDuration,
    StageHistory,
)
from shared.contracts.journey import Stage
from shared.reporting import midnight, reporting_window

# The seven stages of the sales process, in order (won and lost are closing's outcomes).
FUNNEL_STAGES: tuple[Stage, ...] = (
    Stage.PROSPECTING,
    Stage.CONTACTING,
    Stage.QUALIFYING,
    Stage.PRESENTING,
    Stage.OBJECTIONS,
    Stage.CLOSING,
    Stage.REFERRALS,
)
# How far along each stage is: a change to a higher rank is progress. Won sits between closing
# and referrals, so presenting -> won (no objection, no separate closing step) is progress too.
RANK: dict[str, int] = {
    Stage.PROSPECTING: 0,
    Stage.CONTACTING: 1,
    Stage.QUALIFYING: 2,
    Stage.PRESENTING: 3,
    Stage.OBJECTIONS: 4,
    Stage.CLOSING: 5,
    Stage.WON: 6,
    Stage.REFERRALS: 7,
}
# Where a journey ends early: leaving a stage for one of these is drop-off, counted by cause.
DROP_OFF: frozenset[str] = frozenset({Stage.LOST, Stage.DISQUALIFIED, Stage.NURTURE})
OUTCOMES: tuple[Stage, ...] = (Stage.WON, Stage.LOST, Stage.DISQUALIFIED, Stage.NURTURE)

ALL = "*"
DIMENSIONS = ("cadence_id", "rep_id", "source")
GroupBy = Literal["cadence", "rep", "source", "month"]
GROUP_COLUMN = {"cadence": "cadence_id", "rep": "rep_id", "source": "source"}

BLOCK_DAYS = 8  # grain "b": days 1-8, 9-16, 17-24, 25-end of each month
BUCKETS_PER_DOUBLING = 8  # bucket b >= 1 holds [2**((b-1)/8), 2**(b/8)) seconds; 0 holds < 1 s
RESOLUTION = (
    f"time in stage from a histogram of {BUCKETS_PER_DOUBLING} buckets per doubling "
    "(each 9.05% wide); the value shown is the bucket's geometric middle, within 4.4% of the "
    "exact nearest-rank percentile"
)
CAUSE_LENGTH = 200  # the column's width
# A drop-off cause's kind: plain lowercase words, as every cause the journey writes begins.
CAUSE_KIND = re.compile(r"[a-z][a-z ]{0,59}")
OTHER_CAUSE = "other"


# --- buckets --------------------------------------------------------------------------------


def bucket_of(seconds: float) -> int:
    if seconds < 1:
        return 0
    return min(HISTOGRAM_BUCKETS - 1, 1 + math.floor(math.log2(seconds) * BUCKETS_PER_DOUBLING))


def bucket_middle(bucket: int) -> float:
    if bucket == 0:
        return 0.5
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def percentile_bucket(buckets: Mapping[int, int], p: float) -> int | None:
    """The bucket holding the nearest-rank p-percentile (the ceil(p*n)-th smallest stay)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p * total))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return bucket
    raise AssertionError("unreachable: rank <= total")


# --- write side ---------------------------------------------------------------------------


def cause_key(to_stage: str, cause: str) -> str:
    """The cause a change is counted by: none for progress (it needs no reason, and the table
    stays small), and only the kind of a drop-off's cause, the part before its first ':'.

    The counters are "counts without a person": they outlive an erasure (erasure.py). What
    follows the colon is free text that can name the person: the rep's words when closing lost
    ("closed lost: <reason>"), a stop's reason ("cadence stopped: <reason>"), the verdict's
    reasons ("not qualified: <reasons>"), a timeout's figures. The kinds ("closed lost",
    "cadence stopped", "not qualified", "qualification timeout", "no response after the last
    cadence step") are what ops compare; the full cause stays in the prospect's own stage
    history, which goes with them. A kind that is not plain lowercase words (a name, an
    address, a number: text the journey does not write) is counted as "other"."""
    if to_stage not in DROP_OFF:
        return ""
    kind = cause.split(":", 1)[0].strip()
    if not kind:
        return ""  # no cause given: nothing to keep
    return kind if CAUSE_KIND.fullmatch(kind) else OTHER_CAUSE


CountKey = tuple[str, str, str, str, str, str, str, str]
DurationKey = tuple[str, str, str, str, str, str, int]


def cells(row: Mapping[str, Any]) -> tuple[list[CountKey], list[DurationKey]]:
    """The aggregate rows one stage_history row adds 1 to (keys in the models' column order)."""
    at: datetime = row["at"].astimezone(UTC)
    day = at.date().isoformat()
    from_stage = row["from_stage"] or ""
    to_stage = str(row["to_stage"])
    cause = cause_key(to_stage, row["cause"])
    seconds = row.get("seconds_in_stage")
    counts: list[CountKey] = []
    durations: list[DurationKey] = []
    block = block_start(at.date()).isoformat()
    for grain, period in (("d", day), ("b", block), ("m", day[:7])):
        for c in (row["cadence_id"], ALL):
            for r in (row["rep_id"], ALL):
                for s in (row["source"], ALL):
                    counts.append((grain, c, r, s, period, from_stage, to_stage, cause))
                    if from_stage and seconds is not None:
                        durations.append((grain, c, r, s, period, from_stage, bucket_of(seconds)))
    return counts, durations


def accumulate(
    rows: Iterable[Mapping[str, Any]],
    counts: Counter[CountKey] | None = None,
    durations: Counter[DurationKey] | None = None,
) -> tuple[Counter[CountKey], Counter[DurationKey]]:
    counts = Counter() if counts is None else counts
    durations = Counter() if durations is None else durations
    for row in rows:
        c, d = cells(row)
        counts.update(c)
        durations.update(d)
    return counts, durations


COUNT_KEYS = ("grain", "cadence_id", "rep_id", "source", "period", "from_stage", "to_stage")
COUNT_COLUMNS = (*COUNT_KEYS, "cause")


DURATION_KEYS = ("grain", "cadence_id", "rep_id", "source", "period", "stage")
BUCKET_COLUMNS = tuple(f"b{i}" for i in range(HISTOGRAM_BUCKETS))


def count_rows(counts: Counter[CountKey]) -> list[dict[str, Any]]:
    return [{**dict(zip(COUNT_COLUMNS, k, strict=True)), "n": n} for k, n in sorted(counts.items())]


def duration_rows(durations: Counter[DurationKey]) -> list[dict[str, Any]]:
    """One row per histogram (key without the bucket), its buckets as columns b0..b201."""
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for (*key, bucket), n in durations.items():
        row = rows.setdefault(tuple(key), dict(zip(DURATION_KEYS, key, strict=True)))
        row[f"b{bucket}"] = row.get(f"b{bucket}", 0) + n
    return [rows[k] for k in sorted(rows)]


@functools.cache
def upserts(dialect_name: str) -> tuple[Any, Any]:
    """The two upserts, built once per dialect: the same statement object every time is compiled
    once and then found in SQLAlchemy's cache. A multi-row VALUES of the 202 bucket columns
    (each with a default) was compiled anew for every change, ~0.2 s of CPU per recorded change.
    """
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    counts = dialect.insert(FunnelCount)
    counts = counts.on_conflict_do_update(
        index_elements=list(COUNT_COLUMNS), set_={"n": FunnelCount.n + counts.excluded.n}
    )
    table = FunnelDuration.__table__
    durations = dialect.insert(table)
    durations = durations.on_conflict_do_update(
        index_elements=list(DURATION_KEYS),
        set_={c: table.c[c] + durations.excluded[c] for c in BUCKET_COLUMNS},
    )
    return counts, durations


def upsert_rows(
    dialect_name: str, counts: Counter[CountKey], durations: Counter[DurationKey]
) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The statements that add to the aggregate rows, each with its parameters (executemany),
    for a session or a migration's connection. Sorted, so concurrent writers on PostgreSQL take
    the row locks in one order and never deadlock."""
    count_upsert, duration_upsert = upserts(dialect_name)
    zeros = dict.fromkeys(BUCKET_COLUMNS, 0)  # executemany wants the same columns in every row
    statements = [
        (count_upsert, count_rows(counts)),
        (duration_upsert, [{**zeros, **row} for row in duration_rows(durations)]),
    ]
    return [(statement, rows) for statement, rows in statements if rows]


async def add_counts(
    session: AsyncSession, counts: Counter[CountKey], durations: Counter[DurationKey]
) -> None:
    """Add to the aggregate rows."""
    for statement, rows in upsert_rows(session.get_bind().dialect.name, counts, durations):
        await session.execute(statement, rows)


async def count(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add stage_history rows (with their denormalised columns) to the aggregates (the roll-up's
    work: funnel_queue.py)."""
    await add_counts(session, *accumulate(rows))


async def denormalise(
    session: AsyncSession,
    prospect_id: str,
    rep_id: str | None,
    source: str,
    at: datetime,
    cadence_id: str = "",
) -> dict[str, Any]:
    """What a new change of this prospect is counted by, and how long the stage it leaves lasted.

    The cadence comes from the change; when the caller does not know it (the journey did not
    send it), the prospect's previous change passes its cadence on: a journey runs one cadence.
    """
    previous = (
        await session.execute(
            select(StageHistory.at, StageHistory.cadence_id)
            .where(StageHistory.prospect_id == prospect_id, StageHistory.at <= at)
            .order_by(StageHistory.at.desc(), StageHistory.recorded_at.desc())
            .limit(1)
        )
    ).first()
    seconds = None
    if previous is not None:
        seconds = max(0.0, (at - previous.at).total_seconds())
        cadence_id = cadence_id or previous.cadence_id
    return {
        "cadence_id": cadence_id,
        "rep_id": rep_id or "",
        "source": source,
        "seconds_in_stage": seconds,
    }


# --- read side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: date  # inclusive
    end: date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self, periods: int) -> Window:
        return Window(self.start - timedelta(days=self.days * periods), self.start)


def window(start: date | None, end: date | None, default_days: int = 30) -> Window:
    """Whole UTC days [start, end): end defaults to tomorrow, start to `default_days` before."""
    first, after = reporting_window(
        midnight(start) if start else None,
        midnight(end) if end else None,
        default_end=midnight(datetime.now(UTC).date() + timedelta(days=1)),
        default_length=timedelta(days=default_days),
        longest=timedelta(days=366 * 20),
    )
    return Window(first.date(), after.date())


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def block_start(d: date) -> date:
    """The first day of d's block: days 1-8, 9-16, 17-24 and 25 to the month's end."""
    return d.replace(day=min(3, (d.day - 1) // BLOCK_DAYS) * BLOCK_DAYS + 1)


def _block_end(start: date) -> date:
    return _next_month(start) if start.day > 3 * BLOCK_DAYS else start + timedelta(BLOCK_DAYS)


def _spans(w: Window) -> list[tuple[str, str, str]]:
    """The window as few aggregate rows as possible: (grain, first period, end period).

    Greedy from the start: a whole month when one starts here and fits, else a whole block, else
    a day; consecutive pieces of one grain merge into one range. A window reads at most 7 days
    and 3 blocks at each end, plus its whole months.
    """
    pieces: list[tuple[str, str, str]] = []
    cursor = w.start
    while cursor < w.end:
        if cursor.day == 1 and _next_month(cursor) <= w.end:
            grain, period, following = "m", cursor.isoformat()[:7], _next_month(cursor)
        elif block_start(cursor) == cursor and _block_end(cursor) <= w.end:
            grain, period, following = "b", cursor.isoformat(), _block_end(cursor)
        else:
            grain, period, following = "d", cursor.isoformat(), cursor + timedelta(days=1)
        end = following.isoformat()[:7] if grain == "m" else following.isoformat()
        if pieces and pieces[-1][0] == grain and pieces[-1][2] == period:
            pieces[-1] = (grain, pieces[-1][1], end)
        else:
            pieces.append((grain, period, end))
        cursor = following
    return pieces


@dataclass(frozen=True)
class Filters:
    cadence_id: str | None = None
    rep_id: str | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"cadence_id": self.cadence_id, "rep_id": self.rep_id, "source": self.source}


def _dimensions(
    model: Any, filters: Filters, group_by: GroupBy | None, values: Sequence[str] = ()
) -> list[Any]:
    """Each dimension: the filter's value, the group's values when grouped by it, else "*"
    (all). The group's values are listed (IN), not `!= "*"`: with a list every value is one
    index range down to the period, where `!=` would read every period of every value."""
    conditions = []
    for dim in DIMENSIONS:
        column = getattr(model, dim)
        value = filters.as_dict()[dim]
        if value is not None:
            conditions.append(column == value)
        elif group_by is not None and GROUP_COLUMN.get(group_by) == dim:
            conditions.append(column.in_(values))
        else:
            conditions.append(column == ALL)
    return conditions


async def _group_values(
    session: AsyncSession, w: Window, filters: Filters, group_by: GroupBy | None
) -> list[str]:
    """The values of the grouped dimension present in the months the window touches, read from
    the month rows (every change adds to its month row too, so none is missed; they are few)."""
    if group_by is None or group_by not in GROUP_COLUMN:
        return []
    column = getattr(FunnelCount, GROUP_COLUMN[group_by])
    conditions = [
        FunnelCount.grain == "m",
        FunnelCount.period >= w.start.isoformat()[:7],
        FunnelCount.period <= (w.end - timedelta(days=1)).isoformat()[:7],
        column != ALL,
    ]
    for dim in DIMENSIONS:
        value = filters.as_dict()[dim]
        if dim == GROUP_COLUMN[group_by]:
            if value is not None:
                conditions.append(column == value)
        else:
            other = getattr(FunnelCount, dim)
            conditions.append(other == (ALL if value is None else value))
    return list((await session.scalars(select(column).where(*conditions).distinct())).all())


def _rows(
    model: Any,
    columns: list[str],
    w: Window,
    filters: Filters,
    group_by: GroupBy | None,
    values: Sequence[str] = (),
) -> Any:
    """The aggregate rows of the window: one SELECT per span (UNION ALL), each an index range
    (grain, dimensions, period), so no span scans another's grain. Column "g" is the group."""
    dims = _dimensions(model, filters, group_by, values)
    group: ColumnElement[Any]
    if group_by is None:
        group = literal_column("''")
    elif group_by == "month":
        group = func.substr(model.period, 1, 7)
    else:
        group = getattr(model, GROUP_COLUMN[group_by])
    selects = [
        select(group.label("g"), *(model.__table__.c[c] for c in columns)).where(
            model.grain == grain, model.period >= lo, model.period < hi, *dims
        )
        for grain, lo, hi in _spans(w)
    ]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery()


@dataclass
class StageNumbers:
    entered: int = 0
    left: int = 0
    advanced: int = 0
    dropped: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    buckets: Counter[int] = field(default_factory=Counter)

    @property
    def conversion(self) -> float | None:
        return self.advanced / self.left if self.left else None


@dataclass
class Group:
    key: str | None
    stages: dict[str, StageNumbers] = field(
        default_factory=lambda: {s.value: StageNumbers() for s in FUNNEL_STAGES}
    )
    outcomes: Counter[str] = field(default_factory=Counter)


def add_transition(group: Group, from_stage: str, to_stage: str, cause: str, n: int) -> None:
    """The funnel's definitions, in one place (the tests' brute force uses them too)."""
    if to_stage in group.stages:
        group.stages[to_stage].entered += n
    if to_stage in OUTCOMES:
        group.outcomes[to_stage] += n
    if from_stage in group.stages:
        numbers = group.stages[from_stage]
        numbers.left += n
        if to_stage in DROP_OFF:
            numbers.dropped += n
            numbers.causes[cause] += n
        elif RANK.get(to_stage, -1) > RANK[from_stage]:
            numbers.advanced += n


async def compute(
    session: AsyncSession, w: Window, filters: Filters, group_by: GroupBy | None = None
) -> list[Group]:
    groups: dict[str | None, Group] = {}

    def group(key: str | None) -> Group:
        return groups.setdefault(key, Group(key))

    values = await _group_values(session, w, filters, group_by)
    if group_by in GROUP_COLUMN and not values:
        return []  # nothing recorded in the window's months: no group
    counts = _rows(
        FunnelCount, ["from_stage", "to_stage", "cause", "n"], w, filters, group_by, values
    )
    summed = await session.execute(
        select(counts.c.g, counts.c.from_stage, counts.c.to_stage, counts.c.cause)
        .add_columns(func.sum(counts.c.n))
        .group_by(counts.c.g, counts.c.from_stage, counts.c.to_stage, counts.c.cause)
    )
    for key, from_stage, to_stage, cause, n in summed:
        add_transition(group(key if group_by else None), from_stage, to_stage, cause, int(n))
    stays = _rows(FunnelDuration, ["stage", *BUCKET_COLUMNS], w, filters, group_by, values)
    summed = await session.execute(
        select(stays.c.g, stays.c.stage)
        .add_columns(*(func.sum(stays.c[b]) for b in BUCKET_COLUMNS))
        .group_by(stays.c.g, stays.c.stage)
    )
    for key, stage, *histogram in summed:
        numbers = group(key if group_by else None).stages.get(stage)
        if numbers is not None:  # won: a stay no funnel row shows
            numbers.buckets.update({b: int(n) for b, n in enumerate(histogram) if n})
    if not groups and group_by is None:
        group(None)
    return sorted(groups.values(), key=lambda x: x.key or "")


def _seconds(buckets: Mapping[int, int], p: float) -> float | None:
    b = percentile_bucket(buckets, p)
    return None if b is None else round(bucket_middle(b), 1)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def stage_json(stage: str, numbers: StageNumbers) -> dict[str, Any]:
    return {
        "stage": stage,
        "entered": numbers.entered,
        "left": numbers.left,
        "advanced": numbers.advanced,
        "dropped": numbers.dropped,
        "conversion": _ratio(numbers.conversion),
        "stays_measured": sum(numbers.buckets.values()),
        "median_seconds": _seconds(numbers.buckets, 0.5),
        "p90_seconds": _seconds(numbers.buckets, 0.9),
        "drop_off": [
            {"cause": cause, "count": n}
            for cause, n in sorted(numbers.causes.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


def group_json(group: Group) -> dict[str, Any]:
    return {
        "key": group.key,
        "stages": [stage_json(s, n) for s, n in group.stages.items()],
        "outcomes": {o.value: group.outcomes[o.value] for o in OUTCOMES},
    }


async def funnel(
    session: AsyncSession, w: Window, filters: Filters, group_by: GroupBy | None = None
) -> dict[str, Any]:
    groups = await compute(session, w, filters, group_by)
    return {
        "from": w.start.isoformat(),
        "to": w.end.isoformat(),
        "filters": filters.as_dict(),
        "group_by": group_by,
        "percentiles": RESOLUTION,
        "groups": [group_json(g) for g in groups],
    }


# --- bottleneck ---------------------------------------------------------------------------


def _counts(numbers: StageNumbers) -> dict[str, int]:
    return {"left": numbers.left, "advanced": numbers.advanced, "dropped": numbers.dropped}


async def bottleneck(
    session: AsyncSession, w: Window, filters: Filters, periods: int, min_left: int
) -> dict[str, Any]:
    """The stage whose conversion (advanced / left) in the window falls furthest below its
    pooled conversion over the `periods` windows of the same length just before it.

    Only stages that `min_left` prospects or more left in both the window and the benchmark
    count: a rate over a handful of people is noise. No stage below its benchmark: stage None.
    """
    benchmark_window = w.previous(periods)
    current = (await compute(session, w, filters))[0]
    before = (await compute(session, benchmark_window, filters))[0]
    candidates = []
    for stage in FUNNEL_STAGES:
        now, then = current.stages[stage], before.stages[stage]
        entry: dict[str, Any] = {
            "stage": stage.value,
            "current": _ratio(now.conversion),
            "benchmark": _ratio(then.conversion),
            "gap": None,
            "counts": {"current": _counts(now), "benchmark": _counts(then)},
            "eligible": now.left >= min_left and then.left >= min_left,
        }
        if now.conversion is not None and then.conversion is not None:
            entry["gap"] = _ratio(then.conversion - now.conversion)
        candidates.append(entry)
    below = [c for c in candidates if c["eligible"] and c["gap"] is not None and c["gap"] > 0]
    worst = max(below, key=lambda c: c["gap"], default=None)  # first of equals: earlier stage
    return {
        "window": {"from": w.start.isoformat(), "to": w.end.isoformat()},
        "benchmark_window": {
            "from": benchmark_window.start.isoformat(),
            "to": benchmark_window.end.isoformat(),
            "periods": periods,
        },
        "filters": filters.as_dict(),
        "min_left": min_left,
        "stage": worst["stage"] if worst else None,
        "bottleneck": worst,
        "stages": candidates,
    }
