"""Workflow payloads hold no personal data in clear text, and erasure shreds them (issue 11).

A journey on the real dev server with the codec configured as in production: its raw history,
read from the server by a client without the codec, holds no email address, phone number or
name (and the same payloads decoded do: the probe can see them). After the prospect's erasure
those payloads can never be decoded again. Master keys rotate without losing a payload; the
codec server answers only ops and admin keys."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory

from shared.codec import (
    ENCODING,
    ERASABLE_CACHE_SECONDS,
    KEY_ID,
    SCOPE,
    SYSTEM_SCOPE,
    EncryptionCodec,
    KeyRing,
    PayloadKeyErased,
    PayloadKeyUnavailable,
    new_master_key,
    parse_master_keys,
    scope_of,
    shred,
)
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.apps import Api, ServiceApp
from tests.support.settings import API_KEY, PRODUCTION, make_settings
from tests.support.stack import StackDriver


def payloads_in(message: Message) -> list[Payload]:
    """Every Payload anywhere in a protobuf message (inputs, results, signals, failures, memo)."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for _, value in message.ListFields():
        if isinstance(value, Message):
            items: list[Any] = [value]
        elif hasattr(value, "values"):  # a map field
            items = list(value.values())
        elif isinstance(value, str | bytes | int | float | bool):
            items = []
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                found.extend(payloads_in(item))
    return found


def personal_data(prospect: dict[str, Any]) -> list[bytes]:
    phone = prospect["phone"]
    return [
        v.encode()
        for v in (prospect["email"], phone, phone.lstrip("+"), prospect["last_name"], "Quentin")
    ]


def leaks(blob: bytes, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s in blob]


async def _history(stack: StackDriver, prospect_id: str) -> WorkflowHistory:
    # the test server's own client: no codec, the bytes as Temporal stores them
    return await stack.env.client.get_workflow_handle(f"journey-{prospect_id}").fetch_history()


@pytest.mark.stack(encrypted=True)
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_journey_history_holds_no_personal_data_and_erasure_shreds_it(
    stack: StackDriver,
) -> None:
    d = stack
    _, cadence = await d.setup()
    quentin = await d.new_prospect("Quentin", last_name="Quarrington")
    await d.enroll(quentin["id"], cadence["id"])
    await d.reply_to_first_mail(quentin, "Quentin here: call me on my cell")
    await d.wait_stage(quentin["id"], "qualifying")

    history = await _history(stack, quentin["id"])
    raw = history.to_json().encode() + b"".join(e.SerializeToString() for e in history.events)
    payloads = payloads_in_history(history)
    secrets = personal_data(quentin)
    assert leaks(raw, secrets) == []
    assert payloads and [p for p in payloads if p.metadata["encoding"] != ENCODING] == []
    assert {p.metadata[SCOPE].decode() for p in payloads} == {quentin["id"]}

    ring = KeyRing(stack.u.settings.master_keys, stack.u.settings.database_url("prospecting"))
    decoded = await EncryptionCodec(ring).decode(payloads)
    plain = b"".join(p.SerializeToString() for p in decoded)
    # the control: decoded, the same payloads do carry the person (the probe can see them)
    assert leaks(plain, secrets) == secrets

    await d.erase(quentin["id"])
    fresh = KeyRing(stack.u.settings.master_keys, stack.u.settings.database_url("prospecting"))
    with pytest.raises(PayloadKeyErased, match="crypto-shredded"):
        await EncryptionCodec(fresh).decode(payloads[:1])
    # nor can anyone make them a new key by encoding late
    with pytest.raises(PayloadKeyErased):
        await EncryptionCodec(fresh, quentin["id"]).encode(payloads[:1])
    await ring.aclose()
    await fresh.aclose()


def payloads_in_history(history: WorkflowHistory) -> list[Payload]:
    """The payloads our code wrote: not the SDK's own patch markers and the search attribute
    that lists the patches (patch ids, written by the SDK's core without the codec)."""
    return [
        p
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name != "core_patch"
        and not event.HasField("upsert_workflow_search_attributes_event_attributes")
        for p in payloads_in(event)
        if p.ByteSize()
    ]


@pytest.fixture
async def keyring_url(tmp_path: Path) -> str:
    """A migrated prospecting database (where the keyring lives) on SQLite."""
    settings = make_settings(tmp_path)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    return settings.database_url("prospecting")


