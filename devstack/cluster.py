"""A real Temporal cluster on PostgreSQL: four server processes, built from Temporal's Go module.

The dev server (`closeflow temporal`, one process on SQLite) stays the default. This module builds
`temporal-server` and `temporal-sql-tool` from the Go module proxy at PINNED_VERSION (cached per
version, so only the first run compiles), creates the `temporal` and `temporal_visibility`
databases with the tool and the schema files shipped in the module, writes one server config per
service, and runs frontend, history, matching and the internal worker as separate processes,
the way a production cluster runs them. `closeflow cluster` (make run-cluster) and
tests/cluster/ (make test-cluster) put closeflow on it; deploy/cluster/ is the script form.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from devstack.probes import split_address, tcp_open
from devstack.temporal import production_dynamic_config

PINNED_VERSION = "v1.32.2"
SERVER_MODULE = "go.temporal.io/server"
# The module's go.mod asks for go 1.26.10 and the machines have go 1.26.8: the go command fetches
# this newer toolchain from the module proxy (the one it may fetch here) and builds with it.
GO_TOOLCHAIN = "go1.27.3"
PACKAGES = {
    "temporal-server": f"{SERVER_MODULE}/cmd/server",
    "temporal-sql-tool": f"{SERVER_MODULE}/cmd/tools/sql",
}
# History shards: the unit of history ownership (one shard, one history host at a time) and of
# persistence parallelism. Fixed when the cluster's database is created, never changed after.
# 8 lets the history service spread over up to 8 processes while each idle shard's queue readers
# cost little on a 2-core machine; a production cluster picks 512+ (Temporal's guidance) because
# it can never grow the number later.
HISTORY_SHARDS = 8
SERVICES = ("frontend", "history", "matching", "worker")
SQL_PLUGIN = "postgres12"
SCHEMA_DIR = Path("schema") / "postgresql" / "v12"


class ClusterError(RuntimeError):
    """The cluster could not be built, set up or started (the message says where and why)."""


# --- build ----------------------------------------------------------------------------------------


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "closeflow"


@dataclass(frozen=True)
class Build:
    """The two binaries and the module's PostgreSQL schema files of one server version."""

    version: str
    directory: Path

    @property
    def server(self) -> Path:
        return self.directory / "bin" / "temporal-server"

    @property
    def sql_tool(self) -> Path:
        return self.directory / "bin" / "temporal-sql-tool"

    @property
    def schema(self) -> Path:
        return self.directory / SCHEMA_DIR

    def complete(self) -> bool:
        return self.server.is_file() and self.sql_tool.is_file() and self.schema.is_dir()


def go_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": GO_TOOLCHAIN, **extra}


