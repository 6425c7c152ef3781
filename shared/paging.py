"""Pages of the list routes that answer a plain JSON list of rows from a table that grows with
every bounce, opt-out, task and referral (suppressions, do-not-contact, tasks, asks, referrals).

A page holds at most `limit` rows (default DEFAULT_LIMIT, at most MAX_LIMIT), in the route's
order; `after=<id>`, the id of the previous page's last row, asks for the rows after it (keyset,
the same order: rows added meanwhile do not shift the pages). A page shorter than `limit` is the
last. The answer stays a list, so callers that read one page see what they always saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from shared.bounds import INT64_MAX
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
AFTER = "the id of the previous page's last row: the page after it"
After = Annotated[str | None, Query(max_length=64, description=AFTER)]
# for a table whose ids are numbers (suppressions)
AfterNumber = Annotated[int | None, Query(ge=1, le=INT64_MAX, description=AFTER)]

Row = TypeVar("Row")


async def page(
    session: AsyncSession,
    query: Select[Row],
    order: Sequence[InstrumentedAttribute[Any]],
    *,
    after: str | int | None,
    limit: int,
    what: str,
    descending: bool = False,
    anchor: Sequence[Any] | None = None,
) -> list[Row]:
    """`query`'s rows in `order` (its last key is the table's id, unique; every key reversed
    when `descending`: newest first), at most `limit`, from after the row whose id is `after`;
    a 422 naming `after` when there is no such `what`. A caller that kept the previous page's
    last row gives its `order` values as `anchor` instead: no look-up, and its row may be gone
    (an export that an erasure crosses goes on)."""
    if anchor is None and after is not None:
        found = (await session.execute(select(*order).where(order[-1] == after))).first()
        if found is None:
            raise invalid("after", f"no {what} {after}")
        anchor = tuple(found)
    if anchor is not None:
        query = query.where(_after(order, anchor, descending))
    keys = [k.desc() for k in order] if descending else order
    return list((await session.scalars(query.order_by(*keys).limit(limit))).all())


def _after(
    order: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any], descending: bool = False
) -> ColumnElement[bool]:
    """The rows after `values` in `order`: k1 > v1, or k1 = v1 and k2 > v2, or ... (< when
    `descending`; row-value comparison spelt out: each value is bound with its column's type)."""

    def beyond(key: InstrumentedAttribute[Any], value: Any) -> ColumnElement[bool]:
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
