"""The running stack (`closeflow dev`, what `make run` starts) driven through HTTP only."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.env import settings_from_env
from devstack.probes import http_ok, split_address, tcp_open
from devstack.supervisor import PROCESS_NAMES, Stack
from shared.auth import key_fingerprint
from shared.events import MEETING_BOOKED, STAGE_CHANGED
from shared.settings import SERVICES
from tests.support.dev_stack import (
    ARTIFACTS,
    ReplyMailbox,
    closeflow_dev,
    dev_env,
    dev_stack,
    urls_from,
    urls_of,
)
from tests.support.event_receiver import Receiver, receiving
from tests.support.eventually import eventually
from tests.support.imap import reply
from tests.support.scenarios import (
    Driver,
    Urls,
    drive_to_qualification_timeout,
    drive_to_referral,
    fast_cadence,
)
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import API_KEY, AUTH
from tests.support.stack import ON_PROCESSES, StackDriver

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
GETTING_STARTED = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
# the tests on the module's running dev stack share one xdist worker, so it is started once
ON_THE_RUNNING_STACK = pytest.mark.xdist_group("running-dev-stack")


@ON_PROCESSES
@ON_THE_RUNNING_STACK
async def test_two_prospects_through_the_running_stack(
    stack: StackDriver, running_dev_stack: Stack
) -> None:
    """Two journeys on the processes, followed by a subscriber as a CRM would (issue 14: signed
    events), then the audit log and a CSV export of what they did."""
    receiver = Receiver()
    async with (
        httpx.AsyncClient(headers=AUTH, timeout=HTTP_TIMEOUT) as http,
        receiving(receiver) as url,
    ):
        sub = await http.post(
            f"{stack.u.outreach}/event-subscriptions",
            json={"url": url, "events": [STAGE_CHANGED, MEETING_BOOKED]},
        )
        assert sub.status_code == 201, sub.text
        receiver.secrets = [sub.json()["secret"]]
        referral, timed_out = await asyncio.gather(
            drive_to_referral(stack.u), drive_to_qualification_timeout(stack.u)
        )
        ada, bob = referral["ada"], timed_out["bob"]
        await _followed_by_the_subscriber(http, stack.u, receiver, ada["id"], bob["id"])
        await _audited_and_exported(http, stack.u, ada["id"])
        gone = await http.delete(f"{stack.u.outreach}/event-subscriptions/{sub.json()['id']}")
        assert gone.status_code == 204  # the receiver stops with this test
    assert [c.name for c in running_dev_stack.children] == list(PROCESS_NAMES)
    assert running_dev_stack.dead() == []


async def _followed_by_the_subscriber(
    http: httpx.AsyncClient, u: Urls, receiver: Receiver, ada: str, bob: str
) -> None:
    """Every stage change of Ada's and Bob's reached the receiver, signed (it verifies each with
    standardwebhooks and refuses what does not verify), once, naming who caused it."""

    async def stages(pid: str) -> list[str]:
        history = await http.get(f"{u.prospecting}/prospects/{pid}/stages")
        return sorted(h["to_stage"] for h in history.json())

    async def all_delivered() -> bool | None:
        got = receiver.of_type(STAGE_CHANGED)
        for pid in (ada, bob):
            # relayed concurrently: in any order
            if sorted(s["to_stage"] for s in got if s["prospect_id"] == pid) != await stages(pid):
                return None
        return any(m["prospect_id"] == ada for m in receiver.of_type(MEETING_BOOKED)) or None

    await eventually(all_delivered, "every stage change and the meeting delivered", timeout=60)
    assert receiver.attempts and len(receiver.accepted) == len(receiver.attempts)  # all verified
    assert len(set(receiver.ids())) == len(receiver.ids())  # once each
    actors = {
        (s["prospect_id"], s["to_stage"]): s["actor"] for s in receiver.of_type(STAGE_CHANGED)
    }
    me = f"admin ({key_fingerprint(API_KEY)})"
    assert actors[(ada, "prospecting")] == me  # made through the API with the stack's key
    assert actors[(ada, "contacting")] == "system:enrollment"
    assert actors[(ada, "qualifying")].startswith("system:reply via ")  # her emailed reply
    assert actors[(ada, "presenting")] == me  # qualified by the key's holder
    assert actors[(ada, "won")] == me
    assert actors[(bob, "qualifying")] == "system:reply via twilio"
    assert actors[(bob, "disqualified")] == "system:qualification timeout"
    [booked] = [m for m in receiver.of_type(MEETING_BOOKED) if m["prospect_id"] == ada]
    assert booked["starts_at"]


async def _audited_and_exported(http: httpx.AsyncClient, u: Urls, ada: str) -> None:
    """GET /audit names the key that closed Ada's deal (admins only: a rep key is refused); the
    prospects export parses as CSV with her row at her stage."""
    deal = (await http.get(f"{u.deals}/deals", params={"prospect_id": ada})).json()[0]
    page = await http.get(f"{u.deals}/audit", params={"resource_id": deal["id"]})
    assert page.status_code == 200, page.text
    routes = {e["route"]: e for e in page.json()["entries"]}
    close = routes["POST /deals/{deal_id}/close"]
    assert (close["actor_role"], close["actor_key_id"]) == ("admin", key_fingerprint(API_KEY))
    assert close["changes"]["stage"]["after"] == "won"
    issued = await http.post(
        f"{u.prospecting}/api-keys",
        json={"name": "Rita's laptop", "role": "rep", "rep_id": deal["rep_id"]},
    )
    assert issued.status_code == 201, issued.text
    rep_key = {"X-API-Key": issued.json()["key"]}
    for base in (u.prospecting, u.deals):
        assert (await http.get(f"{base}/audit", headers=rep_key)).status_code == 403
    export = await http.get(f"{u.prospecting}/exports/prospects.csv", params={"stage": "referrals"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["stage"] for r in rows} == {"referrals"}
    assert ada in {r["id"] for r in rows}


def walkthrough_script() -> str:
    text = GETTING_STARTED.read_text()
    section = text.split("## Five-minute walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) >= 6, "the walkthrough lost its code blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


@ON_THE_RUNNING_STACK
def test_getting_started_walkthrough_works_when_pasted(running_dev_stack: Stack) -> None:
    urls = urls_of(running_dev_stack)
    env = {
        **os.environ,
        "P": urls.prospecting,
        "O": urls.outreach,
        "D": urls.deals,
        "R": urls.referrals,
        "MAIL": urls.mailbox,
        "SMS": urls.twilio,
        "KEY": API_KEY,
    }
    done = subprocess.run(
        ["bash", "-c", walkthrough_script()],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    (ARTIFACTS / "walkthrough.out").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "prospecting contacting qualifying presenting objections closing won referrals" in out
    # tasks follow the journey (issue 10): what the win ended is closed, the thanks stays
    assert re.search(r"closed objection \(now \w+\) won: closed won: signed the annual plan", out)
    assert "open thank_client" in out
    assert '"source": "referral"' in out
    assert "Ada suggested we talk" in out or "Lovelace suggested we talk" in out
    # meetings (issue 14): Ada's invitation and its update; Cleo books through her link
    assert "METHOD:REQUEST" in out and "SEQUENCE:1" in out
    assert "slot booked 200" in out and "Invitation: Intro call on" in out
    # the link outreach rendered is deals' short stored one (22 characters of token)
    assert re.search(r"booking link: http\S*/book/[A-Za-z0-9_-]{22}\n", out), out
    assert re.search(r"DTSTART;TZID=America/New_York:\d{8}T\d{6}", out)
    assert "contacting -> qualifying: replied by booking link" in out
    # who did what (issue 14): stage actors, the deal's audit log, the export
    assert "contacting by system:enrollment" in out
    assert re.search(r"qualifying by system:reply via \w+", out)
    assert re.search(r"won by admin \(cfg_[0-9a-f]{12}\)", out)
    assert re.search(r"admin cfg_[0-9a-f]{12} POST /deals/\{deal_id\}/close", out)
    assert "first_name,stage\nAda,referrals" in out


def test_journeys_in_flight_survive_a_restart(tmp_path: Path) -> None:
    """`closeflow dev` (what `make run` runs) serves every API and stops cleanly on SIGTERM (exit
    0, every port closed, the data kept) while a journey waits on a timer; the timer fires after
    the next start on the same data. One stack start less than testing each apart."""
    cadence = fast_cadence()
    cadence["steps"][2]["offset_seconds"] = 6

    async def enroll(urls: Urls) -> dict[str, str]:
        d = Driver(urls)
        try:
            _rep, created = await d.setup()
            created = await d.ok("PUT", f"{urls.outreach}/cadences/{created['id']}", json=cadence)
            lin = await d.new_prospect("Lin")
            await d.enroll(lin["id"], created["id"])
            await d.wait_mails(lin["email"], 1)
            return lin
        finally:
            await d.close()

    data = tmp_path / "data"
    env = {**os.environ, **dev_env(data), "PYTHONUNBUFFERED": "1"}
    settings = settings_from_env(env)
    with closeflow_dev(env, tmp_path / "first.log") as first:
        urls = urls_from(settings)
        for service in SERVICES:
            base = getattr(urls, service)
            assert http_ok(f"{base}/healthz") and http_ok(f"{base}/docs"), service
        lin = asyncio.run(enroll(urls))
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert "stopping" in (tmp_path / "first.log").read_text()
    ports = [settings.port(s) for s in SERVICES] + [split_address(settings.temporal_address)[1]]
    assert not any(tcp_open("127.0.0.1", p) for p in ports)
    assert all((data / f"{service}.db").is_file() for service in SERVICES)
    stopped_at = datetime.now(UTC)
    time.sleep(8)  # the follow-up falls due while everything is down

    async def follow_up(urls: Urls) -> int:
        d = Driver(urls)
        try:
            again = await d.ok("GET", f"{urls.prospecting}/prospects/{lin['id']}")
            assert again["email"] == lin["email"]
            mails = await d.wait_mails(lin["email"], 2)
            assert mails[0]["subject"] == "Following up"
            # sent by the second stack: the timer outlived the first one
            assert datetime.fromisoformat(mails[0]["received_at"]) > stopped_at
            return len(mails)
        finally:
            await d.close()

    with (tmp_path / "second.log").open("w") as log, dev_stack(data, log) as second:
        assert asyncio.run(follow_up(urls_of(second))) == 2


@ON_THE_RUNNING_STACK
async def test_a_reply_in_the_watched_mailbox_moves_the_journey(
    running_dev_stack: Stack, reply_mailbox: ReplyMailbox
) -> None:
    """Issue 14: a team without inbound webhooks connects its reply mailbox by IMAP. A reply
    that lands there (as a mail server delivers it) moves the prospect's journey to qualifying,
    as the webhooks' replies do, and is stored once as an `imap` inbox event."""
    urls = urls_of(running_dev_stack)
    d = Driver(urls)
    try:
        _rep, cadence = await d.setup()
        lea = await d.new_prospect("Lea")
        await d.enroll(lea["id"], cadence["id"])
        first = (await d.wait_mails(lea["email"], 1))[0]
        answer = reply(sender=f"Lea <{lea['email']}>", in_reply_to=first["message_id"])
        await reply_mailbox.server.append(reply_mailbox.user, answer)
        await d.wait_stage(lea["id"], "qualifying")
        events = await d.ok(
            "GET", f"{urls.outreach}/inbox-events", params={"prospect_id": lea["id"]}
        )
        # the text's status callbacks are there too (the first touch is email and SMS)
        imap = [e["kind"] for e in events if e["provider"] == "imap"]
        assert imap == ["email_reply"], events
        stages = await d.ok("GET", f"{urls.prospecting}/prospects/{lea['id']}/stages")
        qualifying = next(r for r in stages if r["to_stage"] == "qualifying")
        assert qualifying["actor"] == "system:reply via imap", qualifying
    finally:
        await d.close()


