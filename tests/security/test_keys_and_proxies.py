"""Issue 11: API keys never travel in URLs or land in logs, nor do a failed statement's values;
the referral form's rate limit sees the client behind a trusted proxy, not the proxy.

The pages are probed in process (ASGI) on the real services; the access log through a real
uvicorn server, whose own access lines are read back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from services.deals.models import Deal
from services.outreach.models import RepTask
from services.referrals.models import Referral, ReferralAsk
from shared.codec import KeyRing, parse_master_keys
from shared.db import create_engine
from shared.logging import FORMAT, JsonLines, Redacting, configure_logging
from shared.rate_limit import FormLimits, RateLimiter
from tests.support.apps import Api, ServiceApp, asking_prospecting
from tests.support.inbox import InboxRig
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import API_KEY, AUTH, PRODUCTION, make_settings

INBOX = "/ui/reps/rep-1/inbox"
LONG = "Kd8Fs3Gp5Jz0YaHq7Lm2Xv9Rb4Tn6Wc1"  # an admin key that passes production's checks


def _cookie_attributes(response: httpx.Response) -> str:
    return "; ".join(response.headers.get_list("set-cookie")).lower()


@pytest.mark.parametrize(
    ("service", "page"), [("outreach", INBOX), ("prospecting", "/ui/dashboard")]
)
async def test_a_key_in_the_query_string_opens_no_page(api: Api, service: str, page: str) -> None:
    http = await api(service, key=False)
    refused = await http.get(page, params={"key": API_KEY})
    # the key form again, not the page and not a cookie: ?key= is not read at all
    assert refused.status_code == 401, refused.text
    assert "set-cookie" not in refused.headers
    assert 'method="post"' in refused.text and "?key=" not in refused.text


@pytest.mark.parametrize(
    ("service", "page"), [("outreach", INBOX), ("prospecting", "/ui/dashboard")]
)
async def test_the_key_form_posts_and_sets_a_strict_http_only_cookie(
    api: Api, service: str, page: str
) -> None:
    http = await api(service, key=False)
    asked = await http.get(page)
    assert asked.status_code == 401
    assert 'method="post"' in asked.text and 'action="/ui/sign-in"' in asked.text
    assert f'name="next" value="{page}"' in asked.text

    wrong = await http.post("/ui/sign-in", data={"key": "not-a-key", "next": page})
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    assert "not valid" in wrong.text

    signed_in = await http.post("/ui/sign-in", data={"key": API_KEY, "next": page})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == page
    cookie = _cookie_attributes(signed_in)
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie  # not production: the dev stack is plain http
    assert API_KEY not in signed_in.headers["location"]

    opened = await http.get(page)  # the client keeps the cookie
    assert opened.status_code == 200, opened.text


async def test_sign_in_goes_back_only_to_a_page_of_this_service(api: Api) -> None:
    http = await api("outreach", key=False)
    for target in ("https://evil.example/", "//evil.example/ui/", "/ui//evil.example"):
        answer = await http.post("/ui/sign-in", data={"key": API_KEY, "next": target})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/", target


async def test_the_key_form_posted_from_another_site_signs_nobody_in(api: Api) -> None:
    """Login CSRF: a stranger's page posting the form with the stranger's key got the victim's
    browser the stranger's cookie (their own pages then refused to them)."""
    http = await api("outreach", key=False)
    for site in ("cross-site", "same-site"):
        answer = await http.post(
            "/ui/sign-in",
            data={"key": API_KEY, "next": INBOX},
            headers={"Sec-Fetch-Site": site},
        )
        assert answer.status_code == 403 and "set-cookie" not in answer.headers, site
        assert "own page" in answer.text
    for site in ("same-origin", "none"):  # the service's own form; a key typed into a bookmark
        answer = await http.post(
            "/ui/sign-in", data={"key": API_KEY, "next": INBOX}, headers={"Sec-Fetch-Site": site}
        )
        assert answer.status_code == 303, site


async def test_wrong_keys_one_after_another_are_slowed_down(api: Api) -> None:
    http = await api("prospecting", key=False)
    for attempt in range(10):
        wrong = await http.post("/ui/sign-in", data={"key": f"cf_guess{attempt}", "next": "/ui/"})
        assert wrong.status_code == 403, attempt
    # the right key too must wait now: the limit is on trying, whatever is tried
    held = await http.post("/ui/sign-in", data={"key": API_KEY, "next": "/ui/dashboard"})
    assert held.status_code == 429 and "set-cookie" not in held.headers
    assert 0 < int(held.headers["Retry-After"]) <= 600 and "Too many wrong keys" in held.text


