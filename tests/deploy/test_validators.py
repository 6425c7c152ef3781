"""deploy/ through the validators CI runs (issue 12), offline: kubernetes-validate --strict on
every Kubernetes manifest, check-jsonschema's compose-spec schema on compose.yaml, hadolint on the
Dockerfile. Each check also runs on a broken copy, so a validator that stopped checking fails here
too. A missing validator fails (tests/deploy/files.py: tool), it never skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.files import (
    COMPOSE,
    CUSTOM_API_GROUPS,
    DOCKERFILE,
    K8S_FILES,
    ROOT,
    k8s_docs,
    run,
    tool,
)

# The oldest Kubernetes minor closeflow's manifests claim (docs/operations.md#deploy) and the
# newest the validator bundles: a field added or removed in between fails one of the two.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


def kubernetes_validate(version: str, *paths: Path) -> tuple[int, str]:
    argv = [tool("kubernetes-validate"), "--strict", "--kubernetes-version", version]
    return run([*argv, *map(str, paths)])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    code, output = kubernetes_validate(version, *K8S_FILES)
    assert code == 0, output
    # every core resource was checked against a schema (a resource it has no schema for is only a
    # warning to the tool): only the custom resources may be skipped
    passed = re.findall(r"passed for resource (\S+)/(\S+)", output)
    core = [d for d in k8s_docs() if not d["apiVersion"].startswith(CUSTOM_API_GROUPS)]
    assert sorted(passed) == sorted((d["kind"].lower(), d["metadata"]["name"]) for d in core)
    unchecked = re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", output)
    assert {group for _, group in unchecked} <= {"keda.sh/v1alpha1"}, unchecked


def test_kubernetes_validate_refuses_an_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "apis.yaml"
    text = (ROOT / "deploy" / "k8s" / "apis.yaml").read_text()
    broken.write_text(text.replace("revisionHistoryLimit:", "revisionHistoryLimt:", 1))
    code, output = kubernetes_validate(KUBERNETES_VERSIONS[-1], broken)
    assert code != 0 and "revisionHistoryLimt" in output, output


def check_compose(path: Path) -> tuple[int, str]:
    return run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def test_compose_validates_against_the_compose_spec() -> None:
    code, output = check_compose(COMPOSE)
    assert code == 0, output


def test_the_compose_spec_check_refuses_an_unknown_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("restart:", "restrat:", 1))
    code, output = check_compose(broken)
    assert code != 0 and "restrat" in output, output


def hadolint(path: Path) -> tuple[int, str]:
    config = ROOT / ".hadolint.yaml"
    return run([tool("hadolint"), "--config", str(config), "--no-color", str(path)])


def test_dockerfile_passes_hadolint() -> None:
    code, output = hadolint(DOCKERFILE)
    assert code == 0, output


def test_hadolint_fails_on_any_finding(tmp_path: Path) -> None:
    # .hadolint.yaml's threshold is "style": an unpinned apt install (a warning) fails
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace(
            "RUN useradd",
            "RUN apt-get update && apt-get install -y --no-install-recommends curl\nRUN useradd",
            1,
        )
    )
    code, output = hadolint(broken)
    assert code != 0 and "DL3008" in output, output


def test_a_missing_validator_fails_the_suite_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match="is not installed"):
        tool("closeflow-no-such-validator")
