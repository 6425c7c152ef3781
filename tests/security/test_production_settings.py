"""Production is safe by default (issue 11): placeholder secrets, role-less keys, insecure provider
transports and public API docs stop a production process; the image means production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from shared.app import create_service_app
from shared.settings import SERVICES, Settings
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import PRODUCTION, make_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def refusal(**overrides: Any) -> str:
    """The production start's error for PRODUCTION with `overrides`."""
    with pytest.raises(ValidationError) as caught:
        Settings(**{**PRODUCTION, **overrides})
    return str(caught.value)


def test_the_valid_production_settings_start() -> None:
    assert Settings(**PRODUCTION).environment == "production"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("erasure_pepper", "change-me"),
        ("erasure_pepper", "change-me-please-this-is-long-enough-now"),
        ("erasure_pepper", ""),
        ("erasure_pepper", "dev-erasure-pepper-but-made-longer-than-32"),
        ("erasure_pepper", "x" * 40),
        ("erasure_pepper", "short-but-random-Zq8"),
        ("twilio_auth_token", "change-me"),
        ("twilio_auth_token", "my-secret-token-of-the-right-length-3"),
        ("mailgun_signing_key", "change-me"),
        ("mailgun_signing_key", "placeholder-mailgun-key-of-32-chars"),
        ("postmark_webhook_password", "password"),
        ("smtp_password", "change-me"),
        ("temporal_api_key", "example"),
    ],
)
def test_production_refuses_placeholder_and_short_secrets(setting: str, value: str) -> None:
    message = refusal(**{setting: value})
    assert f"CLOSEFLOW_{setting.upper()}" in message
    if value:
        assert value not in message, "the error must never print the secret"


@pytest.mark.parametrize(
    "keys",
    [
        "change-me-1,change-me-2",  # deploy/example.env and the k8s Secret before issue 11
        "admin:change-me-1",
        "",
        "admin:too-short-key",
        "Zq8vN3xL0pR7tY2wK5mB9cF4hJ6dS1aGe",  # long, random, but no role: admin by accident
    ],
)
def test_production_refuses_placeholder_short_and_roleless_api_keys(keys: str) -> None:
    message = refusal(api_keys=keys)
    assert "CLOSEFLOW_API_KEYS" in message
    for part in keys.split(","):
        if part:
            assert part.split(":")[-1] not in message


def test_optional_secrets_may_stay_empty() -> None:
    # empty disables the Mailgun/Postmark webhooks, SMTP AUTH, the Temporal Cloud key
    Settings(
        **{
            **PRODUCTION,
            "mailgun_signing_key": "",
            "postmark_webhook_password": "",
            "smtp_password": "",
            "temporal_api_key": "",
        }
    )


def test_development_keeps_its_dev_defaults() -> None:
    dev = Settings(
        environment="development", api_keys="dev-key", erasure_pepper="dev-erasure-pepper"
    )
    assert dev.outreach_public_url == "http://localhost:8002"  # what `make run` serves


PUBLIC_URLS = ("outreach_public_url", "referrals_public_url", "deals_public_url")


@pytest.mark.parametrize("setting", PUBLIC_URLS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:8002", "must use https"),  # the development default
        ("https://localhost", "internal name"),
        ("https://127.0.0.1:8443", "loopback"),
        ("https://[::1]", "loopback"),
        ("https://outreach", "internal name"),
        ("https://10.0.0.5", "private"),
        ("http://outreach.acme-sales.com", "must use https"),  # link tokens in clear text
        ("", "not set"),
    ],
)
def test_production_refuses_a_public_url_nobody_outside_reaches(
    setting: str, url: str, problem: str
) -> None:
    # every unsubscribe, referral and booking link starts with it, and Twilio's signatures are
    # checked against outreach's: localhost would break them all
    message = refusal(**{setting: url})
    assert f"CLOSEFLOW_{setting.upper()} must be the public https:// address" in message
    assert problem in message


# --- the shipped deploy files ---------------------------------------------------------------------


def example_env() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "example.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def k8s_secret() -> dict[str, str]:
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "examples" / "secret.yaml").read_text()):
        if doc and doc["kind"] == "Secret":
            return {k: str(v) for k, v in doc["stringData"].items()}
    raise AssertionError("no Secret in deploy/k8s/examples/secret.yaml")


@pytest.mark.parametrize("shipped", [example_env, k8s_secret], ids=["example.env", "k8s"])
def test_shipped_placeholders_are_empty_and_stop_the_start(shipped: Any) -> None:
    values = shipped()
    secrets = {n: v for n, v in values.items() if n.startswith("CLOSEFLOW_") and n in SECRET_VARS}
    assert {"CLOSEFLOW_API_KEYS", "CLOSEFLOW_ERASURE_PEPPER"} <= set(secrets)
    assert all(v == "" for v in secrets.values()), "ship empty placeholders, not values"
    # the real values filled in except one: the start names the one forgotten
    for forgotten in ("CLOSEFLOW_API_KEYS", "CLOSEFLOW_ERASURE_PEPPER"):
        name = forgotten.removeprefix("CLOSEFLOW_").lower()
        assert forgotten in refusal(**{name: values[forgotten]})


