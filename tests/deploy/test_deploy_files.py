"""Static checks of deploy/ (no container engine here): every file parses, every CLOSEFLOW_*
variable is a real setting, every command is a real `closeflow` command with valid names.
The validators (kubernetes-validate, check-jsonschema, hadolint) run in test_validators.py."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from closeflow.cli import build_parser
from closeflow.registry import QUEUES
from shared.settings import OPTIONAL_SECRETS, SERVICES, Settings
from tests.deploy.files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S_FILES,
    ROOT,
    WORKER_SETTINGS,
    compose,
    filled,
    k8s_docs,
)
from tests.deploy.files import containers as k8s_containers

VARIABLE = re.compile(r"(?<![A-Za-z0-9_])CLOSEFLOW_[A-Z0-9_]+")
SETTINGS_VARS = {f"CLOSEFLOW_{name.upper()}" for name in Settings.model_fields}
# the manifests may name the workers' health/metrics/grace settings before they are merged
KNOWN_VARS = SETTINGS_VARS | WORKER_SETTINGS
DEV_ONLY = {"devstack", "bench"}  # bench drives the dev stack


def closeflow_compose_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if "closeflow" in str(svc.get("image", "")) or "build" in svc
    }


def environment_keys(environment: dict[str, Any] | list[str] | None) -> set[str]:
    if environment is None:
        return set()
    if isinstance(environment, dict):
        return set(environment)
    return {item.split("=", 1)[0] for item in environment}


def parse_command(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"not a valid closeflow command: {argv}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --- parsing ----------------------------------------------------------------------------------------


def test_deploy_files_exist_and_parse() -> None:
    assert COMPOSE.is_file() and DOCKERFILE.is_file() and (DEPLOY / "README.md").is_file()
    assert K8S_FILES, "no Kubernetes manifests"
    assert compose()["services"]
    for doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc


# --- variables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [COMPOSE, DOCKERFILE, DEPLOY / "example.env", *K8S_FILES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_closeflow_variable_is_a_setting(path: Path) -> None:
    used = set(VARIABLE.findall(path.read_text()))
    unknown = used - KNOWN_VARS
    assert not unknown, f"{path.name}: not Settings fields: {sorted(unknown)}"


def test_compose_passes_only_settings_to_closeflow() -> None:
    for name, svc in closeflow_compose_services().items():
        keys = environment_keys(svc.get("environment"))
        assert keys, f"{name} passes no environment"
        assert keys <= KNOWN_VARS, f"{name}: {sorted(keys - KNOWN_VARS)}"


def test_k8s_config_holds_only_settings() -> None:
    for doc in k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            assert keys <= KNOWN_VARS, f"{doc['metadata']['name']}: {keys - KNOWN_VARS}"
    for name, container in k8s_containers():
        keys = {item["name"] for item in container.get("env", [])}
        assert keys <= KNOWN_VARS, f"{name}: {keys - KNOWN_VARS}"


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} takes its default; a required ${VAR:?...} a filled-in value."""
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?(?::?\?[^}]*)?\}",
        lambda m: m.group(2) if m.group(2) is not None else filled(m.group(1)),
        value,
    )


def test_production_settings_are_complete() -> None:
    # The production validator refuses dev secrets: every deployment must set them all.
    required = {
        "CLOSEFLOW_ENVIRONMENT",
        "CLOSEFLOW_API_KEYS",
        "CLOSEFLOW_TWILIO_AUTH_TOKEN",
        "CLOSEFLOW_MAILGUN_SIGNING_KEY",
        "CLOSEFLOW_ERASURE_PEPPER",
        "CLOSEFLOW_BOOKING_LINK_SECRET",
        "CLOSEFLOW_SERVICE_TOKEN",
        "CLOSEFLOW_PAYLOAD_MASTER_KEYS",
        "CLOSEFLOW_POSTAL_ADDRESS",
        "CLOSEFLOW_TEMPORAL_ADDRESS",
        "CLOSEFLOW_HOST",
        *(f"CLOSEFLOW_{s.upper()}_DATABASE_URL" for s in SERVICES),
    }
    for name, svc in closeflow_compose_services().items():
        env = svc["environment"]
        assert required <= set(env), f"{name} misses {required - set(env)}"
        assert env["CLOSEFLOW_ENVIRONMENT"] == "production"
        # what compose passes, filled in, must satisfy the production checks
        values = {
            k.removeprefix("CLOSEFLOW_").lower(): _interpolate(str(v)) for k, v in env.items()
        }
        Settings(**values)
    k8s_keys: set[str] = set()
    for doc in k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            k8s_keys |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    assert required <= k8s_keys, f"k8s config misses {required - k8s_keys}"


# --- commands ---------------------------------------------------------------------------------------


def test_compose_commands_are_closeflow_commands() -> None:
    services = closeflow_compose_services()
    commands = {name: parse_command(list(svc["command"])) for name, svc in services.items()}
    served = sorted(a.service for a in commands.values() if a.command == "serve")
    queues = sorted(q for a in commands.values() if a.command == "worker" for q in a.queues)
    assert served == sorted(SERVICES)
    assert queues == sorted(QUEUES), "one worker per task queue"
    assert [n for n, a in commands.items() if a.command == "migrate"] == ["migrate"]


def test_compose_apps_wait_for_the_migration() -> None:
    for name, svc in closeflow_compose_services().items():
        if name == "migrate":
            assert svc["restart"] == "no"
            continue
        assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["temporal"]["condition"] == "service_healthy"


