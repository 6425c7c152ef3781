"""Who gets a new prospect: territory first, then round robin among the reps with capacity left.

Ops keep the rules in the database (PUT /assignment-rules): territories (countries -> reps) and
the most open prospects each rep may hold. A prospect whose country is in a territory goes to
that territory's reps, any other prospect to every rep; within that pool the next rep in
creation order after the pool's last pick (who may have left the pool since) that is below
capacity takes it. When the whole pool is full the prospect stays unassigned and
`assignment_note` says why.

One Assigner serves a whole transaction (one API create, or one import batch): it locks the
cursor rows first (SELECT ... FOR UPDATE), so concurrent assignments on PostgreSQL take turns and
the open counts it loaded stay true; SQLite has a single writer anyway. A creation that no limit
applies to moves its pool's cursor in one statement instead (`assign_new`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.prospecting.funnel import FUNNEL_STAGES
from services.prospecting.models import AssignmentCursor, AssignmentRules, Prospect, Rep
from shared.bounds import INT32_MAX
from shared.contracts.journey import Stage
from shared.db import utcnow
from shared.errors import invalid
from shared.ids import ResourceId
from shared.requests import WriteModel

RULES_ID = "default"
NO_REPS = "unassigned: there are no reps"
ROUND_ROBIN = "round_robin"  # the cursor of the pool of every rep (and the assignment lock)
# A prospect counts against its rep's capacity until the journey ends one way or another.
# (Referrals come after the sale: that prospect is a client, no longer the rep's open work.)
OPEN_STAGES = FUNNEL_STAGES[: FUNNEL_STAGES.index(Stage.REFERRALS)]
# A client still needs a rep (the referral asks, the thanks) but takes no seat: capacity never
# keeps them unassigned.
CLIENT_STAGES = (Stage.WON, Stage.REFERRALS)
# whose journey still needs a rep: open, or a client being asked for referrals
NEEDS_A_REP = (*OPEN_STAGES, *CLIENT_STAGES)


def takes_seat(stage: str) -> bool:
    """Whether a prospect at `stage` counts against their rep's capacity when assigned."""
    return stage not in CLIENT_STAGES


class Territory(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    countries: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1, description="country codes or names, as prospects carry them (any case)"
    )
    rep_ids: list[ResourceId] = Field(min_length=1, description="the reps who work this territory")

    @field_validator("countries")
    @classmethod
    def _normal(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip().lower() for v in values]
        if any(not v for v in cleaned):
            raise ValueError("a country must not be empty")
        return cleaned


class Rules(WriteModel):
    territories: list[Territory] = Field(default_factory=list)
    capacity: dict[str, Annotated[int, Field(ge=0, le=INT32_MAX)]] = Field(
        default_factory=dict, description="rep id -> most open prospects (overrides the default)"
    )
    default_capacity: int | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="most open prospects of a rep not in `capacity`; null: no limit",
    )

    @field_validator("capacity")
    @classmethod
    def _non_negative(cls, values: dict[str, int]) -> dict[str, int]:
        for rep_id, limit in values.items():
            if limit < 0:
                raise ValueError(f"capacity of {rep_id} must be 0 or more")
        return values

    @model_validator(mode="after")
    def _unambiguous(self) -> Rules:
        names: set[str] = set()
        owner: dict[str, str] = {}
        for t in self.territories:
            if t.name in names:
                raise ValueError(f"two territories are named {t.name!r}")
            names.add(t.name)
            for country in t.countries:
                if country in owner:
                    raise ValueError(
                        f"country {country!r} is in territories {owner[country]!r} and {t.name!r}"
                    )
                owner[country] = t.name
        return self

    def rep_ids(self) -> set[str]:
        return {r for t in self.territories for r in t.rep_ids} | set(self.capacity)

    def limit_of(self, rep_id: str) -> int | None:
        return self.capacity.get(rep_id, self.default_capacity)

    def has_limits(self) -> bool:
        return self.default_capacity is not None or bool(self.capacity)

    def limited(self) -> set[str] | None:
        """The reps with a limit: None for every rep (a default capacity), else those named."""
        return None if self.default_capacity is not None else set(self.capacity)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


async def load_rules(session: AsyncSession) -> tuple[Rules, AssignmentRules | None]:
    row = await session.get(AssignmentRules, RULES_ID)
    if row is None:
        return Rules(), None
    return Rules.model_validate(row.rules), row