async def test_rotation_old_payloads_decode_after_a_new_master_key_goes_first(
    keyring_url: str,
) -> None:
    old, new = new_master_key("k1"), new_master_key("k2")
    before = KeyRing(parse_master_keys([old]), keyring_url)
    sealed = await EncryptionCodec(before, "p-1").encode([Payload(data=b"ada@example.com")])
    assert sealed[0].metadata[KEY_ID] == b"k1" and b"ada@" not in sealed[0].data

    rotated = KeyRing(parse_master_keys([new, old]), keyring_url)
    assert [p.data for p in await EncryptionCodec(rotated).decode(sealed)] == [b"ada@example.com"]
    later = await EncryptionCodec(rotated, "p-2").encode([Payload(data=b"bo")])
    assert later[0].metadata[KEY_ID] == b"k2"
    # the old data key was wrapped again with the new master key on the way: k1 can go
    only_new = KeyRing(parse_master_keys([new]), keyring_url)
    assert [p.data for p in await EncryptionCodec(only_new).decode(sealed + later)] == [
        b"ada@example.com",
        b"bo",
    ]
    stranger = KeyRing(parse_master_keys([new_master_key("k3")]), keyring_url)
    with pytest.raises(PayloadKeyUnavailable, match="'k2'"):
        await EncryptionCodec(stranger).decode(sealed)
    for ring in (before, rotated, only_new, stranger):
        await ring.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _shred(keyring_url: str, scope: str) -> None:
    """What prospecting's erasure does, in its own process: the key's tombstone, committed."""
    engine = create_engine(keyring_url)
    try:
        async with session_factory(engine)() as session:
            await shred(session, scope)
            await session.commit()
    finally:
        await engine.dispose()


async def test_erasure_reaches_every_process_within_a_second(keyring_url: str) -> None:
    """Two processes' keyrings: one erases (and forgets the key at once), the other, which has
    the key cached, refuses to decode once a second has passed, not a minute."""
    masters = parse_master_keys([new_master_key("k1")])
    clock = Clock()
    eraser = KeyRing(masters, keyring_url, clock=clock)
    worker = KeyRing(masters, keyring_url, clock=clock)
    sealed = await EncryptionCodec(eraser, "p-1").encode([Payload(data=b"ada@example.com")])
    system = await EncryptionCodec(worker).encode([Payload(data=b"system")])
    assert [p.data for p in await EncryptionCodec(worker).decode(sealed)] == [b"ada@example.com"]

    await _shred(keyring_url, "p-1")
    eraser.forget("p-1")  # forget_cached_key, in the erasing process
    with pytest.raises(PayloadKeyErased):
        await EncryptionCodec(eraser).decode(sealed)
    clock.now += ERASABLE_CACHE_SECONDS
    with pytest.raises(PayloadKeyErased):
        await EncryptionCodec(worker).decode(sealed)
    with pytest.raises(PayloadKeyErased):  # nor does anyone encode for them again
        await EncryptionCodec(worker, "p-1").encode([Payload(data=b"late")])
    assert ERASABLE_CACHE_SECONDS <= 1.0
    # the system key (never erased) is still served from the cache a second later
    fetches = worker.fetches
    assert [p.data for p in await EncryptionCodec(worker).decode(system)] == [b"system"]
    assert worker.fetches == fetches
    for ring in (eraser, worker):
        await ring.aclose()


async def test_expired_keys_leave_memory(keyring_url: str) -> None:
    """A worker that met 10,000 journeys holds about a second's keys, not 10,000 (bench
    inflight): expired ones go with the next lookup."""
    clock = Clock()
    ring = KeyRing(parse_master_keys([new_master_key("k1")]), keyring_url, clock=clock)
    for n in range(5):
        await ring.data_key(f"p-{n}", create=True)
    assert ring.held == 5
    clock.now += ERASABLE_CACHE_SECONDS
    await ring.data_key("p-late", create=True)
    assert ring.held == 1
    await ring.aclose()


