"""SSRF through the reps' notification webhooks (issue 11): a rep's key chooses a URL the server
posts to and reads each attempt's error back. Refused at save: every spelling of an internal
address and every internal name; refused at connect: a public-looking name that resolves to an
internal address (the connection goes to the checked address only); redirects are not followed;
the error a rep reads is a category."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from services.outreach.notifications.webhook_targets import check_webhook_url, webhook_policy
from shared.auth import API_KEY_HEADER
from shared.errors import AppError
from shared.outbound import (
    BLOCKED,
    CONNECTION_FAILED,
    REDIRECT,
    TLS_ERROR,
    OutboundBlocked,
    OutboundPolicy,
    failure_category,
    pinned_client,
    status_category,
)
from shared.settings import Settings
from tests.support.apps import Api, ServiceApp, asking_prospecting
from tests.support.eventually import eventually
from tests.support.inbox import InboxRig, inbox  # noqa: F401  (the rep inbox rig)
from tests.support.ports import free_port
from tests.support.serve import serve
from tests.support.settings import AUTH
from tests.support.settings import PRODUCTION as PRODUCTION_SETTINGS

REP_KEY = "rep-key-Hq7Lm2Xv9Rb4Tn6Wc1Kd8Fs3Gp5Jz0Ya"
ADMIN_KEY = "admin-key-Zq8vN3xL0pR7tY2wK5mB9cF4hJ6dS1aG"
# production settings that pass the secret checks (tests/support/settings.py), with a rep key
PRODUCTION: dict[str, Any] = {
    **PRODUCTION_SETTINGS,
    "api_keys": f"admin:{ADMIN_KEY}, rep:rep-probe:{REP_KEY}",
}

# each reaches an internal address or name, and each passed the old host-string check
REFUSED_AT_SAVE = [
    "https://2130706433/hook",  # 127.0.0.1 as one integer
    "https://127.1/hook",  # shortened
    "https://0x7f000001/hook",  # hex
    "https://0177.0.0.1/hook",  # octal
    "https://0x7f.0.0.1/hook",
    "https://017700000001/hook",
    "https://metadata/computeMetadata/v1/",  # GCP's metadata name
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://postgres:5432/",  # a compose service
    "https://kubernetes.default.svc/api",
    "https://outreach.closeflow.svc.cluster.local/internal",
    "https://printer.local/",
    "https://localhost/hook",
    "https://app.localhost/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[fd00:ec2::254]/latest/meta-data",  # AWS metadata over IPv6
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://[::ffff:a00:1]/hook",  # ::ffff:10.0.0.1
    "https://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://10.0.0.5/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://user:pass@hooks.slack.com/services/x",  # userinfo: which host is it?
    "https://hooks.slack.com@127.0.0.1/x",
    "http://hooks.slack.com/services/x",  # plain http in production
]


def production_settings() -> Settings:
    return Settings(**PRODUCTION)


@pytest.mark.parametrize("url", REFUSED_AT_SAVE)
def test_production_refuses_internal_urls_at_save(url: str) -> None:
    with pytest.raises(AppError) as caught:
        check_webhook_url(url, production_settings())
    assert caught.value.status == 422, url
    assert caught.value.details[0]["field"] == "webhook_url"


def test_production_accepts_public_urls() -> None:
    prod = production_settings()
    for url in (
        "https://hooks.slack.com/services/T0/B0/x",
        "https://example.com:8443/closeflow",
        "https://93.184.215.14/hook",  # a public address in its canonical spelling
    ):
        check_webhook_url(url, prod)


BRIDGE = "crm-bridge.tools.svc.cluster.local"  # a self-hosted team's own receiver, in-cluster


@pytest.mark.asyncio
async def test_an_operator_allows_named_internal_hosts_and_nothing_else() -> None:
    """Self-hosted teams post events to their own services inside the cluster, over plain
    http; production refused every internal name and address with no way for an operator to
    allow one. CLOSEFLOW_WEBHOOK_INTERNAL_HOSTS names them: exactly those hosts pass, at save
    and at connect (whatever private address they resolve to), over http too; any other
    internal host is refused as before, and the metadata service even when it is named."""
    prod = Settings(
        **PRODUCTION,
        webhook_internal_hosts=f"{BRIDGE}, 10.1.2.3, 169.254.169.254",  # type: ignore[arg-type]
    )
    for url in (f"http://{BRIDGE}:8080/closeflow", f"https://{BRIDGE}/x", "http://10.1.2.3/hook"):
        check_webhook_url(url, prod)
    for url in (
        "http://other.tools.svc.cluster.local/x",
        f"http://x.{BRIDGE}/hook",  # a name under the allowed one is another host
        "http://10.1.2.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://hooks.slack.com/services/x",  # still https for every public host
    ):
        with pytest.raises(AppError):
            check_webhook_url(url, prod)
    receiver = Receiver()
    port = free_port()
    table = {BRIDGE: ["127.0.0.1"], "other.example.com": ["127.0.0.1"]}
    policy = replace(webhook_policy(prod), resolver=resolver(table))
    async with serve(receiver.app, port), pinned_client(policy, timeout=5) as client:
        r = await client.post(f"http://{BRIDGE}:{port}/hook", content=b"{}")
        assert r.status_code == 200
        with pytest.raises(OutboundBlocked):
            await client.post(f"http://other.example.com:{port}/hook", content=b"{}")
    assert receiver.seen == [("/hook", f"{BRIDGE}:{port}")]
    metadata = replace(policy, resolver=resolver({BRIDGE: ["169.254.169.254"]}))
    async with pinned_client(metadata, timeout=5) as client:
        with pytest.raises(OutboundBlocked):
            await client.post(f"http://{BRIDGE}/hook", content=b"{}")


@pytest.mark.asyncio
async def test_a_reps_key_cannot_save_an_internal_webhook(
    service_app: ServiceApp, api: Api
) -> None:
    """Through the API of an outreach app in production: a 422 naming the field, for each."""
    app = await service_app("outreach", **PRODUCTION)
    await asking_prospecting(service_app, app)
    client = await api(app, key=False)
    rep = {API_KEY_HEADER: REP_KEY}
    prefs = {"channel": "email", "email": "rep@example.com", "webhook_secret": "s" * 20}
    for url in REFUSED_AT_SAVE:
        r = await client.put(
            "/reps/rep-probe/notifications", json={**prefs, "webhook_url": url}, headers=rep
        )
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["details"][0]["field"] == "webhook_url", url


def resolver(table: dict[str, Sequence[str]]) -> Any:
    """Stands in for DNS (a `*.nip.io` name, a rebinding attacker's zone) without the network."""

    async def resolve(host: str) -> Sequence[str]:
        return table[host]

    return resolve


class Receiver:
    """A plain-http receiver on 127.0.0.1: records each request's path and Host header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            self.seen.append(("/hook", request.headers.get("host", "")))
            return Response(status_code=200)

        @self.app.post("/moved")
        async def moved(request: Request) -> Response:
            self.seen.append(("/moved", request.headers.get("host", "")))
            return RedirectResponse("/hook", status_code=307)


@pytest.mark.asyncio
async def test_a_name_resolving_to_an_internal_address_is_refused_at_connect() -> None:
    """The name passes the check at save (it looks public), but one of its addresses is
    loopback: no connection is made, whichever address would have been tried."""
    receiver = Receiver()
    port = free_port()
    url = f"https://hooks.example.com:{port}/hook"
    check_webhook_url(url, production_settings())  # public-looking: saved
    async with serve(receiver.app, port):
        for addresses in (["127.0.0.1"], ["93.184.215.14", "127.0.0.1"], ["::ffff:127.0.0.1"]):
            table = {"hooks.example.com": addresses}
            policy = OutboundPolicy(production=True, resolver=resolver(table))
            async with pinned_client(policy, timeout=5) as client:
                with pytest.raises(OutboundBlocked) as caught:
                    await client.post(url, content=b"{}")
            assert failure_category(caught.value) == BLOCKED
        # `localhost` through the system's resolver too
        async with pinned_client(OutboundPolicy(production=True), timeout=5) as client:
            with pytest.raises(OutboundBlocked):
                await client.post(f"http://localhost:{port}/hook", content=b"{}")
    assert receiver.seen == []


@pytest.mark.asyncio
async def test_the_connection_goes_to_the_checked_address_with_the_original_host() -> None:
    """Development allows loopback: a name that only the injected resolver knows is reached at
    the address it resolved to (no second lookup), and the receiver sees the name as Host."""
    receiver = Receiver()
    port = free_port()
    calls: list[str] = []

    async def resolve(host: str) -> Sequence[str]:
        calls.append(host)
        return ["127.0.0.1"]

    policy = OutboundPolicy(production=False, resolver=resolve)
    async with serve(receiver.app, port), pinned_client(policy, timeout=5) as client:
        r = await client.post(f"http://hooks.example.test:{port}/hook", content=b"{}")
    assert r.status_code == 200
    assert receiver.seen == [("/hook", f"hooks.example.test:{port}")]
    assert calls == ["hooks.example.test"]


@pytest.mark.asyncio
async def test_redirects_are_not_followed() -> None:
    receiver = Receiver()
    port = free_port()
    async with serve(receiver.app, port) as base:
        async with pinned_client(OutboundPolicy(production=False), timeout=5) as client:
            r = await client.post(f"{base}/moved", content=b"{}")
    assert r.status_code == 307 and status_category(r.status_code) == REDIRECT
    assert [path for path, _ in receiver.seen] == ["/moved"]


@pytest.mark.asyncio
async def test_a_failed_connection_reads_as_a_category() -> None:
    port = free_port()  # nothing listens there
    async with pinned_client(OutboundPolicy(production=False), timeout=5) as client:
        with pytest.raises(httpx.HTTPError) as caught:
            await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
    assert failure_category(caught.value) == CONNECTION_FAILED


async def _failed(r: InboxRig, task_id: str) -> list[dict[str, Any]] | None:
    rows = (await r.api.get(f"/tasks/{task_id}/notifications", headers=AUTH)).json()
    hooks = [n for n in rows if n["channel"] == "webhook"]
    return hooks if hooks and all(n["last_error"] for n in hooks) else None


@pytest.mark.asyncio
async def test_the_rep_reads_back_a_category_not_the_error(inbox: InboxRig) -> None:  # noqa: F811
    """The notifier posts to a receiver that redirects (not followed: a failure) and to a port
    where nothing listens; the errors the API shows are categories, with no address or port."""
    r = inbox
    receiver = Receiver()
    port, closed = free_port(), free_port()
    async with serve(receiver.app, port) as base:
        ada, bob = await r.prospect("Ada"), await r.prospect("Bob")
        rita, ron = await r.rep("Rita Rep"), await r.rep("Ron Rep")
        for rep, url in ((rita, f"{base}/moved"), (ron, f"http://127.0.0.1:{closed}/hook")):
            prefs = {
                "channel": "email",
                "email": "notify@example.com",
                "webhook_url": url,
                "webhook_secret": "s" * 20,
            }
            put = await r.api.put(f"/reps/{rep}/notifications", json=prefs, headers=AUTH)
            assert put.status_code == 200, put.text
        await r.replied(ada["id"], timedelta(minutes=1))
        await r.replied(bob["id"], timedelta(minutes=1))
        moved = await r.task(ada, rita, "hot")
        refused = await r.task(bob, ron, "hot")
        redirect_rows = await eventually(lambda: _failed(r, moved), "the redirect recorded")
        closed_rows = await eventually(lambda: _failed(r, refused), "the refusal recorded")
    assert redirect_rows[0]["last_error"] == f"webhook notification: {REDIRECT}"
    assert redirect_rows[0]["status"] == "failed"  # a redirect is not retried
    assert [path for path, _ in receiver.seen] == ["/moved"]
    assert closed_rows[0]["last_error"] == f"webhook notification: {CONNECTION_FAILED}"
    assert str(closed) not in closed_rows[0]["last_error"]


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `name` it signed: (ca, cert, key) PEM files."""
    now = datetime.now(UTC)

    def issue(subject: str, issuer: x509.Name | None, signer: Any, key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("test CA", None, ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(name, ca_cert.subject, ca_key, key, False)
    files = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    files[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.mark.asyncio
async def test_tls_is_verified_against_the_name_while_connected_to_the_address(
    tmp_path: Path,
) -> None:
    """An https receiver on 127.0.0.1 with a certificate for hooks.example.test: reached
    through the pinned address, the certificate is checked against the name (SNI); another
    name pinned to the same address fails as a TLS error."""
    ca, cert, key = _certificates(tmp_path, "hooks.example.test")
    receiver = Receiver()
    port = free_port()
    table = {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}
    policy = OutboundPolicy(production=False, resolver=resolver(table))
    trust = ssl.create_default_context(cafile=str(ca))
    async with (
        serve(receiver.app, port, ssl_certfile=str(cert), ssl_keyfile=str(key)),
        pinned_client(policy, timeout=5, verify=trust) as client,
    ):
        r = await client.post(f"https://hooks.example.test:{port}/hook", content=b"{}")
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post(f"https://other.example.test:{port}/hook", content=b"{}")
    assert failure_category(caught.value) == TLS_ERROR
    assert receiver.seen == [("/hook", f"hooks.example.test:{port}")]
