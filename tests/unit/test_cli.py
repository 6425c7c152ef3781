"""The `closeflow` command line: its parser, the settings table, the Temporal dev server command."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from closeflow.cli import build_parser, main, settings_table
from closeflow.registry import QUEUES, REGISTRY, activities_module, app_factory, expand_queues
from devstack.temporal import temporal_binary, temporal_command
from shared.logging import quiet_chatter
from shared.settings import SERVICES, Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def settings_rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_settings_prints_every_field_as_a_markdown_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "| Variable | Default | Description |"
    assert lines[1] == "| --- | --- | --- |"
    rows = settings_rows(out)
    assert set(rows) == {f"CLOSEFLOW_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        cells = rows[f"CLOSEFLOW_{name.upper()}"]
        assert len(cells) == 3, cells
        assert cells[2] == (field.description or ""), name
        assert field.description, f"{name} has no description"


def test_settings_table_hides_secret_defaults_and_shows_plain_ones() -> None:
    out = settings_table()
    rows = settings_rows(out)
    for secret in ("dev-key", "dev-twilio-auth-token", "dev-mailgun-signing-key"):
        assert secret not in out
    assert rows["CLOSEFLOW_API_KEYS"][1] == "(secret)"
    assert rows["CLOSEFLOW_TWILIO_AUTH_TOKEN"][1] == "(secret)"
    assert rows["CLOSEFLOW_TEMPORAL_API_KEY"][1] == "(empty)"  # an empty secret reveals nothing
    assert rows["CLOSEFLOW_PROSPECTING_PORT"][1] == "`8001`"
    assert rows["CLOSEFLOW_TEMPORAL_TLS"][1] == "`false`"
    assert rows["CLOSEFLOW_DATA_DIR"][1] == "`.closeflow`"


def test_settings_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The table documents defaults: an invalid environment must neither fail nor leak into it.
    monkeypatch.setenv("CLOSEFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("CLOSEFLOW_PROSPECTING_PORT", "9999")
    rows = settings_rows(settings_table())
    assert rows["CLOSEFLOW_PROSPECTING_PORT"][1] == "`8001`"
    assert main(["settings"]) == 0


def test_console_entry_point_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "closeflow.cli", "settings"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "CLOSEFLOW_TEMPORAL_ADDRESS" in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "billing"],
        ["serve"],
        ["migrate", "prospecting", "billing"],
        ["worker", "billing"],
        ["worker"],
        ["launch"],
        [],
    ],
)
def test_parser_rejects_unknown_names(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    if "billing" in argv:
        assert "unknown" in capsys.readouterr().err


@pytest.mark.parametrize("service", SERVICES)
def test_parser_accepts_every_service(service: str) -> None:
    args = build_parser().parse_args(["serve", service])
    assert (args.command, args.service) == ("serve", service)


def test_migrate_defaults_to_every_service() -> None:
    assert build_parser().parse_args(["migrate"]).services == []
    assert build_parser().parse_args(["migrate", "deals"]).services == ["deals"]


def test_worker_queues() -> None:
    assert QUEUES == ("journeys", *SERVICES)
    args = build_parser().parse_args(["worker", "journeys", "outreach", "journeys"])
    assert expand_queues(args.queues) == ["journeys", "outreach"]
    assert expand_queues(build_parser().parse_args(["worker", "all"]).queues) == list(QUEUES)


def test_temporal_command_uses_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        host="127.0.0.5",
        temporal_address="127.0.0.5:17233",
        temporal_ui_port=18233,
        temporal_namespace="sales",
        temporal_cache_size=2500,
    )
    argv = temporal_command(settings)
    assert argv[:3] == [temporal_binary(), "server", "start-dev"]
    pairs = list(zip(argv[3::2], argv[4::2], strict=True))
    assert ("--db-filename", str(tmp_path.resolve() / "temporal.db")) in pairs
    assert ("--ip", "127.0.0.5") in pairs
    assert ("--port", "17233") in pairs
    assert ("--ui-port", "18233") in pairs
    assert ("--namespace", "sales") in pairs
    assert ("--sqlite-pragma", "journal_mode=wal") in pairs
    assert ("--sqlite-pragma", "synchronous=normal") in pairs
    # the history cache bounded by the setting, its idle entries dropped as in production
    dynamic = dict(v.split("=", 1) for k, v in pairs if k == "--dynamic-config-value")
    assert dynamic["history.hostLevelCacheMaxSize"] == "2500"
    assert json.loads(dynamic["history.cacheBackgroundEvict"])["Enabled"] is True


def test_temporal_command_flags_exist_in_the_installed_cli(tmp_path: Path) -> None:
    flags = {arg for arg in temporal_command(Settings(data_dir=tmp_path)) if arg.startswith("--")}
    binary = temporal_binary()
    known = ""
    for args in (["server", "start-dev", "--help"], ["options"]):
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        known += done.stdout
    missing = [flag for flag in flags if f"{flag} " not in known]
    assert not missing, f"temporal CLI does not know {missing}"


# Runs the CLI as the production image has it: any import of the devstack package fails.
WITHOUT_DEVSTACK = """
import sys

class NoDevstack:
    def find_spec(self, name, path=None, target=None):
        if name == "devstack" or name.startswith("devstack."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoDevstack())
import closeflow.worker  # the production commands' modules import without it
from closeflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["dev", "mailbox", "twilio-sandbox", "temporal"])
def test_dev_commands_say_the_dev_stack_is_not_installed(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEVSTACK, command],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CLOSEFLOW_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"closeflow {command} is a development command" in done.stderr
    assert "'devstack' package" in done.stderr and "does not contain" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_registry_names_every_service_and_its_code() -> None:
    assert tuple(REGISTRY) == SERVICES
    for service in SERVICES:
        assert callable(app_factory(service))
        assert callable(activities_module(service).activities_for)


def test_chatter_is_dropped_and_warnings_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn sets this logger's level from its config: a server another test started in this
    # process may have left it at WARNING, which would hide what the filter decides
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "level", logging.INFO)
    quiet_chatter()

    def passes(name: str, level: int, msg: str, args: tuple[object, ...] = ()) -> bool:
        logger = logging.getLogger(name)
        record = logger.makeRecord(name, level, __file__, 1, msg, args, None)
        # the logger's own decision (its level, its filters), whatever the root's level here
        return level >= logger.level and bool(logger.filter(record))

    probe = ("127.0.0.1:5000", "GET", "/healthz", "1.1", 200)
    assert not passes("uvicorn.access", logging.INFO, '%s - "%s %s HTTP/%s" %d', probe)
    request = ("127.0.0.1:5000", "GET", "/deals/d1", "1.1", 200)
    assert passes("uvicorn.access", logging.INFO, '%s - "%s %s HTTP/%s" %d', request)
    assert not passes("mail.log", logging.INFO, "('127.0.0.1', 5000) handling connection")
    assert passes("mail.log", logging.ERROR, "SMTP session exception")
    assert not passes("alembic.runtime.plugins", logging.INFO, "setup plugin alembic.x")
    assert not passes("alembic.runtime.migration", logging.INFO, "Context impl SQLiteImpl.")
    assert passes("alembic.runtime.migration", logging.INFO, "Running upgrade  -> 0001, initial")