async def test_concurrent_misses_for_one_key_share_one_lookup(keyring_url: str) -> None:
    masters = parse_master_keys([new_master_key("k1")])
    writer = KeyRing(masters, keyring_url)
    sealed = {
        scope: await EncryptionCodec(writer, scope).encode([Payload(data=scope.encode())])
        for scope in ("p-1", "p-2")
    }
    reader = KeyRing(masters, keyring_url)
    decoded = await asyncio.gather(
        *(EncryptionCodec(reader).decode(sealed[f"p-{1 + n % 2}"]) for n in range(20))
    )
    assert [d[0].data for d in decoded] == [f"p-{1 + n % 2}".encode() for n in range(20)]
    assert reader.fetches == 2  # one per key, not one per payload
    # a lookup that fails fails for every waiter, and the next miss asks again
    missing = await asyncio.gather(
        *(reader.data_key("p-3", create=False) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(m, PayloadKeyUnavailable) for m in missing)
    assert reader.fetches == 3
    await reader.data_key("p-3", create=True)
    assert reader.fetches == 4
    for ring in (writer, reader):
        await ring.aclose()


def test_a_payloads_key_follows_its_workflow() -> None:
    assert scope_of("journey-p1") == "p1"
    assert scope_of("referral-intake-r1") == "referral:r1"
    assert scope_of("journey-../x") == scope_of(None) == scope_of("noop-1") == SYSTEM_SCOPE


async def test_plain_payloads_pass_through_and_a_moved_ciphertext_fails(keyring_url: str) -> None:
    ring = KeyRing(parse_master_keys([new_master_key("k1")]), keyring_url)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    assert await EncryptionCodec(ring).decode([plain]) == [plain]
    system = await EncryptionCodec(ring).encode([Payload(data=b"s")])
    assert system[0].metadata[SCOPE] == SYSTEM_SCOPE.encode()
    mine = (await EncryptionCodec(ring, "p-1").encode([Payload(data=b"secret")]))[0]
    await EncryptionCodec(ring, "p-2").encode([Payload(data=b"other")])
    moved = Payload()
    moved.CopyFrom(mine)
    moved.metadata[SCOPE] = b"p-2"  # someone relabels a payload to another person's key
    with pytest.raises(PayloadKeyUnavailable, match="fails its check"):
        await EncryptionCodec(ring).decode([moved])
    await ring.aclose()


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_codec_server_answers_ops_keys_only(service_app: ServiceApp, api: Api) -> None:
    origin = "https://temporal-ui.example.com"
    app = await service_app(
        "prospecting",
        api_keys=f"{API_KEY},rep:r-1:{'r' * 40}",
        payload_master_keys=new_master_key("k1"),
        codec_cors_origins=origin,
    )
    server, anonymous = await api(app), await api(app, key=False)
    body = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "ImFkYSI="}]}
    refused = await anonymous.post("/codec/decode", json=body)
    assert refused.status_code == 401, refused.text
    as_rep = await anonymous.post("/codec/encode", json=body, headers={"X-API-Key": "r" * 40})
    assert as_rep.status_code == 403, as_rep.text

    made = await server.post("/prospects", json={"first_name": "Ada", "email": "a@example.com"})
    assert made.status_code == 201, made.text
    encoded = await server.post(f"/codec/workflows/journey-{made.json()['id']}/encode", json=body)
    assert encoded.status_code == 200, encoded.text
    sealed = encoded.json()["payloads"]
    assert sealed[0]["data"] != body["payloads"][0]["data"]
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    decoded = await anonymous.post("/codec/decode", json={"payloads": sealed}, headers=bearer)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == body

    preflight = await anonymous.options(
        "/codec/decode",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") == origin
    elsewhere = await anonymous.options(
        "/codec/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert elsewhere.headers.get("access-control-allow-origin") is None
    bad = await server.post("/codec/decode", json={"payloads": [{"nope": 1}]})
    assert bad.status_code == 422, bad.text


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "must be set in production"),
        (f"k1:{base64.b64encode(bytes(32)).decode()}", "entry 1 is not random"),
        ("k1:c2hvcnQ=", "must decode to 32 bytes"),
        ("change-me", "entry 1 must be <key id>:<base64 key>"),
        (f"{new_master_key('k1')},{new_master_key('k1')}", "repeats key id"),
    ],
    ids=["missing", "not random", "short", "placeholder", "repeated id"],
)
def test_production_refuses_a_missing_or_weak_master_key(keys: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{**PRODUCTION, "payload_master_keys": keys})  # type: ignore[arg-type]
    # outside production no key means payloads in clear text (the tests, a bare `make run`)
    assert make_settings(Path("."), payload_master_keys="").master_keys == []


