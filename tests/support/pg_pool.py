"""PostgreSQL databases of finished tests, emptied and handed to the next test of the process.

A fresh database per service per test was `CREATE DATABASE ... TEMPLATE` and `DROP DATABASE`:
each copies or unlinks a whole database's files (the catalog alone is about 8 MB). Measured on
the two-core machine, that was about half a second of the server's CPU per test, some six
minutes of a full run. A database going back to the pool costs a few statements instead:

- its connections are ended and it is renamed, so that a client the test left behind can no
  longer reach it (it would otherwise write into the next test's rows);
- its schema must still be the template's (a fingerprint of the catalog: tables, columns,
  constraints, triggers, functions, types, privileges); one a test changed (a downgrade) is
  dropped instead;
- every table written to is truncated (a new, uncounted file without statistics, as in a copy:
  the planner chooses as there), the rows the migrations wrote are put back, and every sequence
  starts again, in one transaction.

So the next test sees what a copy of the template would hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

# how many emptied databases of a service a process keeps (a test holds one set at a time; a few
# nest a second)
KEEP = 3

# The schema as the catalog has it, outside PostgreSQL's own namespaces. Objects keep their oids
# in a copy of a template, so a copy with the template's schema has the template's fingerprint.
FINGERPRINT = """
SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
  SELECT 'c' || c.oid || c.relname || c.relkind::text || c.relrowsecurity || coalesce(c.relacl::text, '')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  UNION ALL
  SELECT 'a' || a.attrelid || a.attname || a.atttypid || a.attnotnull || a.atthasdef
      || a.attisdropped
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attnum > 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  UNION ALL
  SELECT 'k' || oid || conname || pg_get_constraintdef(oid) FROM pg_constraint
    WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT 'd' || adrelid || adnum || pg_get_expr(adbin, adrelid) FROM pg_attrdef
  UNION ALL
  SELECT 't' || oid || tgname || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'p' || oid || proname || md5(prosrc) FROM pg_proc
    WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT 'y' || oid || typname FROM pg_type
    WHERE typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      AND typnamespace::regnamespace::text NOT LIKE 'pg_toast%'
  UNION ALL
  SELECT 'v' || enumtypid || enumlabel FROM pg_enum
  UNION ALL
  SELECT 'n' || oid || nspname || coalesce(nspacl::text, '') FROM pg_namespace
    WHERE nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
  UNION ALL
  SELECT 'e' || oid || extname || extversion FROM pg_extension
  UNION ALL
  SELECT 'r' || oid || rulename FROM pg_rewrite
    WHERE ev_class >= 16384
  UNION ALL
  SELECT 'db' || datallowconn || coalesce(datacl::text, '') || datconnlimit
    FROM pg_database WHERE datname = current_database()
) AS f(x)
"""
TABLES = "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables" + (
    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)
# the tables a test may have written to (the template's own rows included): a file of some size,
# a count or statistics left by VACUUM or ANALYZE
WRITTEN = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    AND (pg_relation_size(c.oid) > 0 OR c.reltuples >= 0 OR c.relpages > 0
         OR EXISTS (SELECT 1 FROM pg_statistic s WHERE s.starelid = c.oid))
"""
COUNTED = """
SELECT c.oid, c.relpages, c.reltuples, c.relallvisible
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
"""
RECOUNT = """
UPDATE pg_class c SET relpages = t.pages, reltuples = t.tuples, relallvisible = t.visible
  FROM unnest($1::oid[], $2::int[], $3::real[], $4::int[]) AS t(oid, pages, tuples, visible)
  WHERE c.oid = t.oid
    AND (c.relpages, c.reltuples, c.relallvisible) IS DISTINCT FROM (t.pages, t.tuples, t.visible)
"""
SEQUENCES = (
    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), start_value"
    " FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


