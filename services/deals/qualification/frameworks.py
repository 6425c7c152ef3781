"""The qualification frameworks a deal can be judged by: the built-in ones (BANT, MEDDIC) and
those ops define and store. Use cases take a session and never commit.

Reads no deal, so the deal record (core) can check a framework name without a cycle.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import QualificationFramework
from services.deals.qualification import framework_json as fws
from services.deals.qualification.scoring import BUILTIN_FRAMEWORKS, Framework
from shared.errors import conflict, not_found


async def get_framework(session: AsyncSession, name: str) -> Framework:
    builtin = BUILTIN_FRAMEWORKS.get(name)
    if builtin is not None:
        return builtin
    row = await _find_framework(session, name)
    if row is None:
        raise not_found("framework", name)
    return fws.framework_from_spec(row.name, row.label, row.pass_score, row.criteria)


async def _find_framework(session: AsyncSession, name: str) -> QualificationFramework | None:
    stmt = select(QualificationFramework).where(QualificationFramework.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_frameworks(session: AsyncSession) -> list[dict[str, Any]]:
    out = [fws.describe(fw, builtin=True) for fw in BUILTIN_FRAMEWORKS.values()]
    rows = (
        await session.execute(select(QualificationFramework).order_by(QualificationFramework.name))
    ).scalars()
    for row in rows:
        fw = fws.framework_from_spec(row.name, row.label, row.pass_score, row.criteria)
        out.append(fws.describe(fw, builtin=False))
    return out


async def describe_framework(session: AsyncSession, name: str) -> dict[str, Any]:
    return fws.describe(await get_framework(session, name), builtin=name in BUILTIN_FRAMEWORKS)


async def save_framework(
    session: AsyncSession,
    name: str,
    label: str,
    pass_score: int,
    criteria: list[dict[str, Any]],
    *,
    create: bool,
) -> dict[str, Any]:
    if name in BUILTIN_FRAMEWORKS:
        raise conflict(
            "builtin_framework",
            f"{name} is built in and cannot be changed; create a custom framework instead",
            [{"field": "name", "problem": "built in"}],
        )
    row = await _find_framework(session, name)
    if create and row is not None:
        raise conflict(
            "framework_exists",
            f"framework {name} exists; PUT /frameworks/{name} replaces it",
            [{"field": "name", "problem": "exists"}],
        )
    if not create and row is None:
        raise not_found("framework", name)
    if row is None:
        row = QualificationFramework(name=name)
        session.add(row)
    row.label, row.pass_score, row.criteria = label, pass_score, criteria
    await session.flush()
    fw = fws.framework_from_spec(name, label, pass_score, criteria)
    return fws.describe(fw, builtin=False)
