"""Where a rep's notification webhook may point (the server posts to it)."""

from __future__ import annotations

import pytest

from services.outreach.notifications.webhook_targets import check_webhook_url
from shared.errors import AppError
from shared.settings import Settings
from tests.support.settings import PRODUCTION


def refusal(url: str, settings: Settings) -> str:
    with pytest.raises(AppError) as caught:
        check_webhook_url(url, settings)
    assert caught.value.status == 422
    return caught.value.message


def test_production_refuses_plain_http_and_internal_addresses() -> None:
    prod = Settings(**PRODUCTION)  # type: ignore[arg-type]
    check_webhook_url("https://hooks.slack.com/services/T0/B0/x", prod)
    assert "https" in refusal("http://hooks.slack.com/services/x", prod)
    for internal in (
        "https://127.0.0.1/hook",
        "https://localhost:8002/ui",
        "https://10.0.0.5/x",
        "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "https://[::1]/x",
        "https://db.internal/x",
    ):
        assert refusal(internal, prod).startswith("webhook_url: host "), internal


def test_the_allow_list_names_the_hosts_and_their_subdomains() -> None:
    prod = Settings(**PRODUCTION, webhook_allowed_hosts="slack.com, hooks.example.org")  # type: ignore[arg-type]
    assert prod.webhook_allowed_hosts == ["slack.com", "hooks.example.org"]
    check_webhook_url("https://hooks.slack.com/services/x", prod)
    check_webhook_url("https://hooks.example.org/closeflow", prod)
    assert "not one of the allowed hosts" in refusal("https://evil.example.com/x", prod)
    assert "not one of the allowed hosts" in refusal("https://notslack.com/x", prod)


def test_development_allows_a_local_receiver() -> None:
    check_webhook_url("http://127.0.0.1:9999/hook", Settings(environment="test"))  # type: ignore[call-arg]
