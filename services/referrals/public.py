"""The client's personal referral page (/r/{token}): public, no API key, no JavaScript.

The link is single-use: the first successful submission marks it used, and from then on the
page says so (410). Every request is rate limited per client IP and per token (429 with
Retry-After, see rate_limit.py).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from services.referrals import schemas, service
from services.referrals.api import store_and_start
from services.referrals.models import ReferralAsk
from shared.db import Session
from shared.pages import Pages
from shared.rate_limit import FormLimits, refuse_if_limited

router = APIRouter(tags=["public"])

FIELDS = (
    ("first_name", "First name", "text"),
    ("last_name", "Last name", "text"),
    ("email", "Email", "email"),
    ("phone", "Phone", "tel"),
    ("company", "Company", "text"),
)
LABELS = {name: label for name, label, _ in FIELDS}
BLANK_ROWS = 3
_FIELD_RE = re.compile(r"^(" + "|".join(LABELS) + r")_(\d{1,2})$")
_pages = Pages(__file__, fields=FIELDS)
_page = _pages.render


def _form(
    action: str, client_name: str, rows: list[dict[str, str]], errors: list[str], status: int
) -> HTMLResponse:
    padded = rows + [{} for _ in range(max(0, BLANK_ROWS - len(rows)))]
    return _page(
        "form.html", status, action=action, client_name=client_name, rows=padded, errors=errors
    )


def _rows(form: Any) -> list[dict[str, str]]:
    """Form fields first_name_0, email_0, first_name_1, ... as one dict per row index."""
    by_index: dict[int, dict[str, str]] = {}
    for key, value in form.multi_items():
        match = _FIELD_RE.match(key)
        if match and isinstance(value, str) and int(match[2]) < schemas.MAX_PEOPLE:
            by_index.setdefault(int(match[2]), {})[match[1]] = value.strip()
    size = max(by_index, default=-1) + 1
    return [by_index.get(i, {}) for i in range(size)]


def _problems(row_number: int, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        label = LABELS.get(field, field.replace("_", " ").capitalize() or "Entry")
        problems.append(f"Person {row_number}, {label}: {e['msg']}")
    return problems


def _rate_limited(request: Request, token: str) -> HTMLResponse | None:
    limits: FormLimits = request.app.state.form_limits
    return refuse_if_limited(limits, request, token, _pages)


async def _usable_ask(request: Request, session: Session, token: str) -> ReferralAsk | HTMLResponse:
    """The ask behind the link, or the page to show instead: too many requests (checked before
    touching the database), unknown link, or a link already used."""
    if (limited := _rate_limited(request, token)) is not None:
        return limited
    ask = await service.find_ask_by_token(session, token)
    if ask is None:
        return _page("invalid_link.html", 404)
    if ask.used_at is not None:
        return _page("used_link.html", 410, client_name=ask.client_name)
    return ask


@router.get("/r/{token}", response_class=HTMLResponse, include_in_schema=False)
async def referral_form(token: str, request: Request, session: Session) -> HTMLResponse:
    ask = await _usable_ask(request, session, token)
    if isinstance(ask, HTMLResponse):
        return ask
    return _form(str(request.url.path), ask.client_name, [], [], 200)


@router.post("/r/{token}", response_class=HTMLResponse, include_in_schema=False)
async def submit_referrals(token: str, request: Request, session: Session) -> HTMLResponse:
    ask = await _usable_ask(request, session, token)
    if isinstance(ask, HTMLResponse):
        return ask
    action = str(request.url.path)
    rows = _rows(await request.form())
    people: list[schemas.ReferredPersonIn] = []
    errors: list[str] = []
    for number, row in enumerate(rows, start=1):
        if not any(row.values()):
            continue
        try:
            people.append(schemas.ReferredPersonIn.model_validate(row))
        except ValidationError as err:
            errors.extend(_problems(number, err))
    if not people and not errors:
        errors.append("Please name at least one person.")
    if errors:
        return _form(action, ask.client_name, rows, errors, 422)
    if not await service.use_link(session, ask):
        # a second submission racing the first (e.g. a double click): the first one counts
        return _page("used_link.html", 410, client_name=ask.client_name)
    # an erased person is left out without a word: the page must not tell a client who was
    pepper = request.app.state.settings.erasure_pepper.get_secret_value()
    erased = set(await service.erased_rows(session, pepper, people))
    kept = [person for index, person in enumerate(people) if index not in erased]
    await store_and_start(request, session, ask, kept)
    names = [f"{p.first_name} {p.last_name}".strip() for p in people]
    return _page("thanks.html", 200, names=names)
