"""Assignment rules (territory, capacity), reassignment and erasure refusals in prospecting
alone (SQLite and PostgreSQL); the other services are not running here, so their calls wait
in the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from services.prospecting.activities import ProspectingActivities
from services.prospecting.models import OutboxMessage
from services.prospecting.outbox import OutboxTiming
from shared.contracts.errors import CONFLICT
from shared.contracts.journey import CreateReferredProspect, ReferredPerson, StageChange
from tests.support.apps import ServiceApp
from tests.support.settings import SERVICE_AUTH


@pytest.fixture
async def app(service_app: ServiceApp) -> FastAPI:
    # the other services' URLs point at a port nobody listens on (the tests' settings): every
    # call to them fails and is retried
    timing = OutboxTiming(poll_seconds=0.1, base_delay=0.1, max_delay=0.5)
    return await service_app("prospecting", outbox=timing)


async def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


async def _rep(http: httpx.AsyncClient, name: str) -> str:
    body = {"name": name, "email": f"{name}@closeflow.example.com"}
    return (await _ok(await http.post("/reps", json=body), 201))["id"]


async def _prospect(http: httpx.AsyncClient, n: int, **fields: Any) -> dict[str, Any]:
    body = {"first_name": f"P{n}", "email": f"p{n}@example.com", **fields}
    return await _ok(await http.post("/prospects", json=body), 201)


async def _closed(app: FastAPI, prospect: dict[str, Any], to_stage: str, cause: str) -> None:
    """The prospect's journey leaves closing for `to_stage` (its deal decided), as it records it."""
    acts = ProspectingActivities(app.state.sessions, app.state.settings)
    pid = prospect["id"]
    change = StageChange(
        f"{cause}:{pid}", pid, "closing", to_stage, cause, "2026-01-01T00:00:00+00:00"
    )
    await acts.record_stage(change)


async def _queued_moves(app: FastAPI, prospect_id: str) -> list[tuple[str, Any]]:
    async with app.state.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            # the subscribers' stage events go through it too (issue 14): not moves
            .where(OutboxMessage.subject_id == prospect_id, OutboxMessage.kind != "event")
            .order_by(OutboxMessage.created_at, OutboxMessage.kind)
        )
        return [(m.kind, m.payload) for m in rows]


