"""nginx in front of each API's replicas (the cluster stack), as a Kubernetes Service would be.

Each API keeps its usual port, now nginx's; its replicas listen on ports of their own. A replica
that refuses connections (killed, restarting) is skipped: nginx passes the request to the next
one (`proxy_next_upstream error`), which is safe for a POST too since a refused request never
reached the replica.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

NGINX_FALLBACK = "/usr/sbin/nginx"  # Debian's, outside a normal user's PATH


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return NGINX_FALLBACK if os.access(NGINX_FALLBACK, os.X_OK) else None


def nginx_config(
    directory: Path, upstreams: Mapping[str, tuple[int, Sequence[int]]], host: str = "127.0.0.1"
) -> Path:
    """Write nginx.conf into `directory` (also its temp and log files): service -> (the port it
    listens on, its replicas' ports)."""
    directory.mkdir(parents=True, exist_ok=True)
    blocks = []
    for name, (listen, replicas) in upstreams.items():
        servers = "".join(
            f"    server {host}:{port} max_fails=1 fail_timeout=5s;\n" for port in replicas
        )
        blocks.append(
            f"  upstream {name} {{\n{servers}  }}\n"
            f"  server {{\n"
            f"    listen {host}:{listen};\n"
            f"    location / {{\n"
            f"      proxy_pass http://{name};\n"
            f"      proxy_set_header Host $http_host;\n"
            f"      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            f"      proxy_next_upstream error timeout http_502;\n"
            f"      proxy_read_timeout 60s;\n"
            f"    }}\n"
            f"  }}\n"
        )
    temp = "".join(
        f"  {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # as root nginx's workers would run as `nobody`, who cannot write these temp dirs
    user = "user root;\n" if os.geteuid() == 0 else ""
    path = directory / "nginx.conf"
    path.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        f"events {{\n  worker_connections 1024;\n}}\n"
        f"http {{\n  access_log off;\n{temp}{''.join(blocks)}}}\n"
    )
    return path


def nginx_argv(binary: str, config: Path) -> list[str]:
    # -e: the error log before the config is read (else the compiled-in path, not writable)
    return [
        binary,
        "-p",
        str(config.parent),
        "-e",
        str(config.parent / "error.log"),
        "-c",
        str(config),
    ]
