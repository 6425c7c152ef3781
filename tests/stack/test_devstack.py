"""The dev stack as real processes: readiness, persistence across runs, clean and unclean stops,
restarts of a crashed child, no child left behind by a killed supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.env import free_ports, isolated_env, settings_from_env
from devstack.probes import http_ok, split_address, tcp_open
from devstack.supervisor import Stack, StackError
from devstack.temporal import temporal_ready
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


def test_free_ports_never_hands_out_a_port_again_that_nothing_has_bound_yet() -> None:
    # A cluster stack asks for ports in steps and binds some of them only later (nginx binds the
    # services' ports with the API replicas): a replica was once given nginx's port. 500 ports
    # drawn at random twice from the ~22,000 below the ephemeral range would share about 11.
    first = free_ports(500)
    second = free_ports(500)
    assert len(set(first)) == len(first)
    assert not set(first) & set(second)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(10000 <= p < low for p in first + second)


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


def test_a_killed_worker_is_restarted(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "data")
    log_path = tmp_path / "stack.log"
    with (
        log_path.open("w") as log,
        Stack(env=env, only=("temporal", "worker"), migrate=False, output=log) as stack,
    ):
        worker = stack.child("worker")
        assert worker.process is not None
        first = worker.process.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: worker.returncode is not None)
        assert stack.dead() == [worker]

        def back() -> bool:
            return worker.process is not None and worker.process.pid != first and worker.is_ready

        deadline = time.monotonic() + 60  # a bound on a hang, not a timing
        stack.supervise(until=lambda: back() or time.monotonic() > deadline)
        assert back(), log_path.read_text()[-2000:]
        assert worker.running() and worker.restarts == 1
        assert stack.child("temporal").running()  # the others were left alone
        assert stack.dead() == []
    text = log_path.read_text()
    assert f"worker exited with code {-signal.SIGKILL}; restarting it in 1s" in text
    assert "worker is ready again" in text
    assert not any(c.running() for c in stack.children)


def test_a_crash_loop_backs_off() -> None:
    from devstack.children import RESTART_MAX_SECONDS, Child

    child = Child("worker", ["worker", "journeys"], 1, lambda _: True)
    delays = [child.schedule_restart(now=float(i)) for i in range(8)]  # crashes at once, again
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert delays[-1] == RESTART_MAX_SECONDS
    child.started_at = 1000.0  # then up for long: the next crash restarts it soon again
    assert child.schedule_restart(now=2000.0) == 1.0


# A supervisor that is then killed outright: it prints its children's pids once they are ready.
SUPERVISOR = """
import sys
from devstack.supervisor import Stack

stack = Stack(only=("temporal", "mailbox", "worker"), migrate=False, output=sys.stderr)
stack.start()
print(" ".join(str(c.process.pid) for c in stack.children), flush=True)
stack.supervise()
"""


def test_no_child_outlives_a_killed_supervisor(tmp_path: Path) -> None:
    env = {**os.environ, **isolated_env(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "stack.log").open("w") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert supervisor.stdout is not None
            line = supervisor.stdout.readline()  # blocks until the stack is up (or it died)
            pids = [int(pid) for pid in line.split()]
            assert len(pids) == 3, (tmp_path / "stack.log").read_text()[-2000:]
            assert all(alive(pid) for pid in pids)
            supervisor.kill()  # SIGKILL: no chance to stop anything itself
            supervisor.wait(timeout=30)
            wait_for(lambda: not any(alive(pid) for pid in pids))
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
    assert not any(alive(pid) for pid in pids)
    settings = settings_from_env(env)
    assert not tcp_open(*split_address(settings.temporal_address))


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that is gone too.

    Every thread counts: a killed Go server's leader thread shows as a zombie while its other
    threads are still exiting and holding the process's sockets open.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return True
    return False


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Polls until `condition` holds; fails the test after `seconds` (a bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def test_a_child_failing_to_start_fails_start_with_its_output(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path / "data"), "CLOSEFLOW_LOG_LEVEL": "NO-SUCH-LEVEL"}
    with (tmp_path / "stack.log").open("w") as log:
        stack = Stack(env=env, only=("twilio-sandbox",), migrate=False, output=log)
        with pytest.raises(StackError, match="twilio-sandbox exited with code 1") as exc:
            stack.start()
    assert "NO-SUCH-LEVEL" in str(exc.value)  # the child's own words reach the error
    assert all(not c.running() for c in stack.children)
