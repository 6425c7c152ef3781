"""Sending rules as pure functions of `now`: windows, holidays, quiet hours across DST, time-zone
inference from phone numbers, the caps' arithmetic, and the settings they depend on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.outreach.cadences.schemas import SendWindowIn
from services.outreach.cadences.send_window import next_allowed, phone_zones
from services.outreach.senders.send_policy import HOUR, CapState, SenderState, choose_sender, decide
from shared.contracts.journey import SendWindow
from shared.settings import Settings
from tests.support.settings import PRODUCTION

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WORKDAYS = SendWindow(days=[0, 1, 2, 3, 4], start_hour=9, end_hour=17)


def at(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def local(moment: datetime, tz: ZoneInfo | str) -> datetime:
    return moment.astimezone(ZoneInfo(tz) if isinstance(tz, str) else tz)


# --- windows and holidays ------------------------------------------------------------------------


def test_inside_the_window_goes_now() -> None:
    now = at(BERLIN, 2025, 6, 4, 10, 30)  # a Wednesday
    assert next_allowed(now, "Europe/Berlin", "email", WORKDAYS) == now


def test_after_hours_on_friday_waits_for_monday_morning_local_time() -> None:
    now = at(BERLIN, 2025, 6, 6, 17, 0)  # Friday, the window just closed
    got = next_allowed(now, "Europe/Berlin", "email", WORKDAYS)
    assert local(got, BERLIN) == at(BERLIN, 2025, 6, 9, 9, 0)
    assert got.tzinfo is not None and got.utcoffset() == now.utcoffset()


def test_a_holiday_is_skipped_in_the_prospects_own_calendar() -> None:
    auckland = ZoneInfo("Pacific/Auckland")
    window = SendWindow(start_hour=9, end_hour=17, holidays=["2025-12-25", "2025-12-26"])
    # 22:00 UTC on the 24th is 11:00 on Christmas Day in Auckland: a UTC calendar would send
    now = datetime(2025, 12, 24, 22, 0, tzinfo=UTC)
    got = next_allowed(now, "Pacific/Auckland", "email", window)
    assert local(got, auckland) == at(auckland, 2025, 12, 27, 9, 0)
    # the same moment for a prospect in New York (17:00 on the 24th, window closed) waits for
    # the 27th as well: the 25th and 26th are holidays in their calendar too
    got_ny = next_allowed(now, "America/New_York", "email", window)
    assert local(got_ny, NEW_YORK) == at(NEW_YORK, 2025, 12, 27, 9, 0)


def test_holidays_on_every_open_day_for_weeks_still_find_the_next_opening() -> None:
    mondays = [(datetime(2025, 1, 6) + timedelta(weeks=w)).date().isoformat() for w in range(5)]
    window = SendWindow(days=[0], start_hour=9, end_hour=10, holidays=mondays)
    got = next_allowed(at(BERLIN, 2025, 1, 6, 8, 0), "Europe/Berlin", "email", window)
    assert local(got, BERLIN) == at(BERLIN, 2025, 2, 10, 9, 0)


def test_holidays_are_validated_and_normalised_in_the_cadence_schema() -> None:
    ok = SendWindowIn(holidays=["2025-12-26", "2025-12-25", "2025-12-26"])
    assert ok.holidays == ["2025-12-25", "2025-12-26"]
    for bad in ("2025-02-30", "25-12-2025", "20251225", "2025-W52-4", "christmas"):
        with pytest.raises(ValidationError) as err:
            SendWindowIn(holidays=["2025-01-01", bad])
        assert err.value.errors()[0]["loc"] == ("holidays", 1)


# --- quiet hours for texts and calls, across DST -----------------------------------------------


@pytest.mark.parametrize("channel", ["sms", "call_task"])
def test_texts_and_calls_wait_for_eight_whatever_the_window(channel: str) -> None:
    always = SendWindow()
    early = at(NEW_YORK, 2025, 6, 4, 6, 0)
    assert next_allowed(early, "America/New_York", "email", always) == early
    got = next_allowed(early, "America/New_York", channel, always)
    assert local(got, NEW_YORK) == at(NEW_YORK, 2025, 6, 4, 8, 0)
    late = at(NEW_YORK, 2025, 6, 4, 21, 0)
    got = next_allowed(late, "America/New_York", channel, always)
    assert local(got, NEW_YORK) == at(NEW_YORK, 2025, 6, 5, 8, 0)


def test_a_window_outside_quiet_hours_defers_texts_to_the_morning_not_forever() -> None:
    night = SendWindow(start_hour=22, end_hour=24)
    now = at(BERLIN, 2025, 6, 4, 22, 30)
    assert next_allowed(now, "Europe/Berlin", "email", night) == now
    got = next_allowed(now, "Europe/Berlin", "sms", night)
    assert local(got, BERLIN) == at(BERLIN, 2025, 6, 5, 8, 0)


def test_quiet_hours_follow_the_clock_change_in_new_york() -> None:
    always = SendWindow()
    # spring forward (2025-03-09): 07:30 EDT is 11:30 UTC, 08:00 EDT is 12:00 UTC
    got = next_allowed(datetime(2025, 3, 9, 11, 30, tzinfo=UTC), "America/New_York", "sms", always)
    assert got == datetime(2025, 3, 9, 12, 0, tzinfo=UTC)
    # the day before it was EST: 08:00 is 13:00 UTC
    got = next_allowed(datetime(2025, 3, 8, 12, 30, tzinfo=UTC), "America/New_York", "sms", always)
    assert got == datetime(2025, 3, 8, 13, 0, tzinfo=UTC)
    # fall back (2025-11-02): 21:30 EDT on the 1st waits for 08:00 EST, not 08:00 EDT
    got = next_allowed(datetime(2025, 11, 2, 1, 30, tzinfo=UTC), "America/New_York", "sms", always)
    assert got == datetime(2025, 11, 2, 13, 0, tzinfo=UTC)


def _quiet_ok(moment: datetime, tz: ZoneInfo) -> bool:
    return 8 <= local(moment, tz).hour < 21


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/New_York", datetime(2025, 3, 7, tzinfo=UTC)),
        ("America/New_York", datetime(2025, 10, 31, tzinfo=UTC)),
        ("Europe/London", datetime(2025, 3, 28, tzinfo=UTC)),
        ("Europe/London", datetime(2025, 10, 24, tzinfo=UTC)),
        ("Australia/Sydney", datetime(2025, 4, 4, tzinfo=UTC)),
        ("Australia/Lord_Howe", datetime(2025, 10, 3, tzinfo=UTC)),  # a 30-minute DST shift
        ("America/St_Johns", datetime(2025, 3, 7, tzinfo=UTC)),
        ("Asia/Kolkata", datetime(2025, 3, 7, tzinfo=UTC)),
    ],
)
def test_no_text_outside_quiet_hours_in_any_minute_around_a_clock_change(
    zone: str, start: datetime
) -> None:
    tz, always, step = ZoneInfo(zone), SendWindow(), timedelta(minutes=10)
    now = start
    while now < start + timedelta(days=4):
        got = next_allowed(now, zone, "sms", always)
        assert got >= now and _quiet_ok(got, tz), (now, got)
        # earliest: every 10-minute mark before it is outside the quiet-safe hours
        probe = now
        while probe < got - step:
            assert not _quiet_ok(probe, tz), (now, probe, got)
            probe += step
        if got > now:
            assert (local(got, tz).hour, local(got, tz).minute) == (8, 0)
        now += timedelta(minutes=20)


# --- time zones: given, inferred from the phone number, or conservative ------------------------


def test_a_valid_zone_is_taken_at_its_word_even_utc() -> None:
    now = datetime(2025, 6, 4, 9, 0, tzinfo=UTC)
    # +1 415 would say Los Angeles (02:00 there), but the prospect's zone is UTC
    assert next_allowed(now, "UTC", "sms", SendWindow(), "+14155550100") == now


@pytest.mark.parametrize("missing", ["", None, "Mars/Olympus_Mons", "unknown"])
def test_a_missing_zone_comes_from_the_phone_number(missing: str | None) -> None:
    la = ZoneInfo("America/Los_Angeles")
    now = datetime(2025, 6, 4, 9, 0, tzinfo=UTC)  # 02:00 in Los Angeles
    got = next_allowed(now, missing, "sms", SendWindow(), "+1 415 555 0100")
    assert local(got, la) == at(la, 2025, 6, 4, 8, 0)
    paris = ZoneInfo("Europe/Paris")
    got = next_allowed(now, missing, "email", WORKDAYS, "+33612345678")
    assert got == now and local(got, paris).hour == 11


def test_a_number_with_several_zones_uses_the_window_allowed_in_all_of_them() -> None:
    zones = [ZoneInfo(z) for z in phone_zones("+61412345678")]  # Cocos Islands to Lord Howe Island
    assert len(zones) > 3
    window = SendWindow(start_hour=9, end_hour=17)
    now = datetime(2025, 6, 4, 0, 0, tzinfo=UTC)  # 08:00 in Perth, 10:00 in Sydney
    got = next_allowed(now, "", "email", window, "+61412345678")
    assert all(9 <= local(got, tz).hour < 17 for tz in zones)
    assert not all(9 <= local(got - timedelta(minutes=1), tz).hour < 17 for tz in zones)


def test_zones_hours_apart_fall_back_to_quiet_hours_in_all_of_them() -> None:
    zones = [ZoneInfo(z) for z in phone_zones("+79161234567")]  # Kaliningrad side to Kamchatka
    assert len(zones) > 5
    # 09:00-17:00 can never hold from UTC+2 to UTC+12 at once: 08:00-21:00 everywhere instead
    now = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)
    for channel in ("email", "sms"):
        got = next_allowed(now, None, channel, WORKDAYS, "+79161234567")
        assert all(_quiet_ok(got, tz) for tz in zones), channel
        assert got > now


def test_no_zone_at_all_uses_the_conservative_utc_window() -> None:
    window = SendWindow()
    early = datetime(2025, 6, 4, 8, 0, tzinfo=UTC)
    assert next_allowed(early, "", "email", window) == datetime(2025, 6, 4, 13, 0, tzinfo=UTC)
    inside = datetime(2025, 6, 4, 14, 30, tzinfo=UTC)
    assert next_allowed(inside, None, "email", window) == inside
    late = datetime(2025, 6, 4, 17, 0, tzinfo=UTC)
    got = next_allowed(late, "", "sms", window, "+80012345678")  # no zone known for +800
    assert got == datetime(2025, 6, 5, 13, 0, tzinfo=UTC)
    # the cadence's hours still narrow it where they overlap, and its days still count
    narrow = SendWindow(days=[0], start_hour=15, end_hour=20)  # Mondays only
    got = next_allowed(early, "", "email", narrow)
    assert got == datetime(2025, 6, 9, 15, 0, tzinfo=UTC)


# --- caps ----------------------------------------------------------------------------------------

NOW = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)


def sender(
    sid: str, hourly: CapState, daily: CapState | None = None, used: int | None = None
) -> SenderState:
    return SenderState(
        sid,
        hourly,
        daily or CapState(0, timedelta(days=1)),
        NOW - timedelta(minutes=used) if used is not None else None,
        datetime(2025, 1, 1, tzinfo=UTC),
    )


def test_a_full_cap_frees_when_its_oldest_counted_send_ages_out() -> None:
    assert CapState(0, HOUR, count=999).free_at(NOW) == NOW
    assert CapState(3, HOUR, count=2).free_at(NOW) == NOW
    cap_th = NOW - timedelta(minutes=50)
    assert CapState(3, HOUR, 3, cap_th).free_at(NOW) == NOW + timedelta(minutes=10)


def test_round_robin_takes_the_sender_used_longest_ago_that_has_room() -> None:
    room = CapState(10, HOUR, 1)
    full = CapState(1, HOUR, 1, NOW - timedelta(minutes=5))
    a, b, c = sender("a", room, used=1), sender("b", room, used=30), sender("c", full, used=60)
    assert choose_sender([a, b, c], NOW) == b
    assert choose_sender([a, b, sender("d", room)], NOW).sender_id == "d"  # type: ignore[union-attr]


def test_when_every_sender_is_full_the_send_waits_for_the_first_to_free() -> None:
    hour_full = sender("a", CapState(2, HOUR, 2, NOW - timedelta(minutes=45)))
    day_full = sender(
        "b", CapState(0, HOUR), CapState(5, timedelta(days=1), 5, NOW - timedelta(hours=20))
    )
    got = decide([hour_full, day_full], CapState(0, HOUR), NOW)
    assert got.sender_id is None and got.defer_until == NOW + timedelta(minutes=15)


def test_the_domain_cap_applies_with_and_without_senders() -> None:
    domain_full = CapState(2, HOUR, 2, NOW - timedelta(minutes=20))
    assert decide([], CapState(2, HOUR, 1), NOW).defer_until is None
    assert decide([], domain_full, NOW).defer_until == NOW + timedelta(minutes=40)
    roomy = sender("a", CapState(5, HOUR, 0))
    assert decide([roomy], domain_full, NOW).defer_until == NOW + timedelta(minutes=40)
    assert decide([roomy], CapState(2, HOUR, 1), NOW).sender_id == "a"


# --- settings ------------------------------------------------------------------------------------


def test_production_refuses_an_empty_postal_address() -> None:
    real = {k: v for k, v in PRODUCTION.items() if k != "postal_address"}
    with pytest.raises(ValidationError, match="POSTAL_ADDRESS"):
        Settings(**real, postal_address="  ")  # type: ignore[arg-type]
    ok = Settings(**real, postal_address="Example Inc., 1 Main St, Springfield")  # type: ignore[arg-type]
    assert ok.postal_address.startswith("Example")
    assert Settings(environment="development").postal_address == ""  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ERASURE_PEPPER"):
        Settings(**{**real, "erasure_pepper": "dev-erasure-pepper"}, postal_address="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(per_domain_hourly_cap=-1)  # type: ignore[call-arg]
