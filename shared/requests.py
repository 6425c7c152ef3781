"""The base of every request body our own API reads (issue 11).

An unknown field is refused with a 422 naming it instead of being dropped: a misspelt key
(`PUT /icp {"rules": ...}` for `criteria`) must not read as "set this to its default". Provider
webhooks do not use these models: providers add fields to their payloads without notice; they
parse their bodies with parse_json, which turns whatever a stranger can send into InvalidJson.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shared.json_schema import refuse_nul_in_strings

NUL = "\x00"

REPLACEMENT = (
    "\ufffd"  # what a NUL in a provider's payload becomes (Unicode's replacement character)
)


# Provider payloads nest a handful of levels (a Mailgun event body: 4), far from this. What reads
# a parsed body (without_nul, has_nul, the canonical hash) walks it recursively: a body nested
# a few hundred levels deep exhausts the stack there even when the parser took it.
MAX_JSON_DEPTH = 32


class InvalidJson(ValueError):
    """A body that is not JSON this service reads; the message says why."""


def parse_json(text: bytes | str) -> Any:
    """An untrusted JSON body (a webhook's, a line of an import): InvalidJson, never another
    error, for what cannot be read. The parser refuses a document nested past Python's recursion
    limit with RecursionError, a RuntimeError that no `except ValueError` catches: a 500."""
    try:
        value = json.loads(text)
    except RecursionError as err:
        raise InvalidJson(f"nested more than {MAX_JSON_DEPTH} levels deep") from err
    except ValueError as err:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise InvalidJson(str(err)) from err
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise InvalidJson(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays or objects more than `limit` deep (iterative: no recursion)."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False


def without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (keys too) replaced by U+FFFD: what a provider
    webhook keeps of a signed payload that carries one. Its signature was checked on the bytes as
    sent; PostgreSQL text cannot hold a NUL, and neither can what the event later feeds (reply
    excerpts, tasks, workflow payloads)."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(without_nul(v) for v in value)
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def has_nul(value: Any) -> bool:
    """A NUL character anywhere in a string of `value` (PostgreSQL text cannot hold one)."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def with_offset(value: datetime) -> datetime:
    """`value` if it names one moment: it has a UTC offset, and that moment exists in UTC (the
    first hours of year 1 east of Greenwich, the last of 9999 west of it do not: converting them
    anywhere raised OverflowError, a 500)."""
    if value.utcoffset() is None:
        raise ValueError("give a UTC offset, e.g. 2026-12-01T09:00:00+01:00 or ...Z")
    try:
        value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError("out of range: no such moment in UTC") from err
    return value


# A moment the caller names (in a body or a query string): without an offset it would mean a
# different time on every server.
OffsetDatetime = Annotated[datetime, AfterValidator(with_offset)]


class WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL refuses NUL in text: without this a "\u0000" in any field was a 500 there
        if has_nul(value):
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # the OpenAPI states the rule above, so that generated bodies (schemathesis) keep to it
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        refuse_nul_in_strings(handler.resolve_ref_schema(schema))
        return schema


class InternalModel(WriteModel):
    """A body one service sends another on `/internal/*`. Unknown fields are ignored: during a
    rolling deploy a newer sender may add one, and an older receiver refusing it would leave the
    sender's relay retrying until the deploy ends. Only the service token reaches these routes."""

    model_config = ConfigDict(extra="ignore")
