"""Who may call which route: the roles, the rules and their enforcement, for every service.

Roles (the key's holder, shared/auth.py): admin may do everything; ops run the configuration
(cadences, ICP, frameworks, playbook, close reasons, senders, do-not-contact, assignment) and see
all data; a rep sees and changes only their own prospects, deals and tasks, and writes no
configuration. Provider webhooks and public links carry their own signatures or tokens: PUBLIC.

Each service declares its own table beside its routes, in services/<name>/access.py: POLICIES,
one entry per (method, path template), and RESOLVERS, given to create_service_app as a
ServiceAccess. A rep's request is checked against an Owner: a path, query or body parameter whose
value is resolved to the rep it belongs to by the service's resolver for that kind (reading the
service's own data; "rep_id" needs none). List routes are not
silently narrowed: a rep must pass the owner filter (e.g. GET /prospects?rep_id=<own id>) and gets
403 without it, so a response never looks complete while it is not. Where the rows listed each
name their own rep (a prospect's deals, referral asks, tasks: a reassignment can leave some with
another rep; a client's referrals, by their ask's rep), the route also takes `OwnRows` and a rep
key sees only its own rows.

`enforce_access` runs before every route of every service (installed by shared/app.py). A route
without an entry is admin-only at run time; `uncovered_routes` lists such routes, the startup
check logs them (refuses to start in production) and tests/stack/test_roles.py fails.

Adding a route is one line in POLICIES of services/<name>/access.py, e.g.
    ("POST", "/deals/{deal_id}/notes"): rep_own("path:deal_id"),
with OPS, ADMIN, ANY_ROLE (any key, no ownership: reads of shared configuration) or PUBLIC.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from starlette.routing import compile_path

from shared.auth import ROLES, SERVICE, Principal, Role, authenticate, presented_key
from shared.errors import AppError
from shared.issued_keys import KeyLookup, RepCheck
from shared.requests import InvalidJson, has_nul, parse_json
from shared.served_routes import served_routes

log = logging.getLogger(__name__)

Resolver = Callable[[Request, str], Awaitable[str | None]]
"""(request, id) -> the rep the thing belongs to; None when it does not exist or has no rep."""

RouteKey = tuple[str, str]  # (method, path template as the app serves it, prefixes included)


Source = Literal["path", "query", "body"]
_SOURCES: dict[str, Source] = {"path": "path", "query": "query", "body": "body"}


@dataclass(frozen=True)
class Owner:
    source: Source
    name: str  # the parameter
    kind: str  # which resolver reads it: rep_id, prospect_id, deal_id, task_id, ...


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    owners: tuple[Owner, ...] = ()  # for rep keys: whose data the request touches (all checked)
    public: bool = False  # no API key at all (the route checks its own signature or token)

    def describe(self) -> str:
        if self.public:
            return "public"
        who = "/".join(r for r in (*ROLES, SERVICE) if r in self.roles)
        kinds = ", ".join(o.kind for o in self.owners)
        return f"{who} (rep: own {kinds} only)" if self.owners else who


PUBLIC = Rule(frozenset(), public=True)
ADMIN = Rule(frozenset({"admin"}))
OPS = Rule(frozenset({"admin", "ops"}))
ANY_ROLE = Rule(frozenset(ROLES))  # reads a rep needs to work: cadences, playbook, frameworks
# /internal/*: the services calling each other with CLOSEFLOW_SERVICE_TOKEN, never a person's key
SERVICE_ONLY = Rule(frozenset({SERVICE}))
INTERNAL_PREFIX = "/internal/"


def rep_own(*wheres: str) -> Rule:
    """admin and ops: any; a rep: only when each `where` ("path:deal_id", "query:rep_id",
    "body:prospect_id") names something of theirs. "=kind" names the resolver when the
    parameter's name is not one: "query:client_prospect_id=prospect_id"."""
    owners = []
    for where in wheres:
        prefix, _, rest = where.partition(":")
        name, _, kind = rest.partition("=")
        source = _SOURCES.get(prefix)
        if source is None or not name:
            raise ValueError(f"rep_own: expected path:|query:|body:<name>[=kind], got {where!r}")
        owners.append(Owner(source, name, kind or name))
    if not owners:
        raise ValueError("rep_own needs at least one parameter")
    return Rule(frozenset(ROLES), tuple(owners))


COMMON: dict[RouteKey, Rule] = {
    ("GET", "/healthz"): PUBLIC,
    # issue 12: probes carry no key; the readiness answer names only which dependency is down
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): OPS,  # Prometheus scrapes with an ops key (docs/operations.md)
    ("GET", "/audit"): ADMIN,  # issue 14: every service keeps its own audit log (shared/audit.py)
}


async def _rep_itself(_: Request, rep_id: str) -> str | None:
    return rep_id


BUILTIN_RESOLVERS: dict[str, Resolver] = {"rep_id": _rep_itself}


@dataclass(frozen=True)
class ServiceAccess:
    """What a service declares in services/<name>/access.py and passes to create_service_app."""

    policies: Mapping[RouteKey, Rule]  # COMMON is added: /healthz is every service's
    resolvers: Mapping[str, Resolver] = field(default_factory=dict)
    # Where the service finds the holder of an issued key, when it keeps them itself
    # (prospecting); the others ask prospecting (shared/issued_keys.py).
    key_lookup: Callable[[FastAPI], KeyLookup] | None = None
    # whether a configured rep key's rep was deactivated, where the service keeps the reps
    rep_check: Callable[[FastAPI], RepCheck] | None = None


# --- the app's table --------------------------------------------------------------------------