async def test_unknown_keys_one_after_another_are_refused_before_any_lookup(api: Api) -> None:
    """Each unknown key is looked up (in outreach, deals and referrals a call to prospecting):
    a client may present 60 a minute; past that it is refused before any lookup, while a key
    of CLOSEFLOW_API_KEYS still works. The bucket refills one key a second, so on a loaded
    machine a few more than 60 may pass before the first refusal."""
    http = await api("prospecting", key=False)
    refused = None
    for attempt in range(400):
        r = await http.get("/prospects", headers={"X-API-Key": f"cf_guess_{attempt:020d}"})
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 401, attempt
    assert refused is not None, "no 429 in 400 unknown keys"
    assert attempt >= 60, f"refused after {attempt} lookups, before the 60 allowed"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "too_many_unknown_keys"
    assert (await http.get("/prospects", headers={"X-API-Key": API_KEY})).status_code == 200


async def test_the_cookie_is_secure_in_production(api: Api) -> None:
    production = {**PRODUCTION, "api_keys": [f"admin:{LONG}"]}
    http = await api("prospecting", key=False, **production)
    signed_in = await http.post("/ui/sign-in", data={"key": f"{LONG}", "next": "/ui/dashboard"})
    assert signed_in.status_code == 303
    assert "; secure" in _cookie_attributes(signed_in)


# --- access logs ------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# A service as `closeflow serve` runs it (configure_logging first, then uvicorn with the CLI's
# logging options), with a route whose failure quotes a person's address and number, as a
# PostgreSQL DETAIL line or a provider's error does.
_FAILING_SERVICE = """
import asyncio, sys
import httpx, uvicorn
from fastapi import FastAPI
from closeflow.cli import uvicorn_logging
from shared.logging import configure_logging

configure_logging("INFO", json_lines=sys.argv[1] == "json")
app = FastAPI()

@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("Key (email)=(ada@example.com) already exists; phone +447700900123")

async def main() -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), **uvicorn_logging("info"))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sys.argv[2]}") as http:
        assert (await http.get("/boom")).status_code == 500
    server.should_exit = True
    await task

asyncio.run(main())
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_tracebacks_addresses_and_numbers_are_redacted_in_either_log_format(fmt: str) -> None:
    """uvicorn's error log prints the traceback of a request that failed; in text format it had
    a handler of its own (uvicorn's LOGGING_CONFIG) that printed it unredacted."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FAILING_SERVICE, fmt, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    logged = done.stdout + done.stderr
    assert "Exception in ASGI application" in logged and "RuntimeError" in logged, logged
    assert "ada@example.com" not in logged and "447700900123" not in logged, logged


async def test_access_logs_carry_no_query_string_and_no_token() -> None:
    configure_logging("INFO")  # what every closeflow process does first (closeflow/cli.py)
    app = FastAPI()

    @app.get("/{path:path}")
    async def anything(path: str) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # a real uvicorn with its access log on, as `closeflow serve` runs it
    async with serve(app, free_port(), log_level="info") as base:
        # uvicorn's access lines as its own handler gets them (set up by the server's start;
        # they do not propagate)
        access = logging.getLogger("uvicorn.access")
        handler = _Lines()
        access.addHandler(handler)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=base) as http:
            for target in (
                "/ui/dashboard?key=the-api-key&from=2026-01-01",
                "/r/ref-token-123?utm=x",
                "/unsubscribe/unsub-token-456",
                "/book/booking-token-789",
                "/cadences/c1",
            ):
                assert (await http.get(target)).status_code == 200
        access.removeHandler(handler)
    logged = "\n".join(handler.lines)
    assert '"GET /ui/dashboard HTTP/1.1" 200' in logged, logged
    assert '"GET /r/*** HTTP/1.1"' in logged and '"GET /unsubscribe/*** HTTP/1.1"' in logged
    assert '"GET /book/*** HTTP/1.1"' in logged  # issue 14's booking links are bearer tokens too
    assert '"GET /cadences/c1 HTTP/1.1"' in logged  # ids are not secrets: still logged
    for secret in ("the-api-key", "key=", "?", "ref-token-123", "unsub-token-456", "booking-token"):
        assert secret not in logged, secret


