"""The template setup of the services' server-rendered pages (the ops dashboard, the rep inbox,
the public referral page): autoescaped, and strict, so a value missing from a render fails
instead of printing nothing. Every page extends `page.html` here (the HTML head they share)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import API_KEY_HEADER, PAGE_KEY_COOKIE, PAGE_PREFIX

SHARED_TEMPLATES = Path(__file__).parent / "templates"

# No scripts, no third parties, forms post only to this service, no other site may frame the
# page (a framed form's button can be clicked through a decoy: clickjacking), the URL (which may
# carry a token) never leaks through a Referer header, and nothing is cached (the pages show
# people's names and addresses).
FORM_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def templates_beside(module_file: str) -> jinja2.Environment:
    """The templates/ folder next to the module (pass its __file__), then shared/templates."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(Path(module_file).parent / "templates"),
                jinja2.FileSystemLoader(SHARED_TEMPLATES),
            ]
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


class Pages:
    """A module's pages: its templates, rendered with the values every one of them takes and
    answered with the page headers."""

    def __init__(
        self,
        module_file: str,
        headers: Mapping[str, str] = FORM_PAGE_HEADERS,
        **always: Any,
    ) -> None:
        self.templates = templates_beside(module_file)
        self.headers = dict(headers)
        self.always = always

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**self.always, **values)
        return HTMLResponse(html, status_code=status, headers=self.headers)


# --- signing in to the pages ------------------------------------------------------------------
# A browser cannot send the X-API-Key header, so the pages take the key once from a form that
# posts it (never a query string: those land in access logs, history and Referer headers) and
# keep it in an HttpOnly, SameSite=Strict cookie scoped to /ui (Secure in production).
# PageKeyMiddleware hands the cookie on as the header, so shared.auth checks it like any key.

SIGN_IN_PATH = "/ui/sign-in"
STALE_KEY_QUERY = "key"  # old bookmarks carry ?key=: never read, never echoed back
KEY_COOKIE = PAGE_KEY_COOKIE
_key_pages = Pages(__file__)


def safe_next(target: str) -> str:
    """Only a page of this service: never another host (an open redirect)."""
    if target.startswith(PAGE_PREFIX) and "//" not in target and "\\" not in target:
        return target
    return PAGE_PREFIX


def key_page(next_url: str, status: int = 401, message: str = "") -> HTMLResponse:
    return _key_pages.render(
        "key.html",
        status,
        action=SIGN_IN_PATH,
        next_url=safe_next(next_url),
        message=message or "Give your API key to open this page.",
    )


class PageKeyMiddleware:
    """For /ui/ pages: the key cookie travels on as the X-API-Key header, and a 401 answer
    becomes the page that asks for a key. `landing` maps a refused path to the page the sign-in
    returns to (a form's POST target is no page to come back to)."""

    def __init__(self, app: ASGIApp, landing: Callable[[str], str] | None = None) -> None:
        self.app = app
        self.landing = landing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PAGE_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = API_KEY_HEADER.lower().encode()
        if not any(name == header for name, _ in scope["headers"]):
            key = request.cookies.get(KEY_COOKIE)
            if key and key.isascii():
                scope = dict(scope, headers=[*scope["headers"], (header, key.encode())])
        asked = False

        async def send_or_ask(message: Message) -> None:
            nonlocal asked
            if message["type"] == "http.response.start" and message["status"] == 401:
                asked = True
                back = str(scope["path"])
                if self.landing is not None:
                    back = self.landing(back)
                elif query := request.url.remove_query_params(STALE_KEY_QUERY).query:
                    back += "?" + query  # a stale ?key= is not echoed into the page
                await key_page(back)(scope, receive, send)
                return
            if not asked:
                await send(message)

        await self.app(scope, receive, send_or_ask)
