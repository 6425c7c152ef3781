"""Which answers of Twilio's to a text's create call end that text for good (shared/providers/
sms.py, SmsSendError.of): the send ledger marks those failed at once and retries the rest."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException

from shared.providers.sms import SmsSendError

URI = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"


@pytest.mark.parametrize(
    ("status", "code", "permanent", "not_sent"),
    [
        (400, 21211, True, True),  # not a valid 'To' number
        (400, 21610, True, True),  # the person texted STOP
        (400, 21614, True, True),  # not a mobile number
        (400, 21606, False, True),  # our From number cannot send: ops fix it, then it goes
        (401, 20003, False, True),  # our credentials
        (429, 20429, False, True),  # too many requests
        (500, None, False, False),  # nobody knows whether it was created
    ],
)
def test_twilio_s_answer_says_whether_a_retry_can_help(
    status: int, code: int | None, permanent: bool, not_sent: bool
) -> None:
    err = SmsSendError.of(TwilioRestException(status, URI, "refused", code, "POST"))
    assert (err.permanent, err.not_sent, err.code) == (permanent, not_sent, code)
    assert str(err).startswith(f"Twilio {status} {code}:")