async def test_a_logged_database_error_carries_no_bound_values(
    database_urls: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A statement's values are people's addresses and numbers: an error logged with its
    traceback (sms_status's log.exception) shows the statement, never them."""
    engine = create_engine(database_urls["outreach"])
    email = "ada.lovelace@example.com"
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE probe_pii (email VARCHAR(100) PRIMARY KEY)"))
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                insert = text("INSERT INTO probe_pii (email) VALUES (:email)")
                await conn.execute(insert, [{"email": email}, {"email": email}])
    finally:
        await engine.dispose()
    with caplog.at_level(logging.ERROR):
        try:
            raise caught.value
        except IntegrityError:
            logging.getLogger("closeflow.probe").exception("status callback not stored")
    # what a process prints, in either format (shared.logging.configure_logging); PostgreSQL's
    # own DETAIL line quotes the key's value whatever the engine hides
    [record] = [r for r in caplog.records if r.name == "closeflow.probe"]
    for formatter in (JsonLines(), Redacting(FORMAT)):
        line = formatter.format(record)
        assert "INSERT INTO probe_pii" in line, line  # what failed is still there
        assert email not in line, line
    master_keys = parse_master_keys([PRODUCTION["payload_master_keys"]])
    keyring = KeyRing(master_keys, database_urls["prospecting"])
    assert keyring._db().sync_engine.hide_parameters  # the per-prospect keys' engine too
    await keyring.aclose()


# --- the referral form's rate limit behind a proxy ----------------------------------------------

PROXY_NET = "10.0.0.0/8"
INGRESS = "10.1.2.3"  # the direct peer of every request that comes through the ingress


def _from(app: FastAPI, peer: str) -> httpx.AsyncClient:
    """A client whose requests come from `peer` (the TCP peer, as the server sees it)."""
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT,
        transport=httpx.ASGITransport(app, client=(peer, 40000)),
        base_url="http://t",
    )


async def _referrals(service_app: ServiceApp, per_ip: int, per_token: int = 100) -> FastAPI:
    app = await service_app("referrals", trusted_proxies=PROXY_NET)
    app.state.form_limits = FormLimits(
        per_ip=RateLimiter(per_ip, 600), per_token=RateLimiter(per_token, 600)
    )
    return app


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    service_app: ServiceApp,
) -> None:
    app = await _referrals(service_app, per_ip=2)
    async with _from(app, INGRESS) as ingress:
        flooder = {"X-Forwarded-For": "203.0.113.7"}
        assert [
            (await ingress.get(f"/r/junk-{n}", headers=flooder)).status_code for n in range(3)
        ] == [404, 404, 429]
        # another client through the same ingress is not locked out by the first one's flood
        other = await ingress.get("/r/junk-x", headers={"X-Forwarded-For": "198.51.100.9"})
        assert other.status_code == 404
        # addresses the flooder writes to the left of the ingress's own entry change nothing
        spoofed = {"X-Forwarded-For": "192.0.2.99, 203.0.113.7"}
        assert (await ingress.get("/r/junk-y", headers=spoofed)).status_code == 429


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(service_app: ServiceApp) -> None:
    app = await _referrals(service_app, per_ip=2)
    async with _from(app, "192.0.2.50") as direct:
        answers = [
            (
                await direct.get("/r/junk", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            ).status_code
            for n in range(3)
        ]
    assert answers == [404, 404, 429]  # a new header every time, still one bucket: the peer's


async def test_a_refused_address_creates_no_token_buckets(service_app: ServiceApp) -> None:
    app = await _referrals(service_app, per_ip=1)
    async with _from(app, "192.0.2.60") as flooder:
        answers = {(await flooder.get(f"/r/junk-{n}")).status_code for n in range(1, 40)}
    assert answers == {404, 429}
    limits: FormLimits = app.state.form_limits
    assert len(limits.per_token._buckets) == 1  # only the one request that was let through


async def test_one_ipv6_network_is_one_client(service_app: ServiceApp) -> None:
    """An IPv6 client holds a whole /64 (every home line, every cloud VM): one bucket per
    address let it send from a new one each time, past the limit and flushing other clients'
    buckets out of the bounded table."""
    app = await _referrals(service_app, per_ip=2)
    answers = []
    for n in range(3):
        async with _from(app, f"2001:db8:1:2::{n + 1:x}") as client:
            answers.append((await client.get(f"/r/junk-{n}")).status_code)
    assert answers == [404, 404, 429]
    async with _from(app, "2001:db8:1:3::1") as neighbour:  # another /64: another client
        assert (await neighbour.get("/r/junk-n")).status_code == 404


def test_the_bucket_table_is_bounded_least_recently_used_first() -> None:
    limiter = RateLimiter(1, 600, max_keys=3)  # every bucket spent, none idle
    for key in ("a", "b", "c"):
        assert limiter.take(key) == 0
    assert limiter.take("a") > 0  # a used again: now the most recent
    assert limiter.take("d") == 0
    assert list(limiter._buckets) == ["c", "a", "d"]  # b, least recently used, went
    assert limiter.take("a") > 0  # a's limit still holds


def test_trusted_proxies_is_a_list_of_networks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trusted_proxies="10.0.0.0/8, 2001:db8::/32,192.0.2.1")
    assert [str(n) for n in settings.trusted_networks] == [
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.1/32",
    ]
    assert make_settings(tmp_path).trusted_networks == ()  # nothing trusted by default
    with pytest.raises(ValidationError, match="CLOSEFLOW_TRUSTED_PROXIES: 'ingress'"):
        make_settings(tmp_path, trusted_proxies="ingress")