@ON_THE_RUNNING_STACK
def test_every_api_asks_for_the_key(running_dev_stack: Stack) -> None:
    for service in ("prospecting", "outreach", "deals", "referrals"):
        base = running_dev_stack.base_url(service)
        response = httpx.get(f"{base}/openapi.json", timeout=HTTP_TIMEOUT)
        assert response.status_code == 200
        paths = [
            p
            for p, ops in response.json()["paths"].items()
            # the probes answer without a key: up or down, and which dependency is down
            if "get" in ops and "{" not in p and p not in ("/healthz", "/readyz")
        ]
        assert paths, service
        for path in paths:
            missing = httpx.get(base + path, timeout=HTTP_TIMEOUT)
            assert missing.status_code == 401, (service, path)
            if path.startswith("/ui/"):
                # a page answers with its sign-in form (the key is posted, never in the URL)
                assert 'action="/ui/sign-in"' in missing.text, (service, path)
            else:
                assert "X-API-Key" in missing.json()["error"]["message"]
            assert httpx.get(base + path, headers=AUTH, timeout=HTTP_TIMEOUT).status_code == 200, (
                service,
                path,
            )


@ON_THE_RUNNING_STACK
def test_an_api_keeps_an_idle_connection_longer_than_its_clients_do(
    running_dev_stack: Stack,
) -> None:
    """httpx (every service's client of another) drops a connection idle for 5 s; an API that
    closed it at that same moment made a request sent on it fail with ReadError, so the API
    keeps it longer (closeflow.cli.KEEP_ALIVE_SECONDS): the same connection answers after 6 s."""
    with httpx.Client(
        base_url=running_dev_stack.base_url("referrals"),
        limits=httpx.Limits(keepalive_expiry=30),
        timeout=HTTP_TIMEOUT,
    ) as client:

        def local_port() -> int:
            response = client.get("/healthz")
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            return int(stream.get_extra_info("client_addr")[1])

        first = local_port()
        time.sleep(6)  # longer than uvicorn's default 5 s, which had closed it by now
        assert local_port() == first
