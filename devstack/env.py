"""A stack of its own: CLOSEFLOW_* variables with free ports and a private data dir."""

from __future__ import annotations

import contextlib
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


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports free now, below the kernel's ephemeral range.

    A port from bind(0) is released before the child binds it, and meanwhile any outgoing
    connection (readiness probes, other tests) may take it as its local port: then Temporal's
    UI failed with "address already in use". Ports outside the ephemeral range are never handed
    out that way. All candidates are held open together, so none is returned twice.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(10000, low)) if low > 10000 + count * 4 else []
    random.shuffle(candidates)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for candidate in [*candidates, *([0] * count)]:
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            ports.append(sock.getsockname()[1])
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