def test_the_deploy_files_set_the_trusted_proxies() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    for name in ("compose.yaml", "k8s/config.yaml", "example.env"):
        assert "CLOSEFLOW_TRUSTED_PROXIES" in (deploy / name).read_text(), name


# --- ownership lists: a rep key lists only its own rows ---------------------------------------

REP_KEYS = f"{API_KEY},rep:rep-a:key-a,rep:rep-b:key-b"
EARLIER, LATER = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


async def _listed(http: httpx.AsyncClient, path: str, key: str) -> list[str]:
    answer = await http.get(path, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()]


async def test_a_rep_lists_only_its_own_deals_of_a_prospect(service_app: ServiceApp) -> None:
    app = await service_app("deals", api_keys=REP_KEYS)
    await asking_prospecting(service_app, app)
    async with app.state.sessions() as session:
        # the prospect moved from rep B to rep A: B's old deal and A's new one
        deals = [
            Deal(
                prospect_id="p1",
                journey_id=f"j-{rep}",
                rep_id=rep,
                source="outbound",
                created_at=at,
            )
            for rep, at in (("rep-b", EARLIER), ("rep-a", LATER))
        ]
        session.add_all(deals)
        await session.commit()
        ids = [d.id for d in deals]
    async with _from(app, "127.0.0.1") as http:
        assert await _listed(http, "/deals?prospect_id=p1", "key-a") == [ids[1]]
        assert set(await _listed(http, "/deals?prospect_id=p1", API_KEY)) == set(ids)


async def _client_asks(service_app: ServiceApp, client: str) -> tuple[FastAPI, list[str]]:
    """Referrals' app with two asks of one client: rep B's first (say, before a reassignment),
    then rep A's; their ids in that order."""
    app = await service_app("referrals", api_keys=REP_KEYS)
    await asking_prospecting(service_app, app)
    async with app.state.sessions() as session:
        asks = [
            ReferralAsk(
                token=f"tok-{client}-{rep}",
                client_prospect_id=client,
                journey_id=f"j-{client}-{rep}",
                client_name="Client",
                rep_id=rep,
                cadence_id="cad",
                created_at=at,
            )
            for rep, at in (("rep-b", EARLIER), ("rep-a", LATER))
        ]
        session.add_all(asks)
        await session.commit()
        return app, [a.id for a in asks]


async def test_a_rep_lists_only_its_own_referral_asks_of_a_client(
    service_app: ServiceApp,
) -> None:
    app, ids = await _client_asks(service_app, "c1")
    async with _from(app, "127.0.0.1") as http:
        assert await _listed(http, "/asks?client_prospect_id=c1", "key-a") == [ids[1]]
        assert await _listed(http, "/asks?client_prospect_id=c1", API_KEY) == ids


async def test_a_rep_lists_only_the_referrals_of_its_own_asks(service_app: ServiceApp) -> None:
    """The people a client referred through another rep's ask (their name, email and phone) are
    that rep's, as the ask is: GET /referrals?referrer_prospect_id= lists a rep key only those
    that came through its own asks."""
    app, ask_ids = await _client_asks(service_app, "c2")
    async with app.state.sessions() as session:
        referrals = [
            Referral(ask_id=ask_id, referrer_prospect_id="c2", first_name="Friend", email=email)
            for ask_id, email in zip(ask_ids, ("b@example.com", "a@example.com"), strict=True)
        ]
        session.add_all(referrals)
        await session.commit()
    async with _from(app, "127.0.0.1") as http:
        path = "/referrals?referrer_prospect_id=c2"
        assert await _listed(http, path, "key-a") == [referrals[1].id]
        assert set(await _listed(http, path, API_KEY)) == {r.id for r in referrals}


async def test_a_rep_lists_only_its_own_tasks_of_a_prospect(inbox: InboxRig) -> None:
    r = inbox
    first, second = await r.rep("Rita Rep"), await r.rep("Sam Rep")
    prospect = await r.prospect("Grace")
    owner = prospect["rep_id"]
    assert owner in (first, second)  # assigned on creation (round robin)
    other = second if owner == first else first
    # and a task that is another rep's (left with a previous rep, say)
    own_task = await r.task(prospect, owner, "step-1:call_task")
    left_behind = await r.task(prospect, owner, "step-0:call_task")
    async with r.sessions() as session:
        await session.execute(update(RepTask).where(RepTask.id == left_behind).values(rep_id=other))
        await session.commit()
    issued = await r.prospecting.post(
        "/api-keys", json={"name": "owner", "role": "rep", "rep_id": owner}, headers=AUTH
    )
    assert issued.status_code == 201, issued.text
    listed = await _listed(r.api, f"/tasks?prospect_id={prospect['id']}", issued.json()["key"])
    assert listed == [own_task]
    assert len(await _listed(r.api, f"/tasks?prospect_id={prospect['id']}", API_KEY)) == 2
