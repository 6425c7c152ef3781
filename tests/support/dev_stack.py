"""The dev stack as real processes (`closeflow dev`, what `make run` starts) on its own free ports
and data directory: how every test that needs the processes starts it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from devstack.env import isolated_env
from devstack.supervisor import Stack
from tests.support.scenarios import Urls
from tests.support.settings import API_KEY


def dev_env(data_dir: Path) -> dict[str, str]:
    """A dev stack's environment: free ports, its own data, the tests' API key."""
    env = isolated_env(data_dir)
    env["CLOSEFLOW_API_KEYS"] = API_KEY
    return env


@contextlib.contextmanager
def dev_stack(data_dir: Path, log: IO[str], **options: Any) -> Iterator[Stack]:
    """A started dev stack on `data_dir` (kept across stacks on the same folder), stopped after."""
    with Stack(env=dev_env(data_dir), output=log, **options) as running:
        yield running


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


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def running_dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One dev stack for a test module (it takes seconds to start), its log kept for CI."""
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        open(ARTIFACTS / "e2e-stack.log", "w") as log,
        dev_stack(tmp_path_factory.mktemp("stack"), log) as running,
    ):
        yield running
