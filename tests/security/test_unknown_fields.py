"""Issue 11: our own write models refuse unknown fields. `PUT /icp {"rules": ...}` (a misspelt
`criteria`) answered 200, replaced the ICP with no criteria and rescored every prospect; now it is
a 422 naming the field. Provider webhooks read their raw payloads and keep accepting any field."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import Api
from tests.support.settings import make_settings

ON_SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
SERVICES = ("prospecting", "outreach", "deals", "referrals")


def _nodes(node: Any, components: dict[str, Any], seen: set[str]) -> Iterator[dict[str, Any]]:
    """Every schema object under `node`, each referenced component once."""
    if isinstance(node, list):
        for item in node:
            yield from _nodes(item, components, seen)
    elif isinstance(node, dict):
        name = str(node.get("$ref", "")).rsplit("/", 1)[-1]
        if name:
            if name not in seen:
                seen.add(name)
                yield from _nodes(components[name], components, seen)
            return
        yield node
        for child in node.values():
            yield from _nodes(child, components, seen)


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_body_refuses_unknown_fields(service: str, tmp_path: Path) -> None:
    """Every body a person or tool sends; `/internal/*` bodies (service to service) ignore unknown
    fields instead, so a newer sender during a rolling deploy is not refused by an older receiver."""
    app = importlib.import_module(f"services.{service}.app").create_app(make_settings(tmp_path))
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    problems: list[str] = []
    bodies = 0
    for path, operations in spec["paths"].items():
        internal = path.startswith("/internal/")
        for method, operation in operations.items():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                bodies += 1
                problems += [
                    f"{method} {path}: {node.get('title', 'body')} "
                    + ("refuses" if internal else "accepts")
                    + " unknown fields"
                    for node in _nodes(media.get("schema", {}), components, set())
                    # an object's schema, not a branch of a rule between its fields ("email
                    # or phone": shared/people.py) that names some of them
                    if node.get("type") == "object"
                    and "properties" in node
                    and (node.get("additionalProperties") is not False) != internal
                ]
    assert bodies > 0  # the walk saw the service's request bodies
    assert problems == []


@ON_SQLITE
async def test_a_misspelt_icp_key_is_a_422_and_the_icp_stays(api: Api) -> None:
    prospecting = await api("prospecting")
    rule = {"name": "saas", "field": "industry", "kind": "in", "values": ["saas"], "weight": 50}
    criteria = {"criteria": [rule]}
    assert (await prospecting.put("/icp", json=criteria)).status_code == 200, "setup"
    before = (await prospecting.get("/icp")).json()
    answer = await prospecting.put("/icp", json={"rules": criteria["criteria"]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert [d["field"] for d in error["details"]] == ["rules"]
    assert "unknown field" in error["message"]
    assert (await prospecting.get("/icp")).json() == before


@ON_SQLITE
async def test_an_unknown_field_in_a_nested_object_is_named(api: Api) -> None:
    outreach = await api("outreach")
    step = {"channel": "email", "subject": "Hi", "body": "Hello", "delay": 3}
    answer = await outreach.post("/cadences", json={"name": "c", "steps": [step, step]})
    assert answer.status_code == 422, answer.text
    assert "steps[0].delay" in [d["field"] for d in answer.json()["error"]["details"]]
