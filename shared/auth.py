"""API-key authentication: every endpoint but provider webhooks and public links needs one."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from shared.errors import AppError

API_KEY_HEADER = "X-API-Key"
_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="closeflow API key")


async def require_api_key(
    request: Request, key: Annotated[str | None, Depends(_scheme)] = None
) -> str:
    if not key:
        raise AppError(401, "missing_api_key", f"send your API key in the {API_KEY_HEADER} header")
    accepted: frozenset[str] = request.app.state.settings.api_key_values
    # compare_digest on every key so the time taken does not reveal a prefix match
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in accepted):
        raise AppError(401, "invalid_api_key", f"the {API_KEY_HEADER} header holds an unknown key")
    return key


ApiKey = Annotated[str, Depends(require_api_key)]
