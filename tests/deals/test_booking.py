"""Booking links (issue 14): a rep's availability, the prospect's public page listing free slots
in their zone, booking one (the meeting, the deal, what the journey hears), a slot taken
meanwhile, the rate limit, and two prospects booking the same slot at once on PostgreSQL (the
unique index decides). The deals app in process on a real database, with a recording journey."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from starlette.requests import Request

from services.deals.core.service import open_deal
from services.deals.meetings import links, public
from services.deals.meetings.availability import Hours, free_slots
from services.deals.models import BookingLink, Deal, EventOutbox, Meeting, RepAvailability
from shared.booking import BookingClaim, sign, verify
from shared.contracts.journey import OpenDealRequest
from shared.contracts.names import Sig
from shared.events import MEETING_BOOKED
from shared.providers.email import address_domain
from shared.rate_limit import FormLimits, RateLimiter
from tests.support.deals import (
    BOOKING_HOURS,
    DealsEnv,
    booking_link,
    booking_token,
    error,
    fields,
    signals,
)
from tests.support.settings import SERVICE_AUTH

AVAILABILITY = "/reps/rep-1/availability"
SLOT_RE = re.compile(r'name="slot" value="([^"]+)">(\d\d:\d\d(?: [^<]+)?)<')


def offered(page: httpx.Response) -> list[tuple[datetime, str]]:
    return [(datetime.fromisoformat(v), t) for v, t in SLOT_RE.findall(page.text)]


def test_free_slots_keep_buffers_notice_and_the_reps_zone() -> None:
    hours = Hours("Europe/Berlin", (0,), 9 * 60, 11 * 60, 30, 15, 60, 7)
    now = datetime(2031, 3, 3, 7, 0, tzinfo=UTC)  # Monday 08:00 in Berlin
    busy = [(datetime(2031, 3, 3, 8, 45, tzinfo=UTC), datetime(2031, 3, 3, 9, 15, tzinfo=UTC))]
    # Mondays 09:00-11:00 Berlin (CET): 09:00, 09:45, 10:30 local. 09:45 overlaps the busy
    # meeting (09:45-10:15); 09:00-09:30 ends right where the buffer before it begins, and 10:30
    # starts right where the buffer after it ends: both free. The next Monday is 7 days ahead.
    slots = free_slots(hours, busy, now)
    assert slots == [
        datetime(2031, 3, 3, 8, 0, tzinfo=UTC),
        datetime(2031, 3, 3, 9, 30, tzinfo=UTC),
        datetime(2031, 3, 10, 8, 0, tzinfo=UTC),
        datetime(2031, 3, 10, 8, 45, tzinfo=UTC),
        datetime(2031, 3, 10, 9, 30, tzinfo=UTC),
    ]
    # a buffer a minute longer takes both neighbours
    wider = Hours("Europe/Berlin", (0,), 9 * 60, 11 * 60, 30, 16, 60, 0)
    assert free_slots(wider, busy, now) == []
    # minimum notice: at 08:20 Berlin nothing before 09:20 Berlin
    later = free_slots(hours, [], datetime(2031, 3, 3, 7, 20, tzinfo=UTC))
    assert later[0] == datetime(2031, 3, 3, 8, 45, tzinfo=UTC)


def _apart(slots: list[datetime], minutes: int) -> None:
    """In order, and none overlapping the next (the unique index only refuses equal starts)."""
    assert all(b - a >= timedelta(minutes=minutes) for a, b in pairwise(slots))


def test_slots_on_the_day_the_clocks_spring_forward_are_real_and_never_overlap() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Sunday 30 March 2031: 02:00 CET -> 03:00 CEST; Sundays 01:00-05:00, 45 minutes, no buffer
    hours = Hours("Europe/Berlin", (6,), 60, 5 * 60, 45, 0, 0, 3)
    now = datetime(2031, 3, 27, 12, 0, tzinfo=UTC)
    slots = free_slots(hours, [], now)
    # three real hours: elapsed 45-minute steps from 01:00 CET (00:00 UTC) to 05:00 CEST
    assert slots == [
        datetime(2031, 3, 30, 0, 0, tzinfo=UTC) + timedelta(minutes=45 * n) for n in range(4)
    ]
    assert [s.astimezone(berlin).strftime("%H:%M") for s in slots] == [
        "01:00",
        "01:45",
        "03:30",
        "04:15",
    ]
    _apart(slots, 45)
    # a meeting at 03:45 CEST (01:45 UTC) takes the slot it overlaps (03:30-04:15) off the
    # list, so neither the page nor a booking of that start (the same list) can take it
    busy = [(datetime(2031, 3, 30, 1, 45, tzinfo=UTC), datetime(2031, 3, 30, 2, 30, tzinfo=UTC))]
    assert free_slots(hours, busy, now) == slots[:2]
    # a window starting inside the skipped hour starts where the clock resumes (RFC 5545)
    gap = Hours("Europe/Berlin", (6,), 2 * 60 + 30, 5 * 60, 30, 0, 0, 3)
    later = free_slots(gap, [], now)
    assert later[0] == datetime(2031, 3, 30, 1, 30, tzinfo=UTC)  # 03:30 CEST
    _apart(later, 30)


def test_slots_on_the_day_the_clocks_fall_back_cover_the_repeated_hour_once_each() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Sunday 26 October 2031: 03:00 CEST -> 02:00 CET; Sundays 01:00-04:00 are four real hours
    hours = Hours("Europe/Berlin", (6,), 60, 4 * 60, 30, 0, 0, 3)
    now = datetime(2031, 10, 23, 12, 0, tzinfo=UTC)
    slots = free_slots(hours, [], now)
    first = datetime(2031, 10, 25, 23, 0, tzinfo=UTC)  # 01:00 CEST
    assert slots == [first + timedelta(minutes=30 * n) for n in range(8)]
    # 02:00 and 02:30 twice: CEST, then CET (different instants)
    local = [(s.astimezone(berlin).strftime("%H:%M"), s.astimezone(berlin).fold) for s in slots]
    assert local[2:6] == [("02:00", 0), ("02:30", 0), ("02:00", 1), ("02:30", 1)]
    _apart(slots, 30)
    assert len(set(slots)) == len(slots)


def test_the_hour_the_clock_repeats_is_labelled_with_the_zone_on_the_page() -> None:
    """On the night the clocks go back a prospect in that zone saw two buttons "02:00" (one
    CEST, one CET): each booked its own instant, but the labels looked alike. The repeated
    readings name the zone's abbreviation, the others stay bare, and the confirmation says
    which. The pages rendered for that night (the live page only offers the coming days)."""
    # Sunday 26 October 2031, hourly from 01:00 CEST: 01:00, 02:00 CEST, 02:00 CET, 03:00
    slots = [datetime(2031, 10, 25, 23, 0, tzinfo=UTC) + timedelta(hours=n) for n in range(4)]
    claim = BookingClaim("p1", "rep-1", "journey-p1", int(time.time()) + 60, "Europe/Berlin")
    hours = RepAvailability(rep_id="rep-1", title="Intro call", meeting_minutes=60)
    scope = {"type": "http", "method": "GET", "path": "/book/t", "headers": [], "query_string": b""}
    page = public._slots_page(Request(scope), claim, hours, slots)
    shown = offered(httpx.Response(200, text=bytes(page.body).decode()))
    assert shown == list(zip(slots, ["01:00", "02:00 CEST", "02:00 CET", "03:00"], strict=True))
    meeting = Meeting(title="Intro call", starts_at=slots[2], duration_minutes=60)
    booked = bytes(public._booked_page(claim, meeting).body).decode()
    assert "Sunday 26 October 2031, 02:00 CET (Europe/Berlin)" in booked
    later = Meeting(title="Intro call", starts_at=slots[3], duration_minutes=60)
    confirmed = bytes(public._booked_page(claim, later).body).decode()
    assert "Sunday 26 October 2031, 03:00 (Europe/Berlin)" in confirmed


def test_booking_tokens_are_signed_expiring_and_carry_no_contact_details() -> None:
    claim = BookingClaim("p" * 32, "rep-1", "journey-x", int(time.time()) + 60, "Europe/Paris")
    good = sign("secret-one", claim)
    assert verify("secret-one", good) == claim
    assert verify("secret-two", good) is None  # a rotated secret revokes it
    body, _, sig = good.partition(".")
    assert verify("secret-one", f"{body}x.{sig}") is None
    assert verify("secret-one", sign("secret-one", claim), now=claim.expires + 1) is None
    assert "@" not in good
    # a signature with a non-ASCII character: refused like any other (compare_digest raised
    # TypeError comparing it as str)
    assert verify("secret-one", f"{body}.{sig[:-1]}é") is None


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_odd_links_and_slots_get_the_pages_for_them_never_a_500(env: DealsEnv) -> None:
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    forged = await env.anon.get("/book/abc.def")
    assert forged.status_code == 404
    for token in ("abc.%C3%A9", "abc.%E2%9C%93x"):  # a signature that is not ASCII
        answer = await env.anon.get(f"/book/{token}")
        assert (answer.status_code, answer.text) == (404, forged.text)
    link = booking_token(env, uuid.uuid4().hex)
    # the calendar's edges: the moment exists, its UTC time does not (OverflowError)
    for slot in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        answer = await env.anon.post(f"/book/{link}", data={"slot": slot})
        assert answer.status_code == 422, (slot, answer.text)
        assert "Please pick one of the times below" in answer.text and offered(answer)


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_late_links_page_offers_no_times_while_outreach_cannot_say_if_it_books(
    env: DealsEnv,
) -> None:
    """A link with no running run and no deal (a late booking: outreach decides, and is not
    there in this rig) offered its times as bookable; nobody can say whether they are."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    page = await env.anon.get(f"/book/{booking_token(env, uuid.uuid4().hex)}")
    assert page.status_code == 503, page.text
    assert "try again in a minute" in page.text and not offered(page), page.text


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_the_page_may_not_be_framed_leaks_no_referer_and_is_not_cached(
    env: DealsEnv,
) -> None:
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    for answer in (
        await env.anon.get(f"/book/{booking_token(env, uuid.uuid4().hex)}"),
        await env.anon.get("/book/garbage.token"),
    ):
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_prospect_books_a_free_slot_through_their_link(env: DealsEnv) -> None:
    # the rep's hours: set, read back, bad input named
    r = await env.http.put("/reps/rep-1/availability", json=BOOKING_HOURS)
    assert r.status_code == 200, r.text
    assert r.json()["start"] == "09:00" and r.json()["free_slots"]
    assert (await env.http.get("/reps/rep-1/availability")).json()["timezone"] == "Europe/Berlin"
    bad = await env.http.put(
        "/reps/rep-1/availability",
        json={**BOOKING_HOURS, "timezone": "Mars/Olympus", "end": "08:00"},
    )
    assert bad.status_code == 422 and "timezone" in fields(bad)
    assert (await env.http.get("/reps/nobody/availability")).status_code == 404

    prospect = uuid.uuid4().hex
    journey = await env.start_journey(prospect)
    link = await booking_link(env, prospect)
    # a short opaque token: 128 random bits, nothing of the person in it; the run's next touch
    # (or a retried activity) sends the same link
    token = link.removeprefix("/book/")
    assert len(token) <= 64 and prospect not in token and "." not in token
    assert await booking_link(env, prospect) == link
    page = await env.anon.get(link)
    assert page.status_code == 200, page.text
    assert "America/New_York" in page.text and "<script" not in page.text
    slots = offered(page)
    assert slots
    first, label = slots[0]
    # shown in the prospect's zone (New York), not the rep's
    assert label == first.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M")

    booked = await env.anon.post(link, data={"slot": first.isoformat()})
    assert booked.status_code == 200, booked.text
    assert "You are booked" in booked.text
    got = await signals(journey, 2)
    assert [s["name"] for s in got] == [Sig.REPLY_RECEIVED, Sig.MEETING_SCHEDULED]
    assert got[0]["payload"]["channel"] == "booking link"
    # no key holder booked it: the stage changes it causes name the link (issue 14)
    assert [s["payload"]["actor"] for s in got] == ["system:booking link"] * 2
    (deal,) = (await env.http.get("/deals", params={"prospect_id": prospect})).json()
    assert deal["stage"] == "qualifying"  # no answers yet: the gate keeps it from presenting
    (meeting,) = (await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]
    assert datetime.fromisoformat(meeting["starts_at"]) == first
    # subscribers hear of it as of any booked meeting (issue 14: meeting.booked)
    async with env.app.state.sessions() as session:
        queued = [e.body for e in (await session.scalars(select(EventOutbox))).all()]
        row = await session.get(Meeting, meeting["id"])
    # its invitations' UID is fixed now, for every later update (test_deals_meetings)
    assert row is not None
    assert row.invite_uid == f"{meeting['id']}@{address_domain(env.app.state.settings.email_from)}"
    booked_events = [e["data"] for e in queued if e["type"] == MEETING_BOOKED]
    assert booked_events == [
        {
            "meeting_id": meeting["id"],
            "deal_id": deal["id"],
            "prospect_id": prospect,
            "rep_id": "rep-1",
            "starts_at": first.isoformat(),
            "duration_minutes": meeting["duration_minutes"],
        }
    ]

    # the slot is gone from every page; a second prospect picking it gets the 409 page
    assert first not in [s for s, _ in offered(await env.anon.get(link))]
    other = uuid.uuid4().hex
    await env.start_journey(other)
    other_link = await booking_link(env, other)
    taken = await env.anon.post(other_link, data={"slot": first.isoformat()})
    assert taken.status_code == 409
    assert "just taken" in taken.text and offered(taken)
    # the first prospect reloading the confirmation: the same meeting, nothing new
    again = await env.anon.post(link, data={"slot": first.isoformat()})
    assert again.status_code == 200
    assert len((await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]) == 1
    # a slot that is not one: 422 with the slots; links that are not valid: 404
    nonsense = await env.anon.post(other_link, data={"slot": "tomorrow"})
    assert nonsense.status_code == 422 and offered(nonsense)
    assert (await env.anon.get("/book/garbage.token")).status_code == 404
    assert (await env.anon.get(f"/book/{token[:-1]}x")).status_code == 404
    # a signed link sent before links were stored keeps working until it expires
    legacy = booking_token(env, prospect)
    assert (await env.anon.get(f"/book/{legacy}")).status_code == 200
    forged = legacy.replace(".", "x.", 1)
    assert (await env.anon.get(f"/book/{forged}")).status_code == 404
    # expired: refused; revoked: refused at once (the prospect's every stored link)
    async with env.app.state.sessions() as session:
        assert await links.claim_of(session, token, "s") is not None
        after = datetime.now(UTC) + timedelta(days=31)
        assert await links.claim_of(session, token, "s", now=after) is None
    revoked = await env.http.delete(f"/prospects/{prospect}/booking-links")
    assert (revoked.status_code, revoked.json()["revoked"]) == (200, 1), revoked.text
    gone = await env.anon.get(link)
    assert gone.status_code == 404 and "expired" in gone.text
    # the signed one too: it is no row, and went on offering times (and booking) after this
    assert (await env.anon.get(f"/book/{legacy}")).status_code == 404
    fresh = await booking_link(env, prospect)
    assert fresh != link  # a new link for the next touch
    async with env.app.state.sessions() as session:  # the revoked one went as it was made
        kept = await session.scalars(
            select(BookingLink.token).where(BookingLink.prospect_id == prospect)
        )
        assert [f"/book/{t}" for t in kept] == [fresh]
    # the prospect's erasure deletes their links: the fresh one opens nothing
    order = {"erasure_id": uuid.uuid4().hex, "prospect_id": prospect}
    erased = await env.anon.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    assert erased.json()["deleted"]["booking_links"] == 1
    assert (await env.anon.get(fresh)).status_code == 404
    # and a signed link of someone erased without a revocation first opens nothing either
    other = uuid.uuid4().hex
    await env.start_journey(other)
    signed = f"/book/{booking_token(env, other)}"
    assert (await env.anon.get(signed)).status_code == 200
    order = {"erasure_id": uuid.uuid4().hex, "prospect_id": other}
    erased = await env.anon.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    assert (await env.anon.get(signed)).status_code == 404

    # rate limited per client address, before the database
    env.app.state.booking_limits = FormLimits(per_ip=RateLimiter(1, 600))
    assert (await env.anon.get(other_link)).status_code == 200
    limited = await env.anon.get(other_link)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_link_books_one_meeting_at_a_time(env: DealsEnv) -> None:
    """The confirmation says "to move it, reply to that email", but the link went on offering
    every free time: a prospect opening it again (the next cadence email, a colleague it was
    forwarded to) booked a second meeting beside the first, two invitations, two sets of
    reminders and a no-show for the one they meant to replace. While the prospect's meeting is
    ahead the link shows it and books nothing more; once it is cancelled (or over) the link
    books again."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    prospect = uuid.uuid4().hex
    journey = await env.start_journey(prospect)
    link = await booking_link(env, prospect)
    first, second = [s for s, _ in offered(await env.anon.get(link))][:2]
    assert (await env.anon.post(link, data={"slot": first.isoformat()})).status_code == 200

    page = await env.anon.get(link)
    assert page.status_code == 200 and offered(page) == []
    when = first.astimezone(ZoneInfo("America/New_York")).strftime("%A %d %B %Y, %H:%M")
    assert "You are booked" in page.text and when in page.text
    another = await env.anon.post(link, data={"slot": second.isoformat()})
    assert another.status_code == 409 and offered(another) == [] and when in another.text
    (deal,) = (await env.http.get("/deals", params={"prospect_id": prospect})).json()
    (meeting,) = (await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]
    # reloading the confirmation is still the same booking
    again = await env.anon.post(link, data={"slot": first.isoformat()})
    assert again.status_code == 200 and "You are booked" in again.text

    # cancelled: the link books again
    cancel = await env.http.post(f"/deals/{deal['id']}/meetings/{meeting['id']}/cancel", json={})
    assert cancel.status_code == 200, cancel.text
    assert offered(await env.anon.get(link))
    assert (await env.anon.post(link, data={"slot": second.isoformat()})).status_code == 200
    meetings = (await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]
    assert sorted(m["status"] for m in meetings) == ["cancelled", "scheduled"]
    got = await signals(journey, 7)
    scheduled = {s["payload"]["meeting_id"] for s in got if s["name"] == Sig.MEETING_SCHEDULED}
    assert scheduled == {m["id"] for m in meetings}  # the reload told it again: idempotent


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_meeting_booked_while_qualifying_can_be_moved_cancelled_and_marked(
    env: DealsEnv,
) -> None:
    """A cold prospect books through their link: the deal stays qualifying (no answers yet),
    with the meeting on it. The rep must still be able to move it when the prospect asks, cancel
    it, and say how it went: the journey plans moves and cancellations while qualifying, and
    holds the qualification timeout until the meeting is over. These were 409 invalid_stage."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    prospects = [uuid.uuid4().hex for _ in range(2)]
    journeys = [await env.start_journey(p) for p in prospects]
    links_ = [await booking_link(env, p) for p in prospects]
    first, second, third = [s for s, _ in offered(await env.anon.get(links_[0]))][:3]
    meetings = []
    for link, slot in zip(links_, (first, second), strict=True):
        booked = await env.anon.post(link, data={"slot": slot.isoformat()})
        assert booked.status_code == 200, booked.text
    for prospect in prospects:
        (deal,) = (await env.http.get("/deals", params={"prospect_id": prospect})).json()
        assert deal["stage"] == "qualifying"
        (meeting,) = (await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]
        meetings.append(f"/deals/{deal['id']}/meetings/{meeting['id']}")

    moved = await env.http.post(f"{meetings[0]}/reschedule", json={"starts_at": third.isoformat()})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["revision"], datetime.fromisoformat(moved.json()["starts_at"])) == (
        1,
        third,
    )
    cancelled = await env.http.post(f"{meetings[1]}/cancel", json={"reason": "asked to"})
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    got = [[s["name"] for s in await signals(j, 3)] for j in journeys]
    assert got == [
        [Sig.REPLY_RECEIVED, Sig.MEETING_SCHEDULED, Sig.MEETING_RESCHEDULED],
        [Sig.REPLY_RECEIVED, Sig.MEETING_SCHEDULED, Sig.MEETING_CANCELLED],
    ]
    # not started yet: held is refused for that reason, not for the deal's stage
    early = await env.http.post(f"{meetings[0]}/held")
    assert (early.status_code, error(early)["code"]) == (409, "meeting_not_started")


