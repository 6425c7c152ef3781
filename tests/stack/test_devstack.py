"""The dev stack as real processes: readiness, persistence across runs, clean and unclean stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.devstack import (
    PROCESS_NAMES,
    Stack,
    StackError,
    http_ok,
    isolated_env,
    settings_from_env,
    split_address,
    tcp_open,
    temporal_ready,
)
from shared.settings import SERVICES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INFRA = ("temporal", "mailbox", "twilio-sandbox")


def open_ports(stack: Stack) -> list[tuple[str, int]]:
    s = stack.settings
    return [
        split_address(s.temporal_address),
        (s.host, s.mailbox_http_port),
        (s.host, s.smtp_port),
        (s.host, s.twilio_sandbox_port),
    ]


def test_isolated_env_gives_distinct_free_ports(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "data")
    settings = settings_from_env(env)
    ports = [
        *(settings.port(s) for s in SERVICES),
        split_address(settings.temporal_address)[1],
        settings.temporal_ui_port,
        settings.smtp_port,
        settings.mailbox_http_port,
        settings.twilio_sandbox_port,
    ]
    assert len(set(ports)) == len(ports)
    assert all(p != default for p, default in zip(ports[:4], (8001, 8002, 8003, 8004), strict=True))
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.database_url("deals").endswith(f"{(tmp_path / 'data').resolve()}/deals.db")
    assert settings.twilio_api_base_url == f"http://127.0.0.1:{settings.twilio_sandbox_port}"


def test_unknown_process_name_is_refused() -> None:
    with pytest.raises(ValueError, match="billing"):
        Stack(only={"temporal", "billing"})


def test_infrastructure_starts_stops_and_keeps_its_data(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "data")
    log = (tmp_path / "stack.log").open("w")
    stack = Stack(env=env, only=INFRA, migrate=False, output=log)
    stack.start()
    try:
        assert [c.name for c in stack.children] == list(INFRA)
        assert temporal_ready(stack.settings)
        assert http_ok(f"http://127.0.0.1:{stack.settings.twilio_sandbox_port}/") or tcp_open(
            "127.0.0.1", stack.settings.twilio_sandbox_port
        )
        assert all(tcp_open(h, p) for h, p in open_ports(stack))
        assert stack.dead() == []
        with pytest.raises(StackError, match="already running"):
            stack.start()
    finally:
        stack.stop()
    assert all(c.returncode is not None for c in stack.children)
    assert not any(tcp_open(h, p) for h, p in open_ports(stack))
    assert (tmp_path / "data" / "temporal.db").is_file()
    assert "temporal" in (tmp_path / "stack.log").read_text()

    # A second run opens the same Temporal database (its namespace is already there).
    again = Stack(env=env, only=("temporal",), migrate=False, output=log)
    with again:
        assert temporal_ready(again.settings)
    assert again.child("temporal").returncode is not None


def test_a_dying_child_is_reported(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "data")
    with (tmp_path / "stack.log").open("w") as log:
        stack = Stack(env=env, only=("mailbox", "twilio-sandbox"), migrate=False, output=log)
        with stack:
            victim = stack.child("mailbox")
            assert victim.process is not None
            os.kill(victim.process.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not stack.dead() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [c.name for c in stack.dead()] == ["mailbox"]
            assert stack.wait() is victim
        assert not stack.child("twilio-sandbox").running()


def test_a_child_failing_to_start_fails_start_with_its_output(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path / "data"), "CLOSEFLOW_LOG_LEVEL": "NO-SUCH-LEVEL"}
    with (tmp_path / "stack.log").open("w") as log:
        stack = Stack(env=env, only=("twilio-sandbox",), migrate=False, output=log)
        with pytest.raises(StackError, match="twilio-sandbox exited with code 1") as exc:
            stack.start()
    assert "NO-SUCH-LEVEL" in str(exc.value)  # the child's own words reach the error
    assert all(not c.running() for c in stack.children)


@pytest.mark.e2e
def test_whole_stack_serves_every_api(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "data")
    with (tmp_path / "stack.log").open("w") as log, Stack(env=env, output=log) as stack:
        assert [c.name for c in stack.children] == list(PROCESS_NAMES)
        for service in SERVICES:
            assert http_ok(f"{stack.base_url(service)}/healthz"), service
            assert http_ok(f"{stack.base_url(service)}/docs"), service
        assert stack.child("worker").running()
    assert all(not c.running() for c in stack.children)
    for service in SERVICES:
        assert (tmp_path / "data" / f"{service}.db").is_file()


@pytest.mark.e2e
def test_closeflow_dev_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, **isolated_env(tmp_path / "data")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "dev"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "stack is up" in line or time.monotonic() > deadline:
            break
    assert any("stack is up" in line for line in lines), "".join(lines[-40:])
    settings = settings_from_env(env)
    assert http_ok(f"http://127.0.0.1:{settings.port('deals')}/healthz")
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-2000:]
    assert "stopping" in rest
    ports = [settings.port(s) for s in SERVICES] + [split_address(settings.temporal_address)[1]]
    assert not any(tcp_open("127.0.0.1", p) for p in ports)
