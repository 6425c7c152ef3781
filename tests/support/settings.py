"""Settings for a test: its own data directory and databases, and every address it does not set
pointing at a dead port, never at the default ports a developer's stack listens on."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from shared.auth import key_fingerprint
from shared.settings import Settings
from tests.support.ports import DEAD_PORT, DEAD_URL

API_KEY = "test-key"
AUTH = {"X-API-Key": API_KEY}
# how histories, signals and events name the holder of API_KEY (shared.audit.actor_name)
ADMIN_ACTOR = f"admin ({key_fingerprint(API_KEY)})"
# what the services present to each other (the default CLOSEFLOW_SERVICE_TOKEN outside production):
# the only credential /internal/* routes accept
SERVICE_AUTH = {"X-API-Key": "dev-service-token"}
# Postmark's webhook credentials, for the tests that configure its webhooks (closeflow sends
# Postmark's metadata header only then): settings changes, and what Postmark posts with
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "pm-secret"
POSTMARK_WEBHOOK: dict[str, object] = {
    "postmark_webhook_user": POSTMARK_USER,
    "postmark_webhook_password": SecretStr(POSTMARK_PASSWORD),
}

# Where a service would reach another one, Temporal, SMTP or Twilio. A prospecting app built with
# the default outreach URL posted /internal/auto-enrollments to 127.0.0.1:8002 every few seconds.
UNSET_ADDRESSES: dict[str, object] = {
    "prospecting_url": DEAD_URL,
    "outreach_url": DEAD_URL,
    "deals_url": DEAD_URL,
    "referrals_url": DEAD_URL,
    "temporal_address": f"127.0.0.1:{DEAD_PORT}",
    "smtp_host": "127.0.0.1",
    "smtp_port": DEAD_PORT,
    "twilio_api_base_url": DEAD_URL,
}


def make_settings(
    tmp_path: Path, urls: dict[str, str] | None = None, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": tmp_path,
        "api_keys": API_KEY,
        **UNSET_ADDRESSES,
    }
    for service, url in (urls or {}).items():
        values[f"{service}_database_url"] = url
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# Settings a production process accepts (issue 11): real-looking secrets of 32+ characters, keys
# with a role, https to Twilio and TLS to SMTP, public https URLs. Tests of production behaviour
# start from these.
PRODUCTION: dict[str, str] = {
    "environment": "production",
    "api_keys": "admin:Zq8vN3xL0pR7tY2wK5mB9cF4hJ6dS1aG",
    "twilio_auth_token": "9f3c2a71b8e64d05a1c7e2f4b6d8093a",
    "mailgun_signing_key": "4e7a1c9d2b6f8035e1a7c4d9b2f60831",
    "erasure_pepper": "pepper-R7tY2wK5mB9cF4hJ6dS1aGZq8vN3xL",
    "payload_master_keys": "k1:fHj8ElaBzt32FNi71jRrRzbRH2wjkGcM2anE0W1i1rU=",
    "postal_address": "Example Inc., 1 Main St, Springfield",
    "twilio_api_base_url": "https://api.twilio.com",
    "smtp_tls": "starttls",
    "service_token": "svc-Lk4pW9qZ2rT7vX1nB6mC3hJ8dF5gS0aY",
    "booking_link_secret": "book-Hq3nX8pL2vR6tZ1wM9cK4jD7fS5gA0bY",
    "outreach_public_url": "https://outreach.example.com",
    "referrals_public_url": "https://referrals.example.com",
    "deals_public_url": "https://deals.example.com",
}
