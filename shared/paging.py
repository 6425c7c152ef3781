"""Pages of the list routes that answer a plain JSON list of rows from a table that grows with
every bounce, opt-out, task, deal, referral and event delivery.

A page holds at most `limit` rows (default DEFAULT_LIMIT, at most MAX_LIMIT), in the route's
order. When more rows follow, the answer carries `Link: <...>; rel="next"` (RFC 8288): the same
request with `after=<cursor>`. The cursor carries the last row's sort keys themselves, not its
id, so the next page starts where that row stood even when the row is gone by then (erased,
deleted, or moved by a change of its sort key, a snoozed task say): a cursor that named a row to
look up stopped the paging there with a 422. Rows added meanwhile shift no page (keyset).

`after=<id>` (the previous page's last row id, the older form) still works while that row
exists; a table paged by its id alone needs no look-up, so there the cursor is the id itself.
The answer stays a list, so callers that read one page see what they always saw.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from sqlalchemy import ColumnElement, DateTime, Integer, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from shared.bounds import INT32_MAX, INT64_MAX
from shared.errors import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"rows per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
    ),
]
AFTER = (
    'the next page: the cursor in the previous page\'s `Link: <...>; rel="next"` header '
    "(or, the older form, the id of the previous page's last row)"
)
# a cursor of three keys (a time, a time and a 64-character id) is ~170 characters
After = Annotated[str | None, Query(max_length=400, description=AFTER)]
# for a table whose ids are numbers and its order (suppressions): the cursor is the id
# the lists it pages are keyed by Integer ids: a larger value reached PostgreSQL, which refused it
# (a 500), where it names no row anyway
AfterNumber = Annotated[int | None, Query(ge=1, le=INT32_MAX, description=AFTER)]

Row = TypeVar("Row")
Key = InstrumentedAttribute[Any]

# No id has a "." (shared.ids.ID_PATTERN): a value starting so is a cursor, anything else an id.
CURSOR_PREFIX = "k."


class Page(list[Row]):
    """One page's rows; `next` is the `after` value of the page after it (None: the last)."""

    next: str | None = None


async def page(
    session: AsyncSession,
    query: Select[Row],
    order: Sequence[Key],
    *,
    after: str | int | None,
    limit: int,
    what: str,
    descending: bool = False,
    anchor: Sequence[Any] | None = None,
    field: str = "after",
) -> Page[Row]:
    """`query`'s rows in `order` (its last key is the table's id, unique; every key reversed
    when `descending`: newest first), at most `limit`, after the position `after` names: a
    cursor (its keys), or an id whose row is looked up (a 422 naming `field` when there is no
    such `what`). A caller that kept the previous page's last row may give its `order` values
    as `anchor` instead."""
    if anchor is None and after is not None:
        anchor = await _position(session, order, after, what, field)
    if anchor is not None:
        query = query.where(_after(order, anchor, descending))
    keys = [k.desc() for k in order] if descending else order
    rows = list((await session.scalars(query.order_by(*keys).limit(limit + 1))).all())
    found: Page[Row] = Page(rows[:limit])
    if len(rows) > limit:  # one row more than the page: there is a next page
        found.next = cursor_of(found[-1], order)
    return found


def where_given(query: Select[Row], *filters: tuple[Key, Any]) -> Select[Row]:
    """`query` narrowed by each (column, value) filter whose value was given (not None)."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query


def cursor_of(row: Any, order: Sequence[Key]) -> str:
    """The `after` value of the page after `row`: its id when the id alone is the order."""
    values = [getattr(row, k.key) for k in order]
    if len(order) == 1:
        return str(values[0])
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def _position(
    session: AsyncSession, order: Sequence[Key], after: str | int, what: str, field: str
) -> tuple[Any, ...]:
    if isinstance(after, str) and after.startswith(CURSOR_PREFIX):
        return _decode(after, order, field)
    if len(order) == 1:  # the id is the whole position: nothing to look up
        return (after,)
    found = (await session.execute(select(*order).where(order[-1] == after))).first()
    if found is None:
        raise invalid(
            field,
            f"no {what} {after}: page on with the cursor of the previous page's Link header, "
            "which stays valid when its row is deleted",
        )
    return tuple(found)


def _decode(cursor: str, order: Sequence[Key], field: str) -> tuple[Any, ...]:
    """The keys a cursor carries, each checked against its column: a cursor is the client's
    text, and a value of the wrong type or beyond the column reached the driver as a 500."""
    refused = invalid(field, "not a cursor this list gave (pass the Link header's on)")
    try:
        text = cursor.removeprefix(CURSOR_PREFIX)
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != len(order):
            raise ValueError(cursor)
        return tuple(_typed(k, v) for k, v in zip(order, values, strict=True))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError):
        raise refused from None


def _typed(key: Key, value: Any) -> Any:
    column_type = getattr(key.type, "impl", key.type)  # a TypeDecorator's underlying type
    if isinstance(column_type, DateTime):
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError(value)
        return at.astimezone(UTC)  # year 1 at +14:00 overflows here, not in the driver
    if isinstance(column_type, Integer):
        if type(value) is not int or not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValueError(value)
        return value
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError(value)
    return value


class NextLink:
    """A list route's dependency: `link(rows)` answers the rows, with the Link header of the
    next page when there is one: the request's own query, `after` replaced, as a reference
    relative to the URL the client asked (`<?...>`). An absolute URL would be this process's
    idea of it: http and the internal path behind a proxy that ends TLS or strips a prefix."""

    def __init__(self, request: Request, response: Response) -> None:
        self._request, self._response = request, response

    def __call__(self, rows: Page[Row], field: str = "after") -> Page[Row]:
        if rows.next is not None:
            query = self._request.url.include_query_params(**{field: rows.next}).query
            self._response.headers["Link"] = f'<?{query}>; rel="next"'
        return rows


Linked = Annotated[NextLink, Depends()]


def _after(
    order: Sequence[Key], values: Sequence[Any], descending: bool = False
) -> ColumnElement[bool]:
    """The rows after `values` in `order`: k1 > v1, or k1 = v1 and k2 > v2, or ... (< when
    `descending`; row-value comparison spelt out: each value is bound with its column's type)."""

    def beyond(key: Key, value: Any) -> ColumnElement[bool]:
        # the comparison operators of a mapped column are typed Any: say what they return
        comparison: ColumnElement[bool] = key < value if descending else key > value
        return comparison

    return or_(
        *(
            and_(
                *(k == v for k, v in zip(order[:i], values[:i], strict=True)),
                beyond(key, values[i]),
            )
            for i, key in enumerate(order)
        )
    )
