"""The base of every request body our own API reads (issue 11).

An unknown field is refused with a 422 naming it instead of being dropped: a misspelt key
(`PUT /icp {"rules": ...}` for `criteria`) must not read as "set this to its default". Provider
webhooks do not use these models: providers add fields to their payloads without notice.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
