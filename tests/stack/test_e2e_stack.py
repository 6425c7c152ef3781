"""The running stack (`closeflow dev`, what `make run` starts) driven through HTTP only."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.env import isolated_env
from devstack.supervisor import Stack
from tests.support.scenarios import (
    Driver,
    Urls,
    drive_to_qualification_timeout,
    drive_to_referral,
    fast_cadence,
)
from tests.support.settings import API_KEY, AUTH

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
GETTING_STARTED = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def stack_env(data_dir: Path) -> dict[str, str]:
    env = isolated_env(data_dir)
    env["CLOSEFLOW_API_KEYS"] = API_KEY
    return env


def urls_of(stack: Stack) -> Urls:
    s = stack.settings
    return Urls(
        stack.base_url("prospecting"),
        stack.base_url("outreach"),
        stack.base_url("deals"),
        stack.base_url("referrals"),
        f"http://127.0.0.1:{s.mailbox_http_port}",
        f"http://127.0.0.1:{s.twilio_sandbox_port}",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        open(ARTIFACTS / "e2e-stack.log", "w") as log,
        Stack(env=stack_env(tmp_path_factory.mktemp("stack")), output=log) as running,
    ):
        yield running


def test_two_prospects_through_the_running_stack(stack: Stack) -> None:
    urls = urls_of(stack)

    async def both() -> None:
        await asyncio.gather(drive_to_referral(urls), drive_to_qualification_timeout(urls))

    asyncio.run(both())
    assert stack.dead() == []


def walkthrough_script() -> str:
    text = GETTING_STARTED.read_text()
    section = text.split("## Five-minute walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) >= 6, "the walkthrough lost its code blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_getting_started_walkthrough_works_when_pasted(stack: Stack) -> None:
    urls = urls_of(stack)
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
    assert "prospecting contacting qualifying presenting objections won referrals" in out
    assert '"source": "referral"' in out
    assert "Ada suggested we talk" in out or "Lovelace suggested we talk" in out


def test_journeys_in_flight_survive_a_restart(tmp_path: Path) -> None:
    """Stop the stack while a journey waits on a timer; the timer fires after the next start."""
    env = stack_env(tmp_path / "data")
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

    log = open(tmp_path / "stack.log", "w")  # one log for both stacks
    with Stack(env=env, output=log) as first:
        urls = urls_of(first)
        lin = asyncio.run(enroll(urls))
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

    with Stack(env=env, output=log) as second:
        assert asyncio.run(follow_up(urls_of(second))) == 2
    log.close()


def test_every_api_asks_for_the_key(stack: Stack) -> None:
    for service in ("prospecting", "outreach", "deals", "referrals"):
        base = stack.base_url(service)
        response = httpx.get(f"{base}/openapi.json")
        assert response.status_code == 200
        paths = [
            p
            for p, ops in response.json()["paths"].items()
            if "get" in ops and "{" not in p and p != "/healthz"
        ]
        assert paths, service
        for path in paths:
            missing = httpx.get(base + path)
            assert missing.status_code == 401, (service, path)
            assert "X-API-Key" in missing.json()["error"]["message"]
            assert httpx.get(base + path, headers=AUTH).status_code == 200, (service, path)
