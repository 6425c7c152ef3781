"""POST /ui/sign-in, the target of the pages' key form (public: it checks the key itself).

Two things a stranger could do with it are refused before any key is looked at: post it from
another site (login CSRF: the victim's browser signed in with the stranger's key, their own
pages then refused to them), and try keys one after another (each wrong `cf_` key costs
outreach a call to prospecting). Browsers say where a form was posted from
(`Sec-Fetch-Site`); a client that does not say (a script) is no victim of CSRF."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from shared.auth import PAGE_KEY_COOKIE, PAGE_PREFIX, authenticate
from shared.errors import AppError
from shared.pages import SIGN_IN_PATH, key_page, safe_next
from shared.rate_limit import app_limiter, client_key

# wrong keys a client network may try per 10 minutes, per process
FAILED_SIGN_INS = 10
FAILED_SIGN_INS_SECONDS = 600
# where the form may be posted from: this service's own page, or typed by the user
OWN_SITE = {"same-origin", "none"}

sign_in_router = APIRouter(tags=["pages"], include_in_schema=False)


@sign_in_router.post(SIGN_IN_PATH)
async def sign_in(request: Request) -> Response:
    """A known key becomes the cookie and the browser goes back to the page it asked for."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None and fetched_from not in OWN_SITE:
        return key_page(PAGE_PREFIX, 403, "Sign in from this service's own page.")
    failures = app_limiter(
        request.app.state, "failed_sign_ins", FAILED_SIGN_INS, FAILED_SIGN_INS_SECONDS
    )
    client = client_key(request)
    if wait := failures.wait(client):
        page = key_page(PAGE_PREFIX, 429, "Too many wrong keys: try again in a few minutes.")
        page.headers["Retry-After"] = str(wait)
        return page
    form = await request.form()
    key, next_url = str(form.get("key", "")).strip(), str(form.get("next", ""))
    if not key:
        return key_page(next_url, 422, "Give your API key.")
    try:
        await authenticate(request, key)
    except AppError:
        failures.take(client)
        return key_page(next_url, 403, "That key is not valid.")
    response = RedirectResponse(
        safe_next(next_url), status_code=303, headers={"Cache-Control": "no-store"}
    )
    response.set_cookie(
        PAGE_KEY_COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.environment == "production",
        path=PAGE_PREFIX.rstrip("/"),
    )
    return response
