"""Keys cut to a column's width stay unique (shared.ids.fitted_key)."""

from shared.ids import fitted_key


def test_a_key_that_fits_is_kept_as_it_is() -> None:
    assert fitted_key("inbound:<a@b>", 200) == "inbound:<a@b>"
    assert fitted_key("x" * 200, 200) == "x" * 200


def test_long_keys_with_the_same_start_stay_apart_and_fit() -> None:
    first, second = "reply:inbound:" + "m" * 300 + "1", "reply:inbound:" + "m" * 300 + "2"
    one, two = fitted_key(first, 200), fitted_key(second, 200)
    assert one != two and len(one) == len(two) == 200
    assert one.startswith("reply:inbound:mmm") and fitted_key(first, 200) == one
