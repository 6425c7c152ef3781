"""Who may call which outreach route, and whose each outreach id is (for rep keys).

The roles, rules and their enforcement: shared/access.py. A route without an entry here is
admin-only at run time and fails tests/stack/test_roles.py.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from services.outreach.models import RepTask
from services.outreach.prospects import ProspectDirectory
from shared.access import (
    ANY_ROLE,
    OPS,
    PUBLIC,
    SERVICE_ONLY,
    Resolver,
    RouteKey,
    Rule,
    ServiceAccess,
    rep_own,
)
from shared.db import read_value
from shared.errors import AppError


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    """Asked of prospecting, the owner of assignment: outreach's own copies of the rep (on the
    enrollment, on tasks) are snapshots that a reassignment can leave behind."""
    directory: ProspectDirectory = request.app.state.prospects
    try:
        contact = await directory.contact(prospect_id)
    except AppError as err:
        if err.status == 404:
            return None
        raise
    return contact.rep_id


async def task_rep(request: Request, task_id: str) -> str | None:
    return await read_value(request, select(RepTask.rep_id).where(RepTask.id == task_id))


RESOLVERS: dict[str, Resolver] = {"prospect_id": prospect_rep, "task_id": task_rep}

POLICIES: dict[RouteKey, Rule] = {
    # --- event subscriptions (issue 14) ---
    ("GET", "/event-types"): OPS,
    ("POST", "/event-subscriptions"): OPS,
    ("GET", "/event-subscriptions"): OPS,
    ("GET", "/event-subscriptions/{subscription_id}"): OPS,
    ("PATCH", "/event-subscriptions/{subscription_id}"): OPS,
    ("DELETE", "/event-subscriptions/{subscription_id}"): OPS,
    ("POST", "/event-subscriptions/{subscription_id}/secret"): OPS,
    ("GET", "/event-subscriptions/{subscription_id}/deliveries"): OPS,
    ("POST", "/event-subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"): OPS,
    ("POST", "/internal/events"): SERVICE_ONLY,
    # --- end of event subscriptions ---
    ("POST", "/webhooks/twilio/sms"): PUBLIC,
    ("POST", "/webhooks/twilio/status"): PUBLIC,
    ("POST", "/webhooks/mailgun/inbound"): PUBLIC,
    ("POST", "/webhooks/mailgun/events"): PUBLIC,
    ("POST", "/webhooks/sendgrid/events"): PUBLIC,
    ("POST", "/webhooks/postmark/events"): PUBLIC,
    ("POST", "/webhooks/postmark/inbound"): PUBLIC,
    ("GET", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/cadences"): OPS,
    ("GET", "/cadences"): ANY_ROLE,
    ("GET", "/cadences/{cadence_id}"): ANY_ROLE,
    ("PUT", "/cadences/{cadence_id}"): OPS,
    ("POST", "/cadences/{cadence_id}/pause"): OPS,
    ("POST", "/cadences/{cadence_id}/resume"): OPS,
    ("POST", "/cadences/{cadence_id}/stop"): OPS,
    ("GET", "/cadences/{cadence_id}/migration"): OPS,
    ("POST", "/cadences/{cadence_id}/migration"): OPS,
    ("POST", "/cadences/{cadence_id}/simulate"): OPS,
    ("POST", "/cadences/{cadence_id}/preview"): OPS,
    ("GET", "/cadences/{cadence_id}/stats"): OPS,
    ("GET", "/cadences/{cadence_id}/stats.csv"): OPS,  # issue 14: CSV export
    ("POST", "/enrollments"): rep_own("body:prospect_id"),
    ("GET", "/prospects/{prospect_id}/enrollment"): rep_own("path:prospect_id"),
    ("GET", "/prospects/{prospect_id}/messages"): rep_own("path:prospect_id"),
    ("GET", "/prospects/{prospect_id}/journeys"): rep_own("path:prospect_id"),  # every run
    ("GET", "/follow-ups"): OPS,
    ("GET", "/inbox-events"): OPS,
    ("POST", "/internal/prospects/{prospect_id}/late-bookings"): SERVICE_ONLY,  # deals
    ("GET", "/internal/prospects/{prospect_id}/late-bookings"): SERVICE_ONLY,  # deals' page
    ("GET", "/mailbox"): OPS,  # the IMAP reply mailbox's state (issue 14)
    ("POST", "/internal/prospects/{prospect_id}/journeys/reopen"): SERVICE_ONLY,
    ("POST", "/internal/reps/{rep_id}/signature"): SERVICE_ONLY,  # prospecting
    ("POST", "/internal/prospects/{prospect_id}/unassigned"): SERVICE_ONLY,  # prospecting
    ("GET", "/journeys/{prospect_id}"): rep_own("path:prospect_id"),
    ("POST", "/journeys/{prospect_id}/pause"): rep_own("path:prospect_id"),
    ("POST", "/journeys/{prospect_id}/resume"): rep_own("path:prospect_id"),
    ("POST", "/journeys/{prospect_id}/stop"): rep_own("path:prospect_id"),
    ("POST", "/reps/{rep_id}/journeys/pause"): rep_own("path:rep_id"),
    ("POST", "/reps/{rep_id}/journeys/resume"): rep_own("path:rep_id"),
    # counts only (no prospect): whoever started a bulk pause, a rep included, follows it
    ("GET", "/journey-operations/{operation_id}"): ANY_ROLE,
    ("GET", "/reps/{rep_id}/tasks"): rep_own("path:rep_id"),
    ("GET", "/tasks"): rep_own("query:prospect_id"),
    ("POST", "/tasks/{task_id}/complete"): rep_own("path:task_id"),
    ("GET", "/consent/{prospect_id}"): rep_own("path:prospect_id"),
    ("GET", "/suppressions"): OPS,
    ("POST", "/senders"): OPS,
    ("GET", "/senders"): OPS,
    ("GET", "/senders/{sender_id}"): OPS,
    ("PUT", "/senders/{sender_id}"): OPS,
    ("POST", "/do-not-contact"): OPS,
    ("GET", "/do-not-contact"): OPS,
    ("DELETE", "/do-not-contact/{entry_id}"): OPS,
    ("GET", "/reps/{rep_id}/inbox"): rep_own("path:rep_id"),
    ("POST", "/internal/auto-enrollments"): SERVICE_ONLY,
    ("POST", "/internal/prospects/{prospect_id}/rep"): SERVICE_ONLY,
    ("POST", "/internal/prospects/{prospect_id}/contact"): SERVICE_ONLY,
    ("POST", "/internal/erasures"): SERVICE_ONLY,
    ("GET", "/internal/prospects/{prospect_id}/timeline"): SERVICE_ONLY,
    ("GET", "/tasks/{task_id}"): rep_own("path:task_id"),
    ("POST", "/tasks/{task_id}/snooze"): rep_own("path:task_id"),
    ("POST", "/tasks/{task_id}/reassign"): rep_own("path:task_id"),
    ("POST", "/prospects/{prospect_id}/tasks/reassign"): OPS,  # follows a prospect reassignment
    ("POST", "/internal/reps/{rep_id}/tasks/reassign"): SERVICE_ONLY,
    ("GET", "/tasks/{task_id}/notifications"): rep_own("path:task_id"),
    ("GET", "/task-policy"): OPS,
    ("PUT", "/task-policy"): OPS,
    ("GET", "/reps/{rep_id}/notifications"): rep_own("path:rep_id"),
    ("PUT", "/reps/{rep_id}/notifications"): rep_own("path:rep_id"),
    ("POST", "/ui/sign-in"): PUBLIC,  # the pages' key form: checks the key itself
    ("GET", "/ui/reps/{rep_id}/inbox"): rep_own("path:rep_id"),
    ("POST", "/ui/reps/{rep_id}/tasks/{task_id}/complete"): rep_own("path:rep_id", "path:task_id"),
    ("POST", "/ui/reps/{rep_id}/tasks/{task_id}/snooze"): rep_own("path:rep_id", "path:task_id"),
}

ACCESS = ServiceAccess(POLICIES, RESOLVERS)