@dataclass
class AccessTable:
    """One service's policies and resolvers, kept on app.state.access."""

    service: str
    policies: dict[RouteKey, Rule]
    resolvers: dict[str, Resolver]
    # id(APIRoute) -> [(template, regex)]: the route FastAPI matched is the router's own object,
    # whose path lacks the prefixes it was included under; this maps it back to the full template
    _templates: dict[int, list[tuple[str, re.Pattern[str]]]] | None = None

    def template_of(self, app: FastAPI, request: Request) -> str | None:
        route = request.scope.get("route")
        if route is None:
            return None
        for rebuilt in (False, True):
            if self._templates is None or rebuilt:
                self._templates = _route_templates(app)
            candidates = self._templates.get(id(route))
            if candidates:
                break
        else:
            return None
        if len(candidates) == 1:
            return candidates[0][0]
        path = request.scope.get("path", "")
        return next((t for t, rx in candidates if rx.match(path)), candidates[0][0])


def _route_templates(app: FastAPI) -> dict[int, list[tuple[str, re.Pattern[str]]]]:
    found: dict[int, list[tuple[str, re.Pattern[str]]]] = {}
    for served in served_routes(app):
        regex, _, _ = compile_path(served.path)
        found.setdefault(id(served.route), []).append((served.path, regex))
    return found


def api_routes(app: FastAPI) -> Iterator[RouteKey]:
    """Every (method, full path template) the app serves through FastAPI routes."""
    for served in served_routes(app):
        for method in sorted(served.methods):
            yield method, served.path


def install_access(
    app: FastAPI,
    service: str,
    resolvers: Mapping[str, Resolver],
    policies: Mapping[RouteKey, Rule] | None = None,
) -> None:
    app.state.access = AccessTable(
        service,
        {**COMMON, **(policies or {})},
        {**BUILTIN_RESOLVERS, **resolvers},
    )


def uncovered_routes(app: FastAPI) -> list[RouteKey]:
    table: AccessTable = app.state.access
    return [key for key in api_routes(app) if key not in table.policies]


def check_coverage(app: FastAPI, strict: bool) -> None:
    """At startup: a route without a policy entry is an error (fatal when strict)."""
    missing = uncovered_routes(app)
    if not missing:
        return
    listed = ", ".join(f"{m} {p}" for m, p in missing)
    table: AccessTable = app.state.access
    message = (
        f"routes without an access policy in services/{table.service}/access.py "
        "(admin-only until added): "
    )
    if strict:
        raise RuntimeError(message + listed)
    log.error("%s%s", message, listed)


# --- enforcement --------------------------------------------------------------------------------


async def enforce_access(request: Request) -> None:
    """App-wide dependency: authenticate (unless public), then apply the route's rule."""
    table: AccessTable = request.app.state.access
    template = table.template_of(request.app, request)
    rule = table.policies.get((request.method, template or ""))
    if rule is None:
        rule = ADMIN  # fail closed: a route nobody classified is for admins only
    if has_nul(request.url.path) or has_nul(request.url.query) or "%00" in request.url.query:
        # before public routes too: PostgreSQL text cannot hold a NUL (a 500 there, not a 404)
        raise AppError(422, "nul_character", "the path or query string holds a NUL character")
    if (template or request.url.path).startswith(INTERNAL_PREFIX):
        rule = SERVICE_ONLY  # whatever a table says: no person's key reaches /internal/*
    if rule.public:
        return
    principal = await authenticate(request, presented_key(request))
    # the service token also reads and writes what an admin may (services read each other's
    # data through the public routes, e.g. GET /prospects/{id})
    role = "admin" if principal.role == SERVICE and rule is not SERVICE_ONLY else principal.role
    if role not in rule.roles:
        raise AppError(
            403,
            "forbidden_for_role",
            f"{request.method} {template} is for {rule.describe()}; this key is {principal.role}",
        )
    if principal.role == "rep":
        for owner in rule.owners:
            await _check_owner(request, table, owner, principal)


async def _check_owner(
    request: Request, table: AccessTable, owner: Owner, principal: Principal
) -> None:
    value = await _parameter(request, owner)
    if not value:
        raise AppError(
            403,
            "rep_scope_required",
            f"a rep key must name one of its own with the {owner.source} parameter {owner.name}",
        )
    resolve = table.resolvers.get(owner.kind)
    if resolve is None:  # a policy naming a kind this service cannot resolve: refuse, loudly
        log.error("no %s resolver in %s for %s", owner.kind, table.service, request.url.path)
        raise AppError(403, "not_your_resource", f"{owner.kind} ownership cannot be checked here")
    if await resolve(request, value) != principal.rep_id:
        # the same answer whether the thing is another rep's or does not exist: a rep key
        # learns nothing about other reps' data
        raise AppError(
            403, "not_your_resource", f"{owner.kind} {value} does not belong to {principal}"
        )


async def _parameter(request: Request, owner: Owner) -> str | None:
    if owner.source == "path":
        return request.path_params.get(owner.name)
    if owner.source == "query":
        return request.query_params.get(owner.name)
    try:
        # FastAPI has read the body already for routes with a body model; but a body it did not
        # parse (another content type) reaches this first, as the caller sent it
        body: Any = parse_json(await request.body())
    except InvalidJson:
        return None
    value = body.get(owner.name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def own_rows_only(request: Request) -> str | None:
    """The caller's rep id when a rep key calls (list only the rows that name that rep), else
    None (admin and ops: every row). enforce_access has identified the caller by now."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None and principal.role == "rep":
        return principal.rep_id
    return None


OwnRows = Annotated[str | None, Depends(own_rows_only)]