@pytest.mark.parametrize("database_urls", ["postgres"], indirect=True)
async def test_a_deal_opened_by_the_journey_and_a_booking_at_once_is_one_deal(
    env: DealsEnv,
) -> None:
    """The journey opens its deal while the prospect books through the link, which opens it
    when they book first: both found no deal and inserted one; the second failed on the unique
    journey id, a 500 on the booking page. Both now have the one deal."""
    req = OpenDealRequest("p-race", "journey-p-race", "rep-1", "cold", "test: opened twice")

    async def open_one() -> str:
        async with env.app.state.sessions() as session:
            deal = await open_deal(session, req)
            await session.commit()
            return deal.id

    first, second = await asyncio.gather(open_one(), open_one())
    assert first == second
    async with env.app.state.sessions() as session:
        deals = (await session.scalars(select(Deal).where(Deal.prospect_id == "p-race"))).all()
    assert [d.id for d in deals] == [first]


@pytest.mark.parametrize("database_urls", ["postgres"], indirect=True)
async def test_a_reps_first_hours_set_twice_at_once_are_two_answers_not_a_500(
    env: DealsEnv,
) -> None:
    """Both requests found no row and both inserted it: the second was a 500 (the primary key).
    A rep's hours are now written under their calendar's lock, so the second replaces them."""
    later = {**BOOKING_HOURS, "meeting_minutes": 45}
    answers = await asyncio.gather(
        env.http.put(AVAILABILITY, json=BOOKING_HOURS), env.http.put(AVAILABILITY, json=later)
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    kept = (await env.http.get(AVAILABILITY)).json()
    assert kept["meeting_minutes"] in (30, 45) and kept["timezone"] == BOOKING_HOURS["timezone"]


@pytest.mark.parametrize("database_urls", ["postgres"], indirect=True)
async def test_two_prospects_booking_one_slot_at_once_get_one_meeting(env: DealsEnv) -> None:
    """... and meetings scheduled, moved and cancelled through the API hold their slots."""
    r = await env.http.put("/reps/rep-1/availability", json=BOOKING_HOURS)
    assert r.status_code == 200, r.text
    slot = datetime.fromisoformat(r.json()["free_slots"][0])
    pages = []
    for _ in range(4):
        prospect = uuid.uuid4().hex
        await env.start_journey(prospect)
        pages.append(await booking_link(env, prospect))
    answers = await asyncio.gather(
        *(env.anon.post(link, data={"slot": slot.isoformat()}) for link in pages)
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    for answer in answers:
        if answer.status_code == 409:
            assert "just taken" in answer.text and slot not in [s for s, _ in offered(answer)]
    async with env.app.state.sessions() as session:
        held = (await session.scalars(select(Meeting).where(Meeting.starts_at == slot))).all()
    assert len(held) == 1

    # a meeting scheduled through the API holds its slot too: racing three bookings of it, one
    # of the four wins; the losing bookings get the taken page, a losing API call 409 slot_taken
    deal_id, _ = await env.presenting_deal()  # rep-1's
    # a link whose prospect holds a meeting shows it, not the slots: fresh prospects race for
    # the next slot, and one who never books looks at the page
    pages = []
    for _ in range(4):
        prospect = uuid.uuid4().hex
        await env.start_journey(prospect)
        pages.append(await booking_link(env, prospect))
    free = [
        datetime.fromisoformat(s) for s in (await env.http.get(AVAILABILITY)).json()["free_slots"]
    ]
    contested, moved_to = free[0], free[2]
    meeting = {"starts_at": contested.isoformat(), "title": "Demo"}
    raced = await asyncio.gather(
        env.http.post(f"/deals/{deal_id}/meetings", json=meeting),
        *(env.anon.post(link, data={"slot": contested.isoformat()}) for link in pages[1:]),
    )
    api, answered = raced[0], raced[1:]
    won = [a for a in raced if a.status_code in (200, 201)]
    assert len(won) == 1, [a.status_code for a in raced]
    assert all(p.status_code in (200, 409) for p in answered)
    assert all("just taken" in p.text for p in answered if p.status_code == 409)
    if api.status_code != 201:
        assert (api.status_code, error(api)["code"]) == (409, "slot_taken")
        api = await env.http.post(
            f"/deals/{deal_id}/meetings", json={**meeting, "starts_at": free[1].isoformat()}
        )
        assert api.status_code == 201, api.text
    mine = api.json()
    taken = datetime.fromisoformat(mine["starts_at"])
    assert taken not in [s for s, _ in offered(await env.anon.get(pages[0]))]
    # rescheduling through the API moves the hold, onto a slot nobody holds only
    move = f"/deals/{deal_id}/meetings/{mine['id']}/reschedule"
    onto = await env.http.post(move, json={"starts_at": slot.isoformat()})
    assert (onto.status_code, error(onto)["code"]) == (409, "slot_taken")
    r = await env.http.post(move, json={"starts_at": moved_to.isoformat()})
    assert r.status_code == 200, r.text
    page = [s for s, _ in offered(await env.anon.get(pages[0]))]
    assert taken in page and moved_to not in page
    # a meeting that overlaps a slot without starting on it takes it off the page as well
    overlapping = free[3] + timedelta(minutes=5)
    r = await env.http.post(
        f"/deals/{deal_id}/meetings", json={"starts_at": overlapping.isoformat(), "title": "x"}
    )
    assert r.status_code == 201, r.text
    late = await env.anon.post(pages[0], data={"slot": free[3].isoformat()})
    assert late.status_code == 409 and free[3] not in [s for s, _ in offered(late)]
    # cancelling through the API frees the slot: a prospect books it
    r = await env.http.post(f"/deals/{deal_id}/meetings/{mine['id']}/cancel", json={})
    assert r.status_code == 200, r.text
    booked = await env.anon.post(pages[0], data={"slot": moved_to.isoformat()})
    assert booked.status_code == 200, booked.text


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_reassigned_prospects_link_books_their_new_rep(env: DealsEnv) -> None:
    """The prospect's link kept the rep it was issued for: reassigned (a territory change, their
    rep deactivated) while the email was in their inbox, they got the old rep's free times and
    booked one, the meeting (and a deal) landed in the old rep's calendar, and the new rep, who
    takes over the meeting, was double booked over a meeting of their own. Deals hears the move
    (POST /internal/prospects/{id}/rep): the live links move to the new rep with the deals."""
    for rep in ("rep-1", "rep-2"):
        r = await env.http.put(f"/reps/{rep}/availability", json=BOOKING_HOURS)
        assert r.status_code == 200, r.text
    prospect, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    await env.start_journey(prospect)
    await env.start_journey(theirs)
    link = await booking_link(env, prospect, rep_id="rep-1")
    taken = offered(await env.anon.get(link))[0][0]
    # the new rep's own prospect holds that time
    other_link = await booking_link(env, theirs, rep_id="rep-2")
    assert (await env.anon.post(other_link, data={"slot": taken.isoformat()})).status_code == 200

    moved = await env.anon.post(
        f"/internal/prospects/{prospect}/rep", json={"rep_id": "rep-2"}, headers=SERVICE_AUTH
    )
    assert moved.status_code == 200, moved.text
    page = await env.anon.get(link)
    assert page.status_code == 200, page.text
    assert taken not in [s for s, _ in offered(page)]
    refused = await env.anon.post(link, data={"slot": taken.isoformat()})
    assert refused.status_code == 409, refused.text
    free = offered(refused)[0][0]
    assert (await env.anon.post(link, data={"slot": free.isoformat()})).status_code == 200
    (deal,) = (await env.http.get("/deals", params={"prospect_id": prospect})).json()
    assert deal["rep_id"] == "rep-2"
    async with env.app.state.sessions() as session:
        (row,) = (await session.scalars(select(Meeting).where(Meeting.deal_id == deal["id"]))).all()
    assert row.booked_rep_id == "rep-2"
    # the next touch sends the same (moved) link
    assert await booking_link(env, prospect, rep_id="rep-2") == link
    # a link signed before links were stored names rep-1 in its token: it follows the move
    legacy = booking_token(env, prospect, rep_id="rep-1")
    secret = env.app.state.settings.booking_link_secret.get_secret_value()
    async with env.app.state.sessions() as session:
        claim = await links.claim_of(session, legacy, secret)
    assert claim is not None and claim.rep_id == "rep-2"


async def test_a_rep_id_longer_than_any_is_a_422_naming_it(env: DealsEnv) -> None:
    """PUT /reps/{rep_id}/availability took any path text: one longer than the column (64) was a
    500 on PostgreSQL (value too long for type character varying(64)); SQLite stored it. It is
    a 422 naming rep_id now, on both routes."""
    bad = "x" * 65
    r = await env.http.put(f"/reps/{bad}/availability", json=BOOKING_HOURS)
    assert (r.status_code, fields(r)) == (422, {"rep_id"}), r.text
    r = await env.http.get(f"/reps/{bad}/availability")
    assert (r.status_code, fields(r)) == (422, {"rep_id"}), r.text
    ok = await env.http.put(f"/reps/{'x' * 64}/availability", json=BOOKING_HOURS)
    assert ok.status_code == 200, ok.text


async def test_a_closed_deals_link_says_so_before_the_prospect_picks_a_time(
    env: DealsEnv,
) -> None:
    """A prospect whose deal was closed (disqualified, lost) opening a link from an earlier email
    was offered the rep's free times, picked one, and only then read "This conversation is
    closed" (410): the page offered what the booking refuses. The page says so at once now."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    deal_id, prospect, _ = await env.open_deal()
    link = await booking_link(env, prospect)
    slot = offered(await env.anon.get(link))[0][0]
    no = {"budget": False, "authority": "none", "need": "none really", "timeline": 12}
    r = await env.http.post(f"/deals/{deal_id}/qualification", json={"answers": no})
    assert r.json()["deal"]["stage"] == "disqualified", r.text

    page = await env.anon.get(link)
    assert page.status_code == 410, page.text
    assert "This conversation is closed" in page.text and offered(page) == []
    booked = await env.anon.post(link, data={"slot": slot.isoformat()})
    assert booked.status_code == 410 and "This conversation is closed" in booked.text


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_reloading_a_confirmation_after_a_reassignment_books_nothing_more(
    env: DealsEnv,
) -> None:
    """The prospect books, is handed to another rep (the meeting's slot goes with the deal),
    then reloads the confirmation of a link that still names the old rep (a signed link from
    before links were stored): it is the same booking, answered again, never a second meeting
    at that time in the old rep's calendar."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    prospect = uuid.uuid4().hex
    await env.start_journey(prospect)
    link = f"/book/{booking_token(env, prospect)}"
    slot = offered(await env.anon.get(link))[0][0]
    assert (await env.anon.post(link, data={"slot": slot.isoformat()})).status_code == 200
    moved = await env.anon.post(
        f"/internal/prospects/{prospect}/rep", json={"rep_id": "rep-2"}, headers=SERVICE_AUTH
    )
    assert moved.status_code == 200, moved.text
    # the signed link follows the move to rep-2 (signed_link_holds): rep-2 takes bookings
    r = await env.http.put("/reps/rep-2/availability", json=BOOKING_HOURS)
    assert r.status_code == 200, r.text

    again = await env.anon.post(link, data={"slot": slot.isoformat()})
    assert again.status_code == 200 and "You are booked" in again.text, again.text
    (deal,) = (await env.http.get("/deals", params={"prospect_id": prospect})).json()
    meetings = (await env.http.get(f"/deals/{deal['id']}")).json()["meetings"]
    assert len(meetings) == 1, meetings


async def _standing(env: DealsEnv, active: bool, at: datetime) -> None:
    """Prospecting's word on rep-1 (its outbox, on deactivating or reactivating them)."""
    told = await env.anon.post(
        "/internal/reps/rep-1/standing",
        json={"active": active, "changed_at": at.isoformat()},
        headers=SERVICE_AUTH,
    )
    assert told.status_code == 200, told.text


async def test_a_deactivated_reps_link_offers_no_times_and_books_nothing(env: DealsEnv) -> None:
    """A prospect who was not handed over when their rep was deactivated (their journey was
    over, or no active rep had room) kept a link to that rep: the page offered the rep's free
    times and booked one, a meeting nobody would attend, and GET /reps/{id}/availability still
    served them. Prospecting tells deals of the deactivation: the page offers no times and says
    how to get in touch, a booking is a 410 that stores nothing, the rep's availability offers
    no slots; an older word arriving late changes nothing; reactivated, the link works again."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    prospect = uuid.uuid4().hex
    await env.start_journey(prospect)
    link = await booking_link(env, prospect)
    slot = offered(await env.anon.get(link))[0][0]
    left = datetime.now(UTC)
    await _standing(env, False, left)

    page = await env.anon.get(link)
    assert page.status_code == 410 and offered(page) == [], page.text
    assert "no longer taking meetings" in page.text and "reply to the message" in page.text
    booked = await env.anon.post(link, data={"slot": slot.isoformat()})
    assert booked.status_code == 410 and offered(booked) == [], booked.text
    async with env.app.state.sessions() as session:
        assert (await session.scalars(select(Deal).where(Deal.prospect_id == prospect))).all() == []
        assert (await session.scalars(select(Meeting))).all() == []
    hours = (await env.http.get(AVAILABILITY)).json()
    assert (hours["active"], hours["free_slots"]) == (False, [])
    await _standing(env, True, left - timedelta(minutes=1))  # a reactivation from before
    assert (await env.anon.get(link)).status_code == 410

    await _standing(env, True, left + timedelta(minutes=1))
    assert offered(await env.anon.get(link))
    hours = (await env.http.get(AVAILABILITY)).json()
    assert hours["active"] is True and hours["free_slots"], hours
    assert (await env.anon.post(link, data={"slot": slot.isoformat()})).status_code == 200


async def test_a_reps_standing_is_validated(env: DealsEnv) -> None:
    """The standing route takes only a service's word, whole: a missing or naive time is a
    422 naming it, a rep id longer than any a 422 naming rep_id."""
    path = "/internal/reps/rep-1/standing"
    r = await env.http.post(path, json={"active": False, "changed_at": "2031-01-01T00:00:00Z"})
    assert r.status_code == 403, r.text
    for body, field in (
        ({"active": False}, "changed_at"),
        ({"active": False, "changed_at": "2031-01-01T00:00:00"}, "changed_at"),
        ({"changed_at": "2031-01-01T00:00:00Z"}, "active"),
    ):
        r = await env.anon.post(path, json=body, headers=SERVICE_AUTH)
        assert (r.status_code, fields(r)) == (422, {field}), (body, r.text)
    good = {"active": False, "changed_at": "2031-01-01T00:00:00Z"}
    r = await env.anon.post(f"/internal/reps/{'x' * 65}/standing", json=good, headers=SERVICE_AUTH)
    assert (r.status_code, fields(r)) == (422, {"rep_id"}), r.text


async def test_a_booking_after_the_links_run_ended_waits_for_outreach_and_stores_nothing(
    env: DealsEnv,
) -> None:
    """The link's run ended without a deal (the cadence ran out without a reply): a booking
    opened a qualifying deal no journey carried. It is a late reply now, which outreach decides
    (the whole path: tests/outreach/test_late_replies.py); while outreach cannot be asked (here:
    nobody listens at its address) the prospect reads to try again, and nothing is stored."""
    assert (await env.http.put(AVAILABILITY, json=BOOKING_HOURS)).status_code == 200
    prospect = uuid.uuid4().hex
    journey = await env.start_journey(prospect)
    link = await booking_link(env, prospect)
    slot = offered(await env.anon.get(link))[0][0]
    await journey.terminate("the cadence ran out without a reply")
    env.journeys.remove(journey)  # ended: nothing left to terminate after the test

    booked = await env.anon.post(link, data={"slot": slot.isoformat()})
    assert booked.status_code == 503 and "try again" in booked.text, booked.text
    async with env.app.state.sessions() as session:
        assert (await session.scalars(select(Deal).where(Deal.prospect_id == prospect))).all() == []
        assert (await session.scalars(select(Meeting))).all() == []
