"""One attempt at a time talks to the provider for a ledger row: the send lease.

Temporal starts a new attempt of an activity whose attempt timed out, while that attempt may still
be running (a Python activity is not stopped by its timeout). Two attempts of one send could then
both call the provider: two texts. So the attempt that claims a row for sending (a compare-and-set
on its status and attempt count: one claimer wins) writes until when it may still be talking to
the provider: its own start-to-close deadline, plus the provider's timeout, plus a little clock
skew between workers. It never starts a provider call after its deadline. Another attempt that
finds the row `sending` within that time sends nothing and fails, to be retried; after it, the
first attempt is over whatever became of it, and the usual re-send path reconciles (the same
Message-ID; Twilio's message list). An attempt that fails before its provider call, or whose
provider said the message was not sent, gives its lease back at once (once the database is
back, if its going away was the failure). One that failed inside the provider call (cancelled,
timed out, connection lost) keeps it: whether that message went out is unknown until the lease
is over. One that failed after the provider accepted the message records the send all the same
(a cancellation does not stop that write), and keeps the lease too, so that no retry sends while
the record may still be on its way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from temporalio import activity
from temporalio.exceptions import ApplicationError

# how far apart two workers' clocks may be
CLOCK_SKEW = timedelta(seconds=2)
IN_FLIGHT = "SendInFlight"


def attempt_deadline() -> datetime | None:
    """When this activity attempt times out; None outside an activity (a direct call) or
    without a start-to-close timeout."""
    if not activity.in_activity():
        return None
    info = activity.info()
    if info.start_to_close_timeout is None:
        return None
    return info.started_time + info.start_to_close_timeout


def lease_end(deadline: datetime | None, provider_timeout: float) -> datetime | None:
    if deadline is None:
        return None
    return deadline + timedelta(seconds=provider_timeout) + CLOCK_SKEW


def in_flight(channel: str, until: datetime) -> ApplicationError:
    """Retryable: the row's earlier attempt may still be sending it."""
    return ApplicationError(
        f"an earlier attempt may still be sending this {channel} until {until.isoformat()}: "
        "not sending it twice",
        type=IN_FLIGHT,
    )


def expired(channel: str) -> ApplicationError:
    """Retryable: this attempt's deadline passed before its provider call (a later attempt
    sends, once this one's lease is over)."""
    return ApplicationError(
        f"this attempt's time ran out before the {channel} provider was called",
        type=IN_FLIGHT,
    )


@dataclass
class ProviderCall:
    """`with call:` around the provider call: `unanswered` when it ended in an exception that
    leaves open whether the provider has the message (an error saying `not_sent`, such as a
    refused connection or the server's own error answer, does not); `accepted` when it
    returned: the provider has the message."""

    unanswered: bool = False
    accepted: bool = False

    def __enter__(self) -> ProviderCall:
        self.unanswered = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.unanswered = kind is not None and not getattr(error, "not_sent", False)
        self.accepted = kind is None

    def may_give_back(self) -> bool:
        """Whether a failed attempt may give its lease back: the provider surely lacks the
        message (never called, or said it was not sent). Once it accepted, a retry must find
        the send recorded, not send again; unanswered, nobody knows until the lease is over."""
        return not self.unanswered and not self.accepted