async def test_territory_first_then_round_robin_within_capacity(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    anna, ben, cleo = [await _rep(http, n) for n in ("anna", "ben", "cleo")]
    rules = {
        "territories": [
            {"name": "EMEA", "countries": ["DE", "fr"], "rep_ids": [anna, ben]},
            {"name": "NA", "countries": ["US"], "rep_ids": [cleo]},
        ],
        "capacity": {anna: 1, ben: 1},
        "default_capacity": 3,
    }
    put = await _ok(await http.put("/assignment-rules", json=rules))
    assert put["version"] == 1
    assert put["rules"]["territories"][0]["countries"] == ["de", "fr"]

    de1 = await _prospect(http, 1, country="DE")
    fr2 = await _prospect(http, 2, country="FR")
    de3 = await _prospect(http, 3, country="de")
    us4 = await _prospect(http, 4, country="US")
    br5 = await _prospect(http, 5, country="BR")  # no territory: every rep, below capacity
    assert [p["rep_id"] for p in (de1, fr2, de3, us4, br5)] == [anna, ben, None, cleo, cleo]
    assert de1["assignment_note"] == "territory EMEA"
    assert de3["assignment_note"] == "unassigned: all 2 reps of territory EMEA are at capacity"
    assert br5["assignment_note"] == "round robin"

    load = {
        r["rep_id"]: (r["open"], r["capacity"])
        for r in (await _ok(await http.get("/assignment-rules")))["load"]
    }
    assert load == {anna: (1, 1), ben: (1, 1), cleo: (2, 3)}

    # A lost prospect no longer counts: Anna has room again.
    acts = ProspectingActivities(app.state.sessions, app.state.settings)
    await acts.record_stage(
        StageChange(
            f"lost:{de1['id']}",
            de1["id"],
            "prospecting",
            "lost",
            "test",
            "2026-01-01T00:00:00+00:00",
        )
    )
    # ... and the oldest prospect waiting for an EMEA rep gets it at once
    waited = await _ok(await http.get(f"/prospects/{de3['id']}"))
    assert waited["rep"]["id"] == anna
    assert waited["assignment_note"] == "territory EMEA (a place came free)"
    queued = await _queued_moves(app, de3["id"])
    # every service that owns rows of the prospect's rep hears the move (issue 10)
    assert sorted(q for q in queued if q[0] != "auto_enroll") == [
        ("rep_deals", {"rep_id": anna}),
        ("rep_enrollment", {"rep_id": anna}),
        ("rep_move", {"rep_id": anna}),
        ("rep_referrals", {"rep_id": anna}),
    ]
    de6 = await _prospect(http, 6, country="DE")
    assert de6["rep_id"] is None  # EMEA is full again

    # Everyone full: unassigned, with the reason.
    await _ok(await http.put("/assignment-rules", json={**rules, "default_capacity": 0}))
    none = await _prospect(http, 7, country="BR")
    assert none["rep_id"] is None
    assert none["assignment_note"] == "unassigned: all 3 reps of round robin are at capacity"

    # Imports follow the same rules.
    # More room: the two waiting prospects get reps first (oldest first), then imports follow
    # the same rules.
    await _ok(await http.put("/assignment-rules", json={**rules, "capacity": {anna: 3, ben: 3}}))
    de6 = await _ok(await http.get(f"/prospects/{de6['id']}"))
    none = await _ok(await http.get(f"/prospects/{none['id']}"))
    # EMEA's last pick was Anna (de3): Ben; round robin's was Cleo (br5): Anna
    assert (de6["rep"]["id"], none["rep"]["id"]) == (ben, anna)
    assert none["assignment_note"] == "round robin (a place came free)"
    csv = (
        b"first_name,email,country\nI1,i1@example.com,DE\nI2,i2@example.com,DE\n"
        b"I3,i3@example.com,US\nI4,i4@example.com,DE\n"
    )
    headers = {"Content-Type": "text/csv"}
    report = await _ok(await http.post("/imports", content=csv, headers=headers), 201)
    assert report["created"] == 4
    page = await _ok(await http.get("/prospects", params={"q": "@example.com", "limit": 200}))
    by_email = {p["email"]: p for p in page["items"]}
    # EMEA's last pick was Ben (de6): Anna next, then Ben (both at 3 now), then nobody
    assert [by_email[f"i{n}@example.com"]["rep_id"] for n in (1, 2, 3, 4)] == [
        anna,
        ben,
        cleo,
        None,
    ]
    assert by_email["i4@example.com"]["assignment_note"].startswith("unassigned: all 2 reps")


async def test_the_rotation_goes_on_after_a_deactivated_pick_in_creation_order(
    http: httpx.AsyncClient,
) -> None:
    """Without limits (on PostgreSQL creations then move the rotation in one statement of their
    own, hand-overs under the lock: both choose alike): each pool (a territory's, every rep's)
    keeps its own turn, and the rep created after a pick who has left takes the next turn, not
    the pool's first."""
    anna, ben, cleo, dan = [await _rep(http, n) for n in ("anna", "ben", "cleo", "dan")]
    rules = {"territories": [{"name": "EMEA", "countries": ["DE"], "rep_ids": [anna, ben, cleo]}]}
    await _ok(await http.put("/assignment-rules", json=rules))
    de1, de2 = [await _prospect(http, n, country="DE") for n in (1, 2)]
    br3, br4 = [await _prospect(http, n, country="BR") for n in (3, 4)]
    assert [p["rep_id"] for p in (de1, de2, br3, br4)] == [anna, ben, anna, ben]
    assert [de1["assignment_note"], br3["assignment_note"]] == ["territory EMEA", "round robin"]

    await _ok(await http.patch(f"/reps/{ben}", json={"active": False}))
    handed = [await _ok(await http.get(f"/prospects/{p['id']}")) for p in (de2, br4)]
    assert [p["rep_id"] for p in handed] == [cleo, cleo]  # after Ben in creation order
    assert [
        (await _prospect(http, n, country=c))["rep_id"]
        for n, c in ((5, "DE"), (6, "BR"), (7, "DE"), (8, "BR"), (9, "BR"))
    ] == [anna, dan, cleo, anna, cleo]


async def test_more_capacity_takes_the_prospects_left_waiting(http: httpx.AsyncClient) -> None:
    anna, ben = await _rep(http, "anna"), await _rep(http, "ben")
    await _ok(await http.put("/assignment-rules", json={"default_capacity": 1}))
    first, second, third, fourth = [await _prospect(http, n) for n in (1, 2, 3, 4)]
    assert [p["rep_id"] for p in (first, second, third, fourth)] == [anna, ben, None, None]
    # room for one more each... but only one rep gets a new place: the oldest waiting first
    await _ok(await http.put("/assignment-rules", json={"capacity": {anna: 2, ben: 1}}))
    third = await _ok(await http.get(f"/prospects/{third['id']}"))
    fourth = await _ok(await http.get(f"/prospects/{fourth['id']}"))
    assert (third["rep"]["id"], fourth["rep"]) == (anna, None)
    assert fourth["assignment_note"] == "unassigned: all 2 reps of round robin are at capacity"


async def test_rules_are_validated(http: httpx.AsyncClient) -> None:
    anna = await _rep(http, "anna")
    unknown = {"territories": [{"name": "X", "countries": ["DE"], "rep_ids": ["nobody"]}]}
    resp = await http.put("/assignment-rules", json=unknown)
    assert resp.status_code == 422 and "nobody" in resp.text
    twice = {
        "territories": [
            {"name": "A", "countries": ["DE"], "rep_ids": [anna]},
            {"name": "B", "countries": ["de"], "rep_ids": [anna]},
        ]
    }
    resp = await http.put("/assignment-rules", json=twice)
    assert resp.status_code == 422 and "'de' is in territories" in resp.text
    resp = await http.put("/assignment-rules", json={"capacity": {anna: -1}})
    assert resp.status_code == 422
    assert (await _ok(await http.get("/assignment-rules")))["version"] == 0


async def test_reassignment_queues_the_task_move_and_retries_while_outreach_is_down(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    anna, ben = await _rep(http, "anna"), await _rep(http, "ben")
    p = await _prospect(http, 1)
    assert p["rep_id"] == anna
    bad = await http.patch(f"/prospects/{p['id']}", json={"rep_id": "nobody"})
    assert bad.status_code == 422 and "nobody" in bad.text
    moved = await _ok(await http.patch(f"/prospects/{p['id']}", json={"rep_id": ben}))
    assert (moved["rep_id"], moved["assignment_note"]) == (ben, "reassigned")
    back = await _ok(await http.patch(f"/prospects/{p['id']}", json={"rep_id": anna}))
    assert back["rep_id"] == anna

    async def rows() -> list[OutboxMessage]:
        async with app.state.sessions() as session:
            query = select(OutboxMessage).where(
                OutboxMessage.subject_id == p["id"], OutboxMessage.kind == "rep_move"
            )
            return list((await session.scalars(query.order_by(OutboxMessage.created_at))).all())

    for _ in range(100):
        found = await rows()
        if found[-1].attempts >= 2:
            break
        await asyncio.sleep(0.1)
    first, last = found
    assert first.status == "superseded"  # the older move never lands after the newer one
    assert (last.status, last.target, last.path) == (
        "pending",
        "outreach",
        f"/prospects/{p['id']}/tasks/reassign",
    )
    assert last.payload == {"rep_id": anna}
    assert last.attempts >= 2 and "outreach unreachable" in last.last_error


async def test_erased_people_cannot_come_back(app: FastAPI, http: httpx.AsyncClient) -> None:
    p = await _prospect(http, 1, phone="+14155550100")
    first = await http.post(f"/prospects/{p['id']}/erasure")
    assert first.status_code == 202, first.text
    status = first.json()
    assert status["status"] == "in_progress"
    assert {s["service"]: s["status"] for s in status["services"]} == {
        "prospecting": "done",
        "deals": "pending",
        "outreach": "pending",
        "referrals": "pending",
    }
    again = await _ok(await http.post(f"/prospects/{p['id']}/erasure"), 202)
    assert again["id"] == status["id"]
    assert (await http.get(f"/prospects/{p['id']}")).status_code == 404
    assert (await http.get(f"/prospects/{p['id']}/stages")).status_code == 404

    for body in ({"email": "P1@Example.com"}, {"phone": "+1 415 555 0100"}):
        resp = await http.post("/prospects", json={"first_name": "Back", **body})
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "erased_person"
    csv = b"first_name,email,phone\nBack,p1@example.com,\nOther,o@example.com,\n"
    report = await _ok(
        await http.post("/imports", content=csv, headers={"Content-Type": "text/csv"}), 201
    )
    assert report["created"] == 1
    assert [(r["line"], r["reason"][:30]) for r in report["refusals"]] == [
        (2, "this person asked for their da")
    ]
    # the services that are down are retried, visibly
    await asyncio.sleep(0.5)
    status = await _ok(await http.get(f"/prospects/{p['id']}/erasure"))
    outreach = next(s for s in status["services"] if s["service"] == "outreach")
    assert outreach["attempts"] >= 1 and "unreachable" in outreach["last_error"]
    missing = await http.get("/prospects/nobody/erasure")
    assert missing.status_code == 404
    assert (await http.post("/prospects/nobody/erasure")).status_code == 404


async def test_an_erased_person_leaves_the_auto_enrolment_batches(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """An import's auto-enrolment call (outreach away: still waiting) named both people it
    created; after one's erasure it names only the other; a batch naming only them goes."""
    csv = b"first_name,email\nAda,ada@example.com\nBob,bob@example.com\n"
    await _ok(await http.post("/imports", content=csv, headers={"Content-Type": "text/csv"}), 201)
    alone = b"first_name,email\nCyd,cyd@example.com\n"
    await _ok(await http.post("/imports", content=alone, headers={"Content-Type": "text/csv"}), 201)
    people = {p["first_name"]: p["id"] for p in (await _ok(await http.get("/prospects")))["items"]}

    async def named() -> list[list[str]]:
        async with app.state.sessions() as session:
            rows = await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "auto_enroll")
                .order_by(OutboxMessage.created_at)
            )
            return [[i["prospect_id"] for i in r.payload["items"]] for r in rows]

    assert await named() == [[people["Ada"], people["Bob"]], [people["Cyd"]]]
    for name in ("Ada", "Cyd"):
        await _ok(await http.post(f"/prospects/{people[name]}/erasure"), 202)
    assert await named() == [[people["Bob"]]]


async def test_timeline_names_the_services_that_did_not_answer(http: httpx.AsyncClient) -> None:
    p = await _prospect(http, 1)
    timeline = await _ok(await http.get(f"/prospects/{p['id']}/timeline"))
    assert timeline["complete"] is False
    assert [(s["service"], s["ok"]) for s in timeline["sources"]] == [
        ("prospecting", True),
        ("outreach", False),
        ("deals", False),
        ("referrals", False),
    ]
    assert [e["kind"] for e in timeline["events"]] == ["prospect.created"]
    assert (await http.get("/prospects/nobody/timeline")).status_code == 404


async def test_referrals_keep_the_referrers_rep_within_capacity_and_refuse_erased_people(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    anna, ben = await _rep(http, "anna"), await _rep(http, "ben")
    await _ok(await http.put("/assignment-rules", json={"capacity": {anna: 2}}))
    client = await _prospect(http, 1)
    assert client["rep_id"] == anna
    acts = ProspectingActivities(app.state.sessions, app.state.settings)
    env = ActivityEnvironment()

    def referral(n: int, **person: str) -> CreateReferredProspect:
        return CreateReferredProspect(
            referral_id=f"ref{n}",
            person=ReferredPerson(first_name=f"R{n}", **person),
            referrer_prospect_id=client["id"],
            rep_id=anna,
        )

    first = await env.run(acts.create_referred_prospect, referral(1, email="r1@example.com"))
    assert first.rep_id == anna  # the referrer's rep, who has room for one more
    second = await env.run(acts.create_referred_prospect, referral(2, email="r2@example.com"))
    assert second.rep_id == ben  # Anna is full: the usual rules
    got = await _ok(await http.get(f"/prospects/{second.prospect_id}"))
    assert got["assignment_note"] == "round robin"

    await _ok(await http.post(f"/prospects/{first.prospect_id}/erasure"), 202)
    with pytest.raises(ApplicationError) as refused:
        await env.run(acts.create_referred_prospect, referral(3, email="R1@example.com"))
    assert (refused.value.type, refused.value.details[0]["code"]) == (CONFLICT, "erased_person")
    assert refused.value.non_retryable


async def test_delivered_outbox_messages_are_pruned_after_a_week_but_erasures_stay(
    app: FastAPI,
) -> None:
    # the relay's loop prunes too (at its first pass): stopped, it cannot take these rows first
    await app.state.outbox.stop()
    old = datetime.now(UTC) - timedelta(days=8)
    async with app.state.sessions() as session:
        for kind, status, created in (
            ("rep_move", "done", old),  # goes
            ("rep_move", "superseded", old),  # goes
            ("rep_move", "pending", old),  # not delivered yet: stays
            ("rep_move", "done", datetime.now(UTC)),  # recent: stays
            ("erasure", "done", old),  # an erasure's status: stays
        ):
            session.add(
                OutboxMessage(
                    kind=kind,
                    target="outreach",
                    path="/x",
                    payload={},
                    subject_id="p",
                    status=status,
                    attempts=1,
                    last_error="",
                    next_attempt_at=datetime.now(UTC) + timedelta(days=1),
                    created_at=created,
                )
            )
        await session.commit()
    assert await app.state.outbox.prune() == 2
    async with app.state.sessions() as session:
        left = (await session.execute(select(OutboxMessage.kind, OutboxMessage.status))).all()
    assert sorted(left) == [("erasure", "done"), ("rep_move", "done"), ("rep_move", "pending")]


async def test_a_freed_seat_goes_to_the_oldest_waiting_prospect_it_fits(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """Only the oldest waiting prospect was tried: a seat of another territory than theirs was
    left empty while younger prospects it fits waited."""
    anna, cleo = [await _rep(http, n) for n in ("anna", "cleo")]
    rules = {
        "territories": [{"name": "EMEA", "countries": ["DE"], "rep_ids": [anna]}],
        "capacity": {anna: 1, cleo: 1},
    }
    await _ok(await http.put("/assignment-rules", json=rules))
    de1 = await _prospect(http, 1, country="DE")
    us2 = await _prospect(http, 2, country="US")
    assert (de1["rep_id"], us2["rep_id"]) == (anna, cleo)
    de3, us4, us5 = [
        await _prospect(http, n, country=c) for n, c in ((3, "DE"), (4, "US"), (5, "US"))
    ]
    assert [p["rep_id"] for p in (de3, us4, us5)] == [None, None, None]
    acts = ProspectingActivities(app.state.sessions, app.state.settings)
    lost = StageChange(
        f"lost:{us2['id']}", us2["id"], "prospecting", "lost", "t", "2026-01-01T00:00:00+00:00"
    )
    await acts.record_stage(lost)
    # cleo's seat: not de3 (anna's territory), the older of the two it fits, and only one
    after = [
        (await _ok(await http.get(f"/prospects/{p['id']}")))["rep_id"] for p in (de3, us4, us5)
    ]
    assert after == [None, cleo, None]
    # the other services hear of it as of any reassignment
    queued = await _queued_moves(app, us4["id"])
    assert sorted(q for q in queued if q[0] != "auto_enroll") == [
        ("rep_deals", {"rep_id": cleo}),
        ("rep_enrollment", {"rep_id": cleo}),
        ("rep_move", {"rep_id": cleo}),
        ("rep_referrals", {"rep_id": cleo}),
    ]


async def test_erasing_an_open_prospect_gives_their_seat_to_one_who_waits(
    http: httpx.AsyncClient,
) -> None:
    anna = await _rep(http, "anna")
    await _ok(await http.put("/assignment-rules", json={"capacity": {anna: 1}}))
    first, second = [await _prospect(http, n) for n in (1, 2)]
    assert (first["rep_id"], second["rep_id"]) == (anna, None)
    resp = await http.post(f"/prospects/{first['id']}/erasure")
    assert resp.status_code in (200, 202), resp.text
    assert (await _ok(await http.get(f"/prospects/{second['id']}")))["rep_id"] == anna


async def test_deactivating_and_reactivating_a_rep_tells_deals(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """Deals was never told a rep was deactivated: the booking links of the prospects not
    handed over (journey over, or nobody had room) went on offering that rep's free times. Each
    change of standing goes to deals through the outbox, with its time (a late repeat of an
    older word must not undo a newer one); a PATCH that changes nothing sends nothing."""
    ann = await _rep(http, "ann")
    await _ok(await http.patch(f"/reps/{ann}", json={"active": False}))
    await _ok(await http.patch(f"/reps/{ann}", json={"active": False}))
    await _ok(await http.patch(f"/reps/{ann}", json={"active": True}))
    await _ok(await http.patch(f"/reps/{ann}", json={"active": True}))
    async with app.state.sessions() as session:
        rows = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.subject_id == ann))
        ).all()
    rows = sorted(rows, key=lambda m: str(m.payload["changed_at"]))
    assert [(m.kind, m.target, m.path, m.payload["active"]) for m in rows] == [
        ("rep_standing", "deals", f"/internal/reps/{ann}/standing", False),
        ("rep_standing", "deals", f"/internal/reps/{ann}/standing", True),
    ]
    left, back = (datetime.fromisoformat(m.payload["changed_at"]) for m in rows)
    assert left.tzinfo is not None and left <= back


async def test_a_client_of_a_deactivated_rep_gets_a_rep_whatever_the_capacity(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """A client (won, being asked for referrals) takes no seat, yet handing them over on their
    rep's deactivation was refused when every rep was full: they stayed without a rep for good
    (the waiting list took open prospects only), their asks with a rep whose keys are gone."""
    anna, ben = await _rep(http, "anna"), await _rep(http, "ben")
    await _ok(await http.put("/assignment-rules", json={"capacity": {anna: 1, ben: 1}}))
    client, open_one, bens = [await _prospect(http, n) for n in (1, 2, 3)]
    assert [p["rep_id"] for p in (client, open_one, bens)] == [anna, ben, None]
    await _closed(app, client, "referrals", "won")
    # anna's seat freed by the win went to the one who waited
    assert (await _ok(await http.get(f"/prospects/{bens['id']}")))["rep_id"] == anna
    # anna leaves with a client and an open prospect; ben is full
    moved = await _ok(await http.patch(f"/reps/{anna}", json={"active": False}))
    assert moved["moved"] == {client["id"]: ben, bens["id"]: None}, moved
    # no rep at all for a client: they wait, and the next rep takes them without a seat
    await _ok(await http.patch(f"/reps/{ben}", json={"active": False}))
    cleo = await _rep(http, "cleo")
    await _ok(await http.put("/assignment-rules", json={"capacity": {cleo: 0}}))
    after = [
        (await _ok(await http.get(f"/prospects/{p['id']}")))["rep_id"]
        for p in (client, open_one, bens)
    ]
    assert after == [cleo, None, None]


async def test_a_prospect_left_without_a_rep_is_told_to_outreach_only_from_a_hand_over(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """Outreach holds the running journey of a prospect whose rep left when nobody had room. A
    prospect whose journey was over and who comes back while nobody has room has no run going:
    told too, the hold would reach outreach before or after their new run starts, and that run
    would wait or not by chance."""
    ann = await _rep(http, "ann")
    running, over = await _prospect(http, 1), await _prospect(http, 2)
    assert running["rep_id"] == over["rep_id"] == ann
    await _closed(app, over, "lost", "lost")
    moved = await _ok(await http.patch(f"/reps/{ann}", json={"active": False}))
    assert moved["moved"] == {running["id"]: None}, moved
    assert "rep_unassigned" in [kind for kind, _ in await _queued_moves(app, running["id"])]

    back = await http.post(f"/internal/prospects/{over['id']}/comeback", headers=SERVICE_AUTH)
    assert (await _ok(back))["rep_id"] is None
    assert "rep_unassigned" not in [kind for kind, _ in await _queued_moves(app, over["id"])]
