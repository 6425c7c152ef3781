"""Issue 11: the production image installs requirements.lock (`make lock`) with
`pip install --require-hashes --no-deps`: every runtime dependency of pyproject, and everything
they pull in, pinned to a version pyproject allows and with the sha256 of its files; no dev-only
package (the mail sandbox, test tools) in it. Regenerate with `make lock` when this fails."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
# what the image runs on: CPython 3.11 on Linux
IMAGE = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
DEV_ONLY = {"aiosmtpd", "pytest", "playwright", "schemathesis", "hypothesis", "mypy", "ruff", "uv"}


def _pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": project["dependencies"], "dev": project["optional-dependencies"]["dev"]}


def _lock() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes), one entry per `name==version [; marker]` block."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", block)
        if head:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            pins[canonicalize_name(head[1])] = (Version(head[2]), hashes)
    return pins


def _needed(requirement: Requirement, seen: set[str]) -> None:
    """The requirement's distribution and, through the installed metadata, all it pulls in."""
    name = canonicalize_name(requirement.name)
    if name in seen:
        return
    seen.add(name)
    for text in metadata.requires(requirement.name) or []:
        child = Requirement(text)
        wanted = [{**IMAGE, "extra": extra} for extra in requirement.extras or {""}]
        if child.marker is None or any(child.marker.evaluate(env) for env in wanted):
            _needed(child, seen)


def test_every_runtime_dependency_is_pinned_within_pyproject_and_hashed() -> None:
    pins = _lock()
    assert pins, "requirements.lock is empty"
    for text in _pyproject()["runtime"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject wants {requirement.specifier}: "
            "run `make lock`"
        )
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert unhashed == []


def test_everything_the_runtime_dependencies_pull_in_is_locked() -> None:
    needed: set[str] = set()
    for text in _pyproject()["runtime"]:
        _needed(Requirement(text), needed)
    assert sorted(needed - set(_lock())) == []


def test_no_dev_only_package_is_in_the_lock() -> None:
    dev = {canonicalize_name(Requirement(t).name) for t in _pyproject()["dev"]}
    assert DEV_ONLY <= dev, "DEV_ONLY names dev extras of pyproject"
    assert sorted(DEV_ONLY & set(_lock())) == []
