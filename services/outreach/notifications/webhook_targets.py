"""Where a rep's notification webhook may point: the server posts to it, so a rep's key must not
turn outreach into a client of internal addresses (the metadata service, the database, ...).
The rules are shared.outbound's; this module applies the outreach settings to them."""

from __future__ import annotations

from shared.outbound import OutboundPolicy, check_url
from shared.settings import Settings


def check_webhook_url(url: str, settings: Settings, field_name: str = "webhook_url") -> None:
    """422 naming the field when `url` may not receive notifications (or, for the event
    subscriptions, events: the same rules)."""
    check_url(
        url,
        production=settings.environment == "production",
        field_name=field_name,
        allowed_hosts=[h.lower() for h in settings.webhook_allowed_hosts],
        internal_hosts=internal_hosts(settings),
    )


def internal_hosts(settings: Settings) -> frozenset[str]:
    return frozenset(h.lower().rstrip(".") for h in settings.webhook_internal_hosts)


def webhook_policy(settings: Settings) -> OutboundPolicy:
    """How the notifier connects: every resolved address checked, loopback only outside
    production (and the internal hosts the operator named)."""
    return OutboundPolicy(
        production=settings.environment == "production", internal_hosts=internal_hosts(settings)
    )