def _dsn(url: str, database: str | None = None) -> str:
    """asyncpg's form of a SQLAlchemy URL."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@dataclass
class Template:
    """What an emptied copy of a service's template must hold again."""

    fingerprint: str
    counted: list[asyncpg.Record]  # (oid, relpages, reltuples, relallvisible) of its relations
    rows: dict[str, list[asyncpg.Record]]  # the rows the migrations wrote, by table
    sequences: list[tuple[str, int]]
    emptied: list[str] = field(default_factory=list)  # names ready for the next test

    @classmethod
    async def read(cls, url: str) -> Template:
        conn = await asyncpg.connect(_dsn(url))
        try:
            tables = [t for (t,) in await conn.fetch(TABLES)]
            rows = {}
            for table in tables:
                found = await conn.fetch(f"SELECT * FROM {table}")
                if found:
                    rows[table] = found
            sequences = [(s, start) for s, start in await conn.fetch(SEQUENCES)]
            counted = list(await conn.fetch(COUNTED))
            return cls(await conn.fetchval(FINGERPRINT), counted, rows, sequences)
        finally:
            await conn.close()

    async def _refill(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # foreign keys and the tables' triggers stay quiet while the rows come back
            await conn.execute("SET LOCAL session_replication_role = replica")
            written = await conn.fetch(WRITTEN)
            if written:
                # truncated, not deleted from: a fresh file, never counted (relpages 0,
                # reltuples -1) and without the statistics an ANALYZE left, as in a copy of the
                # template; the planner then chooses as it does there (tests of query plans)
                names = ", ".join(name for _, name in written)
                await conn.execute(f"TRUNCATE {names} CASCADE")
                oids = [oid for oid, _ in written]
                await conn.execute(
                    "DELETE FROM pg_statistic WHERE starelid = ANY($1::oid[]) OR starelid IN"
                    " (SELECT indexrelid FROM pg_index WHERE indrelid = ANY($1::oid[]))",
                    oids,
                )
            for table, rows in self.rows.items():
                columns = ", ".join(f'"{c}"' for c in rows[0].keys())
                marks = ", ".join(f"${i + 1}" for i in range(len(rows[0])))
                await conn.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                    [tuple(r.values()) for r in rows],
                )
            for sequence, start in self.sequences:
                await conn.execute("SELECT setval($1::regclass, $2, false)", sequence, start)
            # the sizes the template's tables and indexes were counted at (a truncated index is
            # uncounted; the template's were counted when the migrations built them)
            await conn.execute(
                RECOUNT, *(list(column) for column in zip(*self.counted, strict=True))
            )
        # and the activity counters that decide when autovacuum comes start again too
        await conn.execute("SELECT pg_stat_reset()")

    def take(self) -> str | None:
        return self.emptied.pop() if self.emptied else None

    async def give_back(self, admin_url: str, name: str) -> None:
        """`name`, done with: emptied for the next test under a new name, or dropped (enough
        kept already, clients that would not leave, a schema the test changed)."""
        admin = await asyncpg.connect(_dsn(admin_url))
        try:
            renamed = await _take_over(admin, name) if len(self.emptied) < KEEP else None
            if renamed is not None and await self._emptied(_dsn(admin_url, renamed)):
                self.emptied.append(renamed)
                return
            await admin.execute(f'DROP DATABASE IF EXISTS "{renamed or name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def _emptied(self, dsn: str) -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval(FINGERPRINT) != self.fingerprint:
                return False
            await self._refill(conn)
            return True
        except asyncpg.InsufficientPrivilegeError:
            return False  # quieting the foreign keys takes a superuser: dropped as before
        finally:
            await conn.close()


async def _take_over(admin: asyncpg.Connection, name: str) -> str | None:
    """Ends every connection to `name` and renames it, so none can come back to it."""
    renamed = f"cf_{uuid.uuid4().hex[:12]}"
    for _ in range(5):
        await admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        try:
            await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{renamed}"')
        except asyncpg.ObjectInUseError:
            continue  # a client connected again in between
        return renamed
    return None
