"""Alembic, one history per service, configured in code (no alembic.ini to keep in step)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection

from shared.db import is_sqlite, new_engine
from shared.settings import SERVICES, Settings

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, url: str) -> Config:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("version_table", f"alembic_version_{service}")
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(settings: Settings, service: str, revision: str = "heads") -> None:
    url = settings.database_url(service)
    if is_sqlite(url):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(service, url)
    cfg.attributes["settings"] = settings  # for a data migration that needs one (deals 0008)
    command.upgrade(cfg, revision)


def upgrade_all(settings: Settings) -> None:
    for service in SERVICES:
        upgrade(settings, service)


def create_index_online(name: str, table: str, columns: list[str]) -> None:
    """An index on a table the running release writes to (migrations run before the rollout,
    the previous release serving): on PostgreSQL built CONCURRENTLY, outside the migration's
    transaction, so that inserts go on meanwhile; a plain CREATE INDEX blocks them until every
    migration of the service has run, however long the build of a big table takes. A build a
    crash left half done (an invalid index) is dropped and built again."""
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        op.create_index(name, table, columns, postgresql_concurrently=True)


def run_env(metadata: MetaData) -> None:
    """Body of each service's migrations/env.py."""
    cfg = context.config
    url: str = cfg.attributes["database_url"]
    version_table = cfg.get_main_option("version_table") or "alembic_version"

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=is_sqlite(url),  # SQLite alters tables by copying them
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = new_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(migrate)
        await engine.dispose()

    asyncio.run(run())
