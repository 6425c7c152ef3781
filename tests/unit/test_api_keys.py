"""CLOSEFLOW_API_KEYS entries: bare keys stay admin, role prefixes, rep keys, refusals that
never repeat the secret."""

from __future__ import annotations

import re

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from shared.access import OPS, check_coverage, install_access, rep_own, uncovered_routes
from shared.auth import KeyConfigError, Principal, identify, parse_api_keys, parse_key_entry
from shared.settings import Settings
from tests.support.settings import PRODUCTION


def test_a_bare_key_is_an_admin_key() -> None:
    assert parse_key_entry("dev-key") == ("dev-key", Principal("admin"))


@pytest.mark.parametrize(
    ("entry", "key", "holder"),
    [
        ("admin:s3cret", "s3cret", Principal("admin")),
        ("ops:s3cret", "s3cret", Principal("ops")),
        ("rep:rep42:s3cret", "s3cret", Principal("rep", "rep42")),
        ("rep:rep42:s3:cr:et", "s3:cr:et", Principal("rep", "rep42")),  # a key may hold colons
        (" ops:s3cret ", "s3cret", Principal("ops")),
        ("other:s3cret", "other:s3cret", Principal("admin")),  # not a role: a bare key
    ],
)
def test_role_prefixes(entry: str, key: str, holder: Principal) -> None:
    assert parse_key_entry(entry) == (key, holder)


@pytest.mark.parametrize("entry", ["rep:s3cret", "rep::s3cret", "ops:", "rep:rep42:", "admin: "])
def test_malformed_entries_are_refused_without_the_secret(entry: str) -> None:
    with pytest.raises(KeyConfigError) as err:
        parse_key_entry(entry, 3)
    assert "entry 3" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(KeyConfigError, match="entry 2 repeats"):
        parse_api_keys(["s3cret", "ops:s3cret"])


def test_settings_parse_the_comma_separated_list_and_keep_secrets_out_of_errors() -> None:
    settings = Settings(api_keys="root, ops:o1, rep:r1:k1, rep:r2:k2")  # type: ignore[call-arg]
    assert settings.api_principals == {
        "root": Principal("admin"),
        "o1": Principal("ops"),
        "k1": Principal("rep", "r1"),
        "k2": Principal("rep", "r2"),
    }
    assert settings.api_key_values == {"root", "o1", "k1", "k2"}
    assert settings.operator_key == "root"
    with pytest.raises(ValidationError) as err:
        Settings(api_keys="good-key, rep:topsecretvalue")  # type: ignore[call-arg]
    assert "entry 2" in str(err.value) and "topsecretvalue" not in str(err.value)
    assert "good-key" not in str(err.value)


def test_the_operator_key_is_never_a_rep_key() -> None:
    only_reps = Settings(api_keys="rep:r1:k1, ops:o1")  # type: ignore[call-arg]
    assert only_reps.operator_key == "o1"
    assert Settings(api_keys="rep:r1:k1").operator_key == ""  # type: ignore[call-arg]


def test_production_refuses_the_dev_key_under_any_role() -> None:
    for keys in ("dev-key", "admin:dev-key", "rep:r1:dev-key"):
        with pytest.raises(ValidationError, match="CLOSEFLOW_API_KEYS"):
            Settings(**{**PRODUCTION, "api_keys": f"{PRODUCTION['api_keys']}, {keys}"})


def test_identify_compares_every_key() -> None:
    holders = parse_api_keys(["a-key", "rep:r1:b-key"])
    assert identify(holders, "b-key") == Principal("rep", "r1")
    assert identify(holders, "b-ke") is None
    assert identify(holders, "") is None


def test_rep_own_parses_where_and_kind() -> None:
    rule = rep_own("query:client_prospect_id=prospect_id", "path:rep_id")
    assert [(o.source, o.name, o.kind) for o in rule.owners] == [
        ("query", "client_prospect_id", "prospect_id"),
        ("path", "rep_id", "rep_id"),
    ]
    with pytest.raises(ValueError):
        rep_own("header:x")


def test_the_startup_check_names_routes_without_a_policy() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    async def thing(thing_id: str) -> str:
        return thing_id

    app.include_router(router)
    install_access(app, "no-such-service", {})
    assert uncovered_routes(app) == [("GET", "/things/{thing_id}")]
    with pytest.raises(RuntimeError, match=re.escape("GET /things/{thing_id}")):
        check_coverage(app, strict=True)
    check_coverage(app, strict=False)  # logs only
    app.state.access.policies[("GET", "/things/{thing_id}")] = OPS
    assert uncovered_routes(app) == []
