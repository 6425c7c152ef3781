"""`Idempotency-Key` on deals' creating routes (shared/idempotency.py): a retried POST whose
answer was lost creates nothing a second time, tells the journey nothing a second time, and a
first attempt whose signal failed is finished by the retry.

Temporal is made unreachable as in an outage (tests/support/gate.py) or held (an interceptor
that waits), the rest of the app is as deployed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update
from temporalio.client import Client, Interceptor, OutboundInterceptor, SignalWorkflowInput

from services.deals.models import IdempotencyKey
from shared.contracts.names import Sig
from shared.db import utcnow
from tests.support.deals import GOOD_ANSWERS, DealsEnv, error, in_an_hour, signals
from tests.support.gate import temporal_out_of_reach
from tests.support.settings import API_KEY, SERVICE_AUTH

OTHER_KEY = "other-admin-key"


def keyed(key: str, api_key: str = API_KEY) -> dict[str, str]:
    return {"Idempotency-Key": key, "X-API-Key": api_key}


async def objections_of(env: DealsEnv, deal_id: str) -> list[str]:
    detail = (await env.http.get(f"/deals/{deal_id}")).json()
    return [o["id"] for o in detail["objections"]]


def objection_signals(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in got if s["name"] == Sig.OBJECTION_LOGGED]


@contextmanager
def temporal(env: DealsEnv, client: Client) -> Iterator[None]:
    env.app.state.temporal = client
    try:
        yield
    finally:
        env.app.state.temporal = env.client


async def test_a_retried_objection_is_recorded_and_signalled_once(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    body = {"text": "too expensive"}
    first = await env.http.post(f"/deals/{deal_id}/objections", json=body, headers=keyed("obj-1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await env.http.post(f"/deals/{deal_id}/objections", json=body, headers=keyed("obj-1"))
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await objections_of(env, deal_id) == [first.json()["objection"]["id"]]
    assert len(objection_signals(await signals(journey, 3))) == 1
    # the audit log holds the one objection's creation
    audit = (await env.http.get("/audit", params={"resource": "objections"})).json()
    assert len([e for e in audit["entries"] if e["action"] == "create"]) == 1


async def test_the_same_objection_text_without_a_key_or_with_another_is_a_new_one(
    env: DealsEnv,
) -> None:
    deal_id, _ = await env.presenting_deal()
    body = {"text": "too expensive"}
    for headers in ({}, {}, keyed("a"), keyed("b")):
        r = await env.http.post(f"/deals/{deal_id}/objections", json=body, headers=headers)
        assert r.status_code == 201, r.text
    assert len(await objections_of(env, deal_id)) == 4


async def test_a_key_reused_with_another_body_is_refused(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    url = f"/deals/{deal_id}/objections"
    r = await env.http.post(url, json={"text": "too expensive"}, headers=keyed("k"))
    assert r.status_code == 201, r.text
    r = await env.http.post(url, json={"text": "no budget"}, headers=keyed("k"))
    assert (r.status_code, error(r)["code"]) == (422, "idempotency_key_reused"), r.text
    # the same JSON in another key order and spacing is the same body
    r = await env.http.post(
        url,
        content=b'{ "text" : "too expensive" }',
        headers={**keyed("k"), "content-type": "application/json"},
    )
    assert r.status_code == 201 and r.headers["Idempotent-Replayed"] == "true"
    assert len(await objections_of(env, deal_id)) == 1


async def test_bad_keys_are_refused_with_400(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    for key in (b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"):
        r = await env.http.post(
            f"/deals/{deal_id}/objections",
            json={"text": "too expensive"},
            headers=[(b"Idempotency-Key", key), (b"X-API-Key", API_KEY.encode())],
        )
        assert (r.status_code, error(r)["code"]) == (400, "invalid_idempotency_key"), key
    assert await objections_of(env, deal_id) == []


async def test_another_api_key_with_the_same_key_is_independent(env: DealsEnv) -> None:
    settings = env.app.state.settings
    both = settings.model_copy(update={"api_keys": [SecretStr(API_KEY), SecretStr(OTHER_KEY)]})
    for cached in ("api_principals", "api_key_values"):
        both.__dict__.pop(cached, None)
    env.app.state.settings = both
    deal_id, _ = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    mine = await env.http.post(url, json=body, headers=keyed("shared"))
    theirs = await env.http.post(url, json=body, headers=keyed("shared", OTHER_KEY))
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["objection"]["id"] != theirs.json()["objection"]["id"]
    # another body under the same value is no reuse of the other holder's key
    r = await env.http.post(url, json={"text": "no budget"}, headers=keyed("mine", OTHER_KEY))
    assert r.status_code == 201, r.text


async def test_an_objection_whose_signal_failed_is_finished_by_the_retry(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    with temporal(env, await temporal_out_of_reach(env.client)):
        r = await env.http.post(url, json=body, headers=keyed("lost"))
    assert r.status_code == 503, r.text
    stored = await objections_of(env, deal_id)
    assert len(stored) == 1
    assert objection_signals(await journey.query("signals")) == []
    # the retry: the same objection, told to the journey now
    r = await env.http.post(url, json=body, headers=keyed("lost"))
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers
    assert r.json()["objection"]["id"] == stored[0]
    told = objection_signals(await signals(journey, 2))
    assert [s["payload"]["objection_id"] for s in told] == stored
    # and once more: its answer replayed, nothing told again
    again = await env.http.post(url, json=body, headers=keyed("lost"))
    assert (again.status_code, again.json()) == (201, r.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await objections_of(env, deal_id) == stored
    await asyncio.sleep(0.2)
    assert len(objection_signals(await journey.query("signals"))) == 1


class _Held(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, gate: asyncio.Event) -> None:
        super().__init__(next)
        self.gate = gate

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        await self.gate.wait()
        await super().signal_workflow(input)


class _Hold(Interceptor):
    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Held(next, self.gate)


@asynccontextmanager
async def first_held(
    env: DealsEnv, deal_id: str, url: str, body: dict[str, Any], key: str
) -> AsyncIterator[tuple[asyncio.Task[httpx.Response], asyncio.Event]]:
    """The first request with `key` running: it holds its key (its objection stored, its signal
    waiting at the gate, which is opened on leaving)."""
    gate = asyncio.Event()
    config = env.client.config()
    config["interceptors"] = [_Hold(gate)]
    with temporal(env, Client(**config)):
        first = asyncio.create_task(env.http.post(url, json=body, headers=keyed(key)))
        for _ in range(200):
            if await objections_of(env, deal_id):
                break
            await asyncio.sleep(0.02)
        try:
            yield first, gate
        finally:
            gate.set()


async def test_a_repeat_while_the_first_runs_is_told_to_wait(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    async with first_held(env, deal_id, url, body, "busy") as (first, gate):
        second = await env.http.post(url, json=body, headers=keyed("busy"))
        assert (second.status_code, error(second)["code"]) == (409, "idempotency_key_in_flight")
        assert second.headers["Retry-After"]
        gate.set()
        r = await first
    assert r.status_code == 201, r.text
    third = await env.http.post(url, json=body, headers=keyed("busy"))
    assert (third.status_code, third.json()) == (201, r.json())
    assert len(await objections_of(env, deal_id)) == 1
    assert len(objection_signals(await signals(journey, 2))) == 1


async def test_a_request_running_longer_than_the_lease_keeps_its_key(env: DealsEnv) -> None:
    """The claim's lease bounds how long a dead process holds a key, not how long a request may
    run: it is renewed while the request runs. Before, a first request still running when its
    5 minutes ended lost its key: the repeat took it over and ran the route again (201) while
    the first still ran (a long import would run twice at once)."""
    deal_id, _ = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    lease = timedelta(seconds=0.3)
    env.app.state.idempotency_lease = lease
    async with first_held(env, deal_id, url, body, "long") as (first, gate):
        # the first has run past its lease (as 5 minutes would have passed)
        async with env.app.state.sessions() as session:
            await session.execute(update(IdempotencyKey).values(locked_until=utcnow()))
            await session.commit()
        await asyncio.sleep(3 * lease.total_seconds())
        # a repeat that took the key over runs the route again, and waits on the gate too
        repeat = asyncio.create_task(env.http.post(url, json=body, headers=keyed("long")))
        await asyncio.wait({repeat}, timeout=10)
        gate.set()
        second, r = await repeat, await first
    assert second.status_code == 409, (second.status_code, second.text)
    assert error(second)["code"] == "idempotency_key_in_flight"
    assert r.status_code == 201, r.text
    assert len(await objections_of(env, deal_id)) == 1
    async with env.app.state.sessions() as session:
        record = await session.scalar(select(IdempotencyKey))
    assert record is not None and record.locked_until is None  # answered: the renewal stopped
    third = await env.http.post(url, json=body, headers=keyed("long"))
    assert (third.status_code, third.json()) == (201, r.json())


async def test_two_first_requests_at_once_make_one_objection(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    gate = asyncio.Event()
    config = env.client.config()
    config["interceptors"] = [_Hold(gate)]
    with temporal(env, Client(**config)):
        both = {
            asyncio.create_task(env.http.post(url, json=body, headers=keyed("twin")))
            for _ in range(2)
        }
        done, held = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        refused = done.pop().result()
        assert (refused.status_code, error(refused)["code"]) == (409, "idempotency_key_in_flight")
        gate.set()
        r = await held.pop()
    assert r.status_code == 201, r.text
    assert len(await objections_of(env, deal_id)) == 1
    assert len(objection_signals(await signals(journey, 2))) == 1


async def test_an_expired_key_is_new_again_and_purged(env: DealsEnv) -> None:
    deal_id, _ = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "too expensive"}
    assert (await env.http.post(url, json=body, headers=keyed("old"))).status_code == 201
    async with env.app.state.sessions() as session:
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    r = await env.http.post(url, json=body, headers=keyed("old"))
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert len(await objections_of(env, deal_id)) == 2
    # expire it again: another key's first request deletes it
    async with env.app.state.sessions() as session:
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert (await env.http.post(url, json=body, headers=keyed("new"))).status_code == 201
    async with env.app.state.sessions() as session:
        left = (await session.scalars(select(IdempotencyKey))).all()
    assert len(left) == 1 and left[0].expires_at > utcnow()


async def test_a_retried_meeting_books_one_meeting(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()
    url = f"/deals/{deal_id}/meetings"
    body = {"starts_at": in_an_hour().isoformat(), "title": "Demo"}
    with temporal(env, await temporal_out_of_reach(env.client)):
        r = await env.http.post(url, json=body, headers=keyed("m"))
    assert r.status_code == 503, r.text
    first = await env.http.post(url, json=body, headers=keyed("m"))
    again = await env.http.post(url, json=body, headers=keyed("m"))
    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    meetings = (await env.http.get(f"/deals/{deal_id}")).json()["meetings"]
    assert [m["id"] for m in meetings] == [first.json()["id"]]
    names = [s["name"] for s in await signals(journey, 2)]
    assert names.count(Sig.MEETING_SCHEDULED) == 1


async def test_a_retried_qualification_and_framework_create_nothing_again(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    assert journey is not None
    url, body = f"/deals/{deal_id}/qualification", {"answers": GOOD_ANSWERS}
    first = await env.http.post(url, json=body, headers=keyed("q"))
    again = await env.http.post(url, json=body, headers=keyed("q"))
    assert first.status_code == 200, first.text
    assert (again.json(), again.headers["Idempotent-Replayed"]) == (first.json(), "true")
    assert [s["name"] for s in await signals(journey, 1)] == [Sig.QUALIFICATION_RECORDED]
    framework = {
        "name": "seats-fit",
        "label": "Seats",
        "pass_score": 100,
        "criteria": [
            {"key": "pain", "question": "Pain?", "answer_type": "bool", "rule": {"allowed": [True]}}
        ],
    }
    first = await env.http.post("/frameworks", json=framework, headers=keyed("f"))
    again = await env.http.post("/frameworks", json=framework, headers=keyed("f"))
    assert first.status_code == 201, first.text
    # without the key, the same create is refused as a duplicate: the key answered it instead
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_an_erasure_forgets_the_answers_kept_for_retries(env: DealsEnv) -> None:
    """An objection's answer, kept a day for the client's retry, holds its text and deal: after
    the prospect's erasure the retry got it back."""
    deal_id, _ = await env.presenting_deal()
    url, body = f"/deals/{deal_id}/objections", {"text": "Ada's budget is frozen"}
    first = await env.http.post(url, json=body, headers=keyed("obj-1"))
    assert first.status_code == 201, first.text
    prospect_id = (await env.http.get(f"/deals/{deal_id}")).json()["prospect_id"]
    order = {"erasure_id": "e-ada", "prospect_id": prospect_id}
    erased = await env.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.json()["deleted"]["idempotency_keys"] == 1, erased.text
    after = await env.http.post(url, json=body, headers=keyed("obj-1"))
    assert "Idempotent-Replayed" not in after.headers, after.text