def build(version: str = PINNED_VERSION, cache: Path | None = None) -> Build:
    """The binaries of `version`, compiled on first use (minutes) and cached (instant after)."""
    root = cache or cache_root()
    done = Build(version, root / f"temporal-{version}")
    if done.complete():
        return done
    go = shutil.which("go")
    if go is None:
        raise ClusterError("the Go toolchain is not installed (`go` is not on PATH)")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"temporal-{version}.", dir=root))
    try:
        bin_dir = staging / "bin"
        argv = [go, "install", *(f"{pkg}@{version}" for pkg in PACKAGES.values())]
        done_install = subprocess.run(
            argv,
            env=go_env(GOBIN=str(bin_dir)),
            cwd=staging,  # outside any module: `go install pkg@version` builds the module as is
            capture_output=True,
            text=True,
            check=False,
        )
        if done_install.returncode != 0:
            raise ClusterError(
                f"`{' '.join(argv[1:])}` (GOTOOLCHAIN={GO_TOOLCHAIN}) failed with exit code "
                f"{done_install.returncode}:\n{done_install.stderr.strip()[-4000:]}"
            )
        for name, pkg in PACKAGES.items():
            (bin_dir / pkg.rsplit("/", 1)[1]).rename(bin_dir / name)
        module_dir = _module_dir(go, version)
        shutil.copytree(module_dir / SCHEMA_DIR, staging / SCHEMA_DIR)
        (staging / "schema").chmod(0o755)
        shutil.rmtree(done.directory, ignore_errors=True)  # a half-written one from a crash
        staging.rename(done.directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def _module_dir(go: str, version: str) -> Path:
    """Where the go command unpacked the module (read-only files in GOMODCACHE)."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{SERVER_MODULE}@{version}"],
        env=go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise ClusterError(f"go mod download {SERVER_MODULE}@{version} failed:\n{out.stdout}")
    return Path(json.loads(out.stdout)["Dir"])


# --- schema ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Databases:
    """The cluster's two PostgreSQL databases, on the server of `url` (any database name)."""

    url: URL
    prefix: str

    @classmethod
    def on(cls, url: str, prefix: str) -> Databases:
        return cls(make_url(url), prefix)

    @property
    def main(self) -> str:
        return f"{self.prefix}_temporal"

    @property
    def visibility(self) -> str:
        return f"{self.prefix}_temporal_visibility"

    @property
    def address(self) -> str:
        return f"{self.url.host or '127.0.0.1'}:{self.url.port or 5432}"


def sql_tool(
    build: Build, db: Databases, database: str, *args: str
) -> subprocess.CompletedProcess[str]:
    argv = [
        str(build.sql_tool),
        "--endpoint",
        db.url.host or "127.0.0.1",
        "--port",
        str(db.url.port or 5432),
        "--user",
        db.url.username or "postgres",
        "--password",
        db.url.password or "",
        "--plugin",
        SQL_PLUGIN,
        "--db",
        database,
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _checked(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise ClusterError(f"temporal-sql-tool {what} failed:\n{done.stdout}{done.stderr}")


def create_schema(build: Build, db: Databases, *, fresh: bool = False) -> None:
    """Both databases at the schema version of `build`: created and set up when missing (or
    dropped first when `fresh`), then brought up to date (update-schema is a no-op when current)."""
    for database, kind in ((db.main, "temporal"), (db.visibility, "visibility")):
        if fresh:
            _checked(sql_tool(build, db, database, "drop-database", "--force"), "drop-database")
        created = sql_tool(build, db, database, "create-database")
        if created.returncode == 0:
            # a new database: the schema_version tables at 0.0, then every versioned step
            _checked(sql_tool(build, db, database, "setup-schema", "-v", "0.0"), "setup-schema")
        elif "already exists" not in created.stdout + created.stderr:
            _checked(created, "create-database")
        versioned = build.schema / kind / "versioned"
        _checked(sql_tool(build, db, database, "update-schema", "-d", str(versioned)), "update")


# --- config ---------------------------------------------------------------------------------------


@dataclass
class Ports:
    """Every port of the four processes: gRPC and membership each, frontend HTTP, metrics."""

    grpc: dict[str, int]
    membership: dict[str, int]
    metrics: dict[str, int]
    frontend_http: int

    @classmethod
    def pick(cls, frontend: int, free: list[int]) -> Ports:
        """`frontend` is the gRPC port clients use; `free` has the COUNT others."""
        it = iter(free)
        grpc = {"frontend": frontend, **{s: next(it) for s in SERVICES[1:]}}
        return cls(
            grpc=grpc,
            membership={s: next(it) for s in SERVICES},
            metrics={s: next(it) for s in SERVICES},
            frontend_http=next(it),
        )

    COUNT = 3 + 4 + 4 + 1  # besides the frontend's gRPC: 3 gRPC, 4 membership, 4 metrics, 1 HTTP


def _datastore(db: Databases, database: str, max_conns: int) -> dict[str, Any]:
    return {
        "sql": {
            "pluginName": SQL_PLUGIN,
            "databaseName": database,
            "connectAddr": db.address,
            "connectProtocol": "tcp",
            "user": db.url.username or "postgres",
            "password": db.url.password or "",
            "maxConns": max_conns,
            "maxIdleConns": max_conns,
            "maxConnLifetime": "1h",
        }
    }


def server_config(
    db: Databases, ports: Ports, service: str, dynamic_config: Path, host: str = "127.0.0.1"
) -> dict[str, Any]:
    """One process's config: config/development-postgres12.yaml of the module, with this
    cluster's databases, ports and shards, its own metrics port, archival and pprof off."""
    rpc: dict[str, dict[str, Any]] = {
        s: {
            "rpc": {
                "grpcPort": ports.grpc[s],
                "membershipPort": ports.membership[s],
                "bindOnLocalHost": True,
            }
        }
        for s in SERVICES
    }
    rpc["frontend"]["rpc"]["httpPort"] = ports.frontend_http
    return {
        "log": {"stdout": True, "level": "warn"},
        "persistence": {
            "defaultStore": "postgres-default",
            "visibilityStore": "postgres-visibility",
            "numHistoryShards": HISTORY_SHARDS,
            "datastores": {
                # per process: four processes share one PostgreSQL (max_connections)
                "postgres-default": _datastore(db, db.main, 10),
                "postgres-visibility": _datastore(db, db.visibility, 2),
            },
        },
        "global": {
            "membership": {"maxJoinDuration": "30s", "broadcastAddress": host},
            "metrics": {
                "prometheus": {
                    "framework": "tally",
                    "timerType": "histogram",
                    "listenAddress": f"{host}:{ports.metrics[service]}",
                }
            },
        },
        "services": rpc,
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {
                "active": {
                    "enabled": True,
                    "initialFailoverVersion": 1,
                    "rpcName": "frontend",
                    "rpcAddress": f"{host}:{ports.grpc['frontend']}",
                }
            },
        },
        "dcRedirectionPolicy": {"policy": "noop"},
        "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}},
        "namespaceDefaults": {
            "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}}
        },
        "dynamicConfigClient": {"filepath": str(dynamic_config), "pollInterval": "10s"},
    }


def dynamic_config() -> dict[str, Any]:
    """Production's dynamic config (deploy/temporal/dynamicconfig.yaml), plus
    config/dynamicconfig/development-sql.yaml's one limit that matters to closeflow (ids of
    255)."""
    return {"limit.maxIDLength": [{"value": 255, "constraints": {}}], **production_dynamic_config()}


def write_configs(directory: Path, db: Databases, ports: Ports) -> dict[str, Path]:
    """One YAML file per service (JSON is YAML); returns service -> file."""
    directory.mkdir(parents=True, exist_ok=True)
    dynamic = directory / "dynamicconfig.yaml"
    dynamic.write_text(json.dumps(dynamic_config(), indent=2) + "\n")
    files = {}
    for service in SERVICES:
        path = directory / f"{service}.yaml"
        path.write_text(json.dumps(server_config(db, ports, service, dynamic), indent=2) + "\n")
        files[service] = path
    return files


def server_argv(build: Build, config: Path, service: str) -> list[str]:
    return [str(build.server), "--config-file", str(config), "--allow-no-auth", "start",
            "--service", service]  # fmt: skip


# --- readiness ------------------------------------------------------------------------------------


async def _ensure_namespace(address: str, namespace: str) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    client = await Client.connect(address, namespace=namespace)
    service = client.workflow_service
    try:
        await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # a new cluster has no namespace at all (the dev server makes one; a cluster does not)
        retention = Duration(seconds=3 * 24 * 3600)
        try:
            await service.register_namespace(
                RegisterNamespaceRequest(
                    namespace=namespace, workflow_execution_retention_period=retention
                )
            )
        except RPCError as again:
            if again.status != RPCStatusCode.ALREADY_EXISTS:
                raise
        await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))


def namespace_ready(address: str, namespace: str, timeout: float = 10.0) -> bool:
    """The frontend answers and `namespace` exists (registered here if it did not). Runs its own
    event loop in a thread, so it may be called from inside one (the stack's supervisor)."""
    if not tcp_open(*split_address(address)):
        return False
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(asyncio.run, _ensure_namespace(address, namespace)).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)  # a hung connect must not hold the caller past `timeout`
    return True
