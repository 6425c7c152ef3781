"""Temporal in the deploy files (issue 12): compose runs temporalio/server after a temporalio/admin-
tools schema job (not the deprecated auto-setup image); Kubernetes uses Temporal's official Helm
chart with values that set real keys of that chart; both fix the same history shard count, pin
the same images, and ask closeflow for a client certificate (mTLS)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.cluster import PINNED_VERSION
from devstack.temporal import DYNAMIC_CONFIG_FILE, production_dynamic_config, temporal_binary
from tests.deploy.files import (
    DEPLOY,
    HELM_VALUES,
    compose,
    config_map,
    helm_values,
    quantity,
)

TEMPORAL_IMAGES = ("temporalio/server", "temporalio/admin-tools", "temporalio/ui")
# a release (PostgreSQL counts major.minor, the others major.minor.patch), digest optional
PINNED = re.compile(r"[\w./-]+:\d+\.\d+(\.\d+)?(@sha256:[0-9a-f]{64})?")


def image_tag(image: str) -> tuple[str, str]:
    name, _, tag = image.partition(":")
    return name, tag.split("@")[0]


# --- compose ------------------------------------------------------------------------------------


def test_compose_runs_the_temporal_server_after_its_schema_job() -> None:
    services = compose()["services"]
    images = {name: str(svc.get("image", "")) for name, svc in services.items()}
    assert not [n for n, image in images.items() if "auto-setup" in image]
    server = services["temporal"]
    assert image_tag(server["image"])[0] == "temporalio/server"
    schema = services["temporal-schema"]
    assert image_tag(schema["image"]) == ("temporalio/admin-tools", image_tag(server["image"])[1])
    assert server["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }
    # Temporal's own tool, on both of its databases, from the schema files in the image
    script = schema["command"][0]
    assert "temporal-sql-tool setup-schema -v 0.0" in script
    assert "temporal-sql-tool update-schema" in script
    assert "/etc/temporal/schema/postgresql/v12/$$schema/versioned" in script
    assert "for schema in temporal visibility" in script
    assert schema["environment"]["SQL_PLUGIN"] == server["environment"]["DB"] == "postgres12"


def test_compose_and_helm_fix_the_same_history_shard_count() -> None:
    shards = compose()["services"]["temporal"]["environment"]["NUM_HISTORY_SHARDS"]
    helm = helm_values()["server"]["config"]["persistence"]["numHistoryShards"]
    assert int(shards) == helm == 512


def test_compose_images_are_pinned_and_ports_are_loopback_only() -> None:
    for name, svc in compose()["services"].items():
        image = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(svc["image"]))  # the default
        assert PINNED.fullmatch(image), f"{name}: {image} is not pinned to a release"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_workers_stop_after_their_grace_period() -> None:
    for name, svc in compose()["services"].items():
        if svc.get("command", [None])[0] != "worker":
            continue
        grace = int(svc["environment"]["CLOSEFLOW_WORKER_GRACE_SECONDS"])
        assert int(svc["stop_grace_period"].removesuffix("s")) >= grace + 10, name
        assert "/readyz" in " ".join(svc["healthcheck"]["test"]), name


def test_compose_apps_use_the_namespace_the_job_creates() -> None:
    services = compose()["services"]
    script = services["temporal-namespace"]["command"][0]
    for name, svc in services.items():
        env = svc.get("environment", {})
        if "CLOSEFLOW_TEMPORAL_NAMESPACE" in env and name != "migrate":
            namespace = env["CLOSEFLOW_TEMPORAL_NAMESPACE"]
            assert f"namespace create --namespace {namespace}" in script
            assert svc["depends_on"]["temporal-namespace"] == {
                "condition": "service_completed_successfully"
            }


# --- the Helm chart's values ---------------------------------------------------------------------

# Keys of the official chart's values.yaml (temporalio/helm-charts, chart "temporal" 1.6.0) that
# these values set. Below a PASSTHROUGH key the chart copies the value as it is (Temporal's server
# config, or a Kubernetes object), so it is checked elsewhere or not at all.
CHART_KEYS = {
    "server",
    "server.image",
    "server.image.repository",
    "server.image.tag",
    "server.config",
    "server.config.logLevel",
    "server.config.persistence",
    "server.config.persistence.defaultStore",
    "server.config.persistence.visibilityStore",
    "server.config.persistence.numHistoryShards",
    "server.config.persistence.datastores",
    "server.config.namespaces",
    "server.config.namespaces.create",
    "server.config.namespaces.namespace",
    "server.config.tls",  # Temporal's TLS config, copied into the server config as it is
    "server.additionalVolumes",
    "server.additionalVolumeMounts",
    "server.securityContext",
    "server.resources",
    *(
        f"server.{service}.{key}"
        for service in ("frontend", "history", "matching", "worker")
        for key in (
            "replicaCount",
            "podDisruptionBudget",
            "topologySpreadConstraints",
            "resources",
            "additionalEnv",
        )
    ),
    "server.dynamicConfig",  # Temporal's dynamic config, written into its ConfigMap as it is
    "server.frontend",
    "server.history",
    "server.matching",
    "server.worker",
    "admintools",
    "admintools.image",
    "admintools.image.repository",
    "admintools.image.tag",
    "admintools.additionalEnv",
    "admintools.additionalVolumes",
    "admintools.additionalVolumeMounts",
    "web",
    "web.image",
    "web.image.repository",
    "web.image.tag",
    "web.replicaCount",
    "web.additionalEnv",
    "web.additionalVolumes",
    "web.additionalVolumeMounts",
    "schema",
    "schema.useHelmHooks",
}
PASSTHROUGH = (
    "server.config.tls",
    "server.dynamicConfig",
    ".additionalVolumes",
    ".additionalVolumeMounts",
    ".additionalEnv",
    "server.config.persistence.datastores",
    "server.config.namespaces.namespace",
    "server.securityContext",
    "server.resources",
    ".podDisruptionBudget",
    ".topologySpreadConstraints",
    ".resources",
)
# a SQL datastore as the chart reads it: Temporal's server config plus the chart's own
# existingSecret/secretKey and createDatabase/manageSchema
SQL_DATASTORE_KEYS = {
    "createDatabase",
    "manageSchema",
    "pluginName",
    "databaseName",
    "connectAddr",
    "connectProtocol",
    "user",
    "existingSecret",
    "secretKey",
    "maxConns",
    "maxIdleConns",
    "maxConnLifetime",
    "tls",
}


def key_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and not path.endswith(PASSTHROUGH):
            yield from key_paths(value, f"{path}.")


def test_helm_values_set_only_keys_of_the_chart() -> None:
    unknown = sorted(set(key_paths(helm_values())) - CHART_KEYS)
    assert not unknown, f"not keys of Temporal's chart 1.6.0: {unknown}"


def test_helm_values_put_both_stores_on_external_postgresql() -> None:
    persistence = helm_values()["server"]["config"]["persistence"]
    stores = persistence["datastores"]
    assert {persistence["defaultStore"], persistence["visibilityStore"]} == set(stores)
    for name, store in stores.items():
        (sql,) = store.values()
        assert set(store) == {"sql"}, f"{name}: only SQL (no Cassandra, no Elasticsearch)"
        assert set(sql) <= SQL_DATASTORE_KEYS, name
        assert sql["pluginName"] == "postgres12"
        # the operator creates the databases; the chart's admin-tools job manages the schema
        assert sql["createDatabase"] is False and sql["manageSchema"] is True
        assert "password" not in sql and sql["existingSecret"], "the password from a Secret"
    assert {s["sql"]["databaseName"] for s in stores.values()} == {
        "temporal",
        "temporal_visibility",
    }


def test_helm_values_bundle_nothing_else() -> None:
    # the chart's 1.x has no subcharts; keys from the old ones would be silently ignored
    assert not {"cassandra", "elasticsearch", "prometheus", "grafana", "mysql"} & set(helm_values())


def test_helm_values_pin_the_images_compose_uses() -> None:
    values = helm_values()
    helm_images = {
        values[part]["image"]["repository"]: str(values[part]["image"]["tag"])
        for part in ("server", "admintools", "web")
    }
    compose_images = dict(
        image_tag(str(svc["image"]))
        for svc in compose()["services"].values()
        if str(svc.get("image", "")).startswith(TEMPORAL_IMAGES)
    )
    assert helm_images == compose_images
    assert set(helm_images) == set(TEMPORAL_IMAGES)


def test_compose_helm_and_the_cluster_build_run_one_temporal_release() -> None:
    """devstack/cluster.py's PINNED_VERSION names the release (what `make test-cluster` runs);
    the server and admin-tools images of compose and of the Helm values are that release."""
    release = PINNED_VERSION.removeprefix("v")
    values = helm_values()
    assert {part: str(values[part]["image"]["tag"]) for part in ("server", "admintools")} == {
        "server": release,
        "admintools": release,
    }
    server_images = {
        image_tag(str(svc["image"]))
        for svc in compose()["services"].values()
        if str(svc.get("image", "")).startswith(TEMPORAL_IMAGES[:2])
    }
    assert server_images == {("temporalio/server", release), ("temporalio/admin-tools", release)}
    assert f"Temporal server\n# {release}," in HELM_VALUES.read_text()  # its header says so


def test_helm_values_require_closeflows_client_certificate() -> None:
    values = helm_values()
    tls = values["server"]["config"]["tls"]  # chart 1.6.0 takes Temporal's own TLS config
    assert tls["frontend"]["server"]["requireClientAuth"] is True
    # the chart needs internode TLS for its own components once clients must show certificates
    assert tls["internode"]["server"]["requireClientAuth"] is True
    # every file the config names is in a Secret mounted where it says
    mounts = {m["name"]: m["mountPath"] for m in values["server"]["additionalVolumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in values["server"]["additionalVolumes"]}
    assert set(mounts) == set(secrets)
    for side in ("internode", "frontend"):
        server, client = tls[side]["server"], tls[side]["client"]
        for path in (server["certFile"], server["keyFile"], *server["clientCaFiles"]):
            assert path.rsplit("/", 1)[0] in mounts.values(), path
        assert client["rootCaFiles"] == server["clientCaFiles"]
    web = {e["name"]: e["value"] for e in values["web"]["additionalEnv"]}
    assert web["TEMPORAL_TLS_SERVER_NAME"] == tls["frontend"]["client"]["serverName"]
    config = config_map()
    frontend = tls["frontend"]["client"]
    assert frontend["serverName"] == config["CLOSEFLOW_TEMPORAL_TLS_SERVER_NAME"]
    assert config["CLOSEFLOW_TEMPORAL_ADDRESS"].startswith("temporal-frontend.temporal.svc")
    namespaces = values["server"]["config"]["namespaces"]
    assert namespaces["create"] is True
    assert config["CLOSEFLOW_TEMPORAL_NAMESPACE"] in {n["name"] for n in namespaces["namespace"]}


@pytest.mark.parametrize("service", ["frontend", "history", "matching", "worker"])
def test_helm_values_run_each_temporal_service_replicated(service: str) -> None:
    values = helm_values()["server"][service]
    assert values["replicaCount"] >= 2
    assert values["podDisruptionBudget"]["minAvailable"] < values["replicaCount"]
    assert values["topologySpreadConstraints"]


def test_the_schema_job_sets_up_then_updates_both_databases(tmp_path: Path) -> None:
    # the job's script as the container's /bin/sh runs it (compose turns $$ into $), with a
    # stand-in temporal-sql-tool that records the database and arguments of each call
    script = compose()["services"]["temporal-schema"]["command"][0].replace("$$", "$")
    calls = tmp_path / "calls"
    stand_in = tmp_path / "temporal-sql-tool"
    stand_in.write_text(f'#!/bin/sh\necho "$SQL_DATABASE $*" >> {calls}\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    schemas = "/etc/temporal/schema/postgresql/v12"
    assert calls.read_text().splitlines() == [
        "temporal setup-schema -v 0.0",
        f"temporal update-schema --schema-dir {schemas}/temporal/versioned",
        "temporal_visibility setup-schema -v 0.0",
        f"temporal_visibility update-schema --schema-dir {schemas}/visibility/versioned",
    ]


def test_a_failing_schema_step_fails_the_job(tmp_path: Path) -> None:
    # set -e: the server must not start on a half-made schema
    script = compose()["services"]["temporal-schema"]["command"][0].replace("$$", "$")
    stand_in = tmp_path / "temporal-sql-tool"
    stand_in.write_text("#!/bin/sh\nexit 3\n")
    stand_in.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(["sh", "-c", script], env=env, check=False, timeout=30)
    assert result.returncode == 3


@pytest.mark.parametrize(
    ("exists", "calls"), [(True, ["describe"]), (False, ["describe", "create"])]
)
def test_the_namespace_job_creates_the_namespace_once(
    tmp_path: Path, exists: bool, calls: list[str]
) -> None:
    script = compose()["services"]["temporal-namespace"]["command"][0].replace("$$", "$")
    log = tmp_path / "calls"
    stand_in = tmp_path / "temporal"
    describe_status = 0 if exists else 1
    stand_in.write_text(
        f'#!/bin/sh\necho "$3" >> {log}\n[ "$3" = describe ] && exit {describe_status}\nexit 0\n'
    )
    stand_in.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    assert log.read_text().split() == calls


# --- the history cache ---------------------------------------------------------------------------

# Resident memory per journey in the history service's cache, measured on the dev server (the
# same history code): `make bench-inflight` to 5,000 journeys with and without the cache bounded
# to 1,000 (434 - 331 MB for 4,000 entries), docs/benchmarks.md.
KB_PER_CACHED_JOURNEY = 25.7
GO_HEAP_ROOM = 2  # Go's collector lets the heap reach twice the live data (GOGC=100)
# history.eventsCacheMaxSizeBytes, Temporal's default: each shard's cache of history events
EVENTS_CACHE_PER_SHARD = 512 * 1024


def test_compose_and_helm_run_the_dynamic_config_of_the_file() -> None:
    assert helm_values()["server"]["dynamicConfig"] == production_dynamic_config()
    temporal = compose()["services"]["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    (mount,) = (v for v in temporal["volumes"] if v.endswith(f":{path}:ro"))
    assert (DEPLOY / mount.split(":")[0]).resolve() == DYNAMIC_CONFIG_FILE


def test_the_history_cache_fits_the_history_pods_memory() -> None:
    """Temporal's default bound (128,000 journeys, dropped only when the cache is full) grows a
    history pod past its limit as journeys accumulate over weeks; the bound set here keeps the
    full cache, with the room Go's collector takes, under Go's soft limit, which sits below the
    pod's; idle entries are dropped."""
    values = helm_values()
    history = values["server"]["history"]
    limit = quantity(history["resources"]["limits"]["memory"])
    env = {e["name"]: e["value"] for e in history["additionalEnv"]}
    soft = quantity(env["GOMEMLIMIT"].removesuffix("B"))  # Go writes MiB where Kubernetes has Mi
    assert limit * 0.8 <= soft < limit

    production = production_dynamic_config()
    # the caches that do not grow with the journeys, full: every shard's events on one pod (the
    # others down), the replication cache (docs/benchmarks.md, "Soak")
    shards = values["server"]["config"]["persistence"]["numHistoryShards"]
    (xdc,) = production["history.xdcCacheMaxSizeBytes"]
    fixed = shards * EVENTS_CACHE_PER_SHARD + xdc["value"]

    def heap(entries: int) -> float:
        return (entries * KB_PER_CACHED_JOURNEY * 1024 + fixed) * GO_HEAP_ROOM

    (cache,) = production["history.hostLevelCacheMaxSize"]
    assert heap(cache["value"]) <= soft
    assert heap(128_000) > limit  # why Temporal's default would not do
    (evict,) = production["history.cacheBackgroundEvict"]
    assert evict["value"]["Enabled"] is True


def test_the_dynamic_config_keys_are_known_to_temporals_server() -> None:
    """Temporal ignores a key it does not know (a typo reads like a setting that did not help):
    every key is one the dev server's history code registers (its binary holds the names)."""
    keys = set(production_dynamic_config())
    binary = Path(temporal_binary()).read_bytes()
    assert keys and not [k for k in keys if k.encode() not in binary]
