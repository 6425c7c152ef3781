"""One service's app on this test's databases, and clients for it: the `service_app` and `api`
fixtures. The app is migrated, started (its lifespan: relays, notifier) and stopped after the
test; the clients talk to it in process (ASGI), with the tests' API key unless told otherwise."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete
from temporalio.testing import WorkflowEnvironment

from services.prospecting.outbox import OutboxTiming
from shared.issued_keys import IntrospectedKeys
from shared.migrations import upgrade
from shared.temporal import with_codec
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, SERVICE_AUTH, make_settings
from tests.support.stack import build_app


class ServiceApp(Protocol):
    def __call__(
        self, service: str, *, outbox: OutboxTiming | None = None, **settings: Any
    ) -> Awaitable[FastAPI]: ...


class Api(Protocol):
    def __call__(
        self, app: str | FastAPI, *, key: bool = True, **settings: Any
    ) -> Awaitable[httpx.AsyncClient]: ...


@pytest.fixture
async def service_app(
    tmp_path: Path, database_urls: dict[str, str], temporal_local: WorkflowEnvironment
) -> AsyncIterator[ServiceApp]:
    """`await service_app("deals", **settings)`: that service's app, migrated and started, on
    this test's databases and the Temporal dev server (prospecting: `outbox=` for its timing)."""
    async with contextlib.AsyncExitStack() as started:

        async def start(
            service: str, *, outbox: OutboxTiming | None = None, **settings: Any
        ) -> FastAPI:
            configured = make_settings(tmp_path, database_urls, **settings)
            await asyncio.to_thread(upgrade, configured, service)
            client = temporal_local.client
            if configured.master_keys:  # payloads through the codec, as in production
                client = with_codec(client, configured)
            app = build_app(service, configured, client, outbox)
            await started.enter_async_context(app.router.lifespan_context(app))
            return app

        yield start


@pytest.fixture
async def api(service_app: ServiceApp) -> AsyncIterator[Api]:
    """`await api("prospecting")`: a client of that service's app (started as service_app
    does), or of an app the test started; `key=False` for one without the API key."""
    async with contextlib.AsyncExitStack() as clients:

        async def client(
            app: str | FastAPI, *, key: bool = True, **settings: Any
        ) -> httpx.AsyncClient:
            if isinstance(app, str):
                app = await service_app(app, **settings)
            return await clients.enter_async_context(
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT,
                    transport=httpx.ASGITransport(app),
                    base_url="http://test",
                    headers=AUTH if key else None,
                )
            )

        yield client


@pytest.fixture
async def http(api: Api, app: FastAPI) -> httpx.AsyncClient:
    """A client, with the API key, of the test module's own `app` fixture."""
    return await api(app)


Headers = dict[str, str] | None


def next_params(resp: httpx.Response) -> dict[str, Any] | None:
    """The query of the page after `resp` (its Link header, shared/paging.py); None: the last."""
    nxt = resp.links.get("next")
    if nxt is None:
        return None
    # relative to the URL asked: behind a proxy, the process's own URL is not the client's
    assert nxt["url"].startswith("?"), nxt
    return dict(httpx.URL(nxt["url"]).params)


async def every_page(
    client: httpx.AsyncClient, path: str, limit: int, headers: Headers = None, **params: Any
) -> list[list[dict[str, Any]]]:
    """The pages of a list route that pages by `limit` and `after` (shared/paging.py), each
    asked as the previous page's Link header says, up to a page without one."""
    pages: list[list[dict[str, Any]]] = []
    query: dict[str, Any] | None = {**params, "limit": limit}
    while query is not None and len(pages) < 100:
        resp = await client.get(path, params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        query = next_params(resp)
    assert query is None, f"{path}: no last page in 100: {pages[:3]}"
    return pages


# deletes the row with this id, as an erasure or a DELETE route would
Forget = Callable[[Any], Awaitable[object]]


async def assert_pages(
    client: httpx.AsyncClient,
    path: str,
    made: int,
    headers: Headers = None,
    forget: Forget | None = None,
    by_id: bool = False,
    **params: Any,
) -> None:
    """`made` rows (3 or more) come two to a page, in the order of the whole list, each once;
    a limit above the maximum, a forged cursor and an unknown `after` are 422s naming them. With `forget`: the
    last row of a page deleted before the next page is asked takes nothing else with it.
    `by_id`: the list's order is its ids, so any id is a place to page on from (no 422)."""
    pages = await every_page(client, path, 2, headers, **params)
    sizes = [len(p) for p in pages]
    assert sizes == [2] * (made // 2) + ([made % 2] if made % 2 else []), f"{path}: pages {sizes}"
    whole = (await client.get(path, params=params, headers=headers)).json()
    assert [row["id"] for p in pages for row in p] == [row["id"] for row in whole]
    forged = {"after": "k." + base64.urlsafe_b64encode(b'["1999-01-01", 7]').decode()}
    refused = [({"limit": 501}, "limit"), (forged, "after")]
    refused += [] if by_id else [({"after": "999999"}, "after")]
    for bad, field in refused:
        resp = await client.get(path, params={**params, **bad}, headers=headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["details"][0]["field"] == field
    if forget is not None:
        first = await client.get(path, params={**params, "limit": 2}, headers=headers)
        gone = first.json()[-1]["id"]
        # the older clients' form when the answer has no Link: the last row's id
        query = next_params(first) or {**params, "limit": 2, "after": gone}
        await forget(gone)
        rest = await client.get(path, params={**query, "limit": made}, headers=headers)
        assert rest.status_code == 200, rest.text
        assert [r["id"] for r in rest.json()] == [r["id"] for r in whole[2:]]


async def asking_prospecting(service_app: ServiceApp, app: FastAPI) -> None:
    """`app` (not prospecting) asks a prospecting app of this test, in process, about issued keys
    and the standing of a configured rep key's rep, as it asks the real one over HTTP."""
    prospecting = await service_app("prospecting")
    lookup = IntrospectedKeys(
        "http://prospecting", SERVICE_AUTH["X-API-Key"], httpx.ASGITransport(prospecting)
    )
    app.state.key_lookup, app.state.rep_check = lookup, lookup.rep_deactivated
    app.state.cleanup.append(lookup.close)


def deleting(sessions: Any, model: Any) -> Forget:
    """A `forget` for assert_pages: the row of `model` with that id deleted in its own
    transaction (what an erasure or a retention prune does to a row a client paged past)."""

    async def forget(row_id: Any) -> None:
        async with sessions() as session:
            await session.execute(delete(model).where(model.id == row_id))
            await session.commit()

    return forget
