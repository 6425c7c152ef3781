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
) -> list[Row]:
    """`query`'s rows in `order` (its last key is the table's id, unique), at most `limit`, from
    after the row whose id is `after`; a 422 naming `after` when there is no such `what`."""
    if after is not None:
        anchor = (await session.execute(select(*order).where(order[-1] == after))).first()
        if anchor is None:
            raise invalid("after", f"no {what} {after}")
        query = query.where(_after(order, tuple(anchor)))
    return list((await session.scalars(query.order_by(*order).limit(limit))).all())


def _after(
    order: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any]
) -> ColumnElement[bool]:
    """The rows after `values` in `order`: k1 > v1, or k1 = v1 and k2 > v2, or ... (row-value
    comparison spelt out: each value is bound with its own column's type)."""
    return or_(
        *(
            and_(*(k == v for k, v in zip(order[:i], values[:i], strict=True)), key > values[i])
            for i, key in enumerate(order)
        )
    )