def test_the_shipped_public_urls_are_required() -> None:
    # compose has no localhost default for them; example.env ships them empty, which the
    # production check refuses by name
    compose = (DEPLOY / "compose.yaml").read_text()
    values = example_env()
    for setting in PUBLIC_URLS:
        name = f"CLOSEFLOW_{setting.upper()}"
        assert f"{name}: ${{{name}:?set {name} in deploy/.env}}" in compose
        assert values[name] == ""
        assert name in refusal(**{setting: values[name]})


SECRET_VARS = {
    "CLOSEFLOW_API_KEYS",
    "CLOSEFLOW_ERASURE_PEPPER",
    "CLOSEFLOW_BOOKING_LINK_SECRET",
    "CLOSEFLOW_TWILIO_AUTH_TOKEN",
    "CLOSEFLOW_MAILGUN_SIGNING_KEY",
    "CLOSEFLOW_SMTP_PASSWORD",
    "CLOSEFLOW_POSTMARK_WEBHOOK_PASSWORD",
    "CLOSEFLOW_TEMPORAL_API_KEY",
}


# --- the image ------------------------------------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            for pair in line.strip()[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_the_image_means_production() -> None:
    assert dockerfile_env().get("CLOSEFLOW_ENVIRONMENT") == "production"


def test_the_dev_stack_says_development(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack.env import isolated_env
    from devstack.supervisor import Stack

    # a shell (or an image) exporting production does not reach the dev stack's children
    monkeypatch.setenv("CLOSEFLOW_ENVIRONMENT", "production")
    stack = Stack(env=isolated_env(tmp_path))
    assert stack.settings.environment == "development"
    assert stack._child_env()["CLOSEFLOW_ENVIRONMENT"] == "development"
    # `closeflow dev` hands the stack its settings: the children run in theirs, not the shell's
    given = Stack(Settings(environment="development", data_dir=tmp_path))
    assert given._child_env()["CLOSEFLOW_ENVIRONMENT"] == "development"


# --- provider transports ----------------------------------------------------------------------------


def test_production_refuses_plain_http_twilio_and_smtp_without_tls() -> None:
    assert "CLOSEFLOW_TWILIO_API_BASE_URL" in refusal(twilio_api_base_url="http://127.0.0.1:8030")
    assert "CLOSEFLOW_SMTP_TLS" in refusal(smtp_tls="none")


def test_an_explicit_setting_allows_insecure_providers() -> None:
    Settings(
        **{
            **PRODUCTION,
            "twilio_api_base_url": "http://twilio-proxy:8030",
            "smtp_tls": "none",
            "allow_insecure_providers": "true",
        }
    )


# --- API docs -------------------------------------------------------------------------------------

DOCS = ("/docs", "/redoc", "/openapi.json")


def docs_app(settings: Settings) -> httpx.AsyncClient:
    from services.deals.access import ACCESS

    app = create_service_app("deals", settings, [], access=ACCESS, description="probe")
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app=app), base_url="http://t"
    )


async def test_production_serves_no_api_docs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **{**PRODUCTION, "data_dir": tmp_path})
    async with docs_app(settings) as client:
        for path in DOCS:
            assert (await client.get(path)).status_code == 404, path


async def test_production_api_docs_when_enabled_take_a_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **{**PRODUCTION, "data_dir": tmp_path, "api_docs": True})
    key = PRODUCTION["api_keys"].split(":", 1)[1]
    async with docs_app(settings) as client:
        for path in DOCS:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers={"X-API-Key": "wrong"})).status_code == 401
            assert (await client.get(path, headers={"X-API-Key": key})).status_code == 200, path


async def test_development_serves_the_docs_openly(tmp_path: Path) -> None:
    async with docs_app(make_settings(tmp_path, environment="development")) as client:
        for path in DOCS:
            assert (await client.get(path)).status_code == 200, path


# --- databases ------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_production_never_falls_back_to_a_sqlite_file(service: str, tmp_path: Path) -> None:
    """A database URL left out of the Secret (or the env file of a `docker run`) gave the process
    a SQLite file in its container: its own database, lost with the container, seen by no other
    replica; the payload keys of every process are in prospecting's."""
    settings = Settings(**{**PRODUCTION, "data_dir": tmp_path})
    with pytest.raises(ValueError, match=f"CLOSEFLOW_{service.upper()}_DATABASE_URL"):
        settings.database_url(service)
    url = "postgresql+asyncpg://deals:pw@postgres:5432/deals"
    given = Settings(**{**PRODUCTION, f"{service}_database_url": url})
    assert given.database_url(service) == url
    assert make_settings(tmp_path).database_url(service).startswith("sqlite+aiosqlite:///")


def test_a_production_migrate_without_database_urls_stops_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from closeflow.cli import main

    monkeypatch.chdir(tmp_path)  # no .env file
    for name, value in {**PRODUCTION, "data_dir": str(tmp_path / "data")}.items():
        monkeypatch.setenv(f"CLOSEFLOW_{name.upper()}", value)
    with pytest.raises(SystemExit, match="CLOSEFLOW_PROSPECTING_DATABASE_URL"):
        main(["migrate"])
    assert not (tmp_path / "data").exists(), "a SQLite database was made"