async def test_a_late_retry_of_an_older_move_or_close_does_not_undo_a_newer_one(
    env: DealsEnv,
) -> None:
    """A client whose answer to a move was lost retries it after a newer move was made (by it or
    by a colleague): without the key the retry moved the meeting back, re-closed a reopened deal,
    put the deal back to an earlier stage. With the same key it gets its first answer again and
    nothing changes."""
    deal_id, _ = await env.presenting_deal()
    made = await env.http.post(
        f"/deals/{deal_id}/meetings", json={"starts_at": in_an_hour().isoformat(), "title": "Demo"}
    )
    assert made.status_code == 201, made.text
    move = f"/deals/{deal_id}/meetings/{made.json()['id']}/reschedule"
    first_time = {"starts_at": (in_an_hour() + timedelta(hours=1)).isoformat()}
    newer_time = {"starts_at": (in_an_hour() + timedelta(hours=2)).isoformat()}
    first = await env.http.post(move, json=first_time, headers=keyed("move-1"))
    assert first.status_code == 200, first.text
    assert (await env.http.post(move, json=newer_time, headers=keyed("move-2"))).is_success
    late = await env.http.post(move, json=first_time, headers=keyed("move-1"))
    assert (late.status_code, late.json()) == (200, first.json())
    assert late.headers["Idempotent-Replayed"] == "true"
    meeting = (await env.http.get(f"/deals/{deal_id}")).json()["meetings"][0]
    assert (meeting["starts_at"], meeting["revision"]) == (
        newer_time["starts_at"].replace("+00:00", "Z"),
        2,
    )

    to_objections = {"stage": "objections"}
    staged = await env.http.post(f"/deals/{deal_id}/stage", json=to_objections, headers=keyed("s"))
    assert staged.status_code == 200, staged.text
    assert (await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "closing"})).is_success
    late = await env.http.post(f"/deals/{deal_id}/stage", json=to_objections, headers=keyed("s"))
    assert late.headers.get("Idempotent-Replayed") == "true", late.text
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "closing"

    close = {"outcome": "lost", "reason": "went quiet"}
    closed = await env.http.post(f"/deals/{deal_id}/close", json=close, headers=keyed("c"))
    assert closed.status_code == 200, closed.text
    assert (await env.http.post(f"/deals/{deal_id}/reopen")).is_success
    late = await env.http.post(f"/deals/{deal_id}/close", json=close, headers=keyed("c"))
    assert (late.status_code, late.json()) == (200, closed.json())
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "closing"
