"""What a request body's OpenAPI states beyond pydantic's own schema (issue 13): the rules our
validators enforce in code (an address's shape, "not blank", no NUL), written into the schema so
that a client, and schemathesis generating bodies from it, can tell a valid body before sending
it. Documentation only: the validators beside these annotations still decide."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# PostgreSQL text cannot hold a NUL: every write model refuses one (shared.requests.WriteModel)
NO_NUL = "^[^\\u0000]*$"
# a single line (a header's value), no NUL
ONE_LINE = "^[^\\u0000\\r\\n]*$"
# at least one character that is not white space (what survives the validator's str.strip: the
# separators U+001C-U+001F and U+0085 too, which JSON Schema's \s leaves out), no NUL
NOT_BLANK = "^[^\\u0000]*[^\\s\\u001c-\\u001f\\u0085\\u0000][^\\u0000]*$"
# where the server may send requests (shared.outbound.check_url): http or https, a host, no user
# name or password; the server refuses more (internal addresses, hosts outside an allow-list)
HTTP_URL: dict[str, Any] = {
    "format": "uri",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\u0000@/?#]+([/?#][^\\u0000]*)?$",
    "examples": ["https://hooks.example.com/closeflow"],
}
# keys that already say what a string holds: a NUL pattern beside them adds nothing or conflicts
_SAYS_WHAT = ("pattern", "format", "enum", "const")


@dataclass(frozen=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class Documented:
    """Annotated metadata: these keys merged into the JSON schema of the type it annotates."""

    extra: Mapping[str, Any] = field(default_factory=dict)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        handler.resolve_ref_schema(schema).update(self.extra)
        return schema


# a value of free fields, as far as a schema without recursion can say: text without NUL, a
# number, true/false, null, or a list or an object of those. Deeper values are taken too
# (held to the same NUL rule); the whole is bounded by its model (a prospect's `custom`: 16 KiB).
_SCALAR: list[dict[str, Any]] = [
    {"type": "string", "pattern": NO_NUL, "maxLength": 16 * 1024},
    {"type": ["number", "boolean", "null"]},
]
_KEY = {"pattern": NO_NUL, "maxLength": 1024}
FreeFields = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": _KEY,
            "additionalProperties": {
                "anyOf": [
                    *_SCALAR,
                    {"type": "array", "items": {"anyOf": _SCALAR}},
                    {
                        "type": "object",
                        "propertyNames": _KEY,
                        "additionalProperties": {"anyOf": _SCALAR},
                    },
                ]
            },
        }
    ),
]


def refuse_nul_in_strings(schema: JsonSchemaValue) -> None:
    """Give every plain string among a model's properties (in a list or beside null too) the
    NUL-free pattern it is held to."""
    for prop in schema.get("properties", {}).values():
        _no_nul(prop)


def _no_nul(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not any(k in node for k in _SAYS_WHAT):
        node["pattern"] = NO_NUL
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for child in node.get(key, []):
            _no_nul(child)
    _no_nul(node.get("items"))
