"""Where a rep's notification webhook may point: the server posts to it, so a rep's key must not
turn outreach into a client of internal addresses (the metadata service, the database, ...)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from shared.errors import invalid
from shared.settings import Settings


def _host_allowed(host: str, allowed: list[str]) -> bool:
    return any(host == a or host.endswith("." + a) for a in (h.lower() for h in allowed))


def _internal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or host.endswith(".internal"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: only the allow-list can narrow those down
    return not ip.is_global


def check_webhook_url(url: str, settings: Settings) -> None:
    """422 naming the field when `url` may not receive notifications."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise invalid("webhook_url", "needs a host, e.g. https://hooks.slack.com/services/...")
    production = settings.environment == "production"
    if production and parts.scheme != "https":
        raise invalid("webhook_url", "must use https")
    if settings.webhook_allowed_hosts:
        if not _host_allowed(host, settings.webhook_allowed_hosts):
            allowed = ", ".join(settings.webhook_allowed_hosts)
            raise invalid("webhook_url", f"host {host} is not one of the allowed hosts: {allowed}")
    elif production and _internal(host):
        raise invalid("webhook_url", f"host {host} is a private or loopback address")
