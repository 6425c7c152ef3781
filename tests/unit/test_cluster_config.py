"""The Temporal cluster's server configs (devstack/cluster.py), checked without building the server:
make test-cluster runs them on the real one."""

from __future__ import annotations

import json
from pathlib import Path

from closeflow.cli import main
from devstack.cluster import HISTORY_SHARDS, SERVICES, Databases, Ports, write_configs
from devstack.env import free_ports

PG = "postgresql+asyncpg://postgres:pw@127.0.0.1:55432/anything"


def test_four_processes_share_the_cluster_and_bind_no_port_twice(tmp_path: Path) -> None:
    ports = Ports.pick(7233, free_ports(Ports.COUNT))
    files = write_configs(tmp_path, Databases.on(PG, "cf"), ports)
    configs = {s: json.loads(files[s].read_text()) for s in SERVICES}
    assert set(configs) == {"frontend", "history", "matching", "worker"}

    bound = []
    for service, config in configs.items():
        rpc = config["services"][service]["rpc"]
        bound += [rpc["grpcPort"], rpc["membershipPort"]]
        if "httpPort" in rpc:
            bound.append(rpc["httpPort"])
        listen = config["global"]["metrics"]["prometheus"]["listenAddress"]
        bound.append(int(listen.rsplit(":", 1)[1]))
        assert "pprof" not in config["global"]  # one fixed pprof port would clash between them
    assert len(bound) == len(set(bound)) == Ports.COUNT + 1
    assert configs["frontend"]["services"]["frontend"]["rpc"]["grpcPort"] == 7233

    # what must agree across the processes: shards, databases, the other services' ports
    shared = {
        json.dumps({k: v for k, v in c.items() if k != "global"}, sort_keys=True)
        for c in configs.values()
    }
    assert len(shared) == 1
    persistence = configs["history"]["persistence"]
    assert persistence["numHistoryShards"] == HISTORY_SHARDS
    stores = {n: d["sql"] for n, d in persistence["datastores"].items()}
    assert {s["databaseName"] for s in stores.values()} == {"cf_temporal", "cf_temporal_visibility"}
    assert {(s["connectAddr"], s["user"], s["password"]) for s in stores.values()} == {
        ("127.0.0.1:55432", "postgres", "pw")
    }


def test_cluster_command_needs_a_postgres_server() -> None:
    assert main(["cluster"]) == 2
