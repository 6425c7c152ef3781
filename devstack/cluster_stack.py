"""closeflow on the real Temporal cluster (devstack/cluster.py): `closeflow cluster` (make
run-cluster) and tests/cluster/ (make test-cluster).

The dev stack's processes, with the dev server replaced by the cluster's four server processes,
REPLICAS worker processes per task queue (`closeflow worker QUEUE`) and REPLICAS of each API
behind nginx (devstack/proxy.py) on the API's usual port, as production scales them; every
service database on PostgreSQL. The supervisor restarts whatever dies (a killed worker or API
replica, a stopped history service), as an orchestrator would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.children import Child
from devstack.cluster import (
    SERVICES as CLUSTER_SERVICES,
)
from devstack.cluster import (
    Build,
    ClusterError,
    Databases,
    Ports,
    build,
    create_schema,
    namespace_ready,
    server_argv,
    write_configs,
)
from devstack.env import free_ports
from devstack.probes import http_ok, split_address, tcp_open
from devstack.proxy import nginx_argv, nginx_binary, nginx_config
from devstack.supervisor import STAGE_APPS, STAGE_INFRA, WORKER_SETTLE_SECONDS, Stack
from shared.settings import SERVICES

REPLICAS = 2  # worker processes per task queue
# the workflows' queue (closeflow.registry's JOURNEYS: the dev stack never imports closeflow) and
# each service's activities
WORKER_QUEUES = ("journeys", *SERVICES)


def worker_name(queue: str, replica: int) -> str:
    return f"worker-{queue}-{replica}"


def api_name(service: str, replica: int) -> str:
    return f"{service}-{replica}"


def service_database_urls(postgres_url: str, prefix: str) -> dict[str, str]:
    """CLOSEFLOW_<SERVICE>_DATABASE_URL for each service: `<prefix>_<service>` on that server."""
    base = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    return {
        f"CLOSEFLOW_{s.upper()}_DATABASE_URL": base.set(database=f"{prefix}_{s}").render_as_string(
            hide_password=False
        )
        for s in SERVICES
    }


async def ensure_databases(postgres_url: str, names: list[str], *, fresh: bool) -> None:
    """Each database exists (dropped and made again first when `fresh`)."""
    admin_url = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for name in names:
                if fresh:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                found = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not found:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


class ClusterStack(Stack):
    """The stack on a Temporal cluster of four processes on PostgreSQL.

    `postgres_url` names the server (its database part is ignored); every database this stack
    uses is `<prefix>_...` there: the cluster's two and one per service. `fresh` drops them first.
    start() builds the server on first use (minutes; cached after) and creates the schema."""

    title = "stack on a Temporal cluster"

    @property
    def on_cluster(self) -> bool:
        return not self.dev_server

    def __init__(
        self,
        postgres_url: str,
        prefix: str,
        *,
        env: Mapping[str, str] | None = None,
        fresh: bool = False,
        replicas: int = REPLICAS,
        temporal_only: bool = False,
        dev_server: bool = False,
        **options: Any,
    ) -> None:
        self.postgres_url = postgres_url
        self.prefix = prefix
        self.fresh = fresh
        self.replicas = replicas
        self.temporal_only = temporal_only
        # the same stack on the dev server: where the cluster cannot be built (make test-cluster
        # says why, then runs the same test here)
        self.dev_server = dev_server
        if temporal_only:
            options["migrate"] = False
        self.databases = Databases.on(postgres_url, prefix)
        env = {**(env or {}), **service_database_urls(postgres_url, prefix)}
        super().__init__(env=env, **options)
        # Stack.start() starts the children named here: the dev stack's, with the cluster's
        # processes and the workers' replicas instead of the dev server and its two workers
        self.only = frozenset(
            [f"temporal-{s}" for s in CLUSTER_SERVICES]
            + ["temporal", "mailbox", "twilio-sandbox", "nginx"]
            + [worker_name(q, r) for q in WORKER_QUEUES for r in range(1, replicas + 1)]
            + [api_name(s, r) for s in SERVICES for r in range(1, replicas + 1)]
        )
        self.build: Build | None = None
        self.ports: Ports | None = None
        self.configs: dict[str, Path] = {}

    def start(self) -> None:
        if not self.temporal_only:
            urls = service_database_urls(self.postgres_url, self.prefix).values()
            names = [make_url(u).database or "" for u in urls]
            asyncio.run(ensure_databases(self.postgres_url, names, fresh=self.fresh))
        if self.dev_server:
            super().start()
            return
        self.build = build()
        create_schema(self.build, self.databases, fresh=self.fresh)
        _, frontend = split_address(self.settings.temporal_address)
        self.ports = Ports.pick(frontend, free_ports(Ports.COUNT))
        self.configs = write_configs(
            self.settings.data_dir / "temporal-cluster", self.databases, self.ports
        )
        super().start()

    def urls(self) -> list[tuple[str, str]]:
        if self.dev_server:
            return super().urls()
        rows = [r for r in super().urls() if not r[0].startswith("Temporal")]
        if self.temporal_only:
            rows = []
        return [("Temporal gRPC (cluster frontend)", self.settings.temporal_address), *rows]

    def _infra_children(self) -> list[Child]:
        if self.dev_server:
            return super()._infra_children()
        assert self.build is not None and self.ports is not None
        s = self.settings
        ports = self.ports
        children = []
        for service in CLUSTER_SERVICES:
            if service == "frontend":
                ready = lambda _: namespace_ready(s.temporal_address, s.temporal_namespace)  # noqa: E731
            else:
                ready = _port_open(ports.grpc[service])
            children.append(
                Child(
                    f"temporal-{service}",
                    [],
                    STAGE_INFRA,
                    ready,
                    argv=server_argv(self.build, self.configs[service], service),
                )
            )
        if self.temporal_only:
            return children
        others = [c for c in super()._infra_children() if c.name != "temporal"]
        return [*children, *others]

    def _launch_and_wait(self, children: list[Child]) -> None:
        # On a new database the first server process writes the cluster's metadata: four started
        # at once raced to insert it, and the loser died on the duplicate key. The frontend goes
        # first, alone; the rest find the metadata there.
        first = [c for c in children if c.name == "temporal-frontend"]
        if first and len(children) > 1:
            super()._launch_and_wait(first)
            children = [c for c in children if c not in first]
        super()._launch_and_wait(children)

    def _app_children(self) -> list[Child]:
        if self.temporal_only:
            return []
        workers = [
            Child(
                worker_name(queue, replica),
                ["worker", queue],
                STAGE_APPS,
                lambda c: time.monotonic() - c.started_at >= WORKER_SETTLE_SECONDS,
                hold_until_ready=False,
            )
            for queue in WORKER_QUEUES
            for replica in range(1, self.replicas + 1)
        ]
        return [*self._api_children(), *workers]

    def _api_children(self) -> list[Child]:
        """REPLICAS of each API on ports of their own, and nginx on the APIs' usual ports."""
        nginx = nginx_binary()
        if nginx is None:
            raise ClusterError("nginx is not installed (apt-get install nginx; make does as root)")
        s = self.settings
        ports = iter(free_ports(len(SERVICES) * self.replicas))
        upstreams = {}
        children = []
        for service in SERVICES:
            replica_ports = [next(ports) for _ in range(self.replicas)]
            upstreams[service] = (s.port(service), replica_ports)
            for replica, port in enumerate(replica_ports, 1):
                children.append(
                    Child(
                        api_name(service, replica),
                        ["serve", service],
                        STAGE_APPS,
                        _healthz(f"http://127.0.0.1:{port}/healthz"),
                        env={f"CLOSEFLOW_{service.upper()}_PORT": str(port)},
                    )
                )
        config = nginx_config(s.data_dir / "nginx", upstreams)
        listening = [s.port(service) for service in SERVICES]
        children.append(
            Child(
                "nginx",
                [],
                STAGE_APPS,
                lambda _: all(tcp_open("127.0.0.1", p) for p in listening),
                argv=nginx_argv(nginx, config),
            )
        )
        return children

    def workers(self, queue: str) -> list[Child]:
        return [self.child(worker_name(queue, r)) for r in range(1, self.replicas + 1)]

    def api_replicas(self, service: str) -> list[Child]:
        return [self.child(api_name(service, r)) for r in range(1, self.replicas + 1)]


def _port_open(port: int) -> Any:
    return lambda _: tcp_open("127.0.0.1", port)


def _healthz(url: str) -> Any:
    return lambda _: http_ok(url)
