"""The fork server the exactly-once tests start their killed workers from (tests/support/
forks.py): each fork is a process of its own, with its own argv, environment and working
directory, its real exit status, SIGKILL included, and none outlives the server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.eventually import eventually
from tests.support.forks import Forks

PROBE = "tests.support.fork_probe"


@pytest.fixture
def forks() -> Iterator[Forks]:
    server = Forks([PROBE])
    try:
        yield server
    finally:
        server.close()


async def _now(seen: bool) -> bool | None:
    return seen or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_fork_runs_the_module_with_its_own_argv_environment_and_exit_code(
    forks: Forks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, log = tmp_path / "seen.json", tmp_path / "stderr.log"
    monkeypatch.setenv("PROBE", "the server's")  # the server starts with the first fork
    env = {**os.environ, "PROBE": "mine"}
    proc = await forks.spawn(PROBE, [str(report), "3"], env, tmp_path, log)
    assert await proc.wait() == 3 and proc.returncode == 3
    seen = json.loads(report.read_text())
    assert seen["argv"] == [str(report), "3"]
    assert (seen["probe"], seen["cwd"], seen["main"]) == ("mine", str(tmp_path), "__main__")
    assert seen["pid"] == proc.pid and proc.pid not in (os.getpid(), forks._server().pid)
    assert log.read_text() == "to stderr\n"
    # a fork has the environment it is given, not the server's
    del env["PROBE"]
    again = await forks.spawn(PROBE, [str(report), "0"], env, tmp_path, log)
    assert await again.wait() == 0
    assert json.loads(report.read_text())["probe"] is None


async def test_a_fork_that_kills_itself_reports_the_sigkill(forks: Forks, tmp_path: Path) -> None:
    report = tmp_path / "seen.json"
    proc = await forks.spawn(PROBE, [str(report), "kill"], dict(os.environ), tmp_path, report)
    assert await proc.wait() == -signal.SIGKILL


async def test_a_running_fork_is_terminated_and_none_outlives_the_server(
    forks: Forks, tmp_path: Path
) -> None:
    report, log = tmp_path / "seen.json", tmp_path / "stderr.log"
    stopped = await forks.spawn(PROBE, [str(report), "wait"], dict(os.environ), tmp_path, log)
    await eventually(lambda: _now(report.exists()), "the fork running")
    assert stopped.returncode is None
    stopped.terminate()
    assert await stopped.wait() == -signal.SIGTERM
    left = await forks.spawn(PROBE, [str(report), "wait"], dict(os.environ), tmp_path, log)
    assert _alive(left.pid)
    forks.close()
    await eventually(lambda: _now(not _alive(left.pid)), "the fork gone with its server")


async def test_a_module_the_server_did_not_import_is_refused(forks: Forks, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one of the server's modules"):
        await forks.spawn("tests.support.faults", [], {}, tmp_path, tmp_path / "log")


async def test_forks_asked_for_at_once_each_get_their_own_process(
    forks: Forks, tmp_path: Path
) -> None:
    """Spawned from several tasks at once (the exactly-once tests start an email and a text
    worker together): each Forked is the process started for its own request."""
    reports = [tmp_path / f"seen-{n}.json" for n in range(12)]
    env = dict(os.environ)
    procs = await asyncio.gather(
        *(forks.spawn(PROBE, [str(r), "0"], env, tmp_path, tmp_path / "log") for r in reports)
    )
    for proc in procs:
        await proc.wait()
    assert [p.pid for p in procs] == [json.loads(r.read_text())["pid"] for r in reports]


async def test_a_server_that_died_is_started_again_for_the_next_fork(
    forks: Forks, tmp_path: Path
) -> None:
    report, env = tmp_path / "seen.json", dict(os.environ)
    assert await (await forks.spawn(PROBE, [str(report), "0"], env, tmp_path, report)).wait() == 0
    first = forks._server()
    first.kill()
    first.wait()
    proc = await forks.spawn(PROBE, [str(report), "4"], env, tmp_path, tmp_path / "log")
    assert await proc.wait() == 4 and forks._server().pid != first.pid
