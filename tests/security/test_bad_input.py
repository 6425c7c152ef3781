"""Issue 11, bad input: ids that cross a service boundary keep their shape (no path injection into
an internal call), and every integer and free string a request carries is bounded, so odd input is
a 422 naming the field, never a 500."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.outreach.prospects import ProspectDirectory
from shared.auth import API_KEY_HEADER
from shared.errors import AppError
from tests.support.apps import Api, ServiceApp, asking_prospecting
from tests.support.scenarios import fast_cadence
from tests.support.settings import API_KEY, make_settings

SERVICES = ("prospecting", "outreach", "deals", "referrals")
HUGE = "99999999999999999999"


def _field(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["field"] for d in response.json()["error"]["details"]]


async def test_oversized_numbers_and_strings_are_422s_naming_the_field(api: Api) -> None:
    outreach = await api("outreach")
    assert _field(await outreach.get(f"/cadences/c1?version={HUGE}")) == ["version"]
    assert _field(await outreach.get(f"/cadences/c1/migration?to_version={HUGE}")) == ["to_version"]
    assert _field(
        await outreach.post("/enrollments", json={"prospect_id": "a\u0010b", "cadence_id": "c1"})
    ) == ["prospect_id"]
    deals = await api("deals")
    assert _field(await deals.get(f"/deals?offset={HUGE}000")) == ["offset"]
    prospecting = await api("prospecting")
    person = {"first_name": "Ada", "email": "ada@example.com"}
    assert _field(
        await prospecting.post("/prospects", json={**person, "company_size": 10**30})
    ) == ["company_size"]
    assert _field(await prospecting.post("/prospects", json={**person, "timezone": "A" * 300})) == [
        "timezone"
    ]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:30:00-05:00"])
async def test_a_moment_with_no_utc_equivalent_is_a_422_naming_the_field(
    api: Api, moment: str
) -> None:
    """Converting it to UTC overflows the calendar: an OverflowError, a 500, before."""
    deals = await api("deals")
    meeting = {"starts_at": moment, "title": "Demo"}
    assert _field(await deals.post("/deals/d1/meetings", json=meeting)) == ["starts_at"]
    assert _field(await deals.patch("/deals/d1", json={"decision_deadline": moment})) == [
        "decision_deadline"
    ]
    outreach = await api("outreach")
    assert _field(await outreach.post("/tasks/t1/snooze", json={"until": moment})) == ["until"]
    assert _field(await outreach.post("/cadences/c1/simulate", json={"start_at": moment})) == [
        "start_at"
    ]


async def test_a_simulation_whose_timeline_runs_past_year_9999_is_a_422(api: Api) -> None:
    """The start is a moment, but the cadence's touches and its nurture fall after the calendar's
    end: their dates overflowed (OverflowError, a 500)."""
    outreach = await api("outreach")
    made = await outreach.post("/cadences", json=fast_cadence())
    assert made.status_code == 201, made.text
    simulate = f"/cadences/{made.json()['id']}/simulate"
    late = {"start_at": "9999-12-30T00:00:00Z", "timezone": "Europe/Berlin"}
    r = await outreach.post(simulate, json=late)
    assert _field(r) == ["start_at"]
    assert "year 9999" in r.json()["error"]["details"][0]["problem"]
    fine = await outreach.post(simulate, json={**late, "start_at": "2030-01-07T09:00:00Z"})
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("zone", ["posix/Europe/Berlin", "right/Europe/Berlin", "localtime"])
async def test_a_zone_name_no_prospect_could_be_in_is_a_422(api: Api, zone: str) -> None:
    """The zone resolver would ignore it (and `localtime` is the server's zone): refused where it
    comes in, with what to send instead, not accepted and then silently replaced."""
    prospecting = await api("prospecting")
    person = {"first_name": "Ada", "email": "ada@example.com", "timezone": zone}
    r = await prospecting.post("/prospects", json=person)
    assert _field(r) == ["timezone"]
    assert "use an IANA name such as Europe/Berlin" in r.json()["error"]["details"][0]["problem"]
    outreach = await api("outreach")
    assert _field(await outreach.post("/cadences/c1/simulate", json={"timezone": zone})) == [
        "timezone"
    ]


async def test_a_prospect_id_that_is_a_path_is_refused_at_enrollment(api: Api) -> None:
    outreach = await api("outreach")
    body = {"prospect_id": "../reps/0123456789abcdef0123456789abcdef", "cadence_id": "c1"}
    assert _field(await outreach.post("/enrollments", json=body)) == ["prospect_id"]


async def test_a_rep_keys_body_nested_too_deep_is_a_4xx(service_app: ServiceApp, api: Api) -> None:
    """A rep key's POST /enrollments names its prospect in the body: the access check reads it
    before FastAPI does when the content type is not JSON. Nested past the parser's limit it
    raised RecursionError there: a 500."""
    rep_key = "rep-key-of-rita-0123456789"
    app = await service_app("outreach", api_keys=f"{API_KEY}, rep:rita:{rep_key}")
    await asking_prospecting(service_app, app)
    outreach = await api(app, key=False)
    deep = b"[" * 5000 + b"]" * 5000
    for content_type in ("text/plain", "application/json"):
        answer = await outreach.post(
            "/enrollments",
            content=deep,
            headers={"content-type": content_type, API_KEY_HEADER: rep_key},
        )
        assert 400 <= answer.status_code < 500, (content_type, answer.text)


@pytest.mark.parametrize("ident", ["../reps/r1", "..", "a\u0010b", "a/b", "a?b", "a%2Fb"])
async def test_the_prospecting_client_never_sends_an_id_as_a_path(ident: str) -> None:
    """The internal client's own guard, behind the API's: an id of another shape is not found,
    and prospecting (a stand-in recording what it is asked) hears nothing."""
    asked: list[str] = []

    def prospecting(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.raw_path.decode())
        return httpx.Response(404)

    directory = ProspectDirectory("http://prospecting", "key", httpx.MockTransport(prospecting))
    with pytest.raises(AppError) as caught:
        await directory.contact(ident)
    assert caught.value.status == 404
    assert asked == []
    await directory.close()


async def test_a_prospecting_read_that_times_out_is_a_503_naming_the_timeout() -> None:
    def prospecting(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)  # httpx's timeouts carry no text

    directory = ProspectDirectory("http://prospecting", "key", httpx.MockTransport(prospecting))
    with pytest.raises(AppError) as caught:
        await directory.contact("a" * 32)
    assert caught.value.status == 503
    assert caught.value.code == "prospecting_unreachable"
    assert caught.value.message == "the prospecting service did not answer: ReadTimeout"
    await directory.close()


# an import's file: read as a stream of lines, any number of them, each bounded (MAX_LINE in
# services/prospecting/imports.py)
STREAMED = ("text/csv", "application/x-ndjson")


def _unbounded(schema: dict[str, Any], components: dict[str, Any], where: str) -> list[str]:
    """Integers without a maximum and strings without a maxLength (or an enum / a format that
    bounds them) anywhere in `schema`."""
    seen: set[str] = set()
    found: list[str] = []

    def walk(node: Any, at: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, at)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
            return
        kind = node.get("type")
        if kind == "integer" and "maximum" not in node and "exclusiveMaximum" not in node:
            found.append(f"{where} {at}: integer without maximum")
        if (
            kind == "string"
            and "maxLength" not in node
            and "enum" not in node
            and "const" not in node
            and node.get("format") not in ("date-time", "date", "binary", "time", "uuid")
        ):
            found.append(f"{where} {at}: string without maxLength")
        for key, child in node.items():
            if key == "properties" and isinstance(child, dict):
                for prop, sub in child.items():
                    walk(sub, f"{at}.{prop}")
            elif key == "anyOf" and any(c.get("type") == "number" for c in child):
                # a Decimal: number or numeric string, bounded by its max_digits
                walk([c for c in child if c.get("type") != "string"], at)
            elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
                walk(child, at)

    walk(schema, "")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_integer_and_string_a_request_carries_is_bounded(
    service: str, tmp_path: Path
) -> None:
    app = importlib.import_module(f"services.{service}.app").create_app(make_settings(tmp_path))
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    problems: list[str] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    continue  # a path segment is bounded by the URL and matched, not parsed
                problems += _unbounded(
                    parameter["schema"], components, f"{where} {parameter['name']}"
                )
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                if media_type in STREAMED:
                    continue
                problems += _unbounded(media.get("schema", {}), components, f"{where} body")
    assert problems == []


async def test_lists_and_objects_in_write_models_are_bounded_and_the_limit_is_named(
    api: Api,
) -> None:
    prospecting = await api("prospecting")
    person = {"first_name": "Ada", "email": "ada@example.com"}
    custom = {f"k{i}": "v" * 100 for i in range(200)}  # about 22 KB
    answer = await prospecting.post("/prospects", json={**person, "custom": custom})
    assert _field(answer) == ["custom"]
    assert "16384 bytes" in answer.json()["error"]["message"]
    outreach = await api("outreach")
    step = {"channel": "email", "subject": "Hi", "body": "Hello"}
    many = {"name": "huge", "steps": [step] * 101}
    answer = await outreach.post("/cadences", json=many)
    assert "steps" in _field(answer)
    assert "100" in answer.json()["error"]["message"]
    window = {"name": "w", "steps": [step, step], "send_window": {"days": [0] * 10_000}}
    answer = await outreach.post("/cadences", json=window)
    assert "send_window.days" in _field(answer)
    assert "7" in answer.json()["error"]["message"]
