"""The dev stack as real processes (`closeflow dev`, what `make run` starts) on its own free ports
and data directory: how every test that needs the processes starts it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from devstack.env import isolated_env
from devstack.supervisor import Stack, service_url
from shared.settings import Settings
from tests.support.imap import PASSWORD, Dovecot, dovecot
from tests.support.scenarios import Urls
from tests.support.settings import API_KEY

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def dev_env(data_dir: Path) -> dict[str, str]:
    """A dev stack's environment: free ports, its own data, the tests' API key."""
    env = isolated_env(data_dir)
    env["CLOSEFLOW_API_KEYS"] = API_KEY
    return env


@contextlib.contextmanager
def closeflow_dev(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`closeflow dev` as `make run` runs it, once it says the stack is up (its output in `log`);
    killed on the way out if the test did not stop it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "closeflow.cli", "dev"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "stack is up" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def dev_stack(
    data_dir: Path, log: IO[str], env: dict[str, str] | None = None, **options: Any
) -> Iterator[Stack]:
    """A started dev stack on `data_dir` (kept across stacks on the same folder), stopped after;
    `env`: more CLOSEFLOW_* settings."""
    with Stack(env={**dev_env(data_dir), **(env or {})}, output=log, **options) as running:
        yield running


def urls_of(stack: Stack) -> Urls:
    return urls_from(stack.settings)


def urls_from(s: Settings) -> Urls:
    """The URLs of a dev stack with these settings (one started by `closeflow dev` too)."""
    return Urls(
        service_url(s, "prospecting"),
        service_url(s, "outreach"),
        service_url(s, "deals"),
        service_url(s, "referrals"),
        f"http://127.0.0.1:{s.mailbox_http_port}",
        f"http://127.0.0.1:{s.twilio_sandbox_port}",
    )


ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@dataclass(frozen=True)
class ReplyMailbox:
    """The IMAP mailbox the running dev stack's outreach watches (a dovecot of the module's)."""

    server: Dovecot
    user: str

    def env(self) -> dict[str, str]:
        return {
            "CLOSEFLOW_IMAP_HOST": "127.0.0.1",
            "CLOSEFLOW_IMAP_PORT": str(self.server.port),
            "CLOSEFLOW_IMAP_TLS": "none",  # the dev stack is development: allowed there
            "CLOSEFLOW_IMAP_USERNAME": self.user,
            "CLOSEFLOW_IMAP_PASSWORD": PASSWORD,
        }


@pytest.fixture(scope="module")
def reply_mailbox() -> Iterator[ReplyMailbox]:
    with dovecot() as server:
        yield ReplyMailbox(server, server.add_user())


@pytest.fixture(scope="module")
def running_dev_stack(
    tmp_path_factory: pytest.TempPathFactory, reply_mailbox: ReplyMailbox
) -> Iterator[Stack]:
    """One dev stack for a test module (it takes seconds to start), its log kept for CI; its
    outreach watches `reply_mailbox` over IMAP."""
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        open(ARTIFACTS / "e2e-stack.log", "w") as log,
        dev_stack(tmp_path_factory.mktemp("stack"), log, reply_mailbox.env()) as running,
    ):
        yield running
