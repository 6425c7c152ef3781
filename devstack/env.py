"""A stack of its own: CLOSEFLOW_* variables with free ports and a private data dir."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.codec import new_master_key
from shared.settings import SERVICES, Settings

ENV_PREFIX = "CLOSEFLOW_"


def settings_from_env(env: Mapping[str, str] | None) -> Settings:
    """Settings as a child sees them: os.environ (and .env) overlaid with `env`."""
    # values stay strings, as in the environment: pydantic coerces them to each field's type
    overrides: dict[str, Any] = {}
    for key, value in (env or {}).items():
        name = key[len(ENV_PREFIX) :].lower() if key.upper().startswith(ENV_PREFIX) else ""
        if name in Settings.model_fields:
            overrides[name] = value
    return Settings(**overrides)


LOWEST_PORT = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _process_slice() -> range:
    """This process's share of the ports below the ephemeral range: pytest-xdist workers each
    get a disjoint slice, so two workers never pick the same port."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    size = max(1, (_ephemeral_low() - LOWEST_PORT) // count)
    return range(LOWEST_PORT + index * size, LOWEST_PORT + (index + 1) * size)


_SLICE = _process_slice()
_next = random.randrange(len(_SLICE))


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports free now, none handed out before by this process until its slice wraps.

    A port is released before the child binds it, so two things must not happen meanwhile:
    - an outgoing connection (readiness probes, other tests) taking it as its local port, as a
      port from bind(0) can be: then Temporal's UI failed with "address already in use". Ports
      below the kernel's ephemeral range are never handed out that way.
    - a later call returning it again: a stack asks in several steps (its services' ports, then the
      cluster's, then the API replicas'), and a replica was once given the port nginx was about
      to bind. Walking the slice in order returns a port again only after the whole slice (about
      22,000 ports, or that over the xdist workers) has been handed out.
    """
    global _next
    ports: list[int] = []
    for _ in range(len(_SLICE)):
        if len(ports) == count:
            break
        port = _SLICE[_next % len(_SLICE)]
        _next += 1
        if _bindable(port, host):
            ports.append(port)
    if len(ports) < count:
        raise RuntimeError(f"fewer than {count} free ports in {_SLICE}")
    return ports


def isolated_env(data_dir: Path, host: str = "127.0.0.1") -> dict[str, str]:
    """CLOSEFLOW_* variables for a stack of its own: data in `data_dir`, every port free now.

    Database URLs are set empty so every service uses SQLite in `data_dir` even when the caller's
    environment points elsewhere; override them (and anything else) in the returned dict.
    """
    names = [f"{s}_port" for s in SERVICES] + [
        "temporal",
        "temporal_ui_port",
        "smtp_port",
        "mailbox_http_port",
        "twilio_sandbox_port",
    ]
    port = dict(zip(names, free_ports(len(names), host), strict=True))
    env = {
        # said, not defaulted: a CLOSEFLOW_ENVIRONMENT=production in the caller's shell (or an
        # image's) must not reach a stack of dev secrets and sandboxes
        "ENVIRONMENT": "development",
        "DATA_DIR": str(Path(data_dir).resolve()),
        "HOST": host,
        "TEMPORAL_ADDRESS": f"{host}:{port['temporal']}",
        "TEMPORAL_UI_PORT": str(port["temporal_ui_port"]),
        "SMTP_HOST": host,
        "SMTP_PORT": str(port["smtp_port"]),
        "MAILBOX_HTTP_PORT": str(port["mailbox_http_port"]),
        "TWILIO_SANDBOX_PORT": str(port["twilio_sandbox_port"]),
        "TWILIO_API_BASE_URL": f"http://{host}:{port['twilio_sandbox_port']}",
        "PROSPECTING_URL": f"http://{host}:{port['prospecting_port']}",
        "OUTREACH_URL": f"http://{host}:{port['outreach_port']}",
        "DEALS_URL": f"http://{host}:{port['deals_port']}",
        "REFERRALS_URL": f"http://{host}:{port['referrals_port']}",
        "OUTREACH_PUBLIC_URL": f"http://{host}:{port['outreach_port']}",
        "REFERRALS_PUBLIC_URL": f"http://{host}:{port['referrals_port']}",
        "DEALS_PUBLIC_URL": f"http://{host}:{port['deals_port']}",
    }
    for service in SERVICES:
        env[f"{service.upper()}_PORT"] = str(port[f"{service}_port"])
        env[f"{service.upper()}_DATABASE_URL"] = ""
    return {f"{ENV_PREFIX}{key}": value for key, value in env.items()}


DEV_MASTER_KEY_FILE = "payload-master-key"


def dev_master_key(data_dir: Path) -> str:
    """The dev stack's payload master key (issue 11: payloads encrypted as in production), made
    once and kept in the data dir so that a restarted stack still reads its histories."""
    path = Path(data_dir) / DEV_MASTER_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_master_key("dev") + "\n")
        path.chmod(0o600)
    return path.read_text().strip()
