"""Ids that cross a service boundary: one shape, checked at the API and again where an internal
client puts an id into a URL (issue 11: `../reps/<id>` as a prospect id made outreach call another
route of prospecting with its internal credential)."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import Query
from pydantic import Field

# The services make uuid4().hex ids; tests and imports use short readable ones: letters, digits,
# "-" and "_" cover both, and none of them means anything in a URL path.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID = re.compile(ID_PATTERN)

ResourceId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=ID_PATTERN, description="an id: [A-Za-z0-9_-]")
]


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def id_path(template: str, **ids: str) -> str:
    """`template` with each {name} replaced by its id, percent-quoted; ValueError for a value
    that is not an id (callers treat it as "no such thing": no request is made)."""
    for name, value in ids.items():
        if not is_id(value):
            raise ValueError(f"{name} is not an id: {value!r}")
    return template.format(**{name: quote(value, safe="") for name, value in ids.items()})


# A query parameter that filters by an id: bounded like one (an unknown id simply matches nothing).
IdFilter = Annotated[str | None, Query(max_length=64)]


def fitted_key(value: str, limit: int) -> str:
    """`value` as a unique key of at most `limit` characters: itself when it fits, else its
    start and the hash of the whole. Cut, two long values with the same start were one key, and
    the second thing they named (a provider's event, a reply's task) was taken for a repeat."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"{value[: limit - len(digest) - 1]}~{digest}"
