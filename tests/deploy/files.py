"""deploy/ as the tests read it: paths, parsed manifests, and the validators' executables (issue 12).

Not a test module: the deploy tests share it, and no test module imports another."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.settings import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
# What `kubectl apply -f deploy/k8s/` applies (not recursive) ...
K8S_APPLIED = sorted(K8S.glob("*.yaml"))
# ... and the shape of the Secret, applied by hand from a filled-in copy.
K8S_EXAMPLES = sorted((K8S / "examples").glob("*.yaml"))
K8S_FILES = K8S_APPLIED + K8S_EXAMPLES
HELM_VALUES = K8S / "helm" / "temporal-values.yaml"
NAMESPACE = "closeflow"
# custom resources: kubernetes-validate has no schema for them (tests/deploy/test_manifests.py
# checks them against the fields their project documents)
CUSTOM_API_GROUPS = ("keda.sh/",)

# What an operator fills in for a secret: a generated value (production refuses placeholders
# and short secrets, issue 11); API keys carry their role.
FILLED = "R7tY2wK5mB9cF4hJ6dS1aGZq8vN3xL0p"


def filled(setting: str) -> str:
    """What an operator fills in for a required setting: a generated secret, keys with their
    role, master keys with their id, public https addresses."""
    if setting == "CLOSEFLOW_API_KEYS":
        return f"admin:{FILLED}"
    if setting == "CLOSEFLOW_PAYLOAD_MASTER_KEYS":
        return PRODUCTION["payload_master_keys"]
    if setting == "CLOSEFLOW_SERVICE_TOKEN":
        return f"svc{FILLED}"  # must differ from every API key: no person may hold it
    if setting.endswith("_PUBLIC_URL"):  # the TLS proxy's public address of that service
        service = setting.removeprefix("CLOSEFLOW_").removesuffix("_PUBLIC_URL").lower()
        return f"https://{service}.closeflow-customer.com"
    return FILLED


# Settings of the workers' health, metrics and graceful shutdown (issue 12), named with the
# helper that adds them to shared/settings.py: the manifests use them already.
WORKER_SETTINGS = {
    "CLOSEFLOW_WORKER_HEALTH_PORT",
    "CLOSEFLOW_WORKER_METRICS_PORT",
    "CLOSEFLOW_WORKER_GRACE_SECONDS",
}


# libyaml's loader when PyYAML has it: the manifests are parsed by many tests
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _parsed(path: Path) -> tuple[Any, ...]:
    return tuple(doc for doc in yaml.load_all(path.read_text(), Loader=_LOADER) if doc)


def load_all(path: Path) -> list[dict[str, Any]]:
    """The documents of a YAML file (a fresh copy each call: a test may change what it gets)."""
    return copy.deepcopy(list(_parsed(path)))


def helm_values() -> dict[str, Any]:
    """The values given to Temporal's Helm chart."""
    (values,) = load_all(HELM_VALUES)
    assert isinstance(values, dict)
    return values


def compose() -> dict[str, Any]:
    (data,) = load_all(COMPOSE)
    assert isinstance(data, dict)
    return data


def k8s_docs(paths: Sequence[Path] = K8S_FILES) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in load_all(path)]


def of_kind(kind: str, docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [d for d in (k8s_docs() if docs is None else docs) if d["kind"] == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(kind)}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            yield name, container


def config_map() -> dict[str, str]:
    (doc,) = of_kind("ConfigMap")
    return {k: str(v) for k, v in doc["data"].items()}


# --- the validators ---------------------------------------------------------------------------


def tool(name: str) -> str:
    """A validator's executable: next to this Python (the venv), else on PATH. Missing is a
    failure, never a skip: CI must not pass a deploy/ it did not check."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make install` (pyproject.toml's dev extras)")
    return found


def run(argv: Sequence[str]) -> tuple[int, str]:
    """A validator's exit code and everything it printed (NO_COLOR: plain findings)."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return result.returncode, result.stdout + result.stderr


def quantity(value: str | int) -> float:
    """CPU in cores or memory in bytes, from Kubernetes' notation."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(value))
    assert match, value
    return float(match.group(1)) * units.get(match.group(2), 1)
