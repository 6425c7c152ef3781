"""What schemathesis needs to make bodies our API accepts from its OpenAPI, registered once on
import: values of the string formats it names beyond JSON Schema's own ("phone", "timezone":
shared/people.py; "idn-email" without the special-use domains the API refuses), and a serializer for
an import's NDJSON body."""

from __future__ import annotations

from zoneinfo import available_timezones

import phonenumbers
import schemathesis
from hypothesis import strategies as st

from shared.people import normalize_email
from shared.timezones import known_zone

# a valid mobile and fixed-line number of every region phonenumbers knows, in the spellings
# people send (E.164, international with spaces)
_NUMBERS = sorted(
    phonenumbers.format_number(number, spelling)
    for region in phonenumbers.SUPPORTED_REGIONS
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
    for spelling in (
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    )
)
# "" too: unknown, inferred from the phone
_ZONES = ["", *sorted(name for name in available_timezones() if known_zone(name) is not None)]


def _accepted(address: str) -> bool:
    """Hypothesis' addresses include special-use domains (.test, .local) the API refuses, as its
    schema's description says."""
    try:
        normalize_email(address)
    except ValueError:
        return False
    return True


schemathesis.openapi.format("idn-email", st.emails().filter(_accepted))
schemathesis.openapi.format("phone", st.sampled_from(_NUMBERS))
schemathesis.openapi.format("timezone", st.sampled_from(_ZONES))
# an import's NDJSON body is text, sent as generated (prospecting's POST /imports)
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
