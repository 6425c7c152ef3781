"""Static checks of deploy/ (no container engine here): every file parses, every CLOSEFLOW_*
variable is a real setting, every command is a real `closeflow` command with valid names."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from closeflow.cli import build_parser
from closeflow.registry import QUEUES
from shared.settings import SERVICES, Settings
from tests.support.settings import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])CLOSEFLOW_[A-Z0-9_]+")
SETTINGS_VARS = {f"CLOSEFLOW_{name.upper()}" for name in Settings.model_fields}
DEV_ONLY = {"devstack", "bench"}  # bench drives the dev stack


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in K8S_FILES:
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def closeflow_compose_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if "closeflow" in str(svc.get("image", "")) or "build" in svc
    }


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s_docs():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            yield doc["metadata"]["name"], container


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
    unknown = used - SETTINGS_VARS
    assert not unknown, f"{path.name}: not Settings fields: {sorted(unknown)}"


def test_compose_passes_only_settings_to_closeflow() -> None:
    for name, svc in closeflow_compose_services().items():
        keys = environment_keys(svc.get("environment"))
        assert keys, f"{name} passes no environment"
        assert keys <= SETTINGS_VARS, f"{name}: {sorted(keys - SETTINGS_VARS)}"


def test_k8s_config_holds_only_settings() -> None:
    for doc in k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            assert keys <= SETTINGS_VARS, f"{doc['metadata']['name']}: {keys - SETTINGS_VARS}"
    for name, container in k8s_containers():
        keys = {item["name"] for item in container.get("env", [])}
        assert keys <= SETTINGS_VARS, f"{name}: {keys - SETTINGS_VARS}"


# What an operator fills in for a required ${VAR:?...}: a generated secret (production refuses
# placeholders and short secrets, issue 11), API keys with their role.
FILLED = "R7tY2wK5mB9cF4hJ6dS1aGZq8vN3xL0p"


FILLED_AS = {
    "CLOSEFLOW_API_KEYS": f"admin:{FILLED}",
    "CLOSEFLOW_PAYLOAD_MASTER_KEYS": PRODUCTION["payload_master_keys"],
}


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} takes its default; a required ${VAR:?...} a filled-in value."""
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?(?::?\?[^}]*)?\}",
        lambda m: m.group(2) if m.group(2) is not None else FILLED_AS.get(m.group(1), FILLED),
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


def test_compose_api_ports_match_settings() -> None:
    settings = Settings()
    for name, svc in closeflow_compose_services().items():
        args = parse_command(list(svc["command"]))
        if args.command != "serve":
            continue
        port = settings.port(args.service)
        assert svc["ports"] == [f"{port}:{port}"], name
        assert f"127.0.0.1:{port}/healthz" in " ".join(svc["healthcheck"]["test"]), name


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
    deployments = [d for d in k8s_docs() if d["kind"] == "Deployment"]
    assert len(deployments) == len(SERVICES) + len(QUEUES)
    for doc in deployments:
        assert doc["spec"]["replicas"] > 1, doc["metadata"]["name"]
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
    services = [d for d in k8s_docs() if d["kind"] == "Service"]
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
    assert froms[-1] == "python:3.11-slim"


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
