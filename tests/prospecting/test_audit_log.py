"""The audit log (issue 14, shared/audit.py) on prospecting: who (key id and role), what
(resource, id, action), when and the changed fields, without personal data; GET /audit with its
filters and paging, for admins only; an erased prospect's entries keep no values."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from shared.auth import key_fingerprint
from tests.support.apps import Api

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True),
]
ADMIN, OPS, REP = "admin-key-0123456789", "ops-key-0123456789", "rep-key-0123456789"
KEYS = f"admin:{ADMIN},ops:{OPS},rep:r-9:{REP}"


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def audit(http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await http.get("/audit", params=params, headers=as_(ADMIN))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_every_change_names_its_actor_and_fields_without_contact_details(api: Api) -> None:
    http = await api("prospecting", key=False, api_keys=KEYS)
    made = await http.post(
        "/prospects",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        headers=as_(OPS),
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    # the rep after the prospect: it stays unassigned until the move below
    rep = await http.post(
        "/reps", json={"name": "Rita", "email": "rita@example.com"}, headers=as_(ADMIN)
    )
    assert rep.status_code == 201, rep.text
    rep_id = rep.json()["id"]
    moved = await http.patch(f"/prospects/{pid}", json={"rep_id": rep_id}, headers=as_(ADMIN))
    assert moved.status_code == 200, moved.text
    refused = await http.post("/reps", json={"name": "x"}, headers=as_(OPS))  # not an ops move
    assert refused.status_code in (403, 422)

    # admins only
    for key in (OPS, REP):
        assert (await http.get("/audit", headers=as_(key))).status_code == 403

    page = await audit(http, resource="prospects", resource_id=pid)
    assert page["service"] == "prospecting"
    entries = page["entries"]
    assert [(e["action"], e["actor_role"]) for e in entries] == [
        ("update", "admin"),
        ("create", "ops"),
    ]  # newest first
    update, create = entries
    assert create["actor_key_id"] == key_fingerprint(OPS) and OPS not in json.dumps(page)
    assert create["route"] == "POST /prospects"
    # contact details: only that they were set, never the values
    assert create["changes"]["email"] == {"changed": True}
    assert create["changes"]["first_name"] == {"changed": True}
    assert "ada@example.com" not in json.dumps(page) and "Lovelace" not in json.dumps(page)
    assert update["changes"]["rep_id"] == {"before": None, "after": rep_id}
    assert update["actor_key_id"] == key_fingerprint(ADMIN)

    # filters: actor, time range, paging
    by_ops = await audit(http, actor=key_fingerprint(OPS))
    assert {e["actor_role"] for e in by_ops["entries"]} == {"ops"}
    assert (await audit(http, since=update["at"], resource="prospects"))["entries"] == [update]
    assert (await audit(http, until=create["at"], resource="prospects"))["entries"] == []
    first = await audit(http, limit="1")
    second = await audit(http, limit="1", cursor=first["next_cursor"])
    assert first["entries"][0]["id"] != second["entries"][0]["id"]
    everything = (await audit(http, limit="100"))["entries"]
    assert [e["id"] for e in everything[:2]] == [
        first["entries"][0]["id"],
        second["entries"][0]["id"],
    ]
    bad = await http.get("/audit", params={"cursor": "nope"}, headers=as_(ADMIN))
    assert bad.status_code == 422

    # erasure: who did what stays, the values go
    erased = await http.post(f"/prospects/{pid}/erasure", headers=as_(ADMIN))
    assert erased.status_code == 202, erased.text
    after = (await audit(http, resource="prospects", resource_id=pid))["entries"]
    assert [(e["action"], e["actor_role"]) for e in after] == [
        ("update", "admin"),
        ("create", "ops"),
    ]
    assert all(e["changes"] == {"redacted": "the prospect was erased"} for e in after)
    # the erasure request is itself on record
    assert any(e["route"].endswith("/erasure") for e in (await audit(http))["entries"])


def _tampered(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no UTC offset: which moment?
        ({"until": "2026-01-01T00:00:00"}, "until"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before year 1 in UTC
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"cursor": _tampered("2026-01-01T00:00:00|x")}, "cursor"),
        ({"cursor": _tampered("9999-12-31T23:59:59-14:00|x")}, "cursor"),
    ],
)
async def test_nonsense_times_and_tampered_cursors_are_a_422_naming_the_parameter(
    api: Api, params: dict[str, str], field: str
) -> None:
    http = await api("prospecting", key=False, api_keys=KEYS)
    r = await http.get("/audit", params=params, headers=as_(ADMIN))
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


async def test_an_import_that_fills_in_a_prospect_is_in_its_audit_trail(api: Api) -> None:
    """POST /imports writes in sessions of its own, batch by batch: the prospects it merged
    into were changed by the importing key holder all the same."""
    http = await api("prospecting", key=False, api_keys=KEYS)
    made = await http.post(
        "/prospects", json={"first_name": "Ada", "email": "ada@example.com"}, headers=as_(ADMIN)
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    csv = "first_name,email,phone\nAda,ada@example.com,+14155550123\n"
    r = await http.post("/imports", content=csv, headers={**as_(OPS), "Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json()["merged"] == 1, r.text

    entries = (await audit(http, resource="prospects", resource_id=pid))["entries"]
    assert [(e["action"], e["actor_role"], e["route"]) for e in entries] == [
        ("update", "ops", "POST /imports"),
        ("create", "admin", "POST /prospects"),
    ]
    assert entries[0]["changes"]["phone"] == {"changed": True}
    assert "4155550123" not in json.dumps(entries)
