"""The routes an app serves, each with its full path template, read without building them.

FastAPI (0.165) includes a router lazily: the first time anything walks an included router's
routes through `fastapi.routing.iter_route_contexts`, or a request is matched against them, it
builds every one of them for this app (its dependencies analysed and a pydantic validator made
for each parameter: about 1 ms a route, 40-75 ms an app for outreach's 85). The access check
at startup and the access and idempotency tables each walked all of them, so every app paid
for all its routes at its start, requested or not: about an eighth of the CPU of the suite's
integration tests, which start an app per test. This walk reads only what the routers already
hold: each route as declared, and the prefixes it was included under.

`tests/unit/test_served_routes.py` holds it equal to `iter_route_contexts` for every service's
app, so a FastAPI release that includes routers differently fails there, not in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute


@dataclass(frozen=True)
class ServedRoute:
    route: APIRoute  # the route as declared: the object FastAPI puts in a request's scope
    path: str  # its full template, the prefixes it was included under first
    methods: frozenset[str]


def served_routes(app: FastAPI) -> list[ServedRoute]:
    return list(_walk(app.router.routes, ""))


def _walk(routes: Iterable[BaseRoute], prefix: str) -> Iterator[ServedRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            if prefix + route.path:
                yield ServedRoute(route, prefix + route.path, frozenset(route.methods or ()))
            continue
        # an included router: FastAPI keeps the router and the context of its inclusion
        included = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if included is not None and context is not None:
            yield from _walk(included.routes, prefix + context.prefix)