@pytest.mark.parametrize("database_urls", ["sqlite", "postgres"], indirect=True)
async def test_a_prospect_gets_its_data_key_with_it(
    service_app: ServiceApp, api: Api, database_urls: dict[str, str]
) -> None:
    """Created through the API or imported, a prospect has its payload data key from the start:
    starting their journey (in outreach, another process) only reads it. The key is theirs:
    an erasure shreds it like any other."""
    keys = new_master_key("k1")
    app = await service_app("prospecting", payload_master_keys=keys)
    http = await api(app)
    made = await http.post("/prospects", json={"first_name": "Ada", "email": "ada@example.com"})
    assert made.status_code == 201, made.text
    csv = "first_name,email\nGrace,grace@example.com\nAlan,alan@example.com\n"
    imported = await http.post("/imports", content=csv, headers={"Content-Type": "text/csv"})
    assert imported.status_code == 201 and imported.json()["created"] == 2, imported.text
    listed = await http.get("/prospects", params={"limit": 10})
    ids = [p["id"] for p in listed.json()["items"]]
    assert len(ids) == 3, listed.text

    # another process's keyring, which may only read: every prospect's key is there
    reader = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    data_keys = [await reader.data_key(pid, create=False) for pid in ids]
    assert len(set(data_keys)) == 3
    sealed = await EncryptionCodec(reader, ids[0]).encode([Payload(data=b"ada@example.com")])
    assert reader.fetches == 3  # encoding found the key made with the prospect

    erased = await http.post(f"/prospects/{ids[0]}/erasure")
    assert erased.status_code in (200, 202), erased.text
    fresh = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    with pytest.raises(PayloadKeyErased):
        await EncryptionCodec(fresh).decode(sealed)
    for ring in (reader, fresh):
        await ring.aclose()


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_codec_server_answers_a_payload_it_cannot_read_as_it_came(
    service_app: ServiceApp, api: Api
) -> None:
    """A payload marked encrypted that is not one of ours (cut short, a scope that is not text)
    comes back as sent, as an erased prospect's does: the UI shows the rest of the history
    instead of an error for all of it."""
    app = await service_app("prospecting", payload_master_keys=new_master_key("k1"))
    server = await api(app)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    plain = {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'"ada"')}
    made = await server.post("/prospects", json={"first_name": "Ada", "email": "a@example.com"})
    assert made.status_code == 201, made.text
    endpoint = f"/codec/workflows/journey-{made.json()['id']}"
    sealed = (await server.post(f"{endpoint}/encode", json={"payloads": [plain]})).json()[
        "payloads"
    ]
    cut_short = {"metadata": sealed[0]["metadata"], "data": b64(b"short")}
    not_text = {
        "metadata": {"encoding": b64(ENCODING), SCOPE: b64(b"\xff\xfe")},
        "data": sealed[0]["data"],
    }
    body = {"payloads": [cut_short, not_text, sealed[0]]}
    decoded = await server.post("/codec/decode", json=body)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json()["payloads"] == [cut_short, not_text, plain]


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_the_codec_server_encodes_for_the_workflows_person_and_never_with_the_system_key(
    service_app: ServiceApp, api: Api
) -> None:
    """Every closeflow workflow is about a person (a journey, a referral's intake, a meeting's
    invitation), and its payloads are encrypted with that person's key, shredded with them. The
    codec protocol does not say which workflow an input is for: an input the Temporal UI or CLI
    encoded with the system key (never shredded) would outlive the person's erasure. So the
    codec server encodes only for a workflow named in its path, with its person's key."""
    app = await service_app("prospecting", payload_master_keys=new_master_key("k1"))
    await app.state.outbox.stop()
    server = await api(app)
    made = await server.post("/prospects", json={"first_name": "Ada", "email": "ada@example.com"})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    body = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "ImFkYSI="}]}

    unscoped = await server.post("/codec/encode", json=body)
    assert unscoped.status_code == 400, unscoped.text
    assert unscoped.json()["error"]["code"] == "codec_workflow_required"

    endpoint = f"/codec/workflows/journey-{pid}"
    encoded = await server.post(f"{endpoint}/encode", json=body)
    assert encoded.status_code == 200, encoded.text
    sealed = encoded.json()["payloads"]
    assert base64.b64decode(sealed[0]["metadata"][SCOPE]).decode() == pid
    for path in (f"{endpoint}/decode", "/codec/decode"):
        decoded = await server.post(path, json={"payloads": sealed})
        assert decoded.json() == body, path

    for workflow_id, status in (("journey-nobody", 404), ("cron-report", 422)):
        answer = await server.post(f"/codec/workflows/{workflow_id}/encode", json=body)
        assert answer.status_code == status, answer.text

    assert (await server.post(f"/prospects/{pid}/erasure")).status_code == 202
    gone = await server.post(f"{endpoint}/encode", json=body)
    assert (gone.status_code, gone.json()["error"]["code"]) == (409, "prospect_erased")
    still_sealed = await server.post("/codec/decode", json={"payloads": sealed})
    assert still_sealed.json()["payloads"] == sealed