@pytest.mark.parametrize("setting", OPTIONAL_SECRETS)
def test_compose_lets_an_unused_providers_secret_stay_empty(setting: str) -> None:
    """example.env says an empty Mailgun signing key disables the Mailgun webhooks; compose
    required it (${VAR:?...}), so a deployment on SendGrid or Postmark could not start."""
    variable = f"CLOSEFLOW_{setting.upper()}"
    for name, svc in closeflow_compose_services().items():
        value = str(svc["environment"].get(variable, ""))
        assert ":?" not in value, f"{name}: {variable} is required: {value}"


def test_compose_runs_closeflow_locked_down_as_the_k8s_pods() -> None:
    """The k8s pods run on a read-only root with no capabilities, no privilege escalation and
    CPU and memory limits; the compose file, "the production shape on one host", gave the same
    image a writable root, the runtime's default capabilities and no limit at all."""
    for name, svc in closeflow_compose_services().items():
        assert svc.get("read_only") is True, name
        assert any(str(t).startswith("/tmp") for t in svc.get("tmpfs", [])), name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") and limits.get("cpus"), name


def test_compose_api_ports_match_settings() -> None:
    settings = Settings()
    for name, svc in closeflow_compose_services().items():
        args = parse_command(list(svc["command"]))
        if args.command != "serve":
            continue
        port = settings.port(args.service)
        # published on the host's loopback only: a TLS proxy in front (issue 11)
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"], name
        assert f"127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"]), name


def test_compose_databases_exist_in_the_init_script() -> None:
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    env = closeflow_compose_services()["migrate"]["environment"]
    for service in SERVICES:
        url = env[f"CLOSEFLOW_{service.upper()}_DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://")
        assert url.endswith(f"@postgres:5432/{service}")
        assert re.search(rf"^create_owned_database {service} \S+ {service}$", script, re.M)
    mounts = compose()["services"]["postgres"]["volumes"]
    assert any("init-databases.sh:/docker-entrypoint-initdb.d/" in m for m in mounts)


def test_k8s_commands_are_closeflow_commands() -> None:
    settings = Settings()
    served, queues, migrations = [], [], 0
    for name, container in k8s_containers():
        assert "closeflow" in container["image"], name
        assert "command" not in container, f"{name} must keep the image's ENTRYPOINT"
        args = parse_command(list(container["args"]))
        if args.command == "serve":
            served.append(args.service)
            ports = [p["containerPort"] for p in container["ports"]]
            assert ports == [settings.port(args.service)], name
        elif args.command == "worker":
            queues.extend(args.queues)
        else:
            assert args.command == "migrate", name
            migrations += 1
    assert sorted(served) == sorted(SERVICES)
    assert sorted(queues) == sorted(QUEUES)
    assert migrations == 1


def test_k8s_runs_several_replicas_of_apis_and_workers() -> None:
    # an autoscaler owns every Deployment's replica count (a count in the Deployment would be
    # reset by each `kubectl apply`), and never goes below two
    docs = k8s_docs()
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == len(SERVICES) + len(QUEUES)
    floors = {
        d["spec"]["scaleTargetRef"]["name"]: d["spec"]["minReplicas"]
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
    } | {
        d["spec"]["scaleTargetRef"]["name"]: d["spec"]["minReplicaCount"]
        for d in docs
        if d["kind"] == "ScaledObject"
    }
    for doc in deployments:
        name = doc["metadata"]["name"]
        assert "replicas" not in doc["spec"], name
        assert floors.get(name, 0) >= 2, f"{name}: no autoscaler keeping two replicas"
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    jobs = [d for d in k8s_docs() if d["kind"] == "Job"]
    assert [j["spec"]["template"]["spec"]["restartPolicy"] for j in jobs] == ["Never"]


def test_k8s_services_route_to_their_api() -> None:
    settings = Settings()
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in k8s_docs()
        if d["kind"] == "Deployment"
    }
    # closeflow-unpublished has no selector: it is where the Ingress sends what it must not proxy
    services = [d for d in k8s_docs() if d["kind"] == "Service" and d["spec"].get("selector")]
    assert len(services) == len(SERVICES)
    for svc in services:
        name = svc["metadata"]["name"].removeprefix("closeflow-")
        assert name in SERVICES
        assert svc["spec"]["selector"].items() <= pods[f"closeflow-{name}"].items()
        assert [p["port"] for p in svc["spec"]["ports"]] == [settings.port(name)]


# --- the image --------------------------------------------------------------------------------------


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    instructions = dockerfile_instructions()
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["closeflow"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["closeflow"] == "closeflow.cli:main"
    froms = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    # pinned to a patch release (a moving tag such as 3.11-slim rebuilds differently each time)
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image) for image in froms), froms


def test_dockerfile_copies_every_package_but_the_dev_only_ones() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert DEV_ONLY <= packages  # installed in dev (make install), so it must be listed
    copied = {
        shlex.split(rest)[0]
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and not rest.startswith("--from")
    }
    assert packages - DEV_ONLY <= copied, f"not copied into the image: {packages - copied}"
    assert not DEV_ONLY & copied, "the production image must not contain the dev stack"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{p}" in ignore for p in packages - DEV_ONLY)
    assert not any(f"!{p}" in ignore for p in DEV_ONLY)


def test_dockerfile_env_is_settings() -> None:
    env_lines = [rest for keyword, rest in dockerfile_instructions() if keyword == "ENV"]
    names = {item.split("=", 1)[0] for line in env_lines for item in shlex.split(line)}
    closeflow = {n for n in names if n.startswith("CLOSEFLOW_")}
    assert closeflow and closeflow <= SETTINGS_VARS
