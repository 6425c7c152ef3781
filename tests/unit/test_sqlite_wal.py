"""Every SQLite engine's connections run in WAL mode, and a refused switch is tried again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from shared import db


class Cursor:
    """A DB-API cursor that refuses the first `refusals` statements with `error`."""

    def __init__(self, mode: str, refusals: int, error: str = "database is locked") -> None:
        self.mode, self.refusals, self.error = mode, refusals, error
        self.statements: list[str] = []

    def execute(self, statement: str) -> None:
        self.statements.append(statement)
        if self.refusals:
            self.refusals -= 1
            raise sqlite3.OperationalError(self.error)
        if statement == "PRAGMA journal_mode=WAL":
            self.mode = "wal"

    def fetchone(self) -> tuple[Any, ...]:
        return (self.mode,)


def test_a_database_in_wal_mode_is_only_asked() -> None:
    cursor = Cursor("wal", refusals=0)
    db._wal(cursor)
    assert cursor.statements == ["PRAGMA journal_mode"]


def test_a_refused_switch_is_tried_again_until_it_is_made() -> None:
    cursor = Cursor("delete", refusals=3)
    db._wal(cursor)
    assert cursor.mode == "wal"
    assert cursor.statements[-2:] == ["PRAGMA journal_mode", "PRAGMA journal_mode=WAL"]


def test_other_errors_and_a_lock_that_stays_are_raised() -> None:
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        db._wal(Cursor("delete", refusals=1, error="disk I/O error"))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db._wal(Cursor("delete", refusals=db.WAL_SWITCH_TRIES))


async def test_an_engine_on_a_new_file_puts_it_in_wal_mode(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await engine.dispose()