async def replace_rules(session: AsyncSession, rules: Rules) -> AssignmentRules:
    known = set((await session.scalars(select(Rep.id))).all())
    unknown = sorted(rules.rep_ids() - known)
    if unknown:
        raise invalid("rep_ids", f"no rep has the id {', '.join(unknown)}")
    row = await session.get(AssignmentRules, RULES_ID)
    if row is None:
        row = AssignmentRules(id=RULES_ID, rules={}, version=0)
        session.add(row)
    row.rules = rules.model_dump(mode="json")
    row.version += 1
    row.updated_at = utcnow()
    await session.flush()
    return row


async def open_counts(
    session: AsyncSession, rep_ids: Collection[str] | None = None
) -> dict[str, int]:
    """Open prospects per rep: of every rep, or only of `rep_ids`."""
    query = (
        select(Prospect.rep_id, func.count())
        .where(Prospect.rep_id.is_not(None), Prospect.stage.in_(OPEN_STAGES))
        .group_by(Prospect.rep_id)
    )
    if rep_ids is not None:
        if not rep_ids:
            return {}
        query = query.where(Prospect.rep_id.in_(rep_ids))
    rows = (await session.execute(query)).all()
    # the query already leaves the unassigned out; the test tells the checker as much
    return {rep_id: count for rep_id, count in rows if rep_id is not None}


def pool_of(rules: Rules, reps: Sequence[Rep], country: str) -> tuple[str, list[Rep], str]:
    """(the pool's cursor name, its reps in creation order, its label) for a prospect's country:
    its territory's reps, else every rep."""
    wanted = country.strip().lower() if country else ""
    territory = next((t for t in rules.territories if wanted in t.countries), None)
    if territory is None:
        return ROUND_ROBIN, list(reps), "round robin"
    members = set(territory.rep_ids)
    pool = [r for r in reps if r.id in members]
    return f"territory:{territory.name}", pool, f"territory {territory.name}"


async def active_reps(session: AsyncSession) -> Sequence[Rep]:
    """The reps who take new prospects (an inactive rep is in no pool), in creation order."""
    query = select(Rep).where(Rep.active.is_(True)).order_by(Rep.created_at, Rep.id)
    return (await session.scalars(query)).all()


def _after_last_pick(pool: Sequence[Rep], cursor: AssignmentCursor | None) -> int:
    """Where the rotation goes on in `pool` (in creation order): after the last pick, by its
    creation time, so a pick who has left the pool since hands on to the rep created after
    them; 0 when nothing was picked yet (`len(pool)`: the rotation wraps)."""
    if cursor is None or cursor.last_rep_id is None or cursor.last_rep_created_at is None:
        return 0
    last = (cursor.last_rep_created_at, cursor.last_rep_id)
    return sum(1 for r in pool if (r.created_at, r.id) <= last)


