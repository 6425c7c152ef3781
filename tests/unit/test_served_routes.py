"""shared/served_routes.py reads an app's routes without FastAPI building them: it must find
exactly what FastAPI's own walk finds (which builds them), for every service's app, prefixes of
nested routers included (outreach's provider webhooks)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from shared.served_routes import served_routes
from tests.support.settings import make_settings

SERVICES = ["prospecting", "outreach", "deals", "referrals"]
Seen = list[tuple[int, str, frozenset[str]]]


def _fastapi_walk(app: FastAPI) -> Seen:
    return sorted(
        (id(ctx.original_route), ctx.path, frozenset(ctx.methods or ()))
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute) and ctx.path
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_routes_read_unbuilt_are_the_ones_fastapi_builds(service: str, tmp_path: Path) -> None:
    create_app = importlib.import_module(f"services.{service}.app").create_app
    app = create_app(make_settings(tmp_path))
    served = sorted((id(s.route), s.path, s.methods) for s in served_routes(app))
    assert served == _fastapi_walk(app)
    assert len(served) > 10


def test_nested_routers_keep_every_prefix() -> None:
    inner, outer, app = APIRouter(prefix="/in"), APIRouter(), FastAPI()

    @inner.post("/x")
    async def x() -> None: ...

    outer.include_router(inner, prefix="/mid")
    app.include_router(outer, prefix="/out")

    @app.get("/top")
    async def top() -> None: ...

    found = {(s.path, tuple(s.methods)) for s in served_routes(app)}
    assert ("/out/mid/in/x", ("POST",)) in found and ("/top", ("GET",)) in found
    assert sorted(p for p, _ in found) == sorted(p for _, p, _ in _fastapi_walk(app))
