"""The patch registry (workflows/journey/versions.py) is complete and every patch is proven.

A patch without a stored history that takes its new path is a guard nobody has replayed; a
`patched(...)` call that bypasses the registry is a patch nobody will retire.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from workflows.journey.versions import REGISTRY, Patch

HISTORIES = Path(__file__).parent / "histories"
WORKFLOWS = Path(__file__).parents[2] / "workflows"
PATCH_CALL = re.compile(r"\b(patched|deprecate_patch)\(([^()]*)\)")


def patch_markers(history: Path) -> set[str]:
    """The patch ids a stored history recorded (Temporal's "core_patch" markers)."""
    found: set[str] = set()
    for event in json.loads(history.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker is None or marker.get("markerName") != "core_patch":
            continue
        for payload in marker["details"]["patch-data"]["payloads"]:
            found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


@pytest.mark.parametrize("patch", list(Patch), ids=[p.value for p in Patch])
def test_every_patch_is_registered_with_a_covering_history(patch: Patch) -> None:
    record = REGISTRY.get(patch)
    assert record is not None, f"{patch.value} is not in versions.REGISTRY"
    assert record.histories, f"{patch.value} names no history"
    assert record.guards and record.retire_when
    for name in record.histories:
        path = HISTORIES / f"{name}.json"
        assert path.is_file(), f"{patch.value}: no stored history {path.name}"
        assert patch.value in patch_markers(path), f"{path.name} never took {patch.value}"


def test_patch_calls_name_registered_patches() -> None:
    calls = 0
    for source in sorted(WORKFLOWS.rglob("*.py")):
        text = source.read_text()
        for match in PATCH_CALL.finditer(text):
            where = f"{source.relative_to(WORKFLOWS)}:{text.count(chr(10), 0, match.start()) + 1}"
            argument = match.group(2).strip()
            if source.name == "versions.py" and argument in ("patch: Patch", "patch.value"):
                continue  # the registry's own function
            calls += 1
            member = re.fullmatch(r"Patch\.([A-Z_]+)", argument)
            assert member is not None, f"{where}: {match.group(0)} does not use the registry"
            assert member.group(1) in Patch.__members__, f"{where}: no such patch {argument}"
    assert calls >= len(Patch)  # the scan found the call sites


def test_the_scan_catches_a_bare_patch_id() -> None:
    bad = 'if workflow.patched("new-thing"):'
    match = PATCH_CALL.search(bad)
    assert match is not None and re.fullmatch(r"Patch\.([A-Z_]+)", match.group(2)) is None