class Assigner:
    def __init__(
        self,
        session: AsyncSession,
        rules: Rules,
        reps: Sequence[Rep],
        counts: dict[str, int],
        cursors: dict[str, AssignmentCursor],
    ) -> None:
        self._session = session
        self.rules = rules
        self.reps = list(reps)
        self.counts = counts
        self._cursors = cursors
        self._by_id = {r.id: r for r in reps}

    @classmethod
    async def load(cls, session: AsyncSession, rules: Rules | None = None) -> Assigner:
        """The rotation, locked until the transaction ends, with what a choice reads: `rules`
        when the caller has them. Every cursor in one statement, locked in name order: the
        lock is held from here to the commit, so every statement under it counts."""
        locked = (
            select(AssignmentCursor)
            .order_by(AssignmentCursor.name)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        rows = (await session.scalars(locked)).all()
        if not any(c.name == ROUND_ROBIN for c in rows):  # the database's first assignment
            await session.execute(
                _insert(session, AssignmentCursor)
                .values(name=ROUND_ROBIN, assigned=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            rows = (await session.scalars(locked)).all()
        cursors = {c.name: c for c in rows}
        reps = await active_reps(session)
        if rules is None:
            rules = (await load_rules(session))[0]
        # counted under the lock, on every assignment: only where a limit reads the count (a
        # count of every rep's open prospects grows with the table, and holds up every creation)
        return cls(session, rules, reps, await open_counts(session, rules.limited()), cursors)

    def has_capacity(self, rep_id: str) -> bool:
        limit = self.rules.limit_of(rep_id)
        return limit is None or self.counts.get(rep_id, 0) < limit

    def _take(self, rep: Rep) -> None:
        self.counts[rep.id] = self.counts.get(rep.id, 0) + 1

    def assign(
        self, country: str, preferred: str | None = None, *, seat: bool = True
    ) -> tuple[Rep | None, str]:
        """(the rep, how they were chosen) or (None, why nobody was). `seat`: the prospect
        counts against the rep's capacity (False for a client: CLIENT_STAGES)."""

        def room(rep_id: str) -> bool:
            return not seat or self.has_capacity(rep_id)

        if preferred is not None and preferred in self._by_id and room(preferred):
            rep = self._by_id[preferred]
            if seat:
                self._take(rep)
            return rep, "referrer's rep"
        pool_name, pool, label = pool_of(self.rules, self.reps, country)
        if not pool:
            return None, NO_REPS
        start = _after_last_pick(pool, self._cursors.get(pool_name))
        for step in range(len(pool)):
            rep = pool[(start + step) % len(pool)]
            if room(rep.id):
                if seat:
                    self._take(rep)
                self._advance(pool_name, rep)
                return rep, label
        return None, f"unassigned: all {len(pool)} reps of {label} are at capacity"

    def _advance(self, pool_name: str, rep: Rep) -> None:
        cursor = self._cursors.get(pool_name)
        if cursor is None:
            cursor = AssignmentCursor(name=pool_name, assigned=0)
            self._session.add(cursor)
            self._cursors[pool_name] = cursor
        cursor.last_rep_id = rep.id
        cursor.last_rep_created_at = rep.created_at
        cursor.assigned = (cursor.assigned or 0) + 1


async def assign_new(session: AsyncSession, country: str) -> tuple[str | None, str]:
    """A new prospect's rep id (None: nobody) and how they were chosen.

    Every creation makes a choice, and a choice that held the rotation's lock (AssignmentCursor)
    to the end of the creation's transaction halved the rate of creations on PostgreSQL
    (docs/benchmarks.md). Where no capacity limit reads the count of open prospects, nothing
    the choice reads is the creation's own, so on PostgreSQL the rotation moves in one statement
    of its own, committed at once (`_rotate`), before the creation's rows are written; a
    creation that fails after it leaves that rep's turn taken. With limits, the count must
    include the creations not yet committed: the lock is held to the end. SQLite has one
    connection per process (and one writer): the choice stays in the creation's transaction."""
    rules = (await load_rules(session))[0]
    if rules.has_limits() or session.get_bind().dialect.name != "postgresql":
        rep, note = (await Assigner.load(session, rules)).assign(country)
        return (rep.id if rep else None), note
    pool_name, pool, label = pool_of(rules, await active_reps(session), country)
    if not pool:
        return None, NO_REPS
    return await _rotate(session, pool_name, pool), label


# The next rep after the pool's last pick in creation order (the pick may have left the pool
# since), else the pool's first: `Assigner.assign`'s choice, in one statement (the subquery
# reads the cursor as it was before it; concurrent upserts of one pool take turns on its row).
ROTATE = sa.text(
    """
    INSERT INTO assignment_cursors AS c (name, assigned, last_rep_id, last_rep_created_at)
    VALUES (:name, 1, (CAST(:ids AS varchar[]))[1], (CAST(:times AS timestamptz[]))[1])
    ON CONFLICT (name) DO UPDATE SET
        (last_rep_id, last_rep_created_at) = (
            SELECT p.id, p.t
            FROM unnest(CAST(:ids AS varchar[]), CAST(:times AS timestamptz[])) AS p(id, t)
            ORDER BY coalesce((p.t, p.id) > (c.last_rep_created_at, c.last_rep_id), false) DESC,
                p.t, p.id
            LIMIT 1
        ),
        assigned = c.assigned + 1
    RETURNING c.last_rep_id
    """
).bindparams(
    sa.bindparam("ids", type_=ARRAY(sa.String)),
    sa.bindparam("times", type_=ARRAY(sa.DateTime(timezone=True))),
)


async def _rotate(session: AsyncSession, pool_name: str, pool: Sequence[Rep]) -> str:
    """The rep after the pool's last pick (the first when that one left the pool), moved to in
    one upsert outside the caller's transaction: the cursor row is locked only while that one
    statement runs, so concurrent creations take turns without waiting for each other's
    commits."""
    upsert = ROTATE.bindparams(
        name=pool_name, ids=[r.id for r in pool], times=[r.created_at for r in pool]
    )
    engine = session.bind
    if not isinstance(engine, AsyncEngine):  # sessions are made by shared.db.session_factory
        raise TypeError(
            "the rotation moves on a connection of its own: bind the session to an engine"
        )
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        rep_id = (await autocommit.execute(upsert)).scalar_one()
    return str(rep_id)


async def load_report(session: AsyncSession) -> list[dict[str, Any]]:
    """Each rep's open prospects against their capacity, for ops."""
    rules = (await load_rules(session))[0]
    counts = await open_counts(session)
    reps = (await session.scalars(select(Rep).order_by(Rep.created_at, Rep.id))).all()
    return [
        {
            "rep_id": r.id,
            "name": r.name,
            "open": counts.get(r.id, 0),
            "capacity": rules.limit_of(r.id),
        }
        for r in reps
    ]
