"""The base of every request body our own API reads (issue 11).

An unknown field is refused with a 422 naming it instead of being dropped: a misspelt key
(`PUT /icp {"rules": ...}` for `criteria`) must not read as "set this to its default". Provider
webhooks do not use these models: providers add fields to their payloads without notice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

NUL = "\x00"


REPLACEMENT = (
    "\ufffd"  # what a NUL in a provider's payload becomes (Unicode's replacement character)
)


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


class WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL refuses NUL in text: without this a "\u0000" in any field was a 500 there
        if has_nul(value):
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value


class InternalModel(WriteModel):
    """A body one service sends another on `/internal/*`. Unknown fields are ignored: during a
    rolling deploy a newer sender may add one, and an older receiver refusing it would leave the
    sender's relay retrying until the deploy ends. Only the service token reaches these routes."""

    model_config = ConfigDict(extra="ignore")
